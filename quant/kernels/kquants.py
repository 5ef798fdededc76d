"""K-quant kernels (Q4_K, Q5_K, Q6_K), byte-for-byte identical to llama.cpp's `quantize_row_q*_K_ref`.

llama.cpp's reference quantiser is scalar C. Bit-exactness requires every block to follow the exact same
sequence of IEEE float32 operations, so instead of vectorising *within* a block (which would reorder sums)
these kernels process a group of independent sub-blocks side by side: arrays are laid out [element, lane]
and the innermost loop runs over lanes, which LLVM turns into SIMD while each lane keeps C's sequential
float32 order. Branches of the C code become per-lane selects. See docs llamacpp-reference.md §2.
"""

from __future__ import annotations

from typing import ClassVar

import numba
import numpy as np
from numba import njit, prange

from quant.kernels.base import QuantType, prange_tasks, readonly, register
from quant.kernels.bits import f16_to_f32, f32_bits, f32_to_f16

QK_K = 256
_JIT = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}

# Lanes processed together (sub-blocks). 64 lanes = 4 AVX-512 or 8 AVX2 registers: the sequential sums of
# one lane are a chain of dependent adds, so several independent registers per step hide their latency.
_KX_BLOCKS = 8  # Q4_K/Q5_K: 8 super-blocks x 8 sub-blocks of 32 = 64 lanes
_KX_LANES = 8 * _KX_BLOCKS
_Q6_BLOCKS = 4  # Q6_K: 4 super-blocks x 16 sub-blocks of 16 = 64 lanes
_Q6_LANES = 16 * _Q6_BLOCKS

# prange tasks (base.prange_tasks): each task allocates its scratch once and walks a contiguous run of groups.


# ---------------------------------------------------------------------------------------------------- bit helpers
@njit(inline="always", **_JIT)
def _nearest_int(f):
    """ggml's nearest_int: round half to even through the 1.5*2^23 trick, garbage-in garbage-out like C."""
    v = f + np.float32(12582912.0)
    return np.int32(f32_bits(v) & np.uint32(0x007FFFFF)) - np.int32(0x00400000)


@njit(inline="always", **_JIT)
def _i8(u):
    """A stored byte read as C's int8_t."""
    v = np.int32(u)
    return v - 256 if v > 127 else v


@njit(inline="always", **_JIT)
def _load_f16(o, off):
    return f16_to_f32(np.int64(o[off]) | (np.int64(o[off + 1]) << 8))


@njit(inline="always", **_JIT)
def _store_f16(o, off, h):
    o[off] = np.uint8(h & 0xFF)
    o[off + 1] = np.uint8((h >> 8) & 0xFF)


