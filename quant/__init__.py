"""The headless core of hubtui: quantisation kernels, GGUF writing, conversion, sizing, hardware.

This package must never import textual, rich, hubtui or llama_cpp (tests/test_import_hygiene.py).
"""

from quant.errors import QuantError

__all__ = ["QUANT_TYPES", "QuantError", "dequantize", "quantize"]

_KERNEL_NAMES = ("QUANT_TYPES", "dequantize", "quantize")


def __getattr__(name: str):
    # The kernels pull in numba; load them on first use so `import quant` stays cheap.
    if name in _KERNEL_NAMES:
        from quant import kernels

        return getattr(kernels, name)
    raise AttributeError(f"module 'quant' has no attribute {name!r}")
