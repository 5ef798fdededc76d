"""The lattice grids of the IQ1-IQ3 types and the map and neighbour tables their quantisers search.

A grid is a list of points with 8 (2-bit and ternary grids) or 4 (3-bit grids) coordinates, each a small
"level" l; the quantisers work in coordinates 2l+1. llama.cpp builds three tables per grid at start-up
(`iq2xs_init_impl`, `iq3xs_init_impl` in ggml/src/ggml-quants.c): the grid, a map from a packed level vector
u = sum(l_i << bits*i) to its grid index, and for every u that is not a grid point the list of grid points
closest to it. The grids themselves are data (gguf-py ships them as the dequantisation tables, which list
the same points in the same order); the rest is rebuilt here, only for the vectors the quantisers can
produce (levels below kMaxQ), which is all llama.cpp ever reads of them.

The tables take well under a second to build; they are built on first use of a type and kept on disk beside
numba's cache (`_cache_dir`), so later processes load them in milliseconds. docs/iq-types.md describes them.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from gguf import quants as gguf_quants
from numba import njit

from quant.kernels.bits import JIT


class GridSpec(NamedTuple):
    """One grid: which gguf-py table holds it, its shape and how many nearest distances a list keeps."""

    gguf_class: str
    ncoord: int  # coordinates per point: 8 or 4
    bits: int  # bits per level in the packed vector u: 2 or 3
    kmax: int  # levels the quantiser produces: 0..kmax-1
    nwant: int  # a neighbour list holds every grid point at one of the nwant smallest distances


GRIDS: dict[str, GridSpec] = {
    "iq2xxs": GridSpec("IQ2_XXS", 8, 2, 3, 2),
    "iq2xs": GridSpec("IQ2_XS", 8, 2, 3, 2),
    "iq2s": GridSpec("IQ2_S", 8, 2, 3, 1),
    "iq1s": GridSpec("IQ1_S", 8, 2, 3, 3),  # IQ1_S and IQ1_M share it, as in ggml
    "iq3xxs": GridSpec("IQ3_XXS", 4, 3, 8, 2),
    "iq3s": GridSpec("IQ3_S", 4, 3, 8, 3),
}


LIST_SHIFT = 9
"""A neighbour list's start is stored above its length (at most 292 entries) in one int32."""
INDEX_SHIFT = 16
"""A neighbour list entry holds the point's packed levels (16 bits at most) and, above them, its grid index."""


class GridTables(NamedTuple):
    """What the quantisers read (numba takes a NamedTuple of arrays as one argument).

    A level vector (l_0 .. l_n-1, each below kmax) has the key sum(l_i * kmax**i): 6561 keys for the 8-value
    grids, 4096 for the 4-value ones, so the lookup table (26 or 16 KB) stays in the L1 cache, where ggml's
    map, indexed by 2 or 3 bits a level, spans 43692 entries. `lookup[key]` is the grid index of a grid point;
    for any other vector it is -1 - (start << LIST_SHIFT | length) of its neighbour list, which is
    `nb_packed[start : start + length]`, ordered by (distance, index). Each entry packs the point's levels (2 or
    3 bits a level, as ggml's map index) with its grid index above INDEX_SHIFT, so a search reads one
    contiguous run of uint32 and the winner's index comes with it.
    """

    levels: np.ndarray  # int8 [ngrid, ncoord]
    lookup: np.ndarray  # int32 [kmax**ncoord]
    nb_packed: np.ndarray  # uint32 [total]


def grid_levels(name: str) -> np.ndarray:
    """The grid's points as levels, int8 [ngrid, ncoord], decoded from gguf-py's dequantisation table."""
    spec = GRIDS[name]
    cls = getattr(gguf_quants, spec.gguf_class)
    cls.init_grid()
    values = np.asarray(cls.grid, dtype=np.float32).reshape(-1, spec.ncoord)
    table = np.asarray(cls.grid_map, dtype=np.float32)
    levels = np.argmax(values[..., None] == table, axis=-1).astype(np.int8)
    if not np.array_equal(table[levels], values):
        raise RuntimeError(f"gguf-py's {spec.gguf_class} grid holds a value outside its level table")
    return levels