# -------------------------------------------------------------------------------------------- Q4_K / Q5_K search
@njit(inline="always", **_JIT)
def _qkx2_lanes(xt, w, nmax, rmin, rdelta, nstep, L, scale, the_min, scratch):
    """make_qkx2_quants (use_mad=false) on every lane of xt[32, _KX_LANES] at once.

    Writes L[32, lanes] (int32), scale[lanes] and the_min[lanes]. C copies L at every improvement; this
    remembers the winning iscale and the min it was used with, and recomputes L once at the end, which gives
    the same values. `scratch` holds separately allocated arrays, so LLVM knows they do not alias.
    """
    fnmax = np.float32(nmax)
    qmax = np.int32(nmax)
    mn, mx, sum_w, sum_x, best, min0, sl, sl2, sxl, cur, bisc, bmin, Laux = scratch
    for k in range(_KX_LANES):
        x0 = xt[0, k]
        mn[k] = x0
        mx[k] = x0
        sum_w[k] = w[0, k]
        sum_x[k] = w[0, k] * x0
    for i in range(1, 32):
        for k in range(_KX_LANES):
            xi = xt[i, k]
            wi = w[i, k]
            mn[k] = xi if xi < mn[k] else mn[k]
            mx[k] = xi if xi > mx[k] else mx[k]
            sum_w[k] = sum_w[k] + wi
            sum_x[k] = sum_x[k] + wi * xi
    for k in range(_KX_LANES):
        m0 = mn[k]
        m0 = np.float32(0.0) if m0 > 0 else m0
        mn[k] = m0
        min0[k] = m0  # a flat lane (max == min) returns L = 0, scale 0 and this min
        iscale = fnmax / (mx[k] - m0)
        scale[k] = np.float32(1.0) / iscale
        bisc[k] = iscale
        bmin[k] = m0
        best[k] = np.float32(0.0)
    for i in range(32):
        for k in range(_KX_LANES):
            xi = xt[i, k]
            m0 = mn[k]
            q = max(np.int32(0), min(qmax, _nearest_int(bisc[k] * (xi - m0))))
            diff = scale[k] * np.float32(q) + m0 - xi
            best[k] = best[k] + w[i, k] * (diff * diff)
    for step in range(nstep + 1):
        fstep = rmin + rdelta * np.float32(step) + fnmax
        for k in range(_KX_LANES):
            cur[k] = fstep / (mx[k] - mn[k])  # the min may have moved in an earlier step, as in C
            sl[k] = np.float32(0.0)
            sl2[k] = np.float32(0.0)
            sxl[k] = np.float32(0.0)
        for i in range(32):
            for k in range(_KX_LANES):
                xi = xt[i, k]
                fq = np.float32(max(np.int32(0), min(qmax, _nearest_int(cur[k] * (xi - mn[k])))))
                Laux[i, k] = fq
                wl = w[i, k] * fq
                sl[k] = sl[k] + wl
                sl2[k] = sl2[k] + wl * fq
                sxl[k] = sxl[k] + wl * xi
        for k in range(_KX_LANES):
            D = sum_w[k] * sl2[k] - sl[k] * sl[k]
            this_scale = (sum_w[k] * sxl[k] - sum_x[k] * sl[k]) / D
            this_min = (sl2[k] * sum_x[k] - sl[k] * sxl[k]) / D
            pos = this_min > 0
            this_scale = sxl[k] / sl2[k] if pos else this_scale
            this_min = np.float32(0.0) if pos else this_min
            sl[k] = this_scale
            sl2[k] = this_min
            sxl[k] = cur[k]  # keep this step's iscale
            cur[k] = np.float32(0.0) if D > 0 else np.float32(np.inf)  # a lane with D <= 0 cannot win
        for i in range(32):
            for k in range(_KX_LANES):
                diff = sl[k] * Laux[i, k] + sl2[k] - xt[i, k]
                cur[k] = cur[k] + w[i, k] * (diff * diff)
        for k in range(_KX_LANES):
            better = cur[k] < best[k]
            best[k] = cur[k] if better else best[k]
            scale[k] = sl[k] if better else scale[k]
            bisc[k] = sxl[k] if better else bisc[k]
            bmin[k] = mn[k] if better else bmin[k]
            mn[k] = sl2[k] if better else mn[k]
    for k in range(_KX_LANES):
        flat = mx[k] == min0[k]
        scale[k] = np.float32(0.0) if flat else scale[k]
        the_min[k] = -min0[k] if flat else -mn[k]
        cur[k] = np.float32(0.0) if flat else np.float32(1.0)
    for i in range(32):
        for k in range(_KX_LANES):
            q = max(np.int32(0), min(qmax, _nearest_int(bisc[k] * (xt[i, k] - bmin[k]))))
            L[i, k] = q if cur[k] != 0 else np.int32(0)


