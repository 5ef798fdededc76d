"""Quantisation kernels: the type registry (base), the types (simple, legacy, kquants, kquants_q2_q3, iq4,
iquants, iq1) and the validating front end (api).

Importing this package registers every type in QUANT_TYPES.
"""

from quant.errors import QuantError
from quant.kernels import iq1, iq4, iquants, kquants, kquants_q2_q3, legacy, simple
from quant.kernels.api import dequantize, quant_type, quantize
from quant.kernels.base import QUANT_TYPES, QuantType, register

__all__ = [
    "QUANT_TYPES",
    "QuantError",
    "QuantType",
    "dequantize",
    "iq1",
    "iq4",
    "iquants",
    "kquants",
    "kquants_q2_q3",
    "legacy",
    "quant_type",
    "quantize",
    "register",
    "simple",
]
