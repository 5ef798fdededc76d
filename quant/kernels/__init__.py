"""Quantisation kernels: the type registry (base), the types, and the validating front end (api)."""

from quant.kernels.base import QUANT_TYPES, QuantType, register

__all__ = ["QUANT_TYPES", "QuantType", "register"]
