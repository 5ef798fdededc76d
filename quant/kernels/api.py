"""The validating front end over the type kernels: `quantize` and `dequantize`.

Kernels only see C-contiguous float32 rows whose length fits the type, and finite values unless the type's
output exposes NaN/inf itself (F32, F16, BF16); importance weights reach them as one finite, non-negative
float32 vector per call (quant/kernels/base.py has the contract). Everything a caller can get wrong is checked
here and reported as a one-line `QuantError`. Work goes chunk by chunk over rows so a
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
    # numba.config sets NUMBA_NUM_THREADS at import, from the environment, which its stubs cannot show
    return min(int(n), numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


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
    assert buf is not None  # the caller allocates one for every kind but f32
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


def _weight_vectors(
    quant_weights: np.ndarray | None, cls: type[QuantType], shape: tuple[int, ...], prefix: str
) -> np.ndarray | None:
    """Validated importance weights as float32 [matrices, cols] (one vector per matrix of x), or None.

    One vector [cols] applies to every row; for x [..., rows, cols] a [..., cols] array gives each matrix
    (each expert of a stacked MoE tensor) its own vector, as llama-quantize slices the imatrix per expert.
    """
    if quant_weights is None:
        if cls.requires_quant_weights:
            raise QuantError(
                f"{prefix}{cls.name} needs an importance matrix: llama.cpp refuses it without one "
                "(make one with llama-imatrix)"
            )
        return None
    qw = np.asarray(quant_weights)
    if qw.dtype.kind not in "fiu":
        raise QuantError(f"{prefix}importance weights must be numbers, got {qw.dtype}")
    cols = shape[-1]
    per_matrix = (*shape[:-2], cols)
    if qw.shape == (cols,):
        qw = qw.reshape(1, cols)
    elif len(shape) >= 3 and qw.shape == per_matrix:
        qw = qw.reshape(-1, cols)
    else:
        allowed = f"({cols},)" + (f" or {per_matrix}" if len(shape) >= 3 else "")
        raise QuantError(
            f"{prefix}importance weights of shape {qw.shape} do not fit rows of {cols} elements: expected {allowed}"
        )
    qw = np.ascontiguousarray(qw, dtype=np.float32)
    bad = np.argwhere(~(np.isfinite(qw) & (qw >= 0)))
    if bad.size:
        m, col = (int(v) for v in bad[0])
        where = f"column {col}" + (f" of matrix {m}" if qw.shape[0] > 1 else "")
        raise QuantError(
            f"{prefix}importance weight at {where} is {qw[m, col]}: weights must be finite and non-negative"
        )
    return qw


def quantize(
    x: np.ndarray,
    qtype: str,
    *,
    threads: int | None = None,
    out: np.ndarray | None = None,
    name: str | None = None,
    quant_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Quantise the rows of `x` (the last axis) to `qtype`, byte-identical to llama.cpp's ggml_quantize_chunk.

    `x` is float32, float16 or bfloat16 bits as uint16, any shape [..., cols] (often a np.memmap or a row
    range of one). Returns uint8 [..., row_bytes]; with `out` (uint8, that shape, C-contiguous, e.g. a slice
    of an output memmap) the bytes go there and `out` is returned. `threads=None` uses every core; the bytes
    never depend on it. `name` (a tensor name) prefixes error messages.

    `quant_weights` are llama.cpp's importance weights (an imatrix entry: one non-negative float per column,
    or one such vector per matrix of a [..., rows, cols] stack), passed to the quantiser as
    ggml_quantize_chunk's last argument; types whose llama.cpp quantiser ignores them (`uses_quant_weights`
    False: F32, F16, BF16, Q8_0) give the same bytes with or without them.
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
    weights = _weight_vectors(quant_weights, cls, x.shape, prefix)
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
    # with one weight vector per matrix, chunks never straddle two matrices
    per_vector = max(1, rows if weights is None or weights.shape[0] == 1 else rows // weights.shape[0])
    with _KERNEL_LOCK:
        saved = numba.get_num_threads()
        numba.set_num_threads(nthreads)
        try:
            for r0, r1 in _chunks(rows, step, per_vector):
                xc = readonly(_as_float32(x2[r0:r1], kind, buf))
                if not cls.nonfinite_shows_in_output:
                    nonfinite = _first_nonfinite_row(xc)
                    if nonfinite >= 0:
                        raise QuantError(_nonfinite_message(prefix, xc, nonfinite, r0 + nonfinite))
                oc = out2[r0:r1]
                if weights is None:
                    bad = cls.quantize_rows(xc, oc)
                else:
                    bad = cls.quantize_rows(xc, oc, weights[r0 // per_vector])
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


def _chunks(rows: int, step: int, per_vector: int):
    """Row ranges of at most `step` rows that do not cross a multiple of `per_vector`."""
    for m0 in range(0, rows, per_vector):
        m1 = min(rows, m0 + per_vector)
        for r0 in range(m0, m1, step):
            yield r0, min(m1, r0 + step)


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
