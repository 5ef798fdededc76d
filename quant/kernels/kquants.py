"""K-quant kernels Q4_K, Q5_K and Q6_K, byte-identical to llama.cpp's ggml_quantize_chunk (ggml/src/ggml-quants.c).

Without importance weights ggml runs `quantize_row_q*_K_ref`:
* Q4_K/Q5_K: per 32-element sub-block, make_qkx2_quants with weights sqrt(mean(x²)) + |x|; the 8 scales and
  mins quantised to 6 bits against their maxima.
* Q6_K: per 16-element sub-block, make_qx_quants with weights x²; the 16 scales quantised to int8.
With them `quantize_row_q*_K_impl`: Q4_K/Q5_K use make_qkx3_quants with weights qw·sqrt(2·mean(x²) + x²) and
make_qp_quants for the scales and mins; Q6_K runs its ref with the raw importance weights in place of x².
Every sub-block is then requantised with the stored (fp16-rounded) scales, except those whose scale rounds to 0.

Sub-blocks are searched 64 at a time side by side (quant/kernels/search.py); the per-super-block steps are
scalar.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from gguf import GGMLQuantizationType as GT
from gguf.constants import QK_K
from numba import njit, prange

from quant.kernels.base import KernelType, register
from quant.kernels.bits import JIT, as_i8, f16_to_f32, f32_to_f16, load_f16, nearest_int, store_f16
from quant.kernels.search import (
    GROUP_MAX_EPS,
    LANES,
    lane_arrays,
    lane_groups,
    lanes_to_blocks,
    load_lanes,
    load_weight_lanes,
    qkx_lanes,
    qp_quants,
    qx_lanes,
    requantize_lanes,
    superblock_weights,
)

_KX_BLOCKS = LANES // 8  # Q4_K/Q5_K super-blocks per lane group (8 sub-blocks of 32)
_Q6_BLOCKS = LANES // 16  # Q6_K super-blocks per lane group (16 sub-blocks of 16)
_Q6_QH, _Q6_SC, _Q6_D = 128, 192, 208  # Q6_K: ql[128] at 0, qh[64], scales[16], d


# --------------------------------------------------------------------------------------------------- Q4_K / Q5_K
@njit(inline="always", **JIT)
def _pack_scales_k4(sc, ls, lm):
    """The 12 scale bytes of Q4_K/Q5_K from 8 6-bit scales ls and mins lm (C's uint8 stores): scales 0..3 and
    mins 0..3 whole in bytes 0..7; scales and mins 4..7 as nibbles in bytes 8..11, their top two bits in the
    top bits of bytes 0..7."""
    for j in range(8):
        if j < 4:
            sc[j] = ls[j] & 0xFF
            sc[j + 4] = lm[j] & 0xFF
        else:
            sc[j + 4] = ((ls[j] & 0xF) | ((lm[j] & 0xF) << 4)) & 0xFF
            sc[j - 4] = (sc[j - 4] | ((ls[j] >> 4) << 6)) & 0xFF
            sc[j] = (sc[j] | ((lm[j] >> 4) << 6)) & 0xFF


@njit(inline="always", **JIT)
def _scale_min_k4(sc, j):
    """get_scale_min_k4: the 6-bit scale and min of sub-block j, read back from the 12 bytes."""
    if j < 4:
        return sc[j] & 63, sc[j + 4] & 63
    return (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)


@njit(**JIT)
def _kx_groups(xf, total, nb, qw, out, g_lo, g_hi, nmax, rmin, nstep, type_size, five):
    """Q4_K/Q5_K for lane groups [g_lo, g_hi) of the flat super-blocks of xf (nb per row)."""
    lanes = LANES
    f32 = np.float32
    has_qw = qw.shape[0] > 0
    xt = np.empty((32, lanes), f32)
    w = np.empty((32, lanes), f32)
    aux = np.empty((32, lanes), f32)
    L = np.empty((32, lanes), np.int32)
    Lt = np.empty((lanes, 32), np.int32)
    scale = np.empty(lanes, f32)
    the_min = np.empty(lanes, f32)
    av_x = np.empty(lanes, f32)
    dd = np.empty(lanes, f32)
    dm = np.empty(lanes, f32)
    s = (*lane_arrays(lanes), *lane_arrays(lanes), *lane_arrays(lanes))
    sc = np.empty(12, np.int32)
    ls = np.empty(8, np.int32)
    lm = np.empty(8, np.int32)
    for g in range(g_lo, g_hi):
        first = g * lanes  # in sub-blocks
        load_lanes(xt, 32, LANES, xf, first, total * 8)
        if has_qw:  # make_qkx3_quants' parameters
            load_weight_lanes(w, 32, LANES, qw, first, nb * 8)
            superblock_weights(xt, 32, LANES, w, w, av_x, 8, f32(2.0), f32(QK_K))  # av_x: the weight sums
            rmin_, rdelta, nstep_ = f32(-0.9), f32(0.05), 36
        else:
            # weights[l] = sqrtf(sum_x2/32) + fabsf(x[l]), with sum_x2 summed in order
            for k in range(lanes):
                av_x[k] = f32(0.0)
            for i in range(32):
                for k in range(lanes):
                    av_x[k] = av_x[k] + xt[i, k] * xt[i, k]
            for k in range(lanes):
                av_x[k] = np.sqrt(av_x[k] / f32(32.0))
            for i in range(32):
                for k in range(lanes):
                    w[i, k] = av_x[k] + np.abs(xt[i, k])
            rmin_, rdelta, nstep_ = (
                rmin,
                f32(0.1),
                nstep,
            )  # make_qkx2_quants' (one inlined copy of the search)
        qkx_lanes(xt, 32, LANES, w, nmax, rmin_, rdelta, nstep_, False, L, scale, the_min, s, aux)

        # Per super-block: 6-bit scales and mins, fp16 d and dmin, then the requantisation divisors per lane.
        for bl in range(_KX_BLOCKS):
            b = g * _KX_BLOCKS + bl
            if b >= total:
                for j in range(8):
                    dd[bl * 8 + j] = f32(0.0)
                    dm[bl * 8 + j] = f32(0.0)
                continue
            sl = scale[bl * 8 : bl * 8 + 8]
            ml = the_min[bl * 8 : bl * 8 + 8]
            if has_qw:
                swl = av_x[bl * 8 : bl * 8 + 8]
                hd = f32_to_f16(qp_quants(8, 63, sl, ls, swl))
                hm = f32_to_f16(qp_quants(8, 63, ml, lm, swl))
                if five:  # Q5_K's impl clamps, Q4_K's does not
                    for j in range(8):
                        ls[j] = min(63, ls[j])
                        lm[j] = min(63, lm[j])
            else:
                max_scale = f32(0.0)
                max_min = f32(0.0)
                for j in range(8):
                    max_scale = sl[j] if sl[j] > max_scale else max_scale
                    max_min = ml[j] if ml[j] > max_min else max_min
                inv_scale = f32(63.0) / max_scale if max_scale > f32(0.0) else f32(0.0)
                inv_min = f32(63.0) / max_min if max_min > f32(0.0) else f32(0.0)
                for j in range(8):  # C converts to uint8 before MIN(63, .)
                    ls[j] = min(63, nearest_int(inv_scale * sl[j]) & 0xFF)
                    lm[j] = min(63, nearest_int(inv_min * ml[j]) & 0xFF)
                hd = f32_to_f16(max_scale / f32(63.0))
                hm = f32_to_f16(max_min / f32(63.0))
            _pack_scales_k4(sc, ls, lm)
            fd = f16_to_f32(hd)
            fm = f16_to_f32(hm)
            for j in range(8):
                vs, vm = _scale_min_k4(sc, j)
                dd[bl * 8 + j] = fd * f32(vs)
                dm[bl * 8 + j] = fm * f32(vm)
            o = out[b // nb]
            off = (b % nb) * type_size
            store_f16(o, off, hd)
            store_f16(o, off + 2, hm)
            for j in range(12):
                o[off + 4 + j] = np.uint8(sc[j])

        requantize_lanes(xt, 32, LANES, L, dd, dm, 0, nmax, 0)

        lanes_to_blocks(L, 32, LANES, Lt)
        for bl in range(_KX_BLOCKS):
            b = g * _KX_BLOCKS + bl
            if b >= total:
                continue
            o = out[b // nb]
            off = (b % nb) * type_size
            e = Lt[bl * 8 : bl * 8 + 8].reshape(QK_K)  # the super-block's quants in element order
            # 64 elements per 32 bytes: element 64c + ii in the low nibble of byte 32c + ii, 64c + 32 + ii in
            # the high one; Q5_K's fifth bits in qh[ii], bit 2c (low) and 2c + 1 (high)
            qs = off + (48 if five else 16)
            for c in range(4):
                for ii in range(32):
                    o[qs + 32 * c + ii] = np.uint8(
                        (e[64 * c + ii] & 0xF) | ((e[64 * c + 32 + ii] & 0xF) << 4)
                    )
            if five:
                for ii in range(32):
                    h = 0
                    for c in range(4):
                        h |= ((e[64 * c + ii] >> 4) << (2 * c)) | ((e[64 * c + 32 + ii] >> 4) << (2 * c + 1))
                    o[off + 16 + ii] = np.uint8(h)


@njit(parallel=True, **JIT)
def _kx_quantize(x, out, qw, nmax, rmin, nstep, five, type_size, max_tasks):
    xf, nb, total, ngroups, ntasks = lane_groups(x, QK_K, _KX_BLOCKS, max_tasks)
    for t in prange(ntasks):
        lo = t * ngroups // ntasks
        hi = (t + 1) * ngroups // ntasks
        _kx_groups(xf, total, nb, qw, out, lo, hi, nmax, rmin, nstep, type_size, five)


# ----------------------------------------------------------------------------------------------------------- Q6_K
@njit(**JIT)
def _q6_groups(xf, total, nb, qw, out, g_lo, g_hi, type_size):
    """Q6_K for lane groups [g_lo, g_hi) of the flat super-blocks of xf (nb per row)."""
    lanes = LANES
    f32 = np.float32
    has_qw = qw.shape[0] > 0
    xt = np.empty((16, lanes), f32)
    w = np.empty((16, lanes), f32)
    wx = np.empty((16, lanes), f32)
    L = np.empty((16, lanes), np.int32)
    Lt = np.empty((lanes, 16), np.int32)
    scale = np.empty(lanes, f32)
    s = (*lane_arrays(lanes), *lane_arrays(lanes))
    dd = np.empty(lanes, f32)
    zero = np.zeros(lanes, f32)
    zblk = np.empty(_Q6_BLOCKS, np.int32)
    for g in range(g_lo, g_hi):
        first = g * lanes  # in sub-blocks
        load_lanes(xt, 16, LANES, xf, first, total * 16)
        if has_qw:  # the raw importance weights, not sigma-weighted
            load_weight_lanes(w, 16, LANES, qw, first, nb * 16)
        else:
            for i in range(16):
                for k in range(lanes):
                    w[i, k] = xt[i, k] * xt[i, k]
        qx_lanes(xt, 16, LANES, w, 32, L, scale, s, wx)

        for bl in range(_Q6_BLOCKS):
            b = g * _Q6_BLOCKS + bl
            if b >= total:
                for j in range(16):
                    dd[bl * 16 + j] = f32(0.0)
                continue
            o = out[b // nb]
            off = (b % nb) * type_size
            max_scale = f32(0.0)
            max_abs = f32(0.0)
            for j in range(16):
                v = scale[bl * 16 + j]
                if np.abs(v) > max_abs:
                    max_abs = np.abs(v)
                    max_scale = v
            if max_abs < GROUP_MAX_EPS:
                # llama.cpp stores an all-zero block (d = 0, every byte 0).
                zblk[bl] = 1
                for j in range(16):
                    dd[bl * 16 + j] = f32(0.0)
                continue
            zblk[bl] = 0
            iscale = f32(-128.0) / max_scale
            hd = f32_to_f16(f32(1.0) / iscale)
            fd = f16_to_f32(hd)
            for j in range(16):
                q8 = as_i8(min(127, nearest_int(iscale * scale[bl * 16 + j])))  # C's int -> int8_t wraps
                o[off + _Q6_SC + j] = np.uint8(q8 & 0xFF)
                dd[bl * 16 + j] = fd * f32(q8)
            store_f16(o, off + _Q6_D, hd)

        requantize_lanes(xt, 16, LANES, L, dd, zero, -32, 31, 32)
        lanes_to_blocks(L, 16, LANES, Lt)

        for bl in range(_Q6_BLOCKS):
            b = g * _Q6_BLOCKS + bl
            if b >= total:
                continue
            o = out[b // nb]
            off = (b % nb) * type_size
            if zblk[bl] != 0:
                for j in range(type_size):
                    o[off + j] = np.uint8(0)
                continue
            e = Lt[bl * 16 : bl * 16 + 16].reshape(QK_K)  # the super-block's quants in element order
            for h in range(2):
                for ii in range(32):
                    u1 = e[128 * h + ii]
                    u2 = e[128 * h + ii + 32]
                    u3 = e[128 * h + ii + 64]
                    u4 = e[128 * h + ii + 96]
                    o[off + 64 * h + ii] = np.uint8((u1 & 0xF) | ((u3 & 0xF) << 4))
                    o[off + 64 * h + ii + 32] = np.uint8((u2 & 0xF) | ((u4 & 0xF) << 4))
                    o[off + _Q6_QH + 32 * h + ii] = np.uint8(
                        (u1 >> 4) | ((u2 >> 4) << 2) | ((u3 >> 4) << 4) | ((u4 >> 4) << 6)
                    )


@njit(parallel=True, **JIT)
def _q6_quantize(x, out, qw, type_size, max_tasks):
    xf, nb, total, ngroups, ntasks = lane_groups(x, QK_K, _Q6_BLOCKS, max_tasks)
    for t in prange(ntasks):
        lo = t * ngroups // ntasks
        hi = (t + 1) * ngroups // ntasks
        _q6_groups(xf, total, nb, qw, out, lo, hi, type_size)


# ----------------------------------------------------------------------------------------------- dequantisation
@njit(parallel=True, **JIT)
def _kx_dequantize(data, out, five, type_size):
    """dequantize_row_q4_K / _q5_K: y = (d*sc)*q - (dmin*m), products in float32 first."""
    rows, cols = out.shape
    nb = cols // QK_K
    qs_off = 48 if five else 16
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for b in range(nb):
            off = b * type_size
            d = load_f16(src, off)
            dmin = load_f16(src, off + 2)
            for j in range(8):
                if j < 4:
                    sc = src[off + 4 + j] & 63
                    m = src[off + 8 + j] & 63
                else:
                    sc = (src[off + 8 + j] & 0xF) | ((src[off + j] >> 6) << 4)
                    m = (src[off + 8 + j] >> 4) | ((src[off + 4 + j] >> 6) << 4)
                d1 = d * np.float32(sc)
                m1 = dmin * np.float32(m)
                qs = src[off + qs_off + 32 * (j // 2) : off + qs_off + 32 * (j // 2) + 32]
                y = dst[b * QK_K + 32 * j : b * QK_K + 32 * j + 32]
                shift = 4 * (j % 2)
                if five:
                    qh = src[off + 16 : off + 48]
                    for ii in range(32):
                        q = ((qs[ii] >> shift) & 0xF) | (((qh[ii] >> j) & 1) << 4)
                        y[ii] = d1 * np.float32(q) - m1
                else:
                    for ii in range(32):
                        y[ii] = d1 * np.float32((qs[ii] >> shift) & 0xF) - m1


@njit(parallel=True, **JIT)
def _q6_dequantize(data, out, type_size):
    """dequantize_row_q6_K: y = (d*scale)*(u - 32)."""
    rows, cols = out.shape
    nb = cols // QK_K
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for b in range(nb):
            off = b * type_size
            d = load_f16(src, off + _Q6_D)
            for k in range(16):  # sub-block k: elements 16k..16k+15 of the block
                dk = d * np.float32(as_i8(src[off + _Q6_SC + k]))
                h, t = k // 8, (k % 8) // 2  # half, and which of the four 32-element quarters of it
                ql = src[off + 64 * h + 32 * (t % 2) + 16 * (k % 2) :][:16]
                qh = src[off + _Q6_QH + 32 * h + 16 * (k % 2) :][:16]
                lo_shift = 4 * (t // 2)
                hi_shift = 2 * t
                y = dst[b * QK_K + 16 * k : b * QK_K + 16 * k + 16]
                for ii in range(16):
                    u = ((ql[ii] >> lo_shift) & 0xF) | (((qh[ii] >> hi_shift) & 3) << 4)
                    y[ii] = dk * np.float32(np.int32(u) - 32)


# ------------------------------------------------------------------------------------------------ registry types
class _KQuant(KernelType):
    uses_quant_weights = True
    scale_offsets: ClassVar[tuple[int, ...]] = (0, 1)  # fp16 d and dmin


class _Q45K(_KQuant):
    quantize_kernel = staticmethod(_kx_quantize)  # params: nmax, rmin, nstep of make_qkx2_quants, five bits
    dequantize_kernel = staticmethod(_kx_dequantize)


@register
class Q4_K(_Q45K):
    """4.5 bits/weight: 8 sub-blocks of 32 with 6-bit scales and mins (make_qkx2_quants, 21 steps)."""

    ggml_type = GT.Q4_K
    kernel_params = (15, np.float32(-1.0), 20, False)
    dequantize_params = (False,)


@register
class Q5_K(_Q45K):
    """5.5 bits/weight: Q4_K's layout plus a fifth bit per weight in qh (make_qkx2_quants, 16 steps)."""

    ggml_type = GT.Q5_K
    kernel_params = (31, np.float32(-0.5), 15, True)
    dequantize_params = (True,)


@register
class Q6_K(_KQuant):
    """6.5625 bits/weight: 16 sub-blocks of 16 with int8 scales (make_qx_quants), fp16 d stored last."""

    ggml_type = GT.Q6_K
    scale_offsets = (_Q6_D // 2,)
    quantize_kernel = staticmethod(_q6_quantize)
    dequantize_kernel = staticmethod(_q6_dequantize)
