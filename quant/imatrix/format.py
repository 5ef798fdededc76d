"""llama.cpp's importance-matrix files: the GGUF format (read and written) and the legacy `.dat` (read).

What an entry holds is what `llama-imatrix` sums while a model runs: for each weight matrix that a
matrix multiply reads (`blk.N.attn_q.weight`, ...), the sum over every token of the squared activation
entering each input column (`in_sum2`, one row per matrix: one for a dense weight, one per expert for a
stacked MoE weight) and the number of tokens each matrix saw (`counts`). llama-quantize divides one by the
other: the mean squared activation per column, which weights the rounding error of each column
(`Imatrix.weights`). Layouts as llama.cpp writes and reads them are described in docs/imatrix.md.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from quant.errors import ImatrixError

GENERAL_TYPE = "general.type"
DATASETS = "imatrix.datasets"
CHUNK_COUNT = "imatrix.chunk_count"
CHUNK_SIZE = "imatrix.chunk_size"
SUM_SUFFIX = ".in_sum2"
COUNT_SUFFIX = ".counts"
GGUF_MAGIC = b"GGUF"


@dataclass
class ImatrixEntry:
    """The statistics of one weight: `in_sum2` float32 (n_mat, n_cols), `counts` float64 (n_mat,)."""

    in_sum2: np.ndarray
    counts: np.ndarray

    @property
    def n_mat(self) -> int:
        return int(self.in_sum2.shape[0])

    @property
    def n_cols(self) -> int:
        return int(self.in_sum2.shape[1])

    def weights(self) -> np.ndarray:
        """Mean squared activation per column, float32 (n_mat, n_cols), as llama-quantize computes it:
        in_sum2 / count in float32 for a matrix that saw tokens, all ones for one that saw none."""
        out = np.ones(self.in_sum2.shape, dtype=np.float32)
        for j in range(self.n_mat):
            count = np.float32(round(float(self.counts[j])))  # llama.cpp: lround into int64, then (float)
            if count > 0:
                out[j] = self.in_sum2[j].astype(np.float32) / count
        return out


@dataclass
class Imatrix:
    """An importance matrix: entries by weight name plus the file's metadata.

    `legacy` files carry means already (their `weights()` are stored directly); their raw sums are
    rebuilt as llama-imatrix does when it combines files (values x chunk_size, counts ncall x chunk_size).
    """

    entries: dict[str, ImatrixEntry] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    source: Path | None = None
    legacy: bool = False
    _legacy_weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def weights(self, name: str) -> np.ndarray | None:
        """Per-column weights (n_mat, n_cols) float32 for weight `name`, or None if the file lacks it."""
        if name in self._legacy_weights:
            return self._legacy_weights[name]
        entry = self.entries.get(name)
        return None if entry is None else entry.weights()

    def names(self) -> list[str]:
        return sorted(self.entries)

    def add(self, other: Imatrix) -> None:
        """Add `other`'s sums and counts into this one (llama-imatrix --in-file), entry by entry."""
        for name, e in other.entries.items():
            mine = self.entries.get(name)
            if mine is None:
                self.entries[name] = ImatrixEntry(e.in_sum2.copy(), e.counts.copy())
                continue
            if mine.in_sum2.shape != e.in_sum2.shape:
                raise ImatrixError(
                    f"{other.source or 'imatrix'}: tensor {name} has shape {e.in_sum2.shape[::-1]}, "
                    f"{self.source or 'the other file'} has {mine.in_sum2.shape[::-1]}"
                )
            mine.in_sum2 += e.in_sum2
            mine.counts += e.counts
        self._legacy_weights.clear()
        self.datasets += [d for d in other.datasets if d not in self.datasets]
        self.chunk_count += other.chunk_count
        self.chunk_size = self.chunk_size or other.chunk_size


# -- reading --------------------------------------------------------------------------------------


