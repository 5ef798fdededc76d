"""ggml's per-block searches (`make_qkx2_quants`, `make_qkx3_quants`, `make_qx_quants`, `make_q3_quants`,
`make_qp_quants` and IQ4's scale search in ggml/src/ggml-quants.c), run on many independent blocks at once.

Bit-exactness needs every block to follow C's exact sequence of float32 operations, so instead of vectorising
within a block (which would reorder its sums) these helpers work on `[element, lane]` arrays: each lane is one
(sub-)block, the innermost loops run over lanes, LLVM turns them into SIMD, and each lane keeps C's sequential
order. C's branches become per-lane selects. Where C copies the quants L on every improvement, the helpers
remember the winning inverse scale instead and compute L once at the end, which gives the same values.

The helpers are inlined into the type kernels. Callers pass the array sizes (`n` elements per block, `lanes`)
as literal constants, which LLVM then unrolls and keeps in registers (read from the arrays' shapes they run
markedly slower). Scratch arrays come from the caller, each allocated on its own, so LLVM can tell they do
not alias and keeps the lane loops vectorised.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from quant.kernels.bits import JIT, nearest_int

LANES = 64
"""Blocks searched side by side: 4 AVX-512 (8 AVX2) registers of independent sequential sums, enough to hide
the latency of their dependent adds."""

GROUP_MAX_EPS = np.float32(1e-15)
"""ggml's threshold below which a block counts as all zero."""

IQ4_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)
"""kvalues_iq4nl (ggml-common.h): the 16 levels of IQ4_NL and IQ4_XS, in increasing order."""


@njit(inline="always", **JIT)
def lane_arrays(lanes):
    """Four float32 scratch arrays of `lanes`, each allocated on its own (callers concatenate such tuples)."""
    f32 = np.float32
    return np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32), np.empty(lanes, f32)


TILE = 16
"""Transposes go through 16×16 tiles: fixed-size loops LLVM turns into register shuffles (4× faster than a
plain strided copy)."""


@njit(inline="always", **JIT)
def lane_groups(x, block, per_group, max_tasks):
    """How a lane kernel splits float32 rows x: the flat view, blocks per row, blocks in all, groups of
    `per_group` blocks and the prange task count (each task takes a contiguous run of groups)."""
    rows, cols = x.shape
    nb = cols // block
    total = rows * nb
    ngroups = (total + per_group - 1) // per_group
    return x.reshape(rows * cols), nb, total, ngroups, min(ngroups, max_tasks)


@njit(inline="always", **JIT)
def _tiles_to_lanes(dst, n, lanes, src, base):
    """dst[i, k] = src[base + k·n + i]: `lanes` consecutive blocks of n, one per lane."""
    for k0 in range(0, lanes, TILE):
        for i in range(n):
            for k in range(TILE):
                dst[i, k0 + k] = src[base + (k0 + k) * n + i]


@njit(inline="always", **JIT)
def load_lanes(xt, n, lanes, xf, first, total):
    """xt[i, k] = element i of block `first + k` of the flat float32 blocks `xf` (0 past block `total`)."""
    if first + lanes <= total:
        _tiles_to_lanes(xt, n, lanes, xf, first * n)
        return
    for k in range(lanes):
        b = first + k
        if b < total:
            base = b * n
            for i in range(n):
                xt[i, k] = xf[base + i]
        else:
            for i in range(n):
                xt[i, k] = np.float32(0.0)


@njit(inline="always", **JIT)
def load_weight_lanes(wt, n, lanes, qw, first, blocks_per_row):
    """wt[i, k] = the importance weight of element i of block `first + k`: qw[column of that element]."""
    c = first % blocks_per_row
    if c + lanes <= blocks_per_row:  # the group does not wrap to the next row
        _tiles_to_lanes(wt, n, lanes, qw, c * n)
        return
    for k in range(lanes):
        base = c * n
        for i in range(n):
            wt[i, k] = qw[base + i]
        c = c + 1 if c + 1 < blocks_per_row else 0


@njit(inline="always", **JIT)
def lanes_to_blocks(L, n, lanes, Lt):
    """Lt[k, i] = L[i, k]: the quants back in element order, block after block (Lt[k] is block k)."""
    for k0 in range(0, lanes, TILE):
        for i in range(n):
            for k in range(TILE):
                Lt[k0 + k, i] = L[i, k0 + k]


