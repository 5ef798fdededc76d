"""Streaming the tensor data of a prepared layout into an open GGUF file, in bounded memory.

Each tensor is produced in row chunks (a few MiB of float32), checked for NaN/inf, encoded to its ggml type
and written at once; the pages of the memory-mapped source are dropped after use so resident memory stays
near one chunk whatever the size of the model or of its largest tensor.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from quant.convert.layout import ALIGNMENT, Prepared, _pad
from quant.convert.tensors import OutTensor
from quant.convert.type_rules import row_nbytes
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


def encode(
    x: np.ndarray,
    type_name: str,
    threads: int | None = None,
    name: str = "",
    row0: int = 0,
    quant_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Encode finite float32 rows as ggml type `type_name` (bit-exact with ggml), with the importance
    weights `quant_weights` (one float32 per column, for every row) when given.

    The rows were already checked for NaN/inf, so the kernels' QuantType is called directly (skipping the
    front end's second scan); llama.cpp's row validation still runs on the result, which also catches F16
    and BF16 values that overflow to inf. `row0` is the tensor row of x[0], for the error message.
    """
    if type_name == "F32":
        return x
    from quant.kernels.api import quant_type

    cls = quant_type(type_name)
    out = np.empty((x.shape[0], row_nbytes(type_name, x.shape[1])), dtype=np.uint8)
    _use_threads(threads)
    bad = cls.quantize_rows(
        x, out, quant_weights
    )  # kernels that validate as they go say so; the others are checked here
    if bad is None:
        bad = cls.invalid_row(out)
    if bad >= 0:
        raise _too_large(name, type_name, row0 + bad)
    return out


