"""IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S: byte-identical to llama.cpp's `quantize_iq*` and `dequantize_row_iq*`.

The five types share one search (ggml/src/ggml-quants.c, `quantize_row_iq2_xxs_impl` and its siblings): per
sub-block, magnitudes are rounded to levels for a scan of trial scales, every group of 8 (or 4) levels is
snapped onto the type's lattice grid through the map and neighbour tables of quant/kernels/iq_grids.py, and the
best weighted fit wins. They differ in sub-block size, grid, sign coding, scan range, default weights and a few
quirks that are reproduced on purpose (docs/iq-types.md lists them). Arithmetic is float32 in C's order with no
FMA, like the other kernels; blocks are independent, so prange tasks over runs of blocks give the same bytes for
any thread count.

Where ggml would abort the process (no grid point found, a NaN scale), the kernel marks the row instead and the
type reports it as a row llama.cpp rejects.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import QK_K
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from quant.kernels.base import KernelType, register
from quant.kernels.bits import (
    FLT_MAX,
    JIT,
    f32_to_f16,
    load_f16,
    nearest_int,
    store_f16,
    store_u32,
)
from quant.kernels.iq_grids import INDEX_SHIFT, LIST_SHIFT, grid_tables, grid_values
from quant.kernels.search import qp_quants

# For functions that take arrays and allocate none: without numba's reference counting, passing an array costs
# nothing, where otherwise every call increments and decrements each array's count with an atomic instruction
# (that was most of the run time of the searches). The caller keeps the arrays alive. `_nrt` is a private numba
# option its type stubs do not list, hence the plain dict.
_NO_NRT: dict[str, Any] = {**JIT, "_nrt": False}

# kinds of the shared search
IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S = 0, 1, 2, 3, 4

# ggml's sign table ksigns_iq2xs: 7 stored sign bits plus an 8th that makes the count of negatives even
KSIGNS = np.array([s | (0x80 if bin(s).count("1") % 2 else 0) for s in range(128)], dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ shared helpers
@intrinsic
def _field_f32(typingctx, p, shift, mask):
    """float32((p >> shift) & mask) computed on 32-bit integers: numba widens integer arithmetic to 64 bits,
    which would halve the vector width of the neighbour search."""
    if not all(isinstance(t, types.Integer) for t in (p, shift, mask)):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        v = []
        for a, t in zip(args, signature.args, strict=True):
            v.append(
                builder.trunc(a, i32) if t.bitwidth > 32 else builder.zext(a, i32) if t.bitwidth < 32 else a
            )
        return builder.uitofp(builder.and_(builder.lshr(v[0], v[1]), v[2]), ir.FloatType())

    return types.float32(p, shift, mask), codegen


@njit(inline="always", **JIT)
def _unpack(p, shift, mask, a, b):
    """A level from a packed vector, as the coordinate value a·l + b (exact for these small numbers)."""
    return _field_f32(p, shift, mask) * a + b


@njit(inline="always", **_NO_NRT)
def best_neighbour(code, nb_packed, x, xo, w, wo, ncoord, a, b, scale, d2):
    """The listed grid point nearest to x[xo:...] at `scale`: the sum over i of w[wo+i]·(scale·q_i - x[xo+i])².

    q_i = a·l_i + b is a candidate's coordinate: 2l+1 in iq2_find_best_neighbour and iq3_find_best_neighbour (x
    the magnitudes, w = sqrt(weight)), the shifted ternary value in iq1_find_best_neighbour2 (x signed, w =
    weight). Each distance is summed over coordinates in C's order, so it is C's float32 value; candidates are
    independent, so the loop over them vectorises (levels unpacked from uint16 in registers, indices unsigned
    so numba adds no negative-index fix-up). Then the first minimum wins, as C's strict `<` from FLT_MAX
    picks it. Returns the winner's grid index, or -1 where ggml aborts (no distance below FLT_MAX).
    """
    v = np.uint64(-1 - code)  # the lookup code of an off-grid vector: its list's start and length
    s = v >> np.uint64(LIST_SHIFT)
    n = v & np.uint64((1 << LIST_SHIFT) - 1)
    if ncoord == 8:
        x0, x1, x2, x3 = x[xo], x[xo + 1], x[xo + 2], x[xo + 3]
        x4, x5, x6, x7 = x[xo + 4], x[xo + 5], x[xo + 6], x[xo + 7]
        w0, w1, w2, w3 = w[wo], w[wo + 1], w[wo + 2], w[wo + 3]
        w4, w5, w6, w7 = w[wo + 4], w[wo + 5], w[wo + 6], w[wo + 7]
        for j in range(n):
            p = nb_packed[s + j]
            diff = scale * _unpack(p, 0, 3, a, b) - x0
            t = w0 * diff * diff
            diff = scale * _unpack(p, 2, 3, a, b) - x1
            t = t + w1 * diff * diff
            diff = scale * _unpack(p, 4, 3, a, b) - x2
            t = t + w2 * diff * diff
            diff = scale * _unpack(p, 6, 3, a, b) - x3
            t = t + w3 * diff * diff
            diff = scale * _unpack(p, 8, 3, a, b) - x4
            t = t + w4 * diff * diff
            diff = scale * _unpack(p, 10, 3, a, b) - x5
            t = t + w5 * diff * diff
            diff = scale * _unpack(p, 12, 3, a, b) - x6
            t = t + w6 * diff * diff
            diff = scale * _unpack(p, 14, 3, a, b) - x7
            d2[j] = t + w7 * diff * diff
    else:
        x0, x1, x2, x3 = x[xo], x[xo + 1], x[xo + 2], x[xo + 3]
        w0, w1, w2, w3 = w[wo], w[wo + 1], w[wo + 2], w[wo + 3]
        for j in range(n):
            p = nb_packed[s + j]
            diff = scale * _unpack(p, 0, 7, a, b) - x0
            t = w0 * diff * diff
            diff = scale * _unpack(p, 3, 7, a, b) - x1
            t = t + w1 * diff * diff
            diff = scale * _unpack(p, 6, 7, a, b) - x2
            t = t + w2 * diff * diff
            diff = scale * _unpack(p, 9, 7, a, b) - x3
            d2[j] = t + w3 * diff * diff
    best = FLT_MAX
    found = False
    bj = np.uint64(0)
    for j in range(n):
        if d2[j] < best:
            best = d2[j]
            bj = j
            found = True
    return np.int64(nb_packed[s + bj] >> np.uint32(INDEX_SHIFT)) if found else np.int64(-1)


@njit(inline="always", **_NO_NRT)
def grid_key(L, o, ncoord):
    """The lookup key of the levels L[o:o+ncoord]: base 3 for the 8-value grids, base 8 for the 4-value ones."""
    if ncoord == 8:
        return (
            L[o]
            + 3 * L[o + 1]
            + 9 * L[o + 2]
            + 27 * L[o + 3]
            + 81 * L[o + 4]
            + 243 * L[o + 5]
            + 729 * L[o + 6]
            + 2187 * L[o + 7]
        )
    return L[o] + 8 * L[o + 1] + 64 * L[o + 2] + 512 * L[o + 3]


@njit(inline="always", **JIT)
def sub_scale_code(idv, scale, top):
    """A sub-block scale's stored code: clamp(nearest_int(0.5*(id*scale - 1)), 0, top), with the unfudged 1/d."""
    return max(0, min(top, nearest_int(np.float32(0.5) * (idv * scale - np.float32(1.0)))))