@njit(inline="always", **JIT)
def superblock_weights(xt, n, lanes, qwt, w, sw, subs, sigma_mul, sigma_div):
    """The importance-weighted element weights of the K-quant and IQ4 `_impl` quantisers:
    w = qw·sqrtf(sigma2 + x²), sigma2 = (sigma_mul·Σx²)/sigma_div over each super-block of `subs` consecutive
    lanes (Σ in element order), and sw[k] = the sequential sum of lane k's weights. `qwt` holds the importance
    weights of each element (it may be `w` itself)."""
    for bl in range(lanes // subs):
        acc = np.float32(0.0)
        for sb in range(subs):
            for i in range(n):
                v = xt[i, bl * subs + sb]
                acc = acc + v * v
        sigma2 = sigma_mul * acc / sigma_div
        for sb in range(subs):
            k = bl * subs + sb
            t = np.float32(0.0)
            for i in range(n):
                v = xt[i, k]
                wi = qwt[i, k] * np.sqrt(sigma2 + v * v)
                w[i, k] = wi
                t = t + wi
            sw[k] = t


@njit(inline="always", **JIT)
def max_abs_lanes(xt, n, lanes, amax, mx):
    """amax[k] = the largest |x| of lane k and mx[k] the x it came from (the first on ties; 0 if all are 0):
    ggml's `if (ax > amax) { amax = ax; max = x; }`."""
    for k in range(lanes):
        amax[k] = np.float32(0.0)
        mx[k] = np.float32(0.0)
    for i in range(n):
        for k in range(lanes):
            xi = xt[i, k]
            ax = np.abs(xi)
            gt = ax > amax[k]
            amax[k] = ax if gt else amax[k]
            mx[k] = xi if gt else mx[k]


@njit(inline="always", **JIT)
def requantize_lanes(xt, n, lanes, L, dd, dm, lo, hi, offset):
    """The K-quants' last step: L = clamp(nearest_int((x + dm)/dd), lo, hi) + offset with the stored (fp16-rounded)
    scales, in every lane whose dd is not 0; lanes with dd = 0 keep the search's L. (Types without a min pass
    dm = 0: x + 0 only turns -0 into +0, which nearest_int does not see.)"""
    for i in range(n):
        for k in range(lanes):
            q = nearest_int((xt[i, k] + dm[k]) / dd[k])
            q = max(np.int32(lo), min(np.int32(hi), q)) + np.int32(offset)
            L[i, k] = q if dd[k] != np.float32(0.0) else L[i, k]


# ------------------------------------------------------------------------------ make_qkx2_quants / make_qkx3_quants
@njit(inline="always", **JIT)
def qkx_lanes(xt, n, lanes, w, nmax, rmin, rdelta, nstep, use_mad, L, scale, the_min, s, a):
    """make_qkx2_quants / make_qkx3_quants (they agree on finite input) on every lane of xt[n, lanes].

    Weights w[n, lanes]; writes L[n, lanes] (int32, 0..nmax), scale[lanes] and the_min[lanes] (= -min).
    `use_mad` sums weighted |error| instead of weighted error². `s` is a tuple of 12 lane arrays and `a` an
    [n, lanes] array of scratch.
    """
    fnmax = np.float32(nmax)
    mn, mx, sum_w, sum_x, best, min0, sl, sl2, sxl, cur, bisc, bmin = s
    Laux = a
    for k in range(lanes):
        x0 = xt[0, k]
        mn[k] = x0
        mx[k] = x0
        sum_w[k] = w[0, k]
        sum_x[k] = w[0, k] * x0
    for i in range(1, n):
        for k in range(lanes):
            xi = xt[i, k]
            wi = w[i, k]
            mn[k] = xi if xi < mn[k] else mn[k]
            mx[k] = xi if xi > mx[k] else mx[k]
            sum_w[k] = sum_w[k] + wi
            sum_x[k] = sum_x[k] + wi * xi
    for k in range(lanes):
        m0 = mn[k]
        m0 = np.float32(0.0) if m0 > 0 else m0
        mn[k] = m0
        min0[k] = m0  # a flat lane (max == min) returns L = 0, scale 0 and this min
        iscale = fnmax / (mx[k] - m0)
        scale[k] = np.float32(1.0) / iscale
        bisc[k] = iscale
        bmin[k] = m0
        best[k] = np.float32(0.0)
    for i in range(n):
        for k in range(lanes):
            xi = xt[i, k]
            m0 = mn[k]
            q = max(np.int32(0), min(np.int32(nmax), nearest_int(bisc[k] * (xi - m0))))
            diff = scale[k] * np.float32(q) + m0 - xi
            err = np.abs(diff) if use_mad else diff * diff
            best[k] = best[k] + w[i, k] * err
    for step in range(nstep + 1):
        fstep = rmin + rdelta * np.float32(step) + fnmax
        for k in range(lanes):
            cur[k] = fstep / (mx[k] - mn[k])  # the min may have moved in an earlier step, as in C
            sl[k] = np.float32(0.0)
            sl2[k] = np.float32(0.0)
            sxl[k] = np.float32(0.0)
        for i in range(n):
            for k in range(lanes):
                xi = xt[i, k]
                fq = np.float32(max(np.int32(0), min(np.int32(nmax), nearest_int(cur[k] * (xi - mn[k])))))
                Laux[i, k] = fq
                wl = w[i, k] * fq
                sl[k] = sl[k] + wl
                sl2[k] = sl2[k] + wl * fq
                sxl[k] = sxl[k] + wl * xi
        for k in range(lanes):
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
        for i in range(n):
            for k in range(lanes):
                diff = sl[k] * Laux[i, k] + sl2[k] - xt[i, k]
                err = np.abs(diff) if use_mad else diff * diff
                cur[k] = cur[k] + w[i, k] * err
        for k in range(lanes):
            better = cur[k] < best[k]
            best[k] = cur[k] if better else best[k]
            scale[k] = sl[k] if better else scale[k]
            bisc[k] = sxl[k] if better else bisc[k]
            bmin[k] = mn[k] if better else bmin[k]
            mn[k] = sl2[k] if better else mn[k]
    for k in range(lanes):
        flat = mx[k] == min0[k]
        scale[k] = np.float32(0.0) if flat else scale[k]
        the_min[k] = -min0[k] if flat else -mn[k]
        cur[k] = np.float32(0.0) if flat else np.float32(1.0)
    for i in range(n):
        for k in range(lanes):
            q = max(np.int32(0), min(np.int32(nmax), nearest_int(bisc[k] * (xt[i, k] - bmin[k]))))
            L[i, k] = q if cur[k] != 0 else np.int32(0)


# ---------------------------------------------------------------------------------------------- make_qx_quants
@njit(inline="always", **JIT)
def qx_lanes(xt, n, lanes, w, nmax, L, scale, s, wx):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, weights) on every lane of xt[n, lanes] with weights w[n, lanes]
    (x² is what C uses when it gets no weights).

    Writes L[n, lanes] (already offset by +nmax; 0 for an all-zero lane) and scale[lanes]. `s` is a tuple of
    8 lane arrays and `wx` an [n, lanes] array of scratch.
    """
    amax, mx, sumlx, suml2, best, isc, bisc, _ = s
    fnmax = np.float32(nmax)
    max_abs_lanes(xt, n, lanes, amax, mx)
    for i in range(n):
        for k in range(lanes):
            wx[i, k] = w[i, k] * xt[i, k]  # the first product of C's w*x[i]*l
    # nearest_int, not a float rounding trick: x may be garbage (inf/NaN from overflowed sums upstream) and
    # C's bit trick has its own answers there
    lo = np.int32(-nmax)
    hi = np.int32(nmax - 1)
    for step in range(-10, 10):  # step -10 stands for the first pass, iscale = -nmax/max
        if step == 0:
            continue
        fstep = -(fnmax + np.float32(0.1) * np.float32(step)) if step != -10 else np.float32(-nmax)
        for k in range(lanes):
            isc[k] = fstep / mx[k]
            sumlx[k] = np.float32(0.0)
            suml2[k] = np.float32(0.0)
        for i in range(n):
            for k in range(lanes):
                lq = np.float32(max(lo, min(hi, nearest_int(isc[k] * xt[i, k]))))
                sumlx[k] = sumlx[k] + wx[i, k] * lq
                suml2[k] = suml2[k] + w[i, k] * lq * lq
        if step == -10:
            for k in range(lanes):
                sc = sumlx[k] / suml2[k] if suml2[k] != 0 else np.float32(0.0)
                scale[k] = sc
                best[k] = sc * sumlx[k]
                bisc[k] = isc[k]
        else:
            for k in range(lanes):
                better = suml2[k] > 0 and sumlx[k] * sumlx[k] > best[k] * suml2[k]
                sc = sumlx[k] / suml2[k]
                scale[k] = sc if better else scale[k]
                best[k] = sc * sumlx[k] if better else best[k]
                bisc[k] = isc[k] if better else bisc[k]
    for k in range(lanes):
        zero = amax[k] < GROUP_MAX_EPS
        scale[k] = np.float32(0.0) if zero else scale[k]
        amax[k] = np.float32(0.0) if zero else np.float32(1.0)
    for i in range(n):
        for k in range(lanes):
            q = max(np.int32(-nmax), min(np.int32(nmax - 1), nearest_int(bisc[k] * xt[i, k]))) + np.int32(
                nmax
            )
            L[i, k] = q if amax[k] != 0 else np.int32(0)


# ---------------------------------------------------------------------------------------------- make_q3_quants
@njit(inline="always", **JIT)
def q3_lanes(xt, n, lanes, nmax, L, scale, s, w, wx):
    """make_q3_quants(n, nmax, x, L, do_rmse=true) on every lane of xt[n, lanes]: weights x², then up to five
    passes that move single quants while that improves the fit.

    Writes L[n, lanes] (offset by +nmax; 0 for an all-zero lane) and scale[lanes]. `s` is 4 lane arrays;
    `w`, `wx` are [n, lanes] scratch. A pass that changes nothing leaves a lane's state as it was, so the
    next pass would change nothing either: running every lane for as long as any lane changes is exact.
    """
    amax, mx, sumlx, suml2 = s
    max_abs_lanes(xt, n, lanes, amax, mx)
    for i in range(n):
        for k in range(lanes):
            xi = xt[i, k]
            wi = xi * xi
            w[i, k] = wi
            wx[i, k] = wi * xi
    for k in range(lanes):
        mx[k] = np.float32(-nmax) / mx[k]  # iscale
        sumlx[k] = np.float32(0.0)
        suml2[k] = np.float32(0.0)
    for i in range(n):
        for k in range(lanes):
            li = max(np.int32(-nmax), min(np.int32(nmax - 1), nearest_int(mx[k] * xt[i, k])))
            L[i, k] = li
            fl = np.float32(li)
            sumlx[k] = sumlx[k] + wx[i, k] * fl
            suml2[k] = suml2[k] + w[i, k] * fl * fl
    for _ in range(5):
        changed = 0
        for i in range(n):
            for k in range(lanes):
                xi = xt[i, k]
                li = L[i, k]
                fl = np.float32(li)
                slx = sumlx[k] - wx[i, k] * fl
                sl2 = suml2[k] - w[i, k] * fl * fl
                new_l = max(np.int32(-nmax), min(np.int32(nmax - 1), nearest_int(xi * sl2 / slx)))
                fn = np.float32(new_l)
                slx2 = slx + wx[i, k] * fn
                sl22 = sl2 + w[i, k] * fn * fn
                take = (
                    slx > 0
                    and new_l != li
                    and sl22 > 0
                    and slx2 * slx2 * suml2[k] > sumlx[k] * sumlx[k] * sl22
                )
                L[i, k] = new_l if take else li
                sumlx[k] = slx2 if take else sumlx[k]
                suml2[k] = sl22 if take else suml2[k]
                changed += 1 if take else 0
        if changed == 0:
            break
    for k in range(lanes):
        zero = amax[k] < GROUP_MAX_EPS
        scale[k] = np.float32(0.0) if zero or not suml2[k] > 0 else sumlx[k] / suml2[k]
        amax[k] = np.float32(0.0) if zero else np.float32(1.0)
    for i in range(n):
        for k in range(lanes):
            L[i, k] = L[i, k] + np.int32(nmax) if amax[k] != 0 else np.int32(0)


# ---------------------------------------------------------------------------------------------- make_qp_quants
@njit(inline="always", **JIT)
def qp_quants(n, nmax, x, L, w):
    """make_qp_quants on x[0:n] (non-negative sub-block scales or mins) with weights w: fills L[0:n] with
    0..nmax (int32; C stores them as uint8) and returns the super-block scale. Scalar: one call per block."""
    mx = np.float32(0.0)
    for i in range(n):
        mx = mx if mx > x[i] else x[i]
    if mx < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return np.float32(0.0)
    fnmax = np.float32(nmax)
    iscale = fnmax / mx
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = np.float32(1.0) / iscale
    best_mse = np.float32(0.0)
    for i in range(n):
        diff = x[i] - scale * np.float32(L[i])
        best_mse = best_mse + w[i] * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (np.float32(0.1) * np.float32(step) + fnmax) / mx
        scale_is = np.float32(1.0) / iscale_is
        mse = np.float32(0.0)
        for i in range(n):
            li = min(np.int32(nmax), nearest_int(iscale_is * x[i]))
            diff = x[i] - scale_is * np.float32(li)
            mse = mse + w[i] * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = np.float32(0.0)
    suml2 = np.float32(0.0)
    for i in range(n):
        li = min(np.int32(nmax), nearest_int(iscale * x[i]))
        L[i] = li & 0xFF
        fl = np.float32(li)  # C sums the int, and stores it as uint8
        sumlx = sumlx + w[i] * x[i] * fl
        suml2 = suml2 + w[i] * fl * fl
    for _ in range(5):
        changed = 0
        for i in range(n):
            fl = np.float32(L[i])
            slx = sumlx - w[i] * x[i] * fl
            sl2 = suml2 - w[i] * fl * fl
            if slx > 0 and sl2 > 0:
                new_l = min(np.int32(nmax), nearest_int(x[i] * sl2 / slx))
                if new_l != L[i]:
                    fn = np.float32(new_l)
                    slx = slx + w[i] * x[i] * fn
                    sl2 = sl2 + w[i] * fn * fn
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
        if changed == 0:
            break
    return sumlx / suml2 if suml2 > 0 else np.float32(0.0)


# ------------------------------------------------------------------------------------------------ IQ4 levels
IQ4_NTRY = 7
"""ggml_quantize_chunk's IQ4_NL/IQ4_XS try 7 scales either side of the first (quantize_row_iq4_nl_ref's -1 is
another algorithm, which no llama.cpp tool uses to write files)."""


@njit(inline="always", **JIT)
def iq4_nearest(v):
    """best_index_int8(16, kvalues_iq4nl, v) and the level it picks, without branches: the nearest level, an
    exact tie going up, and the answer of C's binary search (15) for NaN."""
    v0 = IQ4_VALUES[0]
    v15 = IQ4_VALUES[15]
    lo = v0
    hi = IQ4_VALUES[1]
    idx = np.int32(0)
    for j in range(1, 15):
        ge = v >= IQ4_VALUES[j]
        idx += np.int32(1) if ge else np.int32(0)
        lo = IQ4_VALUES[j] if ge else lo
        hi = IQ4_VALUES[j + 1] if ge else hi
    up = not (v - lo < hi - v)
    low = v <= v0
    end = v >= v15 or v != v
    r = np.int32(15) if end else (np.int32(0) if low else (idx + np.int32(1) if up else idx))
    q = v15 if end else (v0 if low else (hi if up else lo))
    return r, q


