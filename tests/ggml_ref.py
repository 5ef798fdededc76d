"""llama.cpp's own quantiser, called through ctypes on the libggml-base that llama-cpp-python installs.

Tests use it as the reference for bit-exactness; benchmarks use it as the anchor.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

GGML_TYPES = {
    "F32": 0,
    "F16": 1,
    "Q5_0": 6,
    "Q5_1": 7,
    "Q8_0": 8,
    "Q4_K": 12,
    "Q5_K": 13,
    "Q6_K": 14,
    "BF16": 30,
}


def lib_dir() -> Path:
    import llama_cpp  # the test/bench side may import it; quant never does

    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    return Path(override) if override else Path(llama_cpp.__file__).parent / "lib"


@functools.cache
def libggml() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(lib_dir() / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_get_type_traits.restype = ctypes.c_void_p
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    lib.ggml_validate_row_data.restype = ctypes.c_bool
    lib.ggml_validate_row_data.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    return lib


def row_size(qtype: str, cols: int) -> int:
    return int(libggml().ggml_row_size(GGML_TYPES[qtype], cols))


def quantize(x: np.ndarray, qtype: str) -> np.ndarray:
    """llama.cpp's `ggml_quantize_chunk` (no importance matrix) over a float32 [rows, cols] matrix."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    t = GGML_TYPES[qtype]
    lib = libggml()
    lib.ggml_quantize_init(t)
    out = np.zeros((rows, row_size(qtype, cols)), dtype=np.uint8)
    written = lib.ggml_quantize_chunk(t, x.ctypes.data, out.ctypes.data, 0, rows, cols, None)
    assert written == out.nbytes
    return out


def validate(data: np.ndarray, qtype: str) -> bool:
    """`ggml_validate_row_data`: what llama.cpp checks after quantising (no inf/NaN scales)."""
    data = np.ascontiguousarray(data)
    return bool(libggml().ggml_validate_row_data(GGML_TYPES[qtype], data.ctypes.data, data.nbytes))


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits: type_name, blck_size, blck_size_interleave, type_size, is_quantized, to_float, ...
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def dequantize(data: np.ndarray, qtype: str, shape: tuple[int, int]) -> np.ndarray:
    """llama.cpp's `to_float` for the type, row by row."""
    rows, cols = shape
    traits = _TypeTraits.from_address(libggml().ggml_get_type_traits(GGML_TYPES[qtype]))
    fn = _TO_FLOAT(traits.to_float)
    data = np.ascontiguousarray(data).reshape(rows, -1)
    out = np.empty((rows, cols), dtype=np.float32)
    for r in range(rows):
        fn(data[r].ctypes.data, out[r].ctypes.data, cols)
    return out
