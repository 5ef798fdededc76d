"""IQ1_S and IQ1_M: byte-identical to llama.cpp's `quantize_iq1_s` / `quantize_iq1_m` and their dequantisers.

Both store ternary values (-1, 0, +1) shifted by ±1/8, eight at a time as a point of one 2048-point grid. With
only three levels the best split of a sorted sub-block into three runs is found exhaustively (ggml-quants.c,
`quantize_row_iq1_s_impl`, `quantize_row_iq1_m_impl`); groups that land off the grid go to the nearest listed
grid point (`iq1_find_best_neighbour2`), which here scans a neighbour list across candidates. IQ1_M keeps a
shift per group of 8 and a 3-bit scale per 16 values, and hides its fp16 super-scale in the top nibbles of the
scales. docs/iq-types.md has the layouts and the quirks kept for bit-exactness.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from gguf import GGMLQuantizationType
from numba import njit, prange

from quant.kernels.base import register
from quant.kernels.bits import FLT_MAX, JIT, f16_to_f32, f32_to_f16, load_f16, store_f16
from quant.kernels.iq_grids import grid_tables, grid_values
from quant.kernels.iquants import (
    _NO_NRT,
    QK_K,
    IQuant,
    best_neighbour,
    fill_weights,
    first_true,
    grid_key,
    start_block,
    sub_scale_code,
)

DELTA = np.float32(0.125)  # IQ1S_DELTA and IQ1M_DELTA
# offsets of the sumqx² and sumq2 regions in the candidate scratch: IQ1_S [33 splits x 2 shifts], IQ1_M [17 x 4]
_S2, _S3 = np.uint64(66), np.uint64(132)
_M2, _M3 = np.uint64(68), np.uint64(136)


@njit(inline="always", **JIT)
def _levels_xp(xp):
    """The shifted ternary values {-1+δ, δ, 1+δ} (xp, δ > 0) or {-1-δ, -δ, 1-δ}."""
    if xp:
        return np.float32(-1.0) + DELTA, DELTA, np.float32(1.0) + DELTA
    return np.float32(-1.0) - DELTA, -DELTA, np.float32(1.0) - DELTA


@njit(inline="always", **JIT)
def _level_offset(xp):
    """b in q = l + b, the shifted ternary value of level l as best_neighbour computes it (exactly)."""
    return np.float32(-1.0) + DELTA if xp else np.float32(-1.0) - DELTA


@njit(inline="always", **_NO_NRT)
def _max_abs(x, xb, n):
    """C's MAX-fold of fabsf over x[xb:xb+n], starting from the first value."""
    mx = np.abs(x[xb])
    for i in range(1, n):
        a = np.abs(x[xb + i])
        mx = mx if mx > a else a
    return mx


@njit(inline="always", **_NO_NRT)
def _stable_order(x, xo, n, idx, vals):
    """idx = the indices 0..n-1 sorted by x[xo + i], ties in index order (glibc's qsort is a stable merge sort).

    An insertion sort that moves the values along with the indices (vals is scratch), so a comparison reads
    no index first.
    """
    for j in range(n):
        idx[j] = j
        vals[j] = x[xo + j]
    for j in range(1, n):
        v = vals[j]
        i = j - 1
        while i >= 0 and vals[i] > v:
            idx[i + 1] = idx[i]
            vals[i + 1] = vals[i]
            i -= 1
        idx[i + 1] = j
        vals[i + 1] = v


