"""The headless core of hubtui: quantisation kernels, GGUF writing, conversion, sizing, hardware.

This package must never import textual, rich, hubtui or llama_cpp (tests/test_import_hygiene.py).
"""

from quant.errors import QuantError

__all__ = ["QuantError"]
