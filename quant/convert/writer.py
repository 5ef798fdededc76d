"""Streaming the tensor data of a prepared layout into an open GGUF file, in bounded memory.

Each tensor is produced in row chunks (a few MiB of float32), checked for NaN/inf, encoded to its ggml type
and written at once; the pages of the memory-mapped source are dropped after use so resident memory stays
near one chunk whatever the size of the model or of its largest tensor.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from quant.convert.layout import ALIGNMENT, Prepared, _pad
from quant.convert.mixture import row_nbytes
from quant.convert.tensors import OutTensor
from quant.errors import ConversionError

CHUNK_ELEMENTS = 1 << 22  # 4 Mi float32 = 16 MiB per chunk
_PAGE = mmap.PAGESIZE

Progress = Callable[[str, int, int], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


class ConversionCancelled(ConversionError):
    """The caller's cancel event was set; the partial output has been removed."""


class MappedShards:
    """One read-only mmap per shard; pages are dropped (MADV_DONTNEED) once a chunk has been used."""

    def __init__(self) -> None:
        self._maps: dict[Path, tuple[mmap.mmap, np.ndarray]] = {}

    def view(self, path: Path) -> np.ndarray:
        if path not in self._maps:
            with path.open("rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._maps[path] = (mm, np.frombuffer(mm, dtype=np.uint8))
        return self._maps[path][1]

    def release(self, path: Path, start: int, nbytes: int) -> None:
        mm = self._maps[path][0]
        lo = start - start % _PAGE
        hi = min(len(mm), -(-(start + nbytes) // _PAGE) * _PAGE)
        if hi > lo and hasattr(mm, "madvise"):
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        for mm, _ in self._maps.values():
            with contextlib.suppress(BufferError):  # a view is still referenced; the GC closes it
                mm.close()
        self._maps.clear()


def _quantizer() -> Callable[[np.ndarray, str, int | None], np.ndarray]:
    """The kernels' front end (quant.quantize); falls back to the type registry if the front end is absent."""
    try:
        from quant.kernels.api import quantize

        return lambda x, t, threads: quantize(x, t, threads=threads)
    except ImportError:  # pragma: no cover - only before the kernels' front end exists
        import numba

        import quant.kernels.kquants  # noqa: F401  (registers the K types)
        import quant.kernels.simple  # noqa: F401
        from quant.kernels.base import QUANT_TYPES

        def run(x: np.ndarray, t: str, threads: int | None) -> np.ndarray:
            if threads:
                numba.set_num_threads(threads)
            out = np.empty((x.shape[0], row_nbytes(t, x.shape[1])), dtype=np.uint8)
            QUANT_TYPES[t].quantize_rows(x, out)
            return out

        return run


def encode(x: np.ndarray, type_name: str, threads: int | None = None) -> np.ndarray:
    """Encode finite float32 rows as ggml type `type_name` (bit-exact with ggml)."""
    if type_name == "F32":
        return x
    if type_name == "F16":
        return x.astype(np.float16)  # RNE, identical to ggml for every finite input
    if type_name == "BF16":
        u = x.view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return _quantizer()(x, type_name, threads)


def _check_finite(t: OutTensor, x: np.ndarray, row0: int) -> None:
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0][0]) + row0
        if t.parts:
            per_part = t.n_rows // len(t.parts)
            part = t.parts[min(bad // per_part, len(t.parts) - 1)]
            what, bad = f"{part.shard}: tensor {part.name!r} ({t.name})", bad % per_part
        else:
            what = f"generated tensor {t.name}"
        raise ConversionError(f"{what} contains NaN or infinite values (row {bad}); refusing to convert")


def write_data(
    f: BinaryIO,
    prep: Prepared,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """Write every tensor's bytes (with alignment padding) after the header already written to `f`."""
    total = prep.layout.tensor_bytes
    done = 0
    shards = MappedShards()
    try:
        for t, lay in zip(prep.tensors, prep.layout.tensors, strict=True):
            if progress is not None:
                progress(t.name, done, total)
            arrays = [p.array(shards.view(p.shard)) for p in t.parts]
            per_chunk = max(1, CHUNK_ELEMENTS // t.n_cols)
            written = 0
            for r0 in range(0, t.n_rows, per_chunk):
                if cancel is not None and cancel.is_set():
                    raise ConversionCancelled("conversion cancelled")
                r1 = min(t.n_rows, r0 + per_chunk)
                x = t.rows(r0, r1, arrays)
                _check_finite(t, x, r0)
                data = encode(x, t.type, threads)
                f.write(memoryview(np.ascontiguousarray(data)).cast("B"))
                written += data.nbytes
                if not t.permute_heads and t.parts:  # rows were read in order: drop their pages now
                    per_part = t.n_rows // len(t.parts)
                    for p in range(r0 // per_part, (r1 - 1) // per_part + 1):
                        part = t.parts[p]
                        row_bytes = part.nbytes // max(1, per_part)
                        a, b = (
                            max(r0, p * per_part) - p * per_part,
                            min(r1, (p + 1) * per_part) - p * per_part,
                        )
                        shards.release(part.shard, part.start + a * row_bytes, (b - a) * row_bytes)
                if progress is not None:
                    progress(t.name, done + written, total)
            if written != lay.nbytes:
                raise ConversionError(f"tensor {t.name}: wrote {written} bytes, layout says {lay.nbytes}")
            for part in t.parts:
                shards.release(part.shard, part.start, part.nbytes)
            del arrays
            f.write(b"\0" * (_pad(written, ALIGNMENT) - written))
            done += written
        if progress is not None:
            progress("", done, total)
    finally:
        shards.close()