def grid_values(name: str) -> np.ndarray:
    """The dequantisation grid (what ggml-common.h's `*_grid` tables hold): float32 [ngrid, ncoord]."""
    spec = GRIDS[name]
    cls = getattr(gguf_quants, spec.gguf_class)
    cls.init_grid()
    return np.ascontiguousarray(np.asarray(cls.grid, dtype=np.float32).reshape(-1, spec.ncoord))


@njit(**JIT)
def _build(levels, bits, kmax, nwant):
    """The lookup table and neighbour lists over every level vector the quantisers can produce (levels < kmax).

    For a vector that is not a grid point: the squared distances (in 2l+1 coordinates, integers) to every grid
    point, then every point whose distance is among the nwant smallest distinct ones, by (distance, index):
    the list llama.cpp gets from qsort and its cut-off loop. Lists are laid out in key order.
    """
    ngrid, ncoord = levels.shape
    size = kmax**ncoord
    lookup = np.full(size, -1, np.int32)
    for k in range(ngrid):
        key = 0
        for i in range(ncoord - 1, -1, -1):
            key = key * kmax + np.int64(levels[k, i])
        lookup[key] = k
    d2 = np.empty(ngrid, np.int32)
    cut = np.empty(nwant, np.int32)
    pos = np.empty(ncoord, np.int32)
    # pass 1: count; pass 2: fill
    total = 0
    for fill in range(2):
        if fill == 1:
            nb_packed = np.empty(total, np.uint32)
            total = 0
        for key in range(size):
            if lookup[key] >= 0:  # a grid point (lists are written as negative codes, in pass 2 only)
                continue
            rest = key
            for i in range(ncoord):
                pos[i] = 2 * (rest % kmax) + 1
                rest //= kmax
            for k in range(ngrid):
                s = 0
                for i in range(ncoord):
                    t = 2 * np.int32(levels[k, i]) + 1 - pos[i]
                    s += t * t
                d2[k] = s
            ncut = 0
            prev = -1
            for c in range(nwant):
                best = 2147483647
                for k in range(ngrid):
                    if d2[k] > prev and d2[k] < best:
                        best = d2[k]
                if best == 2147483647:
                    break
                cut[c] = best
                prev = best
                ncut += 1
            start = total
            for c in range(ncut):
                for k in range(ngrid):
                    if d2[k] == cut[c]:
                        if fill == 1:
                            p = k << INDEX_SHIFT
                            for i in range(ncoord):
                                p |= np.int64(levels[k, i]) << (bits * i)
                            nb_packed[total] = p
                        total += 1
            if fill == 1:
                lookup[key] = -1 - ((start << LIST_SHIFT) | (total - start))
    return lookup, nb_packed


@functools.cache
def _source_key() -> str:
    """Changes whenever the grids or the code building the tables change, so a stale disk cache is ignored."""
    h = hashlib.sha256(inspect.getsource(_build).encode())
    h.update(f"{LIST_SHIFT} {INDEX_SHIFT}".encode())
    for name in sorted(GRIDS):
        h.update(repr(GRIDS[name]).encode())
        h.update(grid_levels(name).tobytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    """Beside numba's cache of this module: NUMBA_CACHE_DIR when set, else the package's __pycache__."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    return Path(env) if env else Path(__file__).resolve().parent / "__pycache__"


_FIELDS = ("lookup", "nb_packed")


def _load_or_build(name: str) -> dict[str, np.ndarray]:
    spec = GRIDS[name]
    path = _cache_dir() / f"iq_tables.{name}.{_source_key()}.npz"
    try:
        with np.load(path) as z:
            return {f: z[f] for f in _FIELDS}
    except (OSError, KeyError, ValueError):
        pass
    built = dict(zip(_FIELDS, _build(grid_levels(name), spec.bits, spec.kmax, spec.nwant), strict=True))
    try:  # best effort: a read-only install just rebuilds next time
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.part")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **built)
        os.replace(tmp, path)
    except OSError:
        pass
    return built


@functools.cache
def grid_tables(name: str) -> GridTables:
    """The tables of one grid ("iq2xxs", "iq2xs", "iq2s", "iq1s", "iq3xxs", "iq3s"), built or loaded once."""
    return GridTables(levels=grid_levels(name), **_load_or_build(name))