@njit(inline="always", **_NO_NRT)
def start_block(x, xo, o, off, type_size, doubled):
    """Clear the block's bytes (every type writes each one it keeps) and return σ², the mean of x² over the
    256 values (doubled: (2·Σx²)/256, in C's order)."""
    for b in range(type_size):
        o[off + b] = np.uint8(0)
    sumx2 = np.float32(0.0)
    for i in range(QK_K):
        sumx2 = sumx2 + x[xo + i] * x[xo + i]
    return np.float32(2.0) * sumx2 / np.float32(QK_K) if doubled else sumx2 / np.float32(QK_K)


@njit(inline="always", **_NO_NRT)
def fill_weights(weight, x, xb, qw, qo, n, has_qw, sigma2, quarter_sigma2):
    """The n search weights of a sub-block: qw·sqrt(σ² + x²) with importance weights, else x² (IQ2_S: σ²/4 + x²)."""
    for i in range(n):
        v = x[xb + i]
        if has_qw:
            weight[i] = qw[qo + i] * np.sqrt(sigma2 + v * v)
        elif quarter_sigma2:
            weight[i] = np.float32(0.25) * sigma2 + v * v
        else:
            weight[i] = v * v


@njit(**JIT)
def first_true(flags):
    """The index of the first True in a 1-D boolean array, or -1."""
    for r in range(flags.shape[0]):
        if flags[r]:
            return r
    return -1


