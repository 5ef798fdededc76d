"""The legacy 32-element block types Q4_0, Q4_1, Q5_0 and Q5_1, byte-identical to ggml_quantize_chunk.

Without importance weights ggml runs `quantize_row_q*_ref` (one pass per block: the scale from the block's
extreme values, then truncating division); here each block is independent, so blocks are spread over threads
as they come. With importance weights it runs `quantize_row_q*_impl` (ggml/src/ggml-quants.c): weights
qw·sqrt(sigma2 + x²), sigma2 = mean(x²) over the whole row, and a search for the scale (make_qx_quants for
the symmetric Q4_0/Q5_0, make_qkx3_quants for Q4_1/Q5_1 with their min), 64 blocks side by side
(quant/kernels/search.py). These are also the types llama.cpp falls back to when a row length is not a
multiple of 256.
"""

from __future__ import annotations

import numba
import numpy as np
from gguf import GGMLQuantizationType as GT
from numba import njit, prange

from quant.kernels.base import KernelType, prange_tasks, readonly, register
from quant.kernels.bits import (
    JIT,
    bits_f32,
    f32_bits,
    f32_to_f16,
    load_f16,
    load_u32,
    store_f16,
    store_u32,
)
from quant.kernels.search import (
    LANES,
    lane_arrays,
    lane_groups,
    lanes_to_blocks,
    load_lanes,
    load_weight_lanes,
    qkx_lanes,
    qx_lanes,
)

QK = 32


@njit(inline="always", **JIT)
def _is_inf_or_nan(h) -> bool:
    return (h & 0x7C00) == 0x7C00


# ------------------------------------------------------------------------------------ no importance weights
@njit(inline="always", **JIT)
def _from_order_key(k) -> np.float32:
    """The float32 of an order key: keys are the float's bits with the magnitude bits of negative values
    flipped, an int32 that orders like the float (-0.0 just below +0.0). Integer min/max reductions over keys
    vectorise where float ones may not without fastmath. The transform is its own inverse."""
    return bits_f32(k ^ ((k >> np.int32(31)) & np.int32(0x7FFFFFFF)))


@njit(inline="always", **JIT)
def _first_abs_bits(x, xb, key) -> np.int32:
    """The first j with |x[xb + j]| having the bits `key` (31 if none)."""
    idx = np.int32(QK)
    for j in range(QK):
        b = np.int32(f32_bits(x[xb + j])) & np.int32(0x7FFFFFFF)
        idx = min(idx, np.int32(j) if b == key else np.int32(QK))
    return min(idx, np.int32(QK - 1))


@njit(inline="always", **JIT)
def _trunc_i32(v) -> np.int32:
    """C's float-to-int conversion on x86 (cvttss2si): truncation; NaN and out of range give INT_MIN."""
    ok = v > np.float32(-2147483904.0) and v < np.float32(2147483648.0)
    return np.int32(v) if ok else np.int32(-2147483648)


