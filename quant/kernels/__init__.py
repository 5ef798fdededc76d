"""Quantisation kernels: the type registry (base), the types (simple, kquants) and the validating front end (api).

Importing this package registers every type in QUANT_TYPES.
"""

import importlib.util

from quant.errors import QuantError
from quant.kernels import simple
from quant.kernels.api import dequantize, quant_type, quantize
from quant.kernels.base import QUANT_TYPES, QuantType, register

if importlib.util.find_spec("quant.kernels.kquants") is not None:  # until the K-quant kernels land
    from quant.kernels import kquants  # noqa: F401

__all__ = [
    "QUANT_TYPES",
    "QuantError",
    "QuantType",
    "dequantize",
    "quant_type",
    "quantize",
    "register",
    "simple",
]
