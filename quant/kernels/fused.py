"""The converter's fused row kernels (Numba, all cores): widen BF16 rows or dequantise FP8 rows to float32,
quantise BF16 rows straight to Q8_0 (with the Q8_0 block routine of `quant.kernels.simple`), and find
non-finite rows on the way.

The BF16 helpers work on float32 bit patterns (uint32), so the widening is exact and NaN/inf detection needs
no float ops.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from quant.kernels.simple import q8_0_block

F32_EXP_MASK = np.uint32(0x7F800000)


@njit(cache=True)
def first_flagged(flags):  # pragma: no cover - compiled
    """Index of the first non-zero flag, or -1 (rows flagged in parallel, reported in order)."""
    for i in range(flags.shape[0]):
        if flags[i]:
            return i
    return -1


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
    return first_flagged(flags)


@njit(cache=True, parallel=True)
def bf16_rows_to_q8_0(src, rows, out, type_size, ntasks):  # pragma: no cover - compiled
    """out[i] = Q8_0 of src[rows[i]] (bf16 bits): each row is widened into a small per-task float32 buffer
    (cache-resident) instead of a float32 copy of the whole chunk, then encoded by the Q8_0 type's own block
    routine (quant.kernels.simple.q8_0_block, ggml's quantize_row_q8_0_ref), `type_size` bytes per block, so
    the bytes are the same. Returns (first output row holding NaN/inf, first row with a block scale that is
    inf as fp16, which llama.cpp's row validation rejects), each -1 when there is none; a row with NaN/inf has
    meaningless bytes. The scale check is done here rather than in a second pass so a chunk is one parallel
    region.
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
                h = q8_0_block(x, b * 32, out[i], b * type_size)
                if (h & np.uint16(0x7C00)) == np.uint16(0x7C00):
                    over[i] = 1
    first_bad = -1
    first_over = -1
    for i in range(n):
        if flags[i] and first_bad < 0:
            first_bad = i
        if over[i] and first_over < 0:
            first_over = i
    return first_bad, first_over


@njit(cache=True, parallel=True)
def fp8_rows_to_f32(
    src, rows, lut, scale, srow0, grid_rows, grid_srows, block_rows, block_cols, out
):  # pragma: no cover - compiled
    """out[i, j] = lut[src[rows[i], j]] * scale[srow(rows[i]) - srow0, j // block_cols] in float32 (one
    rounding, like torch's `weight.float() * scale`); returns the first output row holding NaN/inf, or -1."""
    n, c = out.shape
    nb = scale.shape[1]
    flags = np.zeros(n, dtype=np.uint8)
    for i in prange(n):
        r = rows[i]
        sr = (r // grid_rows) * grid_srows + (r % grid_rows) // block_rows - srow0
        bad = False
        for kb in range(nb):
            s = scale[sr, kb]
            lo = kb * block_cols
            hi = min(c, lo + block_cols)
            for j in range(lo, hi):
                v = lut[src[r, j]] * s
                out[i, j] = v
                if not np.isfinite(v):
                    bad = True
        if bad:
            flags[i] = 1
    return first_flagged(flags)
