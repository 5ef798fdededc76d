"""Quantisation kernels: the type registry (base), the types (simple, kquants) and the validating front end (api).

Importing this package registers every type in QUANT_TYPES.
"""

from quant.errors import QuantError
from quant.kernels import kquants, simple
from quant.kernels.api import dequantize, quant_type, quantize
from quant.kernels.base import QUANT_TYPES, QuantType, register

__all__ = [
    "QUANT_TYPES",
    "QuantError",
    "QuantType",
    "dequantize",
    "kquants",
    "quant_type",
    "quantize",
    "register",
    "simple",
]