# ------------------------------------------------------------------------------------------------- the search
@njit(**_NO_NRT)
def _superblock(kind, x, xo, qw, qo, has_qw, o, off, type_size, tab, sc):
    """Quantise the 256 values x[xo:xo+256] (importance weights qw[qo:qo+256] if has_qw) into o[off:...].

    Returns False where ggml would abort. `sc` is the task's scratch (see _scratch).
    """
    weight, waux, xval, scales, d2, qpl, L, Laux, signs, on_grid, aux_on, steps_l, sqx, sq2 = sc
    levels, lookup, nb_packed = tab
    # per-type constants (loop-invariant branches)
    if kind == IQ2_XXS:
        B, G, kmax, lo, hi, step, eps = 32, 8, 3, -6, 6, np.float32(0.1), np.float32(1e-15)
    elif kind == IQ2_XS:
        B, G, kmax, lo, hi, step, eps = 16, 8, 3, -9, 9, np.float32(0.1), np.float32(1e-15)
    elif kind == IQ2_S:
        B, G, kmax, lo, hi, step, eps = 16, 8, 3, -9, 9, np.float32(0.1), np.float32(1e-8)
    elif kind == IQ3_XXS:
        B, G, kmax, lo, hi, step, eps = 32, 4, 8, -15, 15, np.float32(0.2), np.float32(1e-8)
    else:
        B, G, kmax, lo, hi, step, eps = 32, 4, 8, -9, 9, np.float32(0.2), np.float32(0.0)
    parity = kind in (IQ2_XXS, IQ2_XS, IQ3_XXS)
    ngroups = B // G
    nsub = QK_K // B
    top = np.float32(2 * kmax - 1)
    one = np.float32(1.0)
    two = np.float32(2.0)  # a grid coordinate is 2l+1

    sigma2 = start_block(x, xo, o, off, type_size, kind not in (IQ2_XXS, IQ2_XS))

    max_scale = np.float32(0.0)
    qs_pos = 0  # IQ3_S: where the next sub-block's grid bytes and sign bytes go (see below)
    for ib in range(nsub):
        xb = xo + B * ib
        fill_weights(weight, x, xb, qw, qo + B * ib, B, has_qw, sigma2, kind == IQ2_S)
        for i in range(B):
            waux[i] = np.sqrt(weight[i])
        for k in range(B // 8):
            s = 0
            nflip = 0
            for i in range(8):
                v = x[xb + 8 * k + i]
                if v >= 0:
                    xval[8 * k + i] = v
                else:
                    xval[8 * k + i] = -v
                    nflip += 1
                    s |= 1 << i
            if parity:
                if nflip % 2:
                    # an odd count of negatives: flip the cheapest element instead (sign bit 8 is implied)
                    v = x[xb + 8 * k]
                    imin = 0
                    vmin = weight[8 * k] * v * v
                    for i in range(1, 8):
                        v = x[xb + 8 * k + i]
                        a = weight[8 * k + i] * v * v
                        if a < vmin:
                            vmin = a
                            imin = i
                    xval[8 * k + imin] = -xval[8 * k + imin]
                    s ^= 1 << imin
                s &= 127
            signs[k] = s
        mx = xval[0]
        for i in range(1, B):
            mx = mx if mx > xval[i] else xval[i]
        for i in range(B):
            L[i] = 0
        scales[ib] = np.float32(0.0)
        if kind == IQ3_S:
            if mx == 0:
                continue
        elif mx < eps:
            continue
        if kind == IQ2_XXS:
            scale = qp_quants(B, kmax + 1, xval, qpl, weight)
            denom = scale * np.float32(kmax)
            if denom <= 0:
                continue
        else:
            scale = mx / top
            denom = mx
        # every trial scale of the scan: levels snapped onto the grid (independent of each other) ...
        nsteps = hi - lo + 1
        for st in range(nsteps):
            idv = (top + np.float32(lo + st) * step) / denom
            this_scale = np.float32(1.0) / idv
            for i in range(B):  # independent per element: vectorises
                q = nearest_int(np.float32(0.5) * (idv * xval[i] - np.float32(1.0)))
                Laux[i] = max(0, min(kmax - 1, q))
            for k in range(ngroups):
                code = lookup[grid_key(Laux, G * k, G)]
                aux_on[st, k] = code >= 0
                if code < 0:
                    gi = best_neighbour(
                        code, nb_packed, xval, G * k, waux, G * k, G, two, one, this_scale, d2
                    )
                    if gi < 0:
                        return False
                    for i in range(G):
                        Laux[G * k + i] = levels[gi, i]
            for i in range(B):
                steps_l[i, st] = Laux[i]
        # ... then the weighted sums of all of them side by side, each still summed over i in C's order (the
        # chains of dependent adds run in parallel across steps), then C's acceptance test in step order
        for st in range(nsteps):
            sqx[st] = np.float32(0.0)
            sq2[st] = np.float32(0.0)
        for i in range(B):
            w = weight[i]
            wx = w * xval[i]
            for st in range(nsteps):
                q = np.float32(2 * steps_l[i, st] + 1)
                sqx[st] = sqx[st] + wx * q
                sq2[st] = sq2[st] + w * q * q
        best = np.float32(0.0)
        chosen = -1
        for st in range(nsteps):
            if sq2[st] > 0 and sqx[st] * sqx[st] > best * sq2[st]:
                scale = sqx[st] / sq2[st]
                best = scale * sqx[st]
                chosen = st
        for k in range(ngroups):
            on_grid[k] = aux_on[chosen, k] if chosen >= 0 else kind != IQ3_S
        if chosen >= 0:
            for i in range(B):
                L[i] = steps_l[i, chosen]
        # a last pass at the chosen scale: IQ2_XXS over every group, IQ3_S over every group when any is off the
        # grid, the others over the off-grid groups only
        n_off = 0
        for k in range(ngroups):
            n_off += 0 if on_grid[k] else 1
        if scale > 0 and (kind == IQ2_XXS or n_off > 0):
            idv = np.float32(1.0) / scale
            for k in range(ngroups):
                if on_grid[k] and kind != IQ2_XXS and kind != IQ3_S:
                    continue
                for i in range(G):
                    q = nearest_int(np.float32(0.5) * (idv * xval[G * k + i] - np.float32(1.0)))
                    Laux[G * k + i] = max(0, min(kmax - 1, q))
                gi = lookup[grid_key(Laux, G * k, G)]
                if gi < 0:
                    gi = best_neighbour(gi, nb_packed, xval, G * k, waux, G * k, G, two, one, scale, d2)
                    if gi < 0:
                        return False
                for i in range(G):
                    L[G * k + i] = levels[gi, i]
            sumqx = np.float32(0.0)
            sumq2 = np.float32(0.0)
            for i in range(B):
                w = weight[i]
                q = np.float32(2 * L[i] + 1)
                sumqx = sumqx + w * xval[i] * q
                sumq2 = sumq2 + w * q * q
            if sumq2 > 0:
                scale = sumqx / sumq2
        if scale < 0:  # "should never happen" in ggml: flip the scale and every sign
            scale = -scale
            for k in range(B // 8):
                signs[k] = (~signs[k]) & (127 if parity else 255)
        # pack this sub-block's grid indices and signs
        sas = np.uint32(0)
        for k in range(ngroups):
            gi = lookup[grid_key(L, G * k, G)]
            if gi < 0:
                return False
            if kind == IQ2_XXS:
                o[off + 2 + 8 * ib + k] = np.uint8(gi)
                sas |= np.uint32(signs[k]) << np.uint32(7 * k)
            elif kind == IQ2_XS:
                v = gi | (signs[k] << 9)
                store_f16(o, off + 2 + 2 * (2 * ib + k), v)
            elif kind == IQ2_S:
                i8 = 2 * ib + k
                o[off + 2 + i8] = np.uint8(gi & 255)
                o[off + 66 + i8 // 4] |= np.uint8((gi >> 8) << (2 * (i8 % 4)))
                o[off + 2 + 32 + i8] = np.uint8(signs[k])
            elif kind == IQ3_XXS:
                o[off + 2 + 8 * ib + k] = np.uint8(gi)
            else:
                # ggml's IQ3_S advances its qs and signs pointers only past non-zero sub-blocks, while qh is
                # indexed by sub-block: after a zero sub-block the later bytes sit one slot early
                o[off + 2 + qs_pos + k] = np.uint8(gi & 255)
                o[off + 66 + ib] |= np.uint8((gi >> 8) << k)
        if kind == IQ2_XXS:
            store_u32(o, off + 2 + 8 * ib + 4, sas)
        elif kind == IQ3_XXS:
            sas = np.uint32(signs[0]) | (np.uint32(signs[1]) << np.uint32(7))
            sas |= (np.uint32(signs[2]) << np.uint32(14)) | (np.uint32(signs[3]) << np.uint32(21))
            store_u32(o, off + 66 + 4 * ib, sas)
        elif kind == IQ3_S:
            for k in range(4):
                o[off + 74 + qs_pos // 2 + k] = np.uint8(signs[k])
            qs_pos += 8
        if not scale >= 0:  # NaN: ggml's GGML_ASSERT(scale >= 0) aborts
            return False
        scales[ib] = scale
        max_scale = max_scale if max_scale > scale else scale

    if max_scale == 0:
        if kind in (IQ2_XXS, IQ2_XS, IQ3_XXS):
            for b in range(2, type_size):  # these stage the quants and drop them here
                o[off + b] = np.uint8(0)
        return True
    d = max_scale / np.float32(31.0)
    if kind == IQ2_S:
        store_f16(o, off, f32_to_f16(d * np.float32(0.9875)))
    elif kind == IQ3_XXS:
        store_f16(o, off, f32_to_f16(d * np.float32(1.0125)))
    elif kind == IQ3_S:
        store_f16(o, off, f32_to_f16(d * np.float32(1.033)))
    else:
        store_f16(o, off, f32_to_f16(d))
    idv = np.float32(1.0) / d
    for ib in range(nsub):
        code = sub_scale_code(idv, scales[ib], 15)
        if kind == IQ2_XXS:
            o[off + 2 + 8 * ib + 7] |= np.uint8(code << 4)
        elif kind == IQ3_XXS:
            o[off + 66 + 4 * ib + 3] |= np.uint8(code << 4)
        elif kind in (IQ2_XS, IQ2_S):
            o[off + type_size - 8 + ib // 2] |= np.uint8(code << (4 * (ib % 2)))
        else:
            o[off + 106 + ib // 2] |= np.uint8(code << (4 * (ib % 2)))
    return True


@njit(**JIT)
def _scratch():
    f32 = np.float32
    return (
        np.empty(32, f32),  # weight
        np.empty(32, f32),  # waux
        np.empty(32, f32),  # xval
        np.empty(16, f32),  # scales
        np.empty(512, f32),  # best_neighbour's distances (lists hold at most 292)
        np.empty(32, np.int32),  # make_qp_quants' levels
        np.empty(32, np.int32),  # L
        np.empty(32, np.int32),  # Laux
        np.empty(4, np.int64),  # signs
        np.empty(8, np.bool_),  # on_grid
        np.empty((32, 8), np.bool_),  # aux_on per trial scale
        np.empty((32, 32), np.int32),  # the levels of every trial scale, [element, step]
        np.empty(32, f32),  # sumqx per trial scale
        np.empty(32, f32),  # sumq2 per trial scale
    )


@njit(parallel=True, **JIT)
def quantize_family(x, out, qw, kind, tab, type_size, max_tasks):
    """Quantise float32 rows x [rows, cols] into out [rows, row_bytes]; qw: float32 [cols] or empty.

    Returns the first row where ggml would abort, or -1.
    """
    rows, cols = x.shape
    nb = cols // QK_K
    total = rows * nb
    ntasks = max(1, min(total, max_tasks))
    has_qw = qw.size > 0
    xf = x.reshape(rows * cols)
    failed = np.zeros(rows, np.bool_)
    for t in prange(ntasks):
        sc = _scratch()
        for b in range(t * total // ntasks, (t + 1) * total // ntasks):
            r = b // nb
            c = b % nb
            if not _superblock(
                kind, xf, b * QK_K, qw, c * QK_K, has_qw, out[r], c * type_size, type_size, tab, sc
            ):
                failed[r] = True
    return first_true(failed)


# ------------------------------------------------------------------------------------------- dequantisation
@njit(parallel=True, **JIT)
def dequantize_family(data, out, kind, grid, ksigns, type_size):
    """dequantize_row_iq2_xxs / _xs / _s / iq3_xxs / iq3_s: y = (d·(sub-scale))·grid value·(±1), in C's order."""
    rows, cols = out.shape
    nb = cols // QK_K
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for bi in range(nb):
            off = bi * type_size
            y0 = bi * QK_K
            d = load_f16(src, off)
            for ib in range(8):  # 32-element pieces
                for g in range(4):  # groups of 8
                    if kind == IQ2_XXS:
                        s_u32 = np.uint32(0)
                        for b in range(4):
                            s_u32 |= np.uint32(src[off + 2 + 8 * ib + 4 + b]) << np.uint32(8 * b)
                        db = d * (np.float32(0.5) + np.float32(s_u32 >> np.uint32(28))) * np.float32(0.25)
                        gidx = np.int64(src[off + 2 + 8 * ib + g])
                        sg = ksigns[(s_u32 >> np.uint32(7 * g)) & np.uint32(127)]
                    elif kind == IQ2_XS:
                        nib = (src[off + 66 + ib] >> (4 * (g // 2))) & 15
                        db = d * (np.float32(0.5) + np.float32(nib)) * np.float32(0.25)
                        q = np.int64(src[off + 2 + 2 * (4 * ib + g)]) | (
                            np.int64(src[off + 3 + 2 * (4 * ib + g)]) << 8
                        )
                        gidx = q & 511
                        sg = ksigns[q >> 9]
                    elif kind == IQ2_S:
                        nib = (src[off + 74 + ib] >> (4 * (g // 2))) & 15
                        db = d * (np.float32(0.5) + np.float32(nib)) * np.float32(0.25)
                        qh = np.int64(src[off + 66 + ib])
                        gidx = np.int64(src[off + 2 + 4 * ib + g]) | ((qh << (8 - 2 * g)) & 0x300)
                        sg = src[off + 34 + 4 * ib + g]
                    elif kind == IQ3_XXS:
                        s_u32 = np.uint32(0)
                        for b in range(4):
                            s_u32 |= np.uint32(src[off + 66 + 4 * ib + b]) << np.uint32(8 * b)
                        db = d * (np.float32(0.5) + np.float32(s_u32 >> np.uint32(28))) * np.float32(0.5)
                        sg = ksigns[(s_u32 >> np.uint32(7 * g)) & np.uint32(127)]
                        gidx = -1
                    else:
                        nib = (src[off + 106 + ib // 2] >> (4 * (ib % 2))) & 15
                        db = d * np.float32(1 + 2 * np.int64(nib))
                        sg = src[off + 74 + 4 * ib + g]
                        gidx = -1
                    y = y0 + 32 * ib + 8 * g
                    if gidx >= 0:
                        for j in range(8):
                            v = db * grid[gidx, j]
                            dst[y + j] = -v if (sg >> j) & 1 else v
                    else:
                        for h in range(2):  # two grid points of 4
                            if kind == IQ3_XXS:
                                gi = np.int64(src[off + 2 + 8 * ib + 2 * g + h])
                            else:
                                qh = np.int64(src[off + 66 + ib])
                                gi = np.int64(src[off + 2 + 8 * ib + 2 * g + h]) | (
                                    (qh << (8 - 2 * g - h)) & 256
                                )
                            for j in range(4):
                                v = db * grid[gi, j]
                                dst[y + 4 * h + j] = -v if (sg >> (4 * h + j)) & 1 else v


# ---------------------------------------------------------------------------------------------- registry types
class IQuant(KernelType):
    """A 256-element IQ super-block type whose quantiser reads importance weights (one float32 per column).

    `requires_quant_weights` is ggml_quantize_requires_imatrix: llama.cpp aborts without weights, so the front
    end refuses instead (quant/kernels/api.py), which also validates the weights before they get here. The
    kernels take the type's grid tables, loaded (or built and cached) on first use, not at import.
    """

    uses_quant_weights = True
    scale_offsets: ClassVar[tuple[int, ...]] = (0,)  # fp16 d first

    @classmethod
    def run_kernel(cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None) -> int:
        """The kernel alone: the first row on which ggml_quantize_chunk aborts (only with values or weights so
        large that its distances overflow), or -1. The stored scales are not checked."""
        bad = super().quantize_rows(x, out, quant_weights)
        return -1 if bad is None else bad

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None) -> int:
        """Fill `out` from finite float32 `x` with importance weights `quant_weights` (one per column) or none.

        Returns the first row llama.cpp rejects: one on which ggml_quantize_chunk aborts (`run_kernel`) or one
        whose fp16 scale overflows (ggml_validate_row_data fails); -1 when every row is fine.
        """
        bad = cls.run_kernel(x, out, quant_weights)
        invalid = cls.invalid_row(out)
        return min(r for r in (bad, invalid) if r >= 0) if max(bad, invalid) >= 0 else -1


class _Family(IQuant):
    quantize_kernel = staticmethod(quantize_family)
    dequantize_kernel = staticmethod(dequantize_family)
    _kind: ClassVar[int]
    _grid: ClassVar[str]

    @classmethod
    def kernel_args(cls) -> tuple:
        return (cls._kind, grid_tables(cls._grid))

    @classmethod
    def dequantize_args(cls) -> tuple:
        return (cls._kind, grid_values(cls._grid), KSIGNS)


@register
class IQ2_XXS_(_Family):
    """2.0625 bits/weight: 32-element sub-blocks of four 8-point groups on a 256-point grid, parity signs."""

    ggml_type = GGMLQuantizationType.IQ2_XXS
    requires_quant_weights = True
    _kind, _grid = IQ2_XXS, "iq2xxs"


@register
class IQ2_XS_(_Family):
    """2.3125 bits/weight: 16-element sub-blocks, a 512-point grid, parity signs, 4-bit sub-scales."""

    ggml_type = GGMLQuantizationType.IQ2_XS
    requires_quant_weights = True
    _kind, _grid = IQ2_XS, "iq2xs"


@register
class IQ2_S_(_Family):
    """2.5625 bits/weight: 16-element sub-blocks, a 1024-point grid, all 8 signs stored."""

    ggml_type = GGMLQuantizationType.IQ2_S
    _kind, _grid = IQ2_S, "iq2s"


@register
class IQ3_XXS_(_Family):
    """3.0625 bits/weight: 32-element sub-blocks of eight 4-point groups on a 256-point grid, parity signs."""

    ggml_type = GGMLQuantizationType.IQ3_XXS
    _kind, _grid = IQ3_XXS, "iq3xxs"


@register
class IQ3_S_(_Family):
    """3.4375 bits/weight: 32-element sub-blocks, a 512-point grid, all signs stored."""

    ggml_type = GGMLQuantizationType.IQ3_S
    _kind, _grid = IQ3_S, "iq3s"
