"""Q2_K and Q3_K: the K-quants with 16 sub-blocks of 16 elements, byte-identical to ggml_quantize_chunk
(ggml/src/ggml-quants.c).

* Q2_K (2.625 bits/weight): per sub-block a 2-bit quant, a 4-bit scale and a 4-bit min; fp16 d and dmin per
  256. Without importance weights `quantize_row_q2_K_ref`: make_qkx2_quants with weights |x| and the mean
  absolute error, then the scales and mins quantised against their maxima. With them `quantize_row_q2_K_impl`:
  make_qkx3_quants with weights qw·sqrt(mean(x²) + x²), then make_qp_quants for the scales and mins.
* Q3_K (3.4375 bits/weight): a 3-bit signed quant (low 2 bits in qs, the third in hmask) and a signed 6-bit
  scale per sub-block, one fp16 d per 256. Without importance weights `quantize_row_q3_K_ref`: make_q3_quants
  (a fit refined by moving single quants); with them `quantize_row_q3_K_impl`: make_qx_quants with weights
  qw·sqrt(2·mean(x²) + x²), and make_qx_quants again for the 16 scales.

Both requantise every sub-block with the stored (fp16-rounded) scales, except sub-blocks whose scale rounds to
0, which keep the search's quants. Sub-blocks are searched 64 at a time (4 super-blocks) side by side
(quant/kernels/search.py); the per-super-block steps are scalar.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as GT
from gguf.constants import QK_K
from numba import njit, prange

from quant.kernels.base import KernelType, register
from quant.kernels.bits import JIT, as_i8, f16_to_f32, f32_to_f16, load_f16, nearest_int, store_f16
from quant.kernels.search import (
    LANES,
    lane_arrays,
    lane_groups,
    lanes_to_blocks,
    load_lanes,
    load_weight_lanes,
    q3_lanes,
    qkx_lanes,
    qp_quants,
    qx_lanes,
    requantize_lanes,
    superblock_weights,
)

_SUB = 16  # elements per sub-block
_BLOCKS = LANES // 16  # super-blocks per lane group

# byte offsets inside a block
_Q2_QS, _Q2_D = 16, 80  # Q2_K: scales[16] at 0, qs[64], d, dmin
_Q3_QS, _Q3_SC, _Q3_D = 32, 96, 108  # Q3_K: hmask[32] at 0, qs[64], scales[12], d


@njit(inline="always", **JIT)
def _pack_2bit(e, o, qs):
    """The low two bits of the 256 quants e (element order) into o[qs:qs+64]: element 128h + 32t + l sits in
    bits 2t, 2t+1 of byte 32h + l."""
    for h in range(2):
        for ll in range(32):
            v = 0
            for t in range(4):
                v |= (e[128 * h + 32 * t + ll] & 3) << (2 * t)
            o[qs + 32 * h + ll] = np.uint8(v)


# ------------------------------------------------------------------------------------------------------ Q2_K
@njit(**JIT)
def _q2_groups(xf, total, nb, qw, out, g_lo, g_hi, type_size):
    """Q2_K for lane groups [g_lo, g_hi) of the flat super-blocks of xf (nb per row)."""
    lanes = LANES
    f32 = np.float32
    has_qw = qw.shape[0] > 0
    xt = np.empty((_SUB, lanes), f32)
    w = np.empty((_SUB, lanes), f32)
    aux = np.empty((_SUB, lanes), f32)
    L = np.empty((_SUB, lanes), np.int32)
    Lt = np.empty((lanes, _SUB), np.int32)
    scale = np.empty(lanes, f32)
    the_min = np.empty(lanes, f32)
    sw = np.empty(lanes, f32)
    dd = np.empty(lanes, f32)
    dm = np.empty(lanes, f32)
    sc = np.empty(16, np.int32)
    Lm = np.empty(16, np.int32)
    s = (*lane_arrays(lanes), *lane_arrays(lanes), *lane_arrays(lanes))
    for g in range(g_lo, g_hi):
        first = g * lanes  # in sub-blocks
        load_lanes(xt, _SUB, LANES, xf, first, total * 16)
        if has_qw:
            load_weight_lanes(w, _SUB, LANES, qw, first, nb * 16)
            superblock_weights(xt, _SUB, LANES, w, w, sw, 16, f32(1.0), f32(QK_K))
            rmin, rdelta, nstep, mad = f32(-0.9), f32(0.05), 36, False  # make_qkx3_quants
        else:
            for i in range(_SUB):
                for k in range(lanes):
                    w[i, k] = np.abs(xt[i, k])
            rmin, rdelta, nstep, mad = f32(-0.5), f32(0.1), 15, True  # make_qkx2_quants, mean |error|
        qkx_lanes(xt, _SUB, LANES, w, 3, rmin, rdelta, nstep, mad, L, scale, the_min, s, aux)
        for bl in range(_BLOCKS):
            b = g * _BLOCKS + bl
            if b >= total:
                for j in range(16):
                    dd[bl * 16 + j] = f32(0.0)
                    dm[bl * 16 + j] = f32(0.0)
                continue
            o = out[b // nb]
            off = (b % nb) * type_size
            sl = scale[bl * 16 : bl * 16 + 16]
            ml = the_min[bl * 16 : bl * 16 + 16]
            if has_qw:
                swl = sw[bl * 16 : bl * 16 + 16]
                hd = f32_to_f16(qp_quants(16, 15, sl, sc, swl))
                hm = f32_to_f16(qp_quants(16, 15, ml, Lm, swl))
                for j in range(16):
                    sc[j] = (sc[j] | (Lm[j] << 4)) & 0xFF
            else:
                max_scale = f32(0.0)
                max_min = f32(0.0)
                for j in range(16):
                    max_scale = sl[j] if sl[j] > max_scale else max_scale
                    max_min = ml[j] if ml[j] > max_min else max_min
                if max_scale > 0:
                    iscale = f32(15.0) / max_scale
                    for j in range(16):
                        sc[j] = nearest_int(iscale * sl[j]) & 0xFF  # no clamp, as C
                    hd = f32_to_f16(max_scale / f32(15.0))
                else:
                    for j in range(16):
                        sc[j] = 0
                    hd = f32_to_f16(f32(0.0))
                if max_min > 0:
                    imin = f32(15.0) / max_min
                    for j in range(16):
                        sc[j] = (sc[j] | (nearest_int(imin * ml[j]) << 4)) & 0xFF
                    hm = f32_to_f16(max_min / f32(15.0))
                else:
                    hm = f32_to_f16(f32(0.0))
            fd = f16_to_f32(hd)
            fm = f16_to_f32(hm)
            for j in range(16):
                o[off + j] = np.uint8(sc[j])
                dd[bl * 16 + j] = fd * f32(sc[j] & 0xF)
                dm[bl * 16 + j] = fm * f32(sc[j] >> 4)
            store_f16(o, off + _Q2_D, hd)
            store_f16(o, off + _Q2_D + 2, hm)
        requantize_lanes(xt, _SUB, LANES, L, dd, dm, 0, 3, 0)
        lanes_to_blocks(L, _SUB, LANES, Lt)
        for bl in range(_BLOCKS):
            b = g * _BLOCKS + bl
            if b < total:
                _pack_2bit(
                    Lt[bl * 16 : bl * 16 + 16].reshape(QK_K), out[b // nb], (b % nb) * type_size + _Q2_QS
                )


# ------------------------------------------------------------------------------------------------------ Q3_K
@njit(**JIT)
def _q3_groups(xf, total, nb, qw, out, g_lo, g_hi, type_size):
    """Q3_K for lane groups [g_lo, g_hi) of the flat super-blocks of xf (nb per row)."""
    lanes = LANES
    f32 = np.float32
    has_qw = qw.shape[0] > 0
    xt = np.empty((_SUB, lanes), f32)
    w = np.empty((_SUB, lanes), f32)
    wx = np.empty((_SUB, lanes), f32)
    L = np.empty((_SUB, lanes), np.int32)
    Lt = np.empty((lanes, _SUB), np.int32)
    scale = np.empty(lanes, f32)
    sw = np.empty(lanes, f32)
    dd = np.empty(lanes, f32)
    zero = np.zeros(lanes, f32)
    sc = np.zeros(12, np.int32)
    # make_qx_quants over a super-block's 16 scales: one lane
    s_t = np.empty((16, 1), f32)
    sw_t = np.empty((16, 1), f32)
    wx_t = np.empty((16, 1), f32)
    Ls = np.empty((16, 1), np.int32)
    d_t = np.empty(1, f32)
    s1 = (*lane_arrays(1), *lane_arrays(1))
    s = (*lane_arrays(lanes), *lane_arrays(lanes))
    for g in range(g_lo, g_hi):
        first = g * lanes  # in sub-blocks
        load_lanes(xt, _SUB, LANES, xf, first, total * 16)
        if has_qw:
            load_weight_lanes(w, _SUB, LANES, qw, first, nb * 16)
            superblock_weights(xt, _SUB, LANES, w, w, sw, 16, f32(2.0), f32(QK_K))
            qx_lanes(xt, _SUB, LANES, w, 4, L, scale, s, wx)
        else:
            q3_lanes(xt, _SUB, LANES, 4, L, scale, s[:4], w, wx)
        for bl in range(_BLOCKS):
            b = g * _BLOCKS + bl
            if b >= total:
                for j in range(16):
                    dd[bl * 16 + j] = f32(0.0)
                continue
            o = out[b // nb]
            off = (b % nb) * type_size
            for j in range(12):
                sc[j] = 0
            if has_qw:
                for j in range(16):
                    s_t[j, 0] = scale[bl * 16 + j]
                    sw_t[j, 0] = sw[bl * 16 + j]
                qx_lanes(s_t, 16, 1, sw_t, 32, Ls, d_t, s1, wx_t)
                hd = f32_to_f16(d_t[0])
                for j in range(16):
                    _put_q3_scale(sc, j, Ls[j, 0])
            else:
                max_scale = f32(0.0)
                amax = f32(0.0)
                for j in range(16):
                    v = scale[bl * 16 + j]
                    if np.abs(v) > amax:
                        amax = np.abs(v)
                        max_scale = v
                if max_scale != 0:
                    iscale = f32(-32.0) / max_scale
                    for j in range(16):
                        # C stores nearest_int(...) in an int8_t before clamping
                        li = as_i8(nearest_int(iscale * scale[bl * 16 + j]))
                        _put_q3_scale(sc, j, max(np.int32(-32), min(np.int32(31), li)) + 32)
                    hd = f32_to_f16(f32(1.0) / iscale)
                else:
                    hd = f32_to_f16(f32(0.0))
            fd = f16_to_f32(hd)
            for j in range(16):
                u = (sc[j] & 0xF) if j < 8 else (sc[j - 8] >> 4)
                u = as_i8((u | (((sc[8 + j % 4] >> (2 * (j // 4))) & 3) << 4)) - 32)
                dd[bl * 16 + j] = fd * f32(u)
            for j in range(12):
                o[off + _Q3_SC + j] = np.uint8(sc[j])
            store_f16(o, off + _Q3_D, hd)
        requantize_lanes(xt, _SUB, LANES, L, dd, zero, -4, 3, 4)
        lanes_to_blocks(L, _SUB, LANES, Lt)
        for bl in range(_BLOCKS):
            b = g * _BLOCKS + bl
            if b >= total:
                continue
            o = out[b // nb]
            off = (b % nb) * type_size
            e = Lt[bl * 16 : bl * 16 + 16].reshape(QK_K)
            for m in range(32):  # hmask: bit t of byte m is the third bit of quant 32t + m (0..7)
                h = 0
                for t in range(8):
                    h |= ((e[32 * t + m] >> 2) & 1) << t
                o[off + m] = np.uint8(h)
            _pack_2bit(e, o, off + _Q3_QS)  # the low two bits: quant - 4 for those above 3


@njit(inline="always", **JIT)
def _put_q3_scale(sc, j, u):
    """Scale j (u = 0..63, the signed scale + 32) into the 12 scale bytes: the low nibble in byte j (j < 8,
    low half) or j - 8 (high half), the top two bits in byte 8 + j % 4 at bit 2·(j // 4)."""
    if j < 8:
        sc[j] = u & 0xF
    else:
        sc[j - 8] = sc[j - 8] | ((u & 0xF) << 4)
    sc[8 + j % 4] = (sc[8 + j % 4] | ((u >> 4) << (2 * (j // 4)))) & 0xFF


@njit(parallel=True, **JIT)
def _quantize(x, out, qw, three, type_size, max_tasks):
    xf, nb, total, ngroups, ntasks = lane_groups(x, QK_K, _BLOCKS, max_tasks)
    for t in prange(ntasks):
        lo = t * ngroups // ntasks
        hi = (t + 1) * ngroups // ntasks
        if three:
            _q3_groups(xf, total, nb, qw, out, lo, hi, type_size)
        else:
            _q2_groups(xf, total, nb, qw, out, lo, hi, type_size)


# ----------------------------------------------------------------------------------------------- dequantisation
@njit(parallel=True, **JIT)
def _dequantize(data, out, three, type_size):
    """dequantize_row_q2_K: y = (d·sc)·q − dmin·m; dequantize_row_q3_K: y = (d·(u − 32))·(q − (hbit ? 0 : 4))."""
    rows, cols = out.shape
    nb = cols // QK_K
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for b in range(nb):
            off = b * type_size
            d = load_f16(src, off + (_Q3_D if three else _Q2_D))
            dmin = np.float32(0.0) if three else load_f16(src, off + _Q2_D + 2)
            for sb in range(16):
                if three:
                    u = (src[off + _Q3_SC + sb] & 0xF) if sb < 8 else (src[off + _Q3_SC + sb - 8] >> 4)
                    u = np.int32(u) | ((np.int32(src[off + _Q3_SC + 8 + sb % 4]) >> (2 * (sb // 4))) & 3) << 4
                    dl = d * np.float32(u - 32)
                    ml = np.float32(0.0)
                else:
                    scb = src[off + sb]
                    dl = d * np.float32(scb & 0xF)
                    ml = dmin * np.float32(scb >> 4)
                for ll in range(16):
                    e = 16 * sb + ll
                    h, t, p = e // 128, (e % 128) // 32, e % 32
                    qs = _Q3_QS if three else _Q2_QS
                    q = np.int32((src[off + qs + 32 * h + p] >> (2 * t)) & 3)
                    if three:
                        q -= 0 if (src[off + p] >> (e // 32)) & 1 else 4
                        dst[b * QK_K + e] = dl * np.float32(q)
                    else:
                        dst[b * QK_K + e] = dl * np.float32(q) - ml


# ------------------------------------------------------------------------------------------------ registry types
class _K16(KernelType):
    uses_quant_weights = True
    quantize_kernel = staticmethod(_quantize)
    dequantize_kernel = staticmethod(_dequantize)


@register
class Q2_K(_K16):
    """2.625 bits/weight: 16 sub-blocks of 16 with 4-bit scales and mins, fp16 d and dmin stored last."""

    ggml_type = GT.Q2_K
    scale_offsets = (_Q2_D // 2, _Q2_D // 2 + 1)
    kernel_params = dequantize_params = (False,)


@register
class Q3_K(_K16):
    """3.4375 bits/weight: 16 sub-blocks of 16 with signed 6-bit scales, 3-bit quants, fp16 d stored last."""

    ggml_type = GT.Q3_K
    scale_offsets = (_Q3_D // 2,)
    kernel_params = dequantize_params = (True,)