@njit(inline="always", **JIT)
def iq4_search_lanes(xt, n, lanes, w, scale, s):
    """The per-block scale search of quantize_row_iq4_nl_impl on every lane of xt[32, lanes] with weights
    w[32, lanes]: the least-squares scale of the nearest-level fit at d = max/127 and at IQ4_NTRY scales either
    side, the best kept. Writes scale[lanes] (0 for an all-zero block). `s` is a tuple of 8 lane arrays."""
    amax, mx, sumqx, sumq2, best, isc, _, _ = s
    v0 = IQ4_VALUES[0]
    max_abs_lanes(xt, n, lanes, amax, mx)
    for t in range(-IQ4_NTRY - 1, IQ4_NTRY + 1):  # t = -IQ4_NTRY-1 stands for the first pass
        if t == -IQ4_NTRY - 1:
            for k in range(lanes):
                isc[k] = np.float32(1.0) / (-mx[k] / v0)
                sumqx[k] = np.float32(0.0)
                sumq2[k] = np.float32(0.0)
        else:
            ft = np.float32(t) + v0
            for k in range(lanes):
                isc[k] = ft / mx[k]
                sumqx[k] = np.float32(0.0)
                sumq2[k] = np.float32(0.0)
        for i in range(n):
            for k in range(lanes):
                xi = xt[i, k]
                q = iq4_nearest(isc[k] * xi)[1]
                wq = w[i, k] * q
                sumqx[k] = sumqx[k] + wq * xi
                sumq2[k] = sumq2[k] + wq * q
        if t == -IQ4_NTRY - 1:
            for k in range(lanes):
                d = sumqx[k] / sumq2[k] if sumq2[k] > 0 else np.float32(0.0)
                scale[k] = d
                best[k] = d * sumqx[k]
        else:
            for k in range(lanes):
                better = sumq2[k] > 0 and sumqx[k] * sumqx[k] > best[k] * sumq2[k]
                d = sumqx[k] / sumq2[k]
                scale[k] = d if better else scale[k]
                best[k] = d * sumqx[k] if better else best[k]
    for k in range(lanes):
        scale[k] = np.float32(0.0) if amax[k] < GROUP_MAX_EPS else scale[k]