@njit(**_JIT)
def _kx_groups(xf, total, nb, out, g_lo, g_hi, nmax, rmin, rdelta, nstep, type_size, five):
    """Quantise block groups [g_lo, g_hi) of the flat float32 blocks xf into out[row, block bytes]."""
    lanes = _KX_LANES
    xt = np.empty((32, lanes), np.float32)
    w = np.empty((32, lanes), np.float32)
    L = np.empty((32, lanes), np.int32)
    scale = np.empty(lanes, np.float32)
    the_min = np.empty(lanes, np.float32)
    f32 = np.float32
    scratch = (
        *(np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32)),
        *(np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32)),
        *(np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32)),
        np.empty((32, lanes), f32),
    )
    av_x = np.empty(lanes, np.float32)
    dd = np.empty(lanes, np.float32)
    dm = np.empty(lanes, np.float32)
    sc = np.empty(12, np.uint8)
    lsv = np.empty(8, np.int32)
    lmv = np.empty(8, np.int32)
    qmax = np.int32(nmax)
    for g in range(g_lo, g_hi):
        b0 = g * _KX_BLOCKS
        for bl in range(_KX_BLOCKS):
            b = b0 + bl
            if b < total:
                base = b * QK_K
                for s in range(8):
                    for i in range(32):
                        xt[i, bl * 8 + s] = xf[base + 32 * s + i]
            else:
                for s in range(8):
                    for i in range(32):
                        xt[i, bl * 8 + s] = np.float32(0.0)
        # weights[l] = sqrtf(sum_x2/32) + fabsf(x[l]), with sum_x2 summed in order
        for k in range(lanes):
            av_x[k] = np.float32(0.0)
        for i in range(32):
            for k in range(lanes):
                av_x[k] = av_x[k] + xt[i, k] * xt[i, k]
        for k in range(lanes):
            av_x[k] = np.sqrt(av_x[k] / np.float32(32.0))
        for i in range(32):
            for k in range(lanes):
                w[i, k] = av_x[k] + np.abs(xt[i, k])
        _qkx2_lanes(xt, w, nmax, rmin, rdelta, nstep, L, scale, the_min, scratch)

        # Per super-block: 6-bit scales and mins, fp16 d and dmin, then the requantisation divisors per lane.
        for bl in range(_KX_BLOCKS):
            b = b0 + bl
            if b >= total:
                for s in range(8):
                    dd[bl * 8 + s] = np.float32(0.0)
                    dm[bl * 8 + s] = np.float32(0.0)
                continue
            max_scale = np.float32(0.0)
            max_min = np.float32(0.0)
            for j in range(8):
                v = scale[bl * 8 + j]
                if v > max_scale:
                    max_scale = v
                v = the_min[bl * 8 + j]
                if v > max_min:
                    max_min = v
            inv_scale = np.float32(63.0) / max_scale if max_scale > np.float32(0.0) else np.float32(0.0)
            inv_min = np.float32(63.0) / max_min if max_min > np.float32(0.0) else np.float32(0.0)
            for j in range(8):
                ls = min(63, _nearest_int(inv_scale * scale[bl * 8 + j]) & 0xFF)
                lm = min(63, _nearest_int(inv_min * the_min[bl * 8 + j]) & 0xFF)
                lsv[j] = ls
                lmv[j] = lm
                if j < 4:
                    sc[j] = np.uint8(ls)
                    sc[j + 4] = np.uint8(lm)
                else:
                    sc[j + 4] = np.uint8((ls & 0xF) | ((lm & 0xF) << 4))
                    sc[j - 4] = np.uint8(sc[j - 4] | ((ls >> 4) << 6))
                    sc[j] = np.uint8(sc[j] | ((lm >> 4) << 6))
            hd = f32_to_f16(max_scale / np.float32(63.0))
            hm = f32_to_f16(max_min / np.float32(63.0))
            fd = f16_to_f32(hd)
            fm = f16_to_f32(hm)
            for j in range(8):
                dd[bl * 8 + j] = fd * np.float32(lsv[j])
                dm[bl * 8 + j] = fm * np.float32(lmv[j])
            o = out[b // nb]
            off = (b % nb) * type_size
            _store_f16(o, off, hd)
            _store_f16(o, off + 2, hm)
            for j in range(12):
                o[off + 4 + j] = sc[j]

        # Requantise with the stored (fp16-rounded) scales; lanes whose scale is 0 keep the search's L.
        for i in range(32):
            for k in range(lanes):
                q = _nearest_int((xt[i, k] + dm[k]) / dd[k])
                q = max(np.int32(0), min(qmax, q))
                L[i, k] = q if dd[k] != np.float32(0.0) else L[i, k]

        for bl in range(_KX_BLOCKS):
            b = b0 + bl
            if b >= total:
                continue
            o = out[b // nb]
            off = (b % nb) * type_size
            if five:
                qh = off + 16
                qs = off + 48
                for ii in range(32):
                    h = 0
                    for c in range(4):
                        l1 = L[ii, bl * 8 + 2 * c]
                        l2 = L[ii, bl * 8 + 2 * c + 1]
                        h |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1))
                        o[qs + 32 * c + ii] = np.uint8((l1 & 0xF) | ((l2 & 0xF) << 4))
                    o[qh + ii] = np.uint8(h)
            else:
                qs = off + 16
                for c in range(4):
                    for ii in range(32):
                        o[qs + 32 * c + ii] = np.uint8(
                            L[ii, bl * 8 + 2 * c] | (L[ii, bl * 8 + 2 * c + 1] << 4)
                        )


