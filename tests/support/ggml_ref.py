"""llama.cpp's own quantiser, called through ctypes on the libggml-base that llama-cpp-python installs.

Tests use it as the reference for bit-exactness; benchmarks use it as the anchor.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

GGML_TYPES = {t.name: int(t) for t in GGMLQuantizationType}
"""ggml type ids by name (gguf-py mirrors ggml.h's enum ggml_type)."""


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
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    return lib


def row_size(qtype: str, cols: int) -> int:
    return int(libggml().ggml_row_size(GGML_TYPES[qtype], cols))


def requires_imatrix(qtype: str) -> bool:
    """`ggml_quantize_requires_imatrix`: ggml_quantize_chunk aborts the process without one for these types."""
    return bool(libggml().ggml_quantize_requires_imatrix(GGML_TYPES[qtype]))


def quantize(x: np.ndarray, qtype: str, quant_weights: np.ndarray | None = None) -> np.ndarray:
    """llama.cpp's `ggml_quantize_chunk` over a float32 [rows, cols] matrix, with importance weights (one float32
    per column, its last argument) or without (NULL; never for a type that `requires_imatrix`: ggml aborts the
    process)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    t = GGML_TYPES[qtype]
    lib = libggml()
    if quant_weights is None:
        assert not requires_imatrix(qtype), f"ggml aborts on {qtype} without an importance matrix"
        qw = None
    else:
        quant_weights = np.ascontiguousarray(quant_weights, dtype=np.float32)
        assert quant_weights.shape == (cols,)
        qw = quant_weights.ctypes.data
    lib.ggml_quantize_init(t)
    out = np.zeros((rows, row_size(qtype, cols)), dtype=np.uint8)
    written = lib.ggml_quantize_chunk(t, x.ctypes.data, out.ctypes.data, 0, rows, cols, qw)
    assert written == out.nbytes
    return out


_CHILD = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
f = lib.ggml_quantize_chunk
f.restype = ctypes.c_size_t
f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
t, rows, cols = (int(a) for a in sys.argv[2:5])
data = open(sys.argv[5], "rb").read()
x = (ctypes.c_float * (rows * cols)).from_buffer_copy(data, 0)
qw = (ctypes.c_float * cols).from_buffer_copy(data, 4 * rows * cols) if len(data) > 4 * rows * cols else None
out = (ctypes.c_uint8 * (rows * cols))()  # a byte per value: more than any quantised type needs
f(t, x, out, 0, rows, cols, qw)
print("returned")
"""


def aborts(x: np.ndarray, qtype: str, imatrix: np.ndarray | None = None) -> bool:
    """Whether `ggml_quantize_chunk` kills the process (GGML_ASSERT/GGML_ABORT) on this input: run in a child
    Python with nothing but ctypes, so the test process survives. False when the call returns normally."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.bin"
        payload = x.tobytes() + (
            b"" if imatrix is None else np.ascontiguousarray(imatrix, np.float32).tobytes()
        )
        path.write_bytes(payload)
        args = [str(lib_dir() / "libggml-base.so"), str(GGML_TYPES[qtype]), str(rows), str(cols), str(path)]
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, timeout=120
        )
    if proc.returncode == 0 and proc.stdout.strip() == "returned":
        return False
    if proc.returncode == -6:  # SIGABRT
        return True
    raise RuntimeError(f"ggml child exited with {proc.returncode}: {proc.stderr[-500:]}")


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