def read_imatrix(path: str | os.PathLike[str]) -> Imatrix:
    """Read a GGUF imatrix, or a legacy `.dat` one (chosen by the file's magic, as llama.cpp does)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ImatrixError(f"{p}: cannot read the importance matrix: {exc.strerror or exc}") from None
    return _read_gguf(p) if magic == GGUF_MAGIC else _read_legacy(p)


def _read_gguf(p: Path) -> Imatrix:
    import gguf

    try:
        reader = gguf.GGUFReader(p, "r")
    except Exception as exc:  # gguf-py raises ValueError/struct.error/... on damaged files
        raise ImatrixError(f"{p}: not a readable GGUF imatrix: {exc}") from None

    def field_value(key: str) -> object:
        fld = reader.fields.get(key)
        if fld is None:
            return None
        return fld.contents()

    kind = field_value(GENERAL_TYPE)
    if kind != "imatrix":
        raise ImatrixError(f"{p}: {GENERAL_TYPE} is {kind!r}, not 'imatrix': not an importance matrix file")
    missing = [k for k in (DATASETS, CHUNK_COUNT, CHUNK_SIZE) if k not in reader.fields]
    if missing:  # llama-quantize refuses such a file too
        raise ImatrixError(f"{p}: key {missing[0]!r} is missing (llama-quantize needs it)")
    datasets = field_value(DATASETS)
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise ImatrixError(f"{p}: key {DATASETS!r} is not a list of strings")
    chunk_count, chunk_size = field_value(CHUNK_COUNT), field_value(CHUNK_SIZE)
    for key, v in ((CHUNK_COUNT, chunk_count), (CHUNK_SIZE, chunk_size)):
        if not isinstance(v, int) or v < 0:
            raise ImatrixError(f"{p}: key {key!r} is {v!r}, not a count")

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        name = t.name
        if name.endswith(SUM_SUFFIX):
            base, table = name[: -len(SUM_SUFFIX)], sums
        elif name.endswith(COUNT_SUFFIX):
            base, table = name[: -len(COUNT_SUFFIX)], counts
        else:
            continue  # llama.cpp ignores other tensors too
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ImatrixError(f"{p}: tensor {name} is {t.tensor_type.name}, not F32")
        ne = [int(n) for n in t.shape]
        if len(ne) > 2:
            raise ImatrixError(f"{p}: tensor {name} has {len(ne)} dimensions, at most 2 expected")
        ne0, ne1 = ne[0], ne[1] if len(ne) > 1 else 1
        table[base] = np.asarray(t.data, dtype=np.float32).reshape(ne1, ne0)
    entries: dict[str, ImatrixEntry] = {}
    for base in sorted(set(sums) | set(counts)):
        if base not in sums or base not in counts:
            lacking = SUM_SUFFIX if base not in sums else COUNT_SUFFIX
            raise ImatrixError(f"{p}: tensor {base}{lacking} is missing (every entry needs both)")
        s, c = sums[base], counts[base]
        if c.shape[1] != 1 or c.shape[0] != s.shape[0]:
            # llama.cpp: ne0 = nval / ncounts; a sum whose rows do not match its counts is malformed
            raise ImatrixError(
                f"{p}: tensor {base}{COUNT_SUFFIX} has {c.size} counts for {s.shape[0]} matrices in {base}{SUM_SUFFIX}"
            )
        if not np.all(np.isfinite(s)) or not np.all(np.isfinite(c)) or np.any(c < 0):
            raise ImatrixError(f"{p}: tensor {base} holds non-finite or negative values")
        entries[base] = ImatrixEntry(s.copy(), c[:, 0].astype(np.float64))
    if not entries:
        raise ImatrixError(f"{p}: holds no importance data (no <tensor>.in_sum2 / .counts pairs)")
    return Imatrix(
        entries=entries,
        datasets=list(datasets),
        chunk_count=int(cast(int, chunk_count)),  # checked above
        chunk_size=int(cast(int, chunk_size)),  # checked above
        source=p,
    )


def _read_legacy(p: Path) -> Imatrix:
    """llama-imatrix's `.dat`: int32 count, then per entry name, ncall, nval and nval float32 means x ncall;
    an optional trailer with the chunk count and the dataset name."""
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImatrixError(f"{p}: cannot read the importance matrix: {exc.strerror or exc}") from None
    pos = 0

    def take(fmt: str, what: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ImatrixError(f"{p}: truncated legacy imatrix (while reading {what} at byte {pos})")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    (n_entries,) = take("<i", "the entry count")
    if n_entries <= 0 or n_entries > len(data) // 12:
        raise ImatrixError(f"{p}: not an importance matrix (GGUF or legacy .dat): entry count {n_entries}")
    entries: dict[str, ImatrixEntry] = {}
    legacy_weights: dict[str, np.ndarray] = {}
    for i in range(n_entries):
        (length,) = take("<i", f"entry {i}'s name length")
        if length <= 0 or pos + length > len(data):
            raise ImatrixError(f"{p}: entry {i} has a bad name length {length}")
        try:
            name = data[pos : pos + length].decode("utf-8")
        except UnicodeDecodeError:
            raise ImatrixError(f"{p}: entry {i}'s name is not UTF-8") from None
        pos += length
        ncall, nval = take("<ii", f"{name}'s sizes")
        if nval <= 0 or pos + 4 * nval > len(data):
            raise ImatrixError(f"{p}: tensor {name} has a bad value count {nval}")
        v = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        if not np.all(np.isfinite(v)):
            raise ImatrixError(f"{p}: tensor {name} holds non-finite values")
        # llama-quantize: w = v / ncall (v when ncall <= 0); one row, since the legacy format keeps no n_mat
        w = v / np.float32(ncall) if ncall > 0 else v.copy()
        legacy_weights[name] = w.reshape(1, nval)
        entries[name] = ImatrixEntry(v.reshape(1, nval).copy(), np.array([max(ncall, 0)], dtype=np.float64))
    chunk_count, dataset = 0, []
    if pos + 4 <= len(data):  # the trailer
        (chunk_count,) = take("<i", "the chunk count")
        if pos + 4 <= len(data):
            (length,) = take("<i", "the dataset name length")
            if 0 <= length <= len(data) - pos:
                dataset = [data[pos : pos + length].decode("utf-8", "replace")]
    imatrix = Imatrix(
        entries=entries, datasets=dataset, chunk_count=max(chunk_count, 0), source=p, legacy=True
    )
    imatrix._legacy_weights = legacy_weights
    return imatrix


# -- writing --------------------------------------------------------------------------------------


def write_imatrix(
    path: str | os.PathLike[str],
    entries: Mapping[str, ImatrixEntry],
    *,
    datasets: Iterable[str],
    chunk_count: int,
    chunk_size: int,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write the GGUF imatrix as llama-imatrix does: general.type, the three imatrix.* keys, then per entry
    in name order `<name>.in_sum2` (ne [n_cols, n_mat]) and `<name>.counts` (ne [1, n_mat]), F32.

    The file goes through `quant.outputs.claim_output` (temporary, fsync, rename; nothing left on error).
    """
    import gguf

    from quant.convert.gguf_internals import kv_table
    from quant.outputs import claim_output

    datasets = list(datasets)
    if not datasets:  # gguf-py cannot write an empty array, and llama-quantize refuses a file without the key
        raise ImatrixError(
            f"{path}: an importance matrix records the text it was computed from; no dataset given"
        )
    for name, e in entries.items():
        if e.in_sum2.ndim != 2 or e.counts.shape != (e.in_sum2.shape[0],):
            raise ImatrixError(
                f"imatrix entry {name}: in_sum2 {e.in_sum2.shape} and counts {e.counts.shape} disagree"
            )
    with claim_output(path, force=force, inputs=inputs) as claim:
        claim.create_file().close()  # the temporary exists (and is ours); gguf-py writes it by path
        assert claim.temp is not None
        writer = gguf.GGUFWriter(claim.temp, arch="")
        kv_table(writer).pop(gguf.Keys.General.ARCHITECTURE, None)  # llama-imatrix writes none
        writer.add_type("imatrix")
        writer.add_array(DATASETS, datasets)
        writer.add_uint32(CHUNK_COUNT, chunk_count)
        writer.add_uint32(CHUNK_SIZE, chunk_size)
        for name in sorted(entries):
            e = entries[name]
            writer.add_tensor(name + SUM_SUFFIX, np.ascontiguousarray(e.in_sum2, dtype=np.float32))
            counts = np.asarray(e.counts, dtype=np.float32).reshape(-1, 1)
            writer.add_tensor(name + COUNT_SUFFIX, counts)
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
        return claim.commit()


def ncall_of(entry: ImatrixEntry, chunk_size: int) -> int:
    """The legacy format's ncall for an entry: ceil(max count / chunk_size)."""
    top = float(np.max(entry.counts)) if entry.counts.size else 0.0
    return math.ceil(top / chunk_size) if chunk_size > 0 else int(top)