@njit(parallel=True, **_JIT)
def _kx_quantize(x, out, nmax, rmin, rdelta, nstep, type_size, five, max_tasks):
    rows, cols = x.shape
    nb = cols // QK_K
    total = rows * nb
    ngroups = (total + _KX_BLOCKS - 1) // _KX_BLOCKS
    ntasks = min(ngroups, max_tasks)
    xf = x.reshape(rows * cols)
    for t in prange(ntasks):
        lo = t * ngroups // ntasks
        hi = (t + 1) * ngroups // ntasks
        _kx_groups(xf, total, nb, out, lo, hi, nmax, rmin, rdelta, nstep, type_size, five)


# ----------------------------------------------------------------------------------------------------------- Q6_K
@njit(inline="always", **_JIT)
def _qx_lanes(xt, L, scale, scratch):
    """make_qx_quants(n=16, nmax=32, rmse_type=1, qw=NULL) on every lane of xt[16, _Q6_LANES] at once.

    Writes L[16, lanes] (already offset by +32, or 0 for an all-zero lane) and scale[lanes]. Instead of
    copying L at every improvement it remembers the winning iscale and recomputes L once, as C would get it.
    `scratch` holds separately allocated arrays, so LLVM knows they do not alias and keeps the loops SIMD.
    """
    amax, mx, sumlx, suml2, best, isc, bisc, w, wx = scratch
    for k in range(_Q6_LANES):
        amax[k] = np.float32(0.0)
        mx[k] = np.float32(0.0)
    for i in range(16):
        for k in range(_Q6_LANES):
            xi = xt[i, k]
            ax = np.abs(xi)
            gt = ax > amax[k]
            amax[k] = ax if gt else amax[k]
            mx[k] = xi if gt else mx[k]
            wi = xi * xi  # the rmse_type=1 weight
            w[i, k] = wi
            wx[i, k] = wi * xi  # the first product of C's w*x[i]*l
    # The 19 trial scales. |iscale*x| <= 33 in every lane that is not all-zero (those return early in C and are
    # overwritten below), so rounding with (v + 1.5*2^23) - 1.5*2^23 in float32 equals nearest_int there.
    magic = np.float32(12582912.0)
    for step in range(-10, 10):
        if step == 0:
            continue
        # step -10 stands for the first pass, iscale = -nmax/max
        fstep = -(np.float32(32.0) + np.float32(0.1) * np.float32(step)) if step != -10 else np.float32(-32.0)
        for k in range(_Q6_LANES):
            isc[k] = fstep / mx[k]
            sumlx[k] = np.float32(0.0)
            suml2[k] = np.float32(0.0)
        for i in range(16):
            for k in range(_Q6_LANES):
                fq = (isc[k] * xt[i, k] + magic) - magic
                fq = max(np.float32(-32.0), min(np.float32(31.0), fq))
                sumlx[k] = sumlx[k] + wx[i, k] * fq
                suml2[k] = suml2[k] + w[i, k] * fq * fq
        if step == -10:
            for k in range(_Q6_LANES):
                s = sumlx[k] / suml2[k] if suml2[k] != 0 else np.float32(0.0)
                scale[k] = s
                best[k] = s * sumlx[k]
                bisc[k] = isc[k]
        else:
            for k in range(_Q6_LANES):
                better = suml2[k] > 0 and sumlx[k] * sumlx[k] > best[k] * suml2[k]
                s = sumlx[k] / suml2[k]
                scale[k] = s if better else scale[k]
                best[k] = s * sumlx[k] if better else best[k]
                bisc[k] = isc[k] if better else bisc[k]
    for k in range(_Q6_LANES):
        zero = amax[k] < np.float32(1e-15)
        scale[k] = np.float32(0.0) if zero else scale[k]
        amax[k] = np.float32(0.0) if zero else np.float32(1.0)
    for i in range(16):
        for k in range(_Q6_LANES):
            q = max(np.int32(-32), min(np.int32(31), _nearest_int(bisc[k] * xt[i, k]))) + np.int32(32)
            L[i, k] = q if amax[k] != 0 else np.int32(0)