@njit(**_NO_NRT)
def _iq1s_superblock(x, xo, qw, qo, o, off, tab, sc):
    weight, sumx, sumw, idx, L, index, scales, shifts, d2, cand = sc
    levels, lookup, nb_packed = tab
    sigma2 = start_block(x, xo, o, off, 50, True)
    xp0, xp1, xp2 = _levels_xp(True)
    xm0, xm1, xm2 = _levels_xp(False)
    one = np.float32(1.0)
    max_scale = np.float32(0.0)
    for ib in range(8):
        xb = xo + 32 * ib
        fill_weights(weight, x, xb, qw, qo + 32 * ib, 32, True, sigma2, False)
        mx = _max_abs(x, xb, 32)
        scales[ib] = np.float32(0.0)
        shifts[ib] = 1
        if mx < np.float32(1e-12):
            continue
        _stable_order(x, xb, 32, idx, d2)
        sumx[0] = np.float32(0.0)
        sumw[0] = np.float32(0.0)
        for j in range(32):
            i = idx[j]
            sumx[j + 1] = sumx[j] + weight[i] * x[xb + i]
            sumw[j + 1] = sumw[j] + weight[i]
        best = -FLT_MAX
        scale = mx
        b1 = -1
        b2 = -1
        shift = 0
        for i1 in range(33):
            a = sumx[i1] - sumx[0]
            aw = sumw[i1] - sumw[0]
            # the scores of every split (i1, i2) first (independent of each other, so this vectorises; unsigned
            # indices spare numba's negative-index fix-up), then C's acceptance test in C's order
            for i2 in range(i1, 33):
                j = np.uint64(i2)
                bx = sumx[j] - sumx[i1]
                cx = sumx[32] - sumx[j]
                bw = sumw[j] - sumw[i1]
                cw = sumw[32] - sumw[j]
                qp = a * xp0 + bx * xp1 + cx * xp2
                qm = a * xm0 + bx * xm1 + cx * xm2
                c = np.uint64(2) * j  # three regions (sumqx, sumqx², sumq2), each [i2, shift], as for IQ1_M
                cand[c] = qp
                cand[_S2 + c] = qp * qp
                cand[_S3 + c] = aw * xp0 * xp0 + bw * xp1 * xp1 + cw * xp2 * xp2
                cand[c + np.uint64(1)] = qm
                cand[_S2 + c + np.uint64(1)] = qm * qm
                cand[_S3 + c + np.uint64(1)] = aw * xm0 * xm0 + bw * xm1 * xm1 + cw * xm2 * xm2
            for i2 in range(i1, 33):
                for sh in range(2):
                    c = 2 * i2 + sh
                    sumq2 = cand[_S3 + c]
                    if sumq2 > 0 and cand[_S2 + c] > best * sumq2:
                        scale = cand[c] / sumq2
                        best = scale * cand[c]
                        b1, b2, shift = i1, i2, 1 - 2 * sh
        if b1 < 0:
            continue
        for j in range(32):
            L[idx[j]] = 0 if j < b1 else (1 if j < b2 else 2)
        if scale < 0:
            for j in range(32):
                L[j] = 2 - L[j]
            scale = -scale
            shift = -shift
        all_on_grid = True
        qoff = _level_offset(shift == 1)
        for k in range(4):
            gi = lookup[grid_key(L, 8 * k, 8)]
            if gi < 0:
                all_on_grid = False
                gi = best_neighbour(gi, nb_packed, x, xb + 8 * k, weight, 8 * k, 8, one, qoff, scale, d2)
                if gi < 0:
                    return False
            index[k] = gi
        if not all_on_grid:
            v0, v1, v2 = _levels_xp(shift == 1)
            sumqx = np.float32(0.0)
            sumq2 = np.float32(0.0)
            for k in range(4):
                for j in range(8):
                    w = weight[8 * k + j]
                    li = levels[index[k], j]
                    q = v0 if li == 0 else (v1 if li == 1 else v2)
                    sumqx = sumqx + w * q * x[xb + 8 * k + j]
                    sumq2 = sumq2 + w * q * q
            if sumqx > 0 and sumq2 > 0:
                scale = sumqx / sumq2
        h = 0
        for k in range(4):
            o[off + 2 + 4 * ib + k] = np.uint8(index[k] & 255)
            h |= (index[k] >> 8) << (3 * k)
        store_f16(o, off + 34 + 2 * ib, h)
        if not scale >= 0:
            return False
        scales[ib] = scale
        shifts[ib] = shift
        max_scale = max_scale if max_scale > scale else scale
    if max_scale == 0:
        return True
    d = max_scale / np.float32(15.0)
    store_f16(o, off, f32_to_f16(d * np.float32(1.125)))
    idv = np.float32(1.0) / d
    for ib in range(8):
        code = sub_scale_code(idv, scales[ib], 7)
        if shifts[ib] == -1:
            code |= 8
        o[off + 34 + 2 * ib + 1] |= np.uint8(code << 4)
    return True


