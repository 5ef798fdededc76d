"""Numba helpers for the converter's hot loop: widen BF16 rows to float32 and find non-finite rows, on all cores.

Both work on float32 bit patterns (uint32) so the widening is exact and NaN/inf detection needs no float ops.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_EXP_MASK = np.uint32(0x7F800000)


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
            if (u & _EXP_MASK) == _EXP_MASK:
                bad = True
        if bad:
            flags[i] = 1
    for i in range(n):
        if flags[i]:
            return i
    return -1


@njit(cache=True, parallel=True)
def first_nonfinite_row(bits):  # pragma: no cover - compiled
    """First row of float32 bit patterns `bits` [n, c] holding NaN/inf, or -1."""
    n, c = bits.shape
    flags = np.zeros(n, dtype=np.uint8)
    for i in prange(n):
        for j in range(c):
            if (bits[i, j] & _EXP_MASK) == _EXP_MASK:
                flags[i] = 1
                break
    for i in range(n):
        if flags[i]:
            return i
    return -1