def _use_threads(threads: int | None) -> int:
    """Set numba's thread count for the next kernel calls (default: every core we may use); returns it."""
    import numba

    from quant.kernels.api import default_threads

    n = min(threads or default_threads(), numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    numba.set_num_threads(n)
    return n


def _too_large(name: str, type_name: str, row: int) -> ConversionError:
    from quant.kernels.api import quant_type

    what = "values overflow" if quant_type(type_name).block_size == 1 else "a block scale overflows fp16"
    return ConversionError(
        f"tensor {name}: row {row} is too large for {type_name} ({what}; llama.cpp rejects such rows)"
    )


def _fused_q8_0(t: OutTensor, arrays: list[np.ndarray]) -> bool:
    """Whether `t` can go straight from BF16 source rows to Q8_0 (the common case: no float32 chunk needed)."""
    return (
        t.type == "Q8_0"
        and t.data is None
        and not t.deltas
        and t.columns is None
        and len(t.shape) > 1
        and all(a.dtype == np.uint16 for a in arrays)
    )


class _BufferRing:
    """Reused output chunks: fresh 16 MiB arrays would cost a page fault per 4 KiB on every chunk. Safe because
    the writer holds at most `depth` queued buffers plus the one it is writing while the next is filled."""

    def __init__(self, count: int) -> None:
        self.bufs: list[np.ndarray] = []
        self.count = count
        self.next = 0

    def get(self, nbytes: int) -> np.ndarray:
        if len(self.bufs) < self.count:
            self.bufs.append(np.empty(nbytes, dtype=np.uint8))
        i, self.next = self.next % len(self.bufs), self.next + 1
        if self.bufs[i].nbytes < nbytes:
            self.bufs[i] = np.empty(nbytes, dtype=np.uint8)
        return self.bufs[i][:nbytes]


def _q8_0_rows(
    t: OutTensor, start: int, stop: int, arrays: list[np.ndarray], buf: np.ndarray, threads: int | None
) -> tuple[np.ndarray, int, int]:
    """Q8_0 bytes of output rows [start, stop) of a BF16 tensor, the first row (within them) with NaN/inf and
    the first whose block scale overflows fp16 (-1 for none)."""
    import numba

    from quant.kernels.api import quant_type
    from quant.kernels.base import prange_tasks
    from quant.kernels.fused import bf16_rows_to_q8_0

    _use_threads(threads)
    ntasks = prange_tasks()
    row_bytes = row_nbytes("Q8_0", t.n_cols)
    type_size = quant_type("Q8_0").type_size
    out = buf.reshape(stop - start, row_bytes)
    rmap = t.row_map()
    per_part = t.n_rows // len(arrays)
    first_bad = first_over = -1
    pos = start
    with numba.parallel_chunksize(1):
        while pos < stop:
            p, r0 = divmod(pos, per_part)
            r1 = min(per_part, r0 + (stop - pos))
            src = arrays[p].reshape(per_part, t.n_cols)
            idx = rmap[r0:r1] if rmap is not None else np.arange(r0, r1)
            o0 = pos - start
            bad, over = bf16_rows_to_q8_0(src, idx, out[o0 : o0 + (r1 - r0)], type_size, ntasks)
            if bad >= 0 and first_bad < 0:
                first_bad = o0 + bad
            if over >= 0 and first_over < 0:
                first_over = o0 + over
            pos += r1 - r0
    return out, first_bad, first_over


def _nonfinite(t: OutTensor, bad: int) -> ConversionError:
    if t.parts:
        per_part = t.n_rows // len(t.parts)
        part = t.parts[min(bad // per_part, len(t.parts) - 1)]
        what, bad = f"{part.shard}: tensor {part.name!r} ({t.name})", bad % per_part
    else:
        what = f"generated tensor {t.name}"
    return ConversionError(f"{what} contains NaN or infinite values (row {bad}); refusing to convert")


class _BackgroundWriter:
    """Writes queued buffers to `f` from a thread, so copying into the file overlaps encoding the next chunk."""

    def __init__(self, f: BinaryIO, depth: int = 1) -> None:
        self.f = f
        self.depth = depth
        self.queue: queue.Queue[memoryview | bytes | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gguf-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.f.write(item)
                except BaseException as exc:  # re-raised in the converting thread
                    self.error = exc

    def write(self, buf: memoryview | bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(buf)

    def close(self, *, check: bool = True) -> None:
        """Wait for every queued buffer; with `check`, re-raise a write error."""
        self.queue.put(None)
        self.thread.join()
        if check and self.error is not None:
            raise self.error


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
    out = _BackgroundWriter(f)
    ring = _BufferRing(out.depth + 2)
    imatrix = prep.imatrix
    ok = False
    try:
        for t, lay in zip(prep.tensors, prep.layout.tensors, strict=True):
            if progress is not None:
                progress(t.name, done, total)
            arrays = [p.array(shards.view(p.shard)) for p in t.parts]
            scales = [p.scale.array(shards.view(p.scale.shard)) if p.scale else None for p in t.parts]
            fused = _fused_q8_0(t, arrays)
            per_chunk = max(1, CHUNK_ELEMENTS // t.n_cols)
            per_matrix = t.n_rows // t.shape[0] if len(t.shape) == 3 else t.n_rows  # rows of one expert
            written = 0
            r0 = 0
            while r0 < t.n_rows:
                if cancel is not None and cancel.is_set():
                    raise ConversionCancelled("conversion cancelled")
                qw, stop = (
                    (None, t.n_rows) if imatrix is None else imatrix.rows_weights(t.name, r0, per_matrix)
                )
                r1 = min(t.n_rows, r0 + per_chunk, stop)  # a chunk never spans two experts' weights
                if fused:
                    buf = ring.get((r1 - r0) * row_nbytes("Q8_0", t.n_cols))
                    data, bad, over = _q8_0_rows(t, r0, r1, arrays, buf, threads)
                    if bad >= 0:
                        raise _nonfinite(t, r0 + bad)
                    if over >= 0:
                        raise _too_large(t.name, t.type, r0 + over)
                else:
                    x, bad = t.merged_rows(r0, r1, arrays, scales)
                    if bad >= 0:
                        raise _nonfinite(t, r0 + bad)
                    data = encode(x, t.type, threads, t.name, r0, qw)
                out.write(np.ascontiguousarray(data).data.cast("B"))
                written += data.nbytes
                if (
                    t.columns is not None
                ):  # a fused matrix is read column block by column block: drop it whole
                    part = t.parts[0]
                    per_matrix = part.nbytes // max(1, math.prod(part.shape[:-2]))
                    for m in range(
                        t.column_matrix(r0), t.column_matrix(r1)
                    ):  # matrices finished by this chunk
                        shards.release(part.shard, part.start + m * per_matrix, per_matrix)
                elif not t.permute_heads and t.parts:  # rows were read in order: drop their pages now
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
                r0 = r1
            if written != lay.nbytes:
                raise ConversionError(f"tensor {t.name}: wrote {written} bytes, layout says {lay.nbytes}")
            for part in t.parts:
                shards.release(part.shard, part.start, part.nbytes)
                if part.scale is not None:
                    shards.release(part.scale.shard, part.scale.start, part.scale.nbytes)
            del arrays, scales
            out.write(b"\0" * (_pad(written, ALIGNMENT) - written))
            done += written
        out.close()
        ok = True
        if progress is not None:
            progress("", done, total)
    finally:
        if not ok:
            out.close(check=False)
        shards.close()