# ----------------------------------------------------------------------------------------------------- IQ1_M
@njit(**_NO_NRT)
def _iq1m_superblock(x, xo, qw, qo, has_qw, o, off, tab, sc):
    weight, px, pw, idx, L, index, scales, shifts, d2, cand = sc
    levels, lookup, nb_packed = tab
    sigma2 = start_block(x, xo, o, off, 56, True)
    xp0, xp1, xp2 = _levels_xp(True)
    xm0, xm1, xm2 = _levels_xp(False)
    p2 = xp2
    m2 = xm2
    cp1 = xp0 * xp0 - xp1 * xp1
    cp2 = xp1 * xp1 - xp2 * xp2
    cm1 = xm0 * xm0 - xm1 * xm1
    cm2 = xm1 * xm1 - xm2 * xm2
    one = np.float32(1.0)
    max_scale = np.float32(0.0)
    for ib in range(16):
        xb = xo + 16 * ib
        fill_weights(weight, x, xb, qw, qo + 16 * ib, 16, has_qw, sigma2, False)
        mx = _max_abs(x, xb, 16)
        scales[ib] = np.float32(0.0)
        shifts[ib] = 0
        if mx < np.float32(1e-7):
            continue
        _stable_order(x, xb, 16, idx, d2)
        # prefix sums per half of the sub-block (each half of 8 has its own shift)
        for h in range(2):
            px[h, 0] = np.float32(0.0)
            pw[h, 0] = np.float32(0.0)
        for j in range(16):
            i = idx[j]
            h = 0 if i < 8 else 1
            px[h, j + 1] = px[h, j] + weight[i] * x[xb + i]
            px[1 - h, j + 1] = px[1 - h, j]
            pw[h, j + 1] = pw[h, j] + weight[i]
            pw[1 - h, j + 1] = pw[1 - h, j]
        best = -FLT_MAX
        scale = mx
        b1 = -1
        b2 = -1
        bk = -1
        px0, px1, pw0, pw1 = px[0], px[1], pw[0], pw[1]
        tp0, tm0, tp1, tm1 = px0[16] * p2, px0[16] * m2, px1[16] * p2, px1[16] * m2
        wp0, wm0, wp1, wm1 = pw0[16] * p2 * p2, pw0[16] * m2 * m2, pw1[16] * p2 * p2, pw1[16] * m2 * m2
        for i1 in range(17):
            # the scores of every split and shift pair first (vectorised over i2, as for IQ1_S), then C's test
            for i2 in range(i1, 17):
                j = np.uint64(i2)
                sx0 = px0[i1] + px0[j]
                sx1 = px1[i1] + px1[j]
                qxp0 = tp0 - sx0
                qxm0 = tm0 - sx0
                qxp1 = tp1 - sx1
                qxm1 = tm1 - sx1
                q2p0 = wp0 + pw0[i1] * cp1 + pw0[j] * cp2
                q2m0 = wm0 + pw0[i1] * cm1 + pw0[j] * cm2
                q2p1 = wp1 + pw1[i1] * cp1 + pw1[j] * cp2
                q2m1 = wm1 + pw1[i1] * cm1 + pw1[j] * cm2
                # three regions of one array (sumqx, sumqx², sumq2), each [i2, shift pair k]: stores with a
                # stride of 4 vectorise as shuffles, where one interleaved record of 12 would become scatters
                c = np.uint64(4) * j
                v = qxp0 + qxp1
                cand[c] = v
                cand[_M2 + c] = v * v
                cand[_M3 + c] = q2p0 + q2p1
                v = qxp0 + qxm1
                cand[c + np.uint64(1)] = v
                cand[_M2 + c + np.uint64(1)] = v * v
                cand[_M3 + c + np.uint64(1)] = q2p0 + q2m1
                v = qxm0 + qxp1
                cand[c + np.uint64(2)] = v
                cand[_M2 + c + np.uint64(2)] = v * v
                cand[_M3 + c + np.uint64(2)] = q2m0 + q2p1
                v = qxm0 + qxm1
                cand[c + np.uint64(3)] = v
                cand[_M2 + c + np.uint64(3)] = v * v
                cand[_M3 + c + np.uint64(3)] = q2m0 + q2m1
            for i2 in range(i1, 17):
                for k in range(4):  # shifts (+,+), (+,-), (-,+), (-,-) of the two halves
                    c = 4 * i2 + k
                    sumq2 = cand[_M3 + c]
                    if sumq2 > 0 and cand[_M2 + c] > best * sumq2:
                        scale = cand[c] / sumq2
                        best = scale * cand[c]
                        b1, b2, bk = i1, i2, k
        if b1 < 0:
            continue
        for j in range(16):
            L[idx[j]] = 0 if j < b1 else (1 if j < b2 else 2)
        if scale < 0:
            for j in range(16):
                L[j] = 2 - L[j]
            scale = -scale
            bk = 3 - bk
        all_on_grid = True
        for k in range(2):
            gi = lookup[grid_key(L, 8 * k, 8)]
            if gi < 0:
                all_on_grid = False
                qoff = _level_offset(bk < 2 if k == 0 else bk % 2 == 0)
                gi = best_neighbour(gi, nb_packed, x, xb + 8 * k, weight, 8 * k, 8, one, qoff, scale, d2)
                if gi < 0:
                    return False
            index[k] = gi
        if not all_on_grid:
            sumqx = np.float32(0.0)
            sumq2 = np.float32(0.0)
            for k in range(2):
                v0, v1, v2 = _levels_xp(bk < 2 if k == 0 else bk % 2 == 0)
                for j in range(8):
                    w = weight[8 * k + j]
                    li = levels[index[k], j]
                    q = v0 if li == 0 else (v1 if li == 1 else v2)
                    sumqx = sumqx + w * q * x[xb + 8 * k + j]
                    sumq2 = sumq2 + w * q * q
            if sumqx > 0 and sumq2 > 0:
                scale = sumqx / sumq2
        o[off + 2 * ib] = np.uint8(index[0] & 255)
        o[off + 2 * ib + 1] = np.uint8(index[1] & 255)
        o[off + 32 + ib] = np.uint8((index[0] >> 8) | ((index[1] >> 8) << 4))
        if not scale >= 0:
            return False
        scales[ib] = scale
        shifts[ib] = bk
        max_scale = max_scale if max_scale > scale else scale
    if max_scale == 0:
        return True
    # 3-bit sub-scales, shift bits, and a refit of the super-scale over every group at those sub-scales
    d = max_scale / np.float32(15.0)
    idv = np.float32(1.0) / d
    sumqx = np.float32(0.0)
    sumq2 = np.float32(0.0)
    for ib in range(16):
        code = sub_scale_code(idv, scales[ib], 7)
        so = off + 48 + 2 * (ib // 4)
        v = (np.int64(o[so]) | (np.int64(o[so + 1]) << 8)) | (code << (3 * (ib % 4)))
        store_f16(o, so, v)
        sh = shifts[ib]
        o[off + 32 + ib] |= np.uint8(0x80 if sh == 1 or sh == 3 else 0) | np.uint8(0x08 if sh >= 2 else 0)
        xb = xo + 16 * ib
        fill_weights(weight, x, xb, qw, qo + 16 * ib, 16, has_qw, sigma2, False)
        qh = np.int64(o[off + 32 + ib])
        mult = np.float32(2 * code + 1)
        for k in range(2):
            v0, v1, v2 = _levels_xp(sh < 2 if k == 0 else sh % 2 == 0)
            gi = np.int64(o[off + 2 * ib + k]) + ((qh << (8 - 4 * k)) & 0x700)
            for j in range(8):
                w = weight[8 * k + j]
                li = levels[gi, j]
                q = (v0 if li == 0 else (v1 if li == 1 else v2)) * mult
                sumqx = sumqx + w * q * x[xb + 8 * k + j]
                sumq2 = sumq2 + w * q * q
    if sumq2 > 0:
        d = sumqx / sumq2
    s = np.int64(f32_to_f16(d * np.float32(1.1125)))
    for j in range(4):  # nibble j of the fp16 goes to the top nibble of scale word j
        o[off + 48 + 2 * j + 1] |= np.uint8(((s >> (4 * j)) & 0xF) << 4)
    return True


# ----------------------------------------------------------------------------------------------- the drivers
@njit(**JIT)
def _scratch():
    f32 = np.float32
    return (
        np.empty(32, f32),  # weight
        np.empty((2, 33), f32),  # IQ1_S: sumx in row 0 / IQ1_M: px
        np.empty((2, 33), f32),  # IQ1_S: sumw in row 0 / IQ1_M: pw
        np.empty(32, np.int64),  # sorted order
        np.empty(32, np.int64),  # L
        np.empty(4, np.int64),  # grid index per group
        np.empty(16, f32),  # scales
        np.empty(16, np.int64),  # shifts
        np.empty(512, f32),  # best_neighbour's distances (lists hold at most 205)
        np.empty(3 * 68, f32),  # sumqx, its square and sumq2 of each candidate split of one i1
    )


@njit(parallel=True, **JIT)
def quantize_iq1(x, out, qw, medium, tab, type_size, max_tasks):
    """IQ1_S (medium=False) or IQ1_M rows; qw float32 [cols] or empty. Returns the first row ggml aborts on, or -1."""
    rows, cols = x.shape
    nb = cols // QK_K
    total = rows * nb
    ntasks = max(1, min(total, max_tasks))
    has_qw = qw.size > 0
    xf = x.reshape(rows * cols)
    failed = np.zeros(rows, np.bool_)
    for t in prange(ntasks):
        weight, px, pw, idx, L, index, scales, shifts, d2, cand = _scratch()
        for b in range(t * total // ntasks, (t + 1) * total // ntasks):
            r = b // nb
            c = b % nb
            if medium:
                sc_m = (weight, px, pw, idx, L, index, scales, shifts, d2, cand)
                ok = _iq1m_superblock(xf, b * QK_K, qw, c * QK_K, has_qw, out[r], c * type_size, tab, sc_m)
            else:
                sc_s = (weight, px[0], pw[0], idx, L, index, scales, shifts, d2, cand)
                ok = _iq1s_superblock(xf, b * QK_K, qw, c * QK_K, out[r], c * type_size, tab, sc_s)
            if not ok:
                failed[r] = True
    return first_true(failed)


@njit(parallel=True, **JIT)
def dequantize_iq1(data, out, medium, grid, type_size):
    """dequantize_row_iq1_s / iq1_m: y = dl·(grid value + delta), dl = d·(2·sub-scale + 1)."""
    rows, cols = out.shape
    nb = cols // QK_K
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for bi in range(nb):
            off = bi * type_size
            y0 = bi * QK_K
            if medium:
                h = np.int64(0)
                for j in range(4):
                    h |= (np.int64(src[off + 48 + 2 * j + 1]) >> 4) << (4 * j)
                d = f16_to_f32(np.uint16(h))
            else:
                d = load_f16(src, off)
            for ib in range(8):  # 32-element pieces
                for g in range(4):  # groups of 8
                    if medium:
                        sw = np.int64(src[off + 48 + 2 * (ib // 2)]) | (
                            np.int64(src[off + 49 + 2 * (ib // 2)]) << 8
                        )
                        code = (sw >> (6 * (ib % 2) + 3 * (g // 2))) & 7
                        qh = np.int64(src[off + 32 + 2 * ib + g // 2])
                        gi = np.int64(src[off + 4 * ib + g]) | ((qh << (8 - 4 * (g % 2))) & 0x700)
                        neg = (qh >> (3 + 4 * (g % 2))) & 1
                    else:
                        qh = np.int64(src[off + 34 + 2 * ib]) | (np.int64(src[off + 35 + 2 * ib]) << 8)
                        code = (qh >> 12) & 7
                        gi = np.int64(src[off + 2 + 4 * ib + g]) | (((qh >> (3 * g)) & 7) << 8)
                        neg = (qh >> 15) & 1
                    dl = d * np.float32(2 * code + 1)
                    delta = -DELTA if neg else DELTA
                    for j in range(8):
                        dst[y0 + 32 * ib + 8 * g + j] = dl * (grid[gi, j] + delta)


class _IQ1(IQuant):
    quantize_kernel = staticmethod(quantize_iq1)
    dequantize_kernel = staticmethod(dequantize_iq1)
    _medium: ClassVar[bool]

    @classmethod
    def kernel_args(cls) -> tuple:
        return (cls._medium, grid_tables("iq1s"))

    @classmethod
    def dequantize_args(cls) -> tuple:
        return (cls._medium, grid_values("iq1s"))


@register
class IQ1_S_(_IQ1):
    """1.5625 bits/weight: 32-element sub-blocks, four 8-point groups on the 2048-point ternary grid, a 3-bit
    scale and a shift sign per sub-block."""

    ggml_type = GGMLQuantizationType.IQ1_S
    requires_quant_weights = True
    _medium = False


@register
class IQ1_M_(_IQ1):
    """1.75 bits/weight: 16-element sub-blocks with 3-bit scales and a shift per group of 8; the fp16
    super-scale is spread over the scales' top nibbles."""

    ggml_type = GGMLQuantizationType.IQ1_M
    _medium = True

    @classmethod
    def invalid_row(cls, data: np.ndarray) -> int:
        """The fp16 super-scale reassembled from the four nibbles (what ggml_validate_row_data checks)."""
        data = np.asarray(data)
        if data.size == 0:
            return -1
        blocks = np.ascontiguousarray(data).reshape(data.shape[0], -1, cls.type_size)
        nibbles = (blocks[:, :, 49:56:2] >> 4).astype(np.uint16)  # top nibble of each scale word
        h = nibbles[..., 0] | nibbles[..., 1] << 4 | nibbles[..., 2] << 8 | nibbles[..., 3] << 12
        rows = np.flatnonzero(((h & 0x7C00) == 0x7C00).any(axis=1))
        return int(rows[0]) if rows.size else -1
