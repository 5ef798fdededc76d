"""The non-K types: F32, F16, BF16 and the 32-element block types Q8_0, Q5_0, Q5_1.

Q5_0/Q5_1/Q8_0 are what llama.cpp falls back to when a row length is not a multiple of 256. Each kernel
reproduces ggml-quants.c's `quantize_row_*_ref` in float32 with C evaluation order (reference doc §2.2, §2.6),
blocks spread over threads with prange (each block is independent, so any thread count gives the same bytes).
"""

from __future__ import annotations

import numba
import numpy as np
from gguf import GGMLQuantizationType as GT
from numba import njit, prange

from quant.kernels.base import QuantType, prange_tasks, register
from quant.kernels.bits import (
    cvt_i32,
    f16_to_f32,
    f32_to_bf16,
    f32_to_f16,
    first_row_with_all_ones,
    roundf,
)

_FLT_MAX = np.float32(3.4028234663852886e38)


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


@njit(cache=True, inline="always")
def _put_f16(out, r, o, h):
    out[r, o] = np.uint8(h & np.uint16(0xFF))
    out[r, o + 1] = np.uint8(h >> np.uint16(8))


@njit(cache=True, inline="always")
def _get_f16(data, r, o):
    return f16_to_f32(np.uint16(data[r, o]) | (np.uint16(data[r, o + 1]) << np.uint16(8)))