@njit(inline="always", **JIT)
def _ref_block(x, xb, o, off, kind):
    """quantize_row_{q4_0,q4_1,q5_0,q5_1}_ref (kind 0..3 in that order) of the block x[xb:xb+32] into o[off:].
    Returns non-zero when the block holds NaN/inf or a stored fp16 scale is inf/NaN (rows llama.cpp rejects).

    C's running extremes are exact values, so they are found with order-free integer reductions; only their
    position matters when several elements tie (first wins: ±0 for min/max, the sign for max-|x|), and that is
    found afterwards. Values are converted to int8_t (Q5_1: uint8_t) by truncation, then clamped with MIN.
    """
    has_min = kind == 1 or kind == 3
    five = kind >= 2
    hi = np.int32(31) if five else np.int32(15)
    bad = np.int32(0)
    kmin = np.int32(0x7FFFFFFF)
    kmax = np.int32(-0x80000000)
    for j in range(QK):
        b = np.int32(f32_bits(x[xb + j]))
        bad |= np.int32(1) if (b & np.int32(0x7F800000)) == np.int32(0x7F800000) else np.int32(0)
        k = b ^ ((b >> np.int32(31)) & np.int32(0x7FFFFFFF))
        kmin = min(kmin, k)
        kmax = max(kmax, k)
    vmin = _from_order_key(kmin)
    vmax = _from_order_key(kmax)
    if has_min:
        if vmin == 0 or vmax == 0:  # +0 and -0 tie: C keeps the first zero
            vz = x[xb + _first_abs_bits(x, xb, np.int32(0))]
            vmin = vz if vmin == 0 else vmin
            vmax = vz if vmax == 0 else vmax
        d = (vmax - vmin) / (np.float32(31.0) if five else np.float32(15.0))
        hm = f32_to_f16(vmin)
        store_f16(o, off + 2, hm)
        bad |= np.int32(1) if _is_inf_or_nan(hm) else np.int32(0)
        bias = np.float32(0.5)
    else:
        # C's max: the value of largest |x|, the first one; +0.0 when every |x| is 0. Only an exact ±v pair at
        # the extremes needs the position.
        amin = np.float32(abs(vmin))
        amx = np.float32(abs(vmax))
        if amx == 0 and amin == 0:
            vmax = np.float32(0.0)
        elif amx > amin or vmin == vmax:
            vmax = vmax
        elif amin > amx:
            vmax = vmin
        else:
            vmax = x[xb + _first_abs_bits(x, xb, np.int32(f32_bits(amx)))]
        d = vmax / (np.float32(-16.0) if five else np.float32(-8.0))
        bias = np.float32(16.5) if five else np.float32(8.5)
        vmin = np.float32(0.0)
    hd = f32_to_f16(d)
    store_f16(o, off, hd)
    bad |= np.int32(1) if _is_inf_or_nan(hd) else np.int32(0)
    idd = np.float32(1.0) / d if d != np.float32(0.0) else np.float32(0.0)
    qoff = off + (4 if has_min else 2) + (4 if five else 0)
    if five:
        qh = np.uint32(0)
        for j in range(16):
            q0 = _trunc_i32((x[xb + j] - vmin) * idd + bias) & 0xFF
            q1 = _trunc_i32((x[xb + 16 + j] - vmin) * idd + bias) & 0xFF
            if kind == 2:
                q0 = min(hi, q0 - 256 if q0 > 127 else q0)
                q1 = min(hi, q1 - 256 if q1 > 127 else q1)
            o[qoff + j] = np.uint8((q0 & 0x0F) | ((q1 & 0x0F) << 4))
            qh |= np.uint32(((q0 >> 4) & 1) << j) | np.uint32(((q1 >> 4) & 1) << (j + 16))
        store_u32(o, qoff - 4, qh)
    else:  # C ORs the two uint8 values: no masking of the low one
        for j in range(16):
            q0 = _trunc_i32((x[xb + j] - vmin) * idd + bias) & 0xFF
            q1 = _trunc_i32((x[xb + 16 + j] - vmin) * idd + bias) & 0xFF
            q0 = min(hi, q0 - 256 if q0 > 127 else q0)
            q1 = min(hi, q1 - 256 if q1 > 127 else q1)
            o[qoff + j] = np.uint8(((q0 & 0xFF) | (q1 << 4)) & 0xFF)
    return bad


@njit(inline="always", **JIT)
def _ref_rows(x, out, r0, r1, kind, type_size):
    """Rows [r0, r1) without importance weights; returns the first row holding NaN/inf or a scale llama.cpp
    rejects, or -1. Plain nested row and block loops, which LLVM vectorises best."""
    nb = x.shape[1] // QK
    first_bad = -1
    for r in range(r0, r1):
        xr = x[r]
        orow = out[r]
        bad = np.int32(0)
        for c in range(nb):
            bad |= _ref_block(xr, c * QK, orow, c * type_size, kind)
        if bad != 0 and first_bad < 0:
            first_bad = r
    return first_bad


# one compiled copy per type, so the type's branches fold away (a runtime kind halves the speed)
@njit(**JIT)
def _ref_rows_q4_0(x, out, r0, r1, type_size):
    return _ref_rows(x, out, r0, r1, 0, type_size)


@njit(**JIT)
def _ref_rows_q4_1(x, out, r0, r1, type_size):
    return _ref_rows(x, out, r0, r1, 1, type_size)


@njit(**JIT)
def _ref_rows_q5_0(x, out, r0, r1, type_size):
    return _ref_rows(x, out, r0, r1, 2, type_size)


@njit(**JIT)
def _ref_rows_q5_1(x, out, r0, r1, type_size):
    return _ref_rows(x, out, r0, r1, 3, type_size)


@njit(**JIT)
def _first_flagged(flags):
    for v in flags:
        if v >= 0:
            return v
    return -1