@njit(**_JIT)
def _q6_groups(xf, total, nb, out, g_lo, g_hi):
    """Quantise Q6_K block groups [g_lo, g_hi) of the flat float32 blocks xf into out[row, block bytes]."""
    lanes = _Q6_LANES
    xt = np.empty((16, lanes), np.float32)
    L = np.empty((16, lanes), np.int32)
    scale = np.empty(lanes, np.float32)
    f32 = np.float32
    scratch = (
        *(np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32)),
        *(np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32)),
        *(np.empty((16, lanes), f32), np.empty((16, lanes), f32)),
    )
    dd = np.empty(lanes, np.float32)
    zblk = np.empty(_Q6_BLOCKS, np.int32)
    for g in range(g_lo, g_hi):
        b0 = g * _Q6_BLOCKS
        for bl in range(_Q6_BLOCKS):
            b = b0 + bl
            if b < total:
                base = b * QK_K
                for s in range(16):
                    for i in range(16):
                        xt[i, bl * 16 + s] = xf[base + 16 * s + i]
            else:
                for s in range(16):
                    for i in range(16):
                        xt[i, bl * 16 + s] = np.float32(0.0)
        _qx_lanes(xt, L, scale, scratch)

        for bl in range(_Q6_BLOCKS):
            b = b0 + bl
            if b >= total:
                for s in range(16):
                    dd[bl * 16 + s] = np.float32(0.0)
                continue
            o = out[b // nb]
            off = (b % nb) * 210
            max_scale = np.float32(0.0)
            max_abs = np.float32(0.0)
            for j in range(16):
                v = scale[bl * 16 + j]
                if np.abs(v) > max_abs:
                    max_abs = np.abs(v)
                    max_scale = v
            if max_abs < np.float32(1e-15):
                # llama.cpp stores an all-zero block (d = 0, every byte 0).
                zblk[bl] = 1
                for j in range(16):
                    dd[bl * 16 + j] = np.float32(0.0)
                continue
            zblk[bl] = 0
            iscale = np.float32(-128.0) / max_scale
            hd = f32_to_f16(np.float32(1.0) / iscale)
            fd = f16_to_f32(hd)
            for j in range(16):
                q = min(127, _nearest_int(iscale * scale[bl * 16 + j]))
                q8 = ((q + 128) & 0xFF) - 128  # C's int -> int8_t conversion wraps
                o[off + 192 + j] = np.uint8(q8 & 0xFF)
                dd[bl * 16 + j] = fd * np.float32(q8)
            _store_f16(o, off + 208, hd)

        for i in range(16):
            for k in range(lanes):
                q = _nearest_int(xt[i, k] / dd[k])
                q = max(np.int32(-32), min(np.int32(31), q)) + np.int32(32)
                L[i, k] = q if dd[k] != np.float32(0.0) else L[i, k]

        for bl in range(_Q6_BLOCKS):
            b = b0 + bl
            if b >= total:
                continue
            o = out[b // nb]
            off = (b % nb) * 210
            if zblk[bl] != 0:
                for j in range(210):
                    o[off + j] = np.uint8(0)
                continue
            # element e of the block sits at L[e % 16, bl*16 + e // 16]
            for h in range(2):
                for ii in range(32):
                    e = 128 * h + ii
                    u1 = L[e % 16, bl * 16 + e // 16]
                    u2 = L[(e + 32) % 16, bl * 16 + (e + 32) // 16]
                    u3 = L[(e + 64) % 16, bl * 16 + (e + 64) // 16]
                    u4 = L[(e + 96) % 16, bl * 16 + (e + 96) // 16]
                    o[off + 64 * h + ii] = np.uint8((u1 & 0xF) | ((u3 & 0xF) << 4))
                    o[off + 64 * h + ii + 32] = np.uint8((u2 & 0xF) | ((u4 & 0xF) << 4))
                    o[off + 128 + 32 * h + ii] = np.uint8(
                        (u1 >> 4) | ((u2 >> 4) << 2) | ((u3 >> 4) << 4) | ((u4 >> 4) << 6)
                    )


@njit(parallel=True, **_JIT)
def _q6_quantize(x, out, max_tasks):
    rows, cols = x.shape
    nb = cols // QK_K
    total = rows * nb
    ngroups = (total + _Q6_BLOCKS - 1) // _Q6_BLOCKS
    ntasks = min(ngroups, max_tasks)
    xf = x.reshape(rows * cols)
    for t in prange(ntasks):
        lo = t * ngroups // ntasks
        hi = (t + 1) * ngroups // ntasks
        _q6_groups(xf, total, nb, out, lo, hi)


# ----------------------------------------------------------------------------------------------- dequantisation
@njit(parallel=True, **_JIT)
def _kx_dequantize(data, out, type_size, five):
    """dequantize_row_q4_K / _q5_K: y = (d*sc)*q - (dmin*m), products in float32 first."""
    rows, cols = out.shape
    nb = cols // QK_K
    qs_off = 48 if five else 16
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for b in range(nb):
            off = b * type_size
            d = _load_f16(src, off)
            dmin = _load_f16(src, off + 2)
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


@njit(parallel=True, **_JIT)
def _q6_dequantize(data, out):
    """dequantize_row_q6_K: y = (d*scale)*(u - 32)."""
    rows, cols = out.shape
    nb = cols // QK_K
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for b in range(nb):
            off = b * 210
            d = _load_f16(src, off + 208)
            for k in range(16):  # sub-block k: elements 16k..16k+15 of the block
                dk = d * np.float32(_i8(src[off + 192 + k]))
                h, t = k // 8, (k % 8) // 2  # half, and which of the four 32-element quarters of it
                ql = src[off + 64 * h + 32 * (t % 2) + 16 * (k % 2) :][:16]
                qh = src[off + 128 + 32 * h + 16 * (k % 2) :][:16]
                lo_shift = 4 * (t // 2)
                hi_shift = 2 * t
                y = dst[b * QK_K + 16 * k : b * QK_K + 16 * k + 16]
                for ii in range(16):
                    u = ((ql[ii] >> lo_shift) & 0xF) | (((qh[ii] >> hi_shift) & 3) << 4)
                    y[ii] = dk * np.float32(np.int32(u) - 32)


# ------------------------------------------------------------------------------------------------ registry types
class _KQuant(QuantType):
    block_size: ClassVar[int] = QK_K
    scale_offsets: ClassVar[tuple[int, ...]] = (0, 1)  # fp16 d and dmin


class _Q45K(_KQuant):
    _nmax: ClassVar[int]
    _rmin: ClassVar[float]
    _nstep: ClassVar[int]
    _five: ClassVar[bool]

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> None:
        if x.shape[0] == 0:
            return
        with numba.parallel_chunksize(1):
            _kx_quantize(
                readonly(x),
                np.asarray(out),
                cls._nmax,
                np.float32(cls._rmin),
                np.float32(0.1),
                cls._nstep,
                cls.type_size,
                cls._five,
                prange_tasks(),
            )

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        if out.shape[0] == 0:
            return
        _kx_dequantize(readonly(data), np.asarray(out), cls.type_size, cls._five)


@register
class Q4_K(_Q45K):
    """4.5 bits/weight: 8 sub-blocks of 32 with 6-bit scales and mins (make_qkx2_quants, 21 steps)."""

    name = "Q4_K"
    ggml_type = 12
    type_size = 144
    _nmax, _rmin, _nstep, _five = 15, -1.0, 20, False


@register
class Q5_K(_Q45K):
    """5.5 bits/weight: Q4_K's layout plus a fifth bit per weight in qh (make_qkx2_quants, 16 steps)."""

    name = "Q5_K"
    ggml_type = 13
    type_size = 176
    _nmax, _rmin, _nstep, _five = 31, -0.5, 15, True


@register
class Q6_K(_KQuant):
    """6.5625 bits/weight: 16 sub-blocks of 16 with int8 scales (make_qx_quants), fp16 d stored last."""

    name = "Q6_K"
    ggml_type = 14
    type_size = 210
    scale_offsets = (104,)  # d is the last two bytes

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> None:
        if x.shape[0] == 0:
            return
        with numba.parallel_chunksize(1):
            _q6_quantize(readonly(x), np.asarray(out), prange_tasks())

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        if out.shape[0] == 0:
            return
        _q6_dequantize(readonly(data), np.asarray(out))