@njit(cache=True, parallel=True)
def _q8_0_quant(x, out, ntasks):
    rows, cols = x.shape
    nb = cols // 32
    total = rows * nb
    for t in prange(ntasks):  # contiguous block ranges, handed out one task at a time
        for i in range(t * total // ntasks, (t + 1) * total // ntasks):
            r = i // nb
            xb = (i - r * nb) * 32
            o = (i - r * nb) * 34
            amax = np.float32(0.0)
            for j in range(32):
                v = np.float32(abs(x[r, xb + j]))
                amax = amax if amax > v else v
            d = amax / np.float32(127.0)
            idd = np.float32(1.0) / d if d != np.float32(0.0) else np.float32(0.0)
            _put_f16(out, r, o, f32_to_f16(d))
            for j in range(32):
                out[r, o + 2 + j] = np.uint8(cvt_i32(roundf(x[r, xb + j] * idd)) & 0xFF)


@njit(cache=True, parallel=True)
def _q8_0_dequant(data, out):
    rows, cols = out.shape
    nb = cols // 32
    for i in prange(rows * nb):
        r = i // nb
        xb = (i - r * nb) * 32
        o = (i - r * nb) * 34
        d = _get_f16(data, r, o)
        for j in range(32):
            out[r, xb + j] = np.float32(np.int8(data[r, o + 2 + j])) * d


# --- Q5_0 / Q5_1 ------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _put_q5_bits(out, r, o, j, xi0, xi1, qh):
    """Store the low nibbles of elements j and j+16 and fold their 5th bits into qh (ggml's Q5 layout)."""
    out[r, o + j] = np.uint8((xi0 & 0x0F) | ((xi1 & 0x0F) << 4))
    return qh | (((xi0 & 0x10) >> 4) << j) | (((xi1 & 0x10) >> 4) << (j + 16))


@njit(cache=True, inline="always")
def _put_u32(out, r, o, v):
    for k in range(4):
        out[r, o + k] = np.uint8((v >> (8 * k)) & 0xFF)


@njit(cache=True, parallel=True)
def _q5_0_quant(x, out, ntasks):
    rows, cols = x.shape
    nb = cols // 32
    total = rows * nb
    for t in prange(ntasks):  # contiguous block ranges, handed out one task at a time
        for i in range(t * total // ntasks, (t + 1) * total // ntasks):
            r = i // nb
            xb = (i - r * nb) * 32
            o = (i - r * nb) * 22
            amax = np.float32(0.0)
            vmax = np.float32(0.0)
            for j in range(32):
                v = x[r, xb + j]
                a = np.float32(abs(v))
                if amax < a:
                    amax = a
                    vmax = v
            d = vmax / np.float32(-16.0)
            idd = np.float32(1.0) / d if d != np.float32(0.0) else np.float32(0.0)
            _put_f16(out, r, o, f32_to_f16(d))
            qh = 0
            for j in range(16):
                xi0 = cvt_i32(x[r, xb + j] * idd + np.float32(16.5)) & 0xFF
                xi1 = cvt_i32(x[r, xb + 16 + j] * idd + np.float32(16.5)) & 0xFF
                xi0 = min(31, xi0 - 256 if xi0 > 127 else xi0)  # (int8_t) then MIN(31, .)
                xi1 = min(31, xi1 - 256 if xi1 > 127 else xi1)
                qh = _put_q5_bits(out, r, o + 6, j, xi0, xi1, qh)
            _put_u32(out, r, o + 2, qh)


@njit(cache=True, parallel=True)
def _q5_1_quant(x, out, ntasks):
    rows, cols = x.shape
    nb = cols // 32
    total = rows * nb
    for t in prange(ntasks):  # contiguous block ranges, handed out one task at a time
        for i in range(t * total // ntasks, (t + 1) * total // ntasks):
            r = i // nb
            xb = (i - r * nb) * 32
            o = (i - r * nb) * 24
            vmin = _FLT_MAX
            vmax = -_FLT_MAX
            for j in range(32):
                v = x[r, xb + j]
                if v < vmin:
                    vmin = v
                if v > vmax:
                    vmax = v
            d = (vmax - vmin) / np.float32(31.0)
            idd = np.float32(1.0) / d if d != np.float32(0.0) else np.float32(0.0)
            _put_f16(out, r, o, f32_to_f16(d))
            _put_f16(out, r, o + 2, f32_to_f16(vmin))
            qh = 0
            for j in range(16):
                xi0 = cvt_i32((x[r, xb + j] - vmin) * idd + np.float32(0.5)) & 0xFF  # (uint8_t)
                xi1 = cvt_i32((x[r, xb + 16 + j] - vmin) * idd + np.float32(0.5)) & 0xFF
                qh = _put_q5_bits(out, r, o + 8, j, xi0, xi1, qh)
            _put_u32(out, r, o + 4, qh)


@njit(cache=True, inline="always")
def _get_u32(data, r, o):
    return (
        np.uint32(data[r, o])
        | (np.uint32(data[r, o + 1]) << np.uint32(8))
        | (np.uint32(data[r, o + 2]) << np.uint32(16))
        | (np.uint32(data[r, o + 3]) << np.uint32(24))
    )


@njit(cache=True, parallel=True)
def _q5_dequant(data, out, type_size, has_min):
    """Q5_0 (d, qh, qs; value (q - 16)·d) and Q5_1 (d, m, qh, qs; value q·d + m)."""
    rows, cols = out.shape
    nb = cols // 32
    for i in prange(rows * nb):
        r = i // nb
        xb = (i - r * nb) * 32
        o = (i - r * nb) * type_size
        d = _get_f16(data, r, o)
        m = _get_f16(data, r, o + 2) if has_min else np.float32(0.0)
        qo = o + 8 if has_min else o + 6
        qh = _get_u32(data, r, qo - 4)
        for j in range(16):
            q = np.int32(data[r, qo + j])
            x0 = np.int32((q & 0x0F) | (((qh >> np.uint32(j)) << np.uint32(4)) & np.uint32(0x10)))
            x1 = np.int32((q >> 4) | ((qh >> np.uint32(j + 12)) & np.uint32(0x10)))
            if has_min:
                out[r, xb + j] = np.float32(x0) * d + m
                out[r, xb + j + 16] = np.float32(x1) * d + m
            else:
                out[r, xb + j] = np.float32(x0 - 16) * d
                out[r, xb + j + 16] = np.float32(x1 - 16) * d


# --- registry classes -------------------------------------------------------------------------------------


@register
class F32(QuantType):
    name = "F32"
    ggml_type = int(GT.F32)
    block_size = 1
    type_size = 4

    nonfinite_shows_in_output = True

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> None:
        out.view(np.float32)[...] = x

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        out[...] = data.view(np.float32)

    @classmethod
    def invalid_row(cls, data: np.ndarray) -> int:
        return int(first_row_with_all_ones(data.view(np.uint32), np.uint32(0x7F800000)))


@register
class F16(QuantType):
    name = "F16"
    ggml_type = int(GT.F16)
    block_size = 1
    type_size = 2
    nonfinite_shows_in_output = True

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> None:
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
    name = "BF16"
    ggml_type = int(GT.BF16)
    block_size = 1
    type_size = 2
    nonfinite_shows_in_output = True

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> int:
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
    name = "Q8_0"
    ggml_type = int(GT.Q8_0)
    block_size = 32
    type_size = 34
    scale_offsets = (0,)

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> None:
        with numba.parallel_chunksize(1):
            _q8_0_quant(x, out, prange_tasks())

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        _q8_0_dequant(data, out)


@register
class Q5_0(QuantType):
    name = "Q5_0"
    ggml_type = int(GT.Q5_0)
    block_size = 32
    type_size = 22
    scale_offsets = (0,)

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> None:
        with numba.parallel_chunksize(1):
            _q5_0_quant(x, out, prange_tasks())

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        _q5_dequant(data, out, cls.type_size, False)


@register
class Q5_1(QuantType):
    name = "Q5_1"
    ggml_type = int(GT.Q5_1)
    block_size = 32
    type_size = 24
    scale_offsets = (0, 1)

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> None:
        with numba.parallel_chunksize(1):
            _q5_1_quant(x, out, prange_tasks())

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        _q5_dequant(data, out, cls.type_size, True)
