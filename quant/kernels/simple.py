"""The element types F32, F16, BF16 and Q8_0: what convert_hf_to_gguf writes itself, and what llama.cpp's
quantisers ignore importance weights for.

Q8_0 reproduces ggml-quants.c's `quantize_row_q8_0_ref` in float32 with C evaluation order, blocks spread over
threads with prange (each block is independent, so any thread count gives the same bytes).
"""

from __future__ import annotations

import numba
import numpy as np
from gguf import GGMLQuantizationType as GT
from numba import njit, prange

from quant.kernels.base import QuantType, prange_tasks, register
from quant.kernels.bits import (
    JIT,
    cvt_i32,
    f16_to_f32,
    f32_to_bf16,
    f32_to_f16,
    first_row_with_all_ones,
    load_f16,
    roundf,
    store_f16,
)

# --- F16 / BF16 -------------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _f16_quant(x, out16, ntasks):
    rows, cols = x.shape
    for t in prange(ntasks):
        for r in range(t * rows // ntasks, (t + 1) * rows // ntasks):
            for j in range(cols):
                out16[r, j] = f32_to_f16(x[r, j])


@njit(cache=True, parallel=True)
def _f16_dequant(h, out):
    rows, cols = out.shape
    for r in prange(rows):
        for j in range(cols):
            out[r, j] = f16_to_f32(h[r, j])


@njit(cache=True, parallel=True)
def _bf16_quant(x, out16, ntasks):
    """Convert, and return the first row holding inf/NaN (what invalid_row finds): fused, as BF16 is so cheap
    that a second pass over the output would cost a third of the time."""
    rows, cols = x.shape
    bad = np.zeros(rows, np.bool_)
    for t in prange(ntasks):
        for r in range(t * rows // ntasks, (t + 1) * rows // ntasks):
            flag = np.uint16(0)
            for j in range(cols):
                h = f32_to_bf16(x[r, j])
                out16[r, j] = h
                flag |= np.uint16(1) if (h & np.uint16(0x7F80)) == np.uint16(0x7F80) else np.uint16(0)
            bad[r] = flag != 0
    for r in range(rows):
        if bad[r]:
            return r
    return -1


@njit(cache=True, parallel=True)
def bf16_to_f32(h, out):
    """bf16 bits (uint16 [rows, cols]) -> float32, exact."""
    rows, cols = out.shape
    out32 = out.view(np.uint32)
    for r in prange(rows):
        for j in range(cols):
            out32[r, j] = np.uint32(h[r, j]) << np.uint32(16)


# --- Q8_0 -------------------------------------------------------------------------------------------------


@njit(inline="always", **JIT)
def q8_0_block(x, xb, o, off) -> np.uint16:
    """quantize_row_q8_0_ref for the 32 floats x[xb:xb+32] into o[off:off+34]: d = max|x|/127 stored as fp16,
    quants roundf(x/d) computed with the unrounded d. Returns the stored fp16 bits of d (for the caller's
    overflow check). The converter's fused BF16 path (quant/kernels/fused.py) runs this same routine."""
    amax = np.float32(0.0)
    for j in range(32):
        v = np.float32(abs(x[xb + j]))
        amax = amax if amax > v else v
    d = amax / np.float32(127.0)
    idd = np.float32(1.0) / d if d != np.float32(0.0) else np.float32(0.0)
    h = f32_to_f16(d)
    store_f16(o, off, h)
    for j in range(32):
        o[off + 2 + j] = np.uint8(cvt_i32(roundf(x[xb + j] * idd)) & 0xFF)
    return h


@njit(parallel=True, **JIT)
def _q8_0_quant(x, out, type_size, ntasks):
    rows, cols = x.shape
    nb = cols // 32
    total = rows * nb
    for t in prange(ntasks):  # contiguous block ranges, handed out one task at a time
        for i in range(t * total // ntasks, (t + 1) * total // ntasks):
            r = i // nb
            b = i - r * nb
            q8_0_block(x[r], b * 32, out[r], b * type_size)


@njit(parallel=True, **JIT)
def _q8_0_dequant(data, out, type_size):
    rows, cols = out.shape
    nb = cols // 32
    for i in prange(rows * nb):
        r = i // nb
        xb = (i - r * nb) * 32
        o = (i - r * nb) * type_size
        d = load_f16(data[r], o)
        for j in range(32):
            out[r, xb + j] = np.float32(np.int8(data[r, o + 2 + j])) * d


# --- registry classes -------------------------------------------------------------------------------------


@register
class F32(QuantType):
    ggml_type = GT.F32

    nonfinite_shows_in_output = True

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None) -> None:
        out.view(np.float32)[...] = x

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        out[...] = data.view(np.float32)

    @classmethod
    def invalid_row(cls, data: np.ndarray) -> int:
        return int(first_row_with_all_ones(data.view(np.uint32), np.uint32(0x7F800000)))


@register
class F16(QuantType):
    ggml_type = GT.F16
    nonfinite_shows_in_output = True

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None) -> None:
        with numba.parallel_chunksize(1):
            _f16_quant(x, out.view(np.uint16), prange_tasks())

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        _f16_dequant(data.view(np.uint16), out)

    @classmethod
    def invalid_row(cls, data: np.ndarray) -> int:
        # ggml_validate_row_data rejects any inf/NaN element of an F16 row; finite input overflows past 65504
        return int(first_row_with_all_ones(data.view(np.uint16), np.uint16(0x7C00)))


@register
class BF16(QuantType):
    ggml_type = GT.BF16
    nonfinite_shows_in_output = True

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None) -> int:
        with numba.parallel_chunksize(1):
            return int(_bf16_quant(x, out.view(np.uint16), prange_tasks()))

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        bf16_to_f32(data.view(np.uint16), out)

    @classmethod
    def invalid_row(cls, data: np.ndarray) -> int:
        # rounding can carry a finite float32 near FLT_MAX into inf, which ggml_validate_row_data rejects
        return int(first_row_with_all_ones(data.view(np.uint16), np.uint16(0x7F80)))


@register
class Q8_0(QuantType):
    ggml_type = GT.Q8_0
    scale_offsets = (0,)

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None) -> None:
        with numba.parallel_chunksize(1):
            _q8_0_quant(x, out, cls.type_size, prange_tasks())

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        _q8_0_dequant(data, out, cls.type_size)
