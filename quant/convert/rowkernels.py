"""Numba helpers for the converter's hot loop: widen BF16 rows to float32 and find non-finite rows, on all cores.

Both work on float32 bit patterns (uint32) so the widening is exact and NaN/inf detection needs no float ops.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from quant.kernels.bits import cvt_i32, f32_to_f16, roundf

F32_EXP_MASK = np.uint32(0x7F800000)


@njit(cache=True, parallel=True)
def bf16_rows_to_f32_bits(src, rows, out):  # pragma: no cover - compiled
    """out[i] = src[rows[i]] widened (bf16 bits << 16); returns the first output row holding NaN/inf, or -1."""
    n, c = out.shape
    flags = np.zeros(n, dtype=np.uint8)
    for i in prange(n):
        r = rows[i]
        bad = False
        for j in range(c):
            u = np.uint32(src[r, j]) << np.uint32(16)
            out[i, j] = u
            if (u & F32_EXP_MASK) == F32_EXP_MASK:
                bad = True
        if bad:
            flags[i] = 1
    for i in range(n):
        if flags[i]:
            return i
    return -1


@njit(cache=True, parallel=True)
def bf16_rows_to_q8_0(src, rows, out, ntasks):  # pragma: no cover - compiled
    """out[i] = Q8_0 of src[rows[i]] (bf16 bits): each row is widened into a small per-task float32 buffer
    (cache-resident) instead of a float32 copy of the whole chunk.

    The arithmetic is quant.kernels.simple's Q8_0 kernel (ggml's quantize_row_q8_0_ref), so the bytes are the
    same. Returns (first output row holding NaN/inf, first row with a block scale that is inf as fp16, which
    llama.cpp's row validation rejects), each -1 when there is none; a row with NaN/inf has meaningless bytes.
    The scale check is done here rather than in a second pass so a chunk is one parallel region.
    """
    n = rows.shape[0]
    c = src.shape[1]
    nb = c // 32
    flags = np.zeros(n, dtype=np.uint8)
    over = np.zeros(n, dtype=np.uint8)
    for t in prange(ntasks):  # contiguous row ranges, handed out one task at a time
        bits = np.empty(c, dtype=np.uint32)
        x = bits.view(np.float32)
        for i in range(t * n // ntasks, (t + 1) * n // ntasks):
            r = rows[i]
            bad = False
            for j in range(c):
                u = np.uint32(src[r, j]) << np.uint32(16)
                bits[j] = u
                if (u & F32_EXP_MASK) == F32_EXP_MASK:
                    bad = True
            if bad:
                flags[i] = 1
            for b in range(nb):
                xb = b * 32
                o = b * 34
                amax = np.float32(0.0)
                for j in range(32):
                    v = np.float32(abs(x[xb + j]))
                    amax = amax if amax > v else v
                d = amax / np.float32(127.0)
                idd = np.float32(1.0) / d if d != np.float32(0.0) else np.float32(0.0)
                h = f32_to_f16(d)
                if (h & np.uint16(0x7C00)) == np.uint16(0x7C00):
                    over[i] = 1
                out[i, o] = np.uint8(h & np.uint16(0xFF))
                out[i, o + 1] = np.uint8(h >> np.uint16(8))
                for j in range(32):
                    out[i, o + 2 + j] = np.uint8(cvt_i32(roundf(x[xb + j] * idd)) & 0xFF)
    first_bad = -1
    first_over = -1
    for i in range(n):
        if flags[i] and first_bad < 0:
            first_bad = i
        if over[i] and first_over < 0:
            first_over = i
    return first_bad, first_over