@njit(parallel=True, **JIT)
def _ref_quantize(x, out, kind, type_size, max_tasks):
    """Row ranges handed out one task at a time; returns the first bad row (see _ref_rows)."""
    rows = x.shape[0]
    ntasks = min(rows, max_tasks)
    flags = np.empty(ntasks, np.int64)
    for t in prange(ntasks):
        r0 = t * rows // ntasks
        r1 = (t + 1) * rows // ntasks
        if kind == 0:
            flags[t] = _ref_rows_q4_0(x, out, r0, r1, type_size)
        elif kind == 1:
            flags[t] = _ref_rows_q4_1(x, out, r0, r1, type_size)
        elif kind == 2:
            flags[t] = _ref_rows_q5_0(x, out, r0, r1, type_size)
        else:
            flags[t] = _ref_rows_q5_1(x, out, r0, r1, type_size)
    return _first_flagged(flags)


# ---------------------------------------------------------------------------------- with importance weights
@njit(parallel=True, **JIT)
def _row_sigma2(x, sig, bad):
    """sigma2 of each row (the sequential sum of x² over the whole row, divided by the row length) and whether
    the row holds NaN/inf."""
    rows, cols = x.shape
    for r in prange(rows):
        acc = np.float32(0.0)
        nonfinite = False
        for j in range(cols):
            v = x[r, j]
            acc = acc + v * v
            nonfinite |= not np.isfinite(v)
        sig[r] = acc / np.float32(cols)
        bad[r] = nonfinite


@njit(inline="always", **JIT)
def _store_blocks(Lt, dv, mv, first, total, nb, out, type_size, has_min, five, bad):
    """Write the blocks of lanes 0.. (block `first + k` from lane k, up to block `total`): fp16 d = dv[k],
    fp16 m = mv[k] for the types with a min, the 32 quants Lt[k] as nibbles (elements j and j + 16 share
    byte j) and, for the five-bit types, their fifth bits in the uint32 qh (bit j for element j). Flags in
    bad[row] the rows whose fp16 d or m is inf/NaN."""
    lanes = Lt.shape[0]
    qoff0 = (4 if has_min else 2) + (4 if five else 0)
    r = first // nb  # row and column of the lane's block, stepped rather than divided per lane
    c = first - r * nb
    for k in range(min(lanes, total - first)):
        o = out[r]
        off = c * type_size
        hd = f32_to_f16(dv[k])
        store_f16(o, off, hd)
        flag = _is_inf_or_nan(hd)
        if has_min:
            hm = f32_to_f16(mv[k])
            store_f16(o, off + 2, hm)
            flag |= _is_inf_or_nan(hm)
        if flag:
            bad[r] = True
        qoff = off + qoff0
        e = Lt[k]
        if five:
            qh = np.uint32(0)
            for j in range(16):
                q0 = e[j]
                q1 = e[j + 16]
                o[qoff + j] = np.uint8((q0 & 0x0F) | ((q1 & 0x0F) << 4))
                qh |= np.uint32(((q0 >> 4) & 1) << j) | np.uint32(((q1 >> 4) & 1) << (j + 16))
            store_u32(o, qoff - 4, qh)
        else:
            for j in range(16):
                o[qoff + j] = np.uint8(e[j] | (e[j + 16] << 4))
        c += 1
        if c == nb:
            c = 0
            r += 1


@njit(**JIT)
def _impl_groups(xf, total, nb, qw, sig, out, g_lo, g_hi, kind, type_size, bad):
    """quantize_row_{q4_0,q4_1,q5_0,q5_1}_impl for lane groups [g_lo, g_hi) of the flat blocks of xf."""
    lanes = LANES
    f32 = np.float32
    has_min = kind == 1 or kind == 3
    five = kind >= 2
    nmax = (31 if five else 15) if has_min else (16 if five else 8)
    xt = np.empty((QK, lanes), f32)
    w = np.empty((QK, lanes), f32)
    aux = np.empty((QK, lanes), f32)
    L = np.empty((QK, lanes), np.int32)
    Lt = np.empty((lanes, QK), np.int32)
    scale = np.empty(lanes, f32)
    the_min = np.empty(lanes, f32)
    lsig = np.empty(lanes, f32)
    s = (*lane_arrays(lanes), *lane_arrays(lanes), *lane_arrays(lanes))
    for g in range(g_lo, g_hi):
        first = g * lanes
        load_lanes(xt, QK, LANES, xf, first, total)
        load_weight_lanes(w, QK, LANES, qw, first, nb)
        r = first // nb
        c = first - r * nb
        for k in range(lanes):
            lsig[k] = sig[min(r, sig.shape[0] - 1)]
            c += 1
            if c == nb:
                c = 0
                r += 1
        for i in range(QK):
            for k in range(lanes):
                xi = xt[i, k]
                w[i, k] = w[i, k] * np.sqrt(lsig[k] + xi * xi)
        if has_min:
            qkx_lanes(xt, QK, LANES, w, nmax, f32(-0.9), f32(0.05), 36, False, L, scale, the_min, s, aux)
            for k in range(lanes):
                the_min[k] = -the_min[k]  # C stores m = fp16(-the_min)
        else:
            qx_lanes(xt, QK, LANES, w, nmax, L, scale, s[:8], aux)
        lanes_to_blocks(L, QK, LANES, Lt)
        _store_blocks(Lt, scale, the_min, first, total, nb, out, type_size, has_min, five, bad)


