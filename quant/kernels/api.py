"""The validating front end over the type kernels: `quantize` and `dequantize`.

Kernels only see C-contiguous float32 rows whose length fits the type, and finite values unless the type's
output exposes NaN/inf itself (F32, F16, BF16). Everything a caller can get wrong is checked here and
reported as a one-line `QuantError`. Work goes chunk by chunk over rows so a
memory-mapped tensor is never copied whole: extra memory is one chunk of float32 (for f16/bf16 input) no
matter how large the tensor.
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
from numba import njit, prange

from quant.errors import QuantError
from quant.kernels.base import QUANT_TYPES, QuantType, readonly
from quant.kernels.simple import bf16_to_f32

CHUNK_ELEMENTS = 1 << 24
"""Elements converted per step for float16/bfloat16 input: the bound on extra memory (64 MiB of float32)."""

F32_CHUNK_ELEMENTS = 1 << 26
"""Elements per step for float32 input, which the kernels read in place (no copy). Large, because every step
starts parallel regions, and on a busy machine each start waits for a descheduled worker thread."""

_KERNEL_LOCK = threading.Lock()  # one parallel kernel at a time: concurrent callers would oversubscribe cores


@njit(cache=True, parallel=True)
def _first_nonfinite_row(x) -> int:
    rows, cols = x.shape
    bad = np.zeros(rows, np.bool_)
    for r in prange(rows):
        flag = False
        for j in range(cols):
            flag |= not np.isfinite(x[r, j])
        bad[r] = flag
    for r in range(rows):
        if bad[r]:
            return r
    return -1


def quant_type(qtype: str) -> type[QuantType]:
    """The registry class for a ggml type name such as "Q4_K" (case-insensitive)."""
    cls = QUANT_TYPES.get(str(qtype).upper())
    if cls is None:
        raise QuantError(f"unknown quantisation type {qtype!r} (known: {', '.join(sorted(QUANT_TYPES))})")
    return cls


def default_threads() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0))


def _thread_count(threads: int | None) -> int:
    n = default_threads() if threads is None else threads
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise QuantError(f"threads must be a positive integer, got {threads!r}")
    return min(int(n), numba.config.NUMBA_NUM_THREADS)


def _check_row_length(cls: type[QuantType], cols: int, prefix: str) -> None:
    if cols < 1 or cols % cls.block_size:
        raise QuantError(
            f"{prefix}{cls.name} cannot hold rows of {cols} elements: "
            f"the row length must be a positive multiple of {cls.block_size}"
        )


def _input_kind(x: np.ndarray, prefix: str) -> str:
    if x.dtype == np.float32:
        return "f32"
    if x.dtype == np.float16:
        return "f16"
    if x.dtype == np.uint16:
        return "bf16"  # bfloat16 bits, as a safetensors BF16 tensor reads into numpy
    raise QuantError(
        f"{prefix}cannot quantise {x.dtype} data: expected float32, float16 or bfloat16 (as uint16)"
    )


def _as_float32(chunk: np.ndarray, kind: str, buf: np.ndarray | None) -> np.ndarray:
    """The chunk as C-contiguous float32: a view when it already is one, else converted exactly into `buf`."""
    if kind == "f32":
        return np.ascontiguousarray(chunk)
    dst = buf[: chunk.shape[0]]
    if kind == "f16":
        dst[...] = chunk
    else:
        bf16_to_f32(np.ascontiguousarray(chunk), dst)
    return dst


def _nonfinite_message(prefix: str, xc: np.ndarray, r: int, row: int) -> str:
    col = int(np.flatnonzero(~np.isfinite(xc[r]))[0])
    return f"{prefix}row {row} contains {xc[r, col]} at column {col}: NaN and inf cannot be quantised"


def _overflow_message(prefix: str, cls: type[QuantType], row: int) -> str:
    if cls.block_size == 1:
        limit = "±65504" if cls.name == "F16" else "about ±3.39e38"
        return (
            f"{prefix}row {row} has values beyond the {cls.name} range ({limit}): they would be stored as inf"
        )
    return f"{prefix}row {row} is too large for {cls.name}: a block scale overflows fp16 (llama.cpp rejects such rows)"


def quantize(
    x: np.ndarray,
    qtype: str,
    *,
    threads: int | None = None,
    out: np.ndarray | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Quantise the rows of `x` (the last axis) to `qtype`, byte-identical to llama.cpp's ggml_quantize_chunk.

    `x` is float32, float16 or bfloat16 bits as uint16, any shape [..., cols] (often a np.memmap or a row
    range of one). Returns uint8 [..., row_bytes]; with `out` (uint8, that shape, C-contiguous, e.g. a slice
    of an output memmap) the bytes go there and `out` is returned. `threads=None` uses every core; the bytes
    never depend on it. `name` (a tensor name) prefixes error messages.
    """
    prefix = f"{name}: " if name else ""
    cls = quant_type(qtype)
    x = np.asarray(x)  # a memmap stays a view
    if x.ndim == 0:
        raise QuantError(f"{prefix}cannot quantise a scalar: expected rows of values")
    kind = _input_kind(x, prefix)
    cols = x.shape[-1]
    _check_row_length(cls, cols, prefix)
    nthreads = _thread_count(threads)
    x2 = x.reshape(-1, cols)
    rows = x2.shape[0]
    shape = (*x.shape[:-1], cls.row_bytes(cols))
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.dtype != np.uint8 or out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous uint8 array of shape {shape}, got {out.dtype} {out.shape}"
        )
    out2 = np.asarray(out).reshape(rows, shape[-1])

    step = max(1, (F32_CHUNK_ELEMENTS if kind == "f32" else CHUNK_ELEMENTS) // cols)
    buf = None if kind == "f32" else np.empty((min(step, rows), cols), dtype=np.float32)
    with _KERNEL_LOCK:
        saved = numba.get_num_threads()
        numba.set_num_threads(nthreads)
        try:
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                xc = readonly(_as_float32(x2[r0:r1], kind, buf))
                if not cls.nonfinite_shows_in_output:
                    bad = _first_nonfinite_row(xc)
                    if bad >= 0:
                        raise QuantError(_nonfinite_message(prefix, xc, bad, r0 + bad))
                oc = out2[r0:r1]
                bad = cls.quantize_rows(xc, oc)
                if bad is None:
                    bad = cls.invalid_row(oc)
                if bad >= 0:
                    nonfinite = _first_nonfinite_row(xc[: bad + 1])
                    if nonfinite >= 0:
                        raise QuantError(_nonfinite_message(prefix, xc, nonfinite, r0 + nonfinite))
                    raise QuantError(_overflow_message(prefix, cls, r0 + bad))
        finally:
            numba.set_num_threads(saved)
    return out


def dequantize(data: np.ndarray | bytes, qtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Expand `qtype` bytes back to float32 of `shape` ([..., cols]), exactly as llama.cpp's to_float does."""
    cls = quant_type(qtype)
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise QuantError(f"{cls.name}: cannot dequantise to a scalar shape")
    cols = shape[-1]
    _check_row_length(cls, cols, "")
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    row_bytes = cls.row_bytes(cols)
    buf = (
        np.frombuffer(data, dtype=np.uint8)
        if isinstance(data, bytes | bytearray | memoryview)
        else np.asarray(data)
    )
    if buf.dtype != np.uint8:
        buf = buf.view(np.uint8) if buf.flags.c_contiguous else np.ascontiguousarray(buf).view(np.uint8)
    if buf.size != rows * row_bytes:
        raise QuantError(
            f"{cls.name} data of {buf.size} bytes does not match shape {shape} ({rows * row_bytes} bytes expected)"
        )
    out = np.empty((rows, cols), dtype=np.float32)
    with _KERNEL_LOCK:
        cls.dequantize_rows(readonly(np.ascontiguousarray(buf).reshape(rows, row_bytes)), out)
    return out.reshape(shape)
