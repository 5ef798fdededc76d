"""IQ4_NL and IQ4_XS: 4-bit indices into ggml's 16 non-linear levels (kvalues_iq4nl), byte-identical to
`ggml_quantize_chunk`, which always runs `quantize_row_iq4_nl_impl` with 7 trial scales either side of the
first (ggml/src/ggml-quants.c).

Without importance weights a block's elements are weighted by x²; with them, by
qw·sqrt(sigma2 + x²), sigma2 being 2·mean(x²) over the (super-)block. IQ4_NL stores one fp16 scale per 32
elements; IQ4_XS one fp16 scale per 256 and a signed 6-bit scale per 32. Blocks are searched 64 at a time
side by side (quant/kernels/search.py).
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as GT
from gguf.constants import QK_K
from numba import njit, prange

from quant.kernels.base import KernelType, register
from quant.kernels.bits import JIT, f32_to_f16, load_f16, nearest_int, store_f16
from quant.kernels.search import (
    IQ4_VALUES,
    LANES,
    iq4_nearest,
    iq4_search_lanes,
    lane_arrays,
    lane_groups,
    lanes_to_blocks,
    load_lanes,
    load_weight_lanes,
    superblock_weights,
)


@njit(inline="always", **JIT)
def _put_nibbles(e, o, off):
    """The 16 bytes of one 32-element block: element j in the low nibble, j + 16 in the high."""
    for j in range(16):
        o[off + j] = np.uint8(e[j] | (e[j + 16] << 4))


@njit(**JIT)
def _groups(xf, total, nb, qw, out, g_lo, g_hi, type_size, subs):
    """IQ4_NL (subs = 1) or IQ4_XS (subs = 8 blocks of 32 per super-block) for lane groups [g_lo, g_hi) of the
    flat super-blocks of xf (nb per row)."""
    lanes = LANES
    f32 = np.float32
    has_qw = qw.shape[0] > 0
    xt = np.empty((32, lanes), f32)
    w = np.empty((32, lanes), f32)
    L = np.empty((32, lanes), np.int32)
    Lt = np.empty((lanes, 32), np.int32)
    scale = np.empty(lanes, f32)
    sw = np.empty(lanes, f32)
    mult = np.empty(lanes, f32)
    ls = np.empty(lanes, np.int32)
    hd = np.empty(lanes, np.uint16)
    s = (*lane_arrays(lanes), *lane_arrays(lanes))
    per_group = lanes // subs
    for g in range(g_lo, g_hi):
        first = g * lanes  # in blocks of 32
        load_lanes(xt, 32, LANES, xf, first, total * subs)
        if has_qw:  # sigma2 = Σx²·(2/S) over the super-block of S elements
            load_weight_lanes(w, 32, LANES, qw, first, nb * subs)
            superblock_weights(xt, 32, LANES, w, w, sw, subs, f32(2.0) / f32(32 * subs), f32(1.0))
        else:
            for i in range(32):
                for k in range(lanes):
                    w[i, k] = xt[i, k] * xt[i, k]
        iq4_search_lanes(xt, 32, LANES, w, scale, s)
        if subs == 1:  # IQ4_NL stores the scale; the levels are picked again with the unrounded one
            for k in range(lanes):
                d = scale[k]
                hd[k] = f32_to_f16(d)
                mult[k] = f32(1.0) / d if d != 0 else f32(0.0)
        else:  # IQ4_XS: d = -(the scale of largest |scale|)/32, a 6-bit scale per 32 against it
            for bl in range(per_group):
                max_scale = f32(0.0)
                amax_scale = f32(0.0)
                for sb in range(subs):
                    v = scale[bl * subs + sb]
                    if np.abs(v) > amax_scale:
                        amax_scale = np.abs(v)
                        max_scale = v
                d = -max_scale / f32(32.0)
                hd[bl] = f32_to_f16(d)
                idd = f32(1.0) / d if d != 0 else f32(0.0)
                for sb in range(subs):
                    k = bl * subs + sb
                    li = max(np.int32(-32), min(np.int32(31), nearest_int(idd * scale[k])))
                    dl = d * f32(li)  # the unrounded d
                    mult[k] = f32(1.0) / dl if dl != 0 else f32(0.0)
                    ls[k] = li + 32
        for i in range(32):
            for k in range(lanes):
                L[i, k] = iq4_nearest(mult[k] * xt[i, k])[0]
        lanes_to_blocks(L, 32, LANES, Lt)
        for bl in range(per_group):
            b = g * per_group + bl
            if b >= total:
                break
            o = out[b // nb]
            off = (b % nb) * type_size
            store_f16(o, off, hd[bl])
            if subs == 1:
                _put_nibbles(Lt[bl], o, off + 2)
                continue
            sh = 0
            for sb in range(subs):
                u = ls[bl * subs + sb]
                sh |= (u >> 4) << (2 * sb)
                if sb % 2 == 0:
                    o[off + 4 + sb // 2] = np.uint8(u & 0xF)
                else:
                    o[off + 4 + sb // 2] = np.uint8(o[off + 4 + sb // 2] | ((u & 0xF) << 4))
                _put_nibbles(Lt[bl * subs + sb], o, off + 8 + 16 * sb)
            o[off + 2] = np.uint8(sh & 0xFF)
            o[off + 3] = np.uint8((sh >> 8) & 0xFF)


@njit(parallel=True, **JIT)
def _quantize(x, out, qw, super_block, type_size, max_tasks):
    xf, nb, total, ngroups, ntasks = lane_groups(x, super_block, LANES * 32 // super_block, max_tasks)
    for t in prange(ntasks):
        _groups(
            xf,
            total,
            nb,
            qw,
            out,
            t * ngroups // ntasks,
            (t + 1) * ngroups // ntasks,
            type_size,
            super_block // 32,
        )


@njit(parallel=True, **JIT)
def _dequantize(data, out, super_block, type_size):
    """dequantize_row_iq4_nl / _iq4_xs: y = d·level (IQ4_XS: (d·(ls − 32))·level)."""
    rows, cols = out.shape
    nb = cols // super_block
    for r in prange(rows):
        src = data[r]
        dst = out[r]
        for b in range(nb):
            off = b * type_size
            d = load_f16(src, off)
            for sb in range(super_block // 32):
                if super_block == 32:
                    dl = d
                    qs = off + 2
                else:
                    sh = np.int32(src[off + 2]) | (np.int32(src[off + 3]) << 8)
                    u = ((np.int32(src[off + 4 + sb // 2]) >> (4 * (sb % 2))) & 0xF) | (
                        ((sh >> (2 * sb)) & 3) << 4
                    )
                    dl = d * np.float32(u - 32)
                    qs = off + 8 + 16 * sb
                y = b * super_block + 32 * sb
                for j in range(16):
                    q = src[qs + j]
                    dst[y + j] = dl * IQ4_VALUES[q & 0xF]
                    dst[y + j + 16] = dl * IQ4_VALUES[q >> 4]


class _IQ4(KernelType):
    uses_quant_weights = True
    scale_offsets = (0,)  # fp16 d first
    quantize_kernel = staticmethod(_quantize)
    dequantize_kernel = staticmethod(_dequantize)


@register
class IQ4_NL(_IQ4):
    """4.5 bits/weight: one fp16 scale per 32 elements, each element a 4-bit index into 16 non-linear levels."""

    ggml_type = GT.IQ4_NL
    kernel_params = dequantize_params = (32,)


@register
class IQ4_XS(_IQ4):
    """4.25 bits/weight: IQ4_NL's levels with one fp16 scale per 256 and a 6-bit scale per 32 elements."""

    ggml_type = GT.IQ4_XS
    kernel_params = dequantize_params = (QK_K,)