@njit(parallel=True, **JIT)
def _impl_quantize(x, out, qw, kind, type_size, max_tasks):
    """Returns the first row holding NaN/inf or a scale llama.cpp rejects, or -1."""
    rows = x.shape[0]
    sig = np.empty(rows, np.float32)
    bad = np.zeros(rows, np.bool_)
    _row_sigma2(x, sig, bad)
    xf, nb, total, ngroups, ntasks = lane_groups(x, QK, LANES, max_tasks)
    for t in prange(ntasks):
        lo = t * ngroups // ntasks
        hi = (t + 1) * ngroups // ntasks
        _impl_groups(xf, total, nb, qw, sig, out, lo, hi, kind, type_size, bad)
    for r in range(rows):
        if bad[r]:
            return r
    return -1


# ----------------------------------------------------------------------------------------------- dequantisation
@njit(parallel=True, **JIT)
def _dequantize(data, out, kind, type_size):
    """dequantize_row_*: Q4_0 (q − 8)·d, Q4_1 q·d + m, Q5_0 (q − 16)·d, Q5_1 q·d + m, products in float32."""
    rows, cols = out.shape
    nb = cols // QK
    has_min = kind == 1 or kind == 3
    five = kind >= 2
    offset = 0 if has_min else (16 if five else 8)
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for b in range(nb):
            o = b * type_size
            d = load_f16(src, o)
            m = load_f16(src, o + 2) if has_min else np.float32(0.0)
            qo = o + (4 if has_min else 2) + (4 if five else 0)
            qh = load_u32(src, qo - 4) if five else np.uint32(0)
            y = b * QK
            for j in range(16):
                q = np.int32(src[qo + j])
                x0 = q & 0x0F
                x1 = q >> 4
                if five:
                    x0 |= np.int32(((qh >> np.uint32(j)) << np.uint32(4)) & np.uint32(0x10))
                    x1 |= np.int32((qh >> np.uint32(j + 12)) & np.uint32(0x10))
                if has_min:
                    dst[y + j] = np.float32(x0) * d + m
                    dst[y + j + 16] = np.float32(x1) * d + m
                else:
                    dst[y + j] = np.float32(x0 - offset) * d
                    dst[y + j + 16] = np.float32(x1 - offset) * d


# ------------------------------------------------------------------------------------------------ registry types
class _Legacy(KernelType):
    uses_quant_weights = True
    nonfinite_shows_in_output = True  # the kernels report rows with NaN/inf themselves
    quantize_kernel = staticmethod(_impl_quantize)  # with importance weights
    dequantize_kernel = staticmethod(_dequantize)

    @classmethod
    def quantize_rows(
        cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None
    ) -> int | None:
        if quant_weights is not None or x.shape[0] == 0:
            return super().quantize_rows(x, out, quant_weights)
        with numba.parallel_chunksize(1):
            return int(
                _ref_quantize(
                    readonly(x), np.asarray(out), cls.kernel_params[0], cls.type_size, prange_tasks()
                )
            )


@register
class Q4_0(_Legacy):
    """4.5 bits/weight: an fp16 scale per 32 elements, values (q − 8)·d."""

    ggml_type = GT.Q4_0
    scale_offsets = (0,)
    kernel_params = dequantize_params = (0,)


@register
class Q4_1(_Legacy):
    """5 bits/weight: fp16 scale and min per 32 elements, values q·d + m."""

    ggml_type = GT.Q4_1
    scale_offsets = (0, 1)
    kernel_params = dequantize_params = (1,)


@register
class Q5_0(_Legacy):
    """5.5 bits/weight: Q4_0 with a fifth bit per element (qh), values (q − 16)·d."""

    ggml_type = GT.Q5_0
    scale_offsets = (0,)
    kernel_params = dequantize_params = (2,)


@register
class Q5_1(_Legacy):
    """6 bits/weight: Q4_1 with a fifth bit per element (qh), values q·d + m."""

    ggml_type = GT.Q5_1
    scale_offsets = (0, 1)
    kernel_params = dequantize_params = (3,)
