"""Merging LoRA adapters while converting: W + scale·(B·A), added to each row chunk in float32.

The writer streams every tensor in row chunks; a merged tensor's chunk gets the matching rows of each
adapter's delta (`LoraDelta.add`) before it is quantised, so no merged checkpoint exists anywhere and memory
stays one chunk plus one tensor's (small) A and B. Rows follow the output tensor: B's rows carry the base's
Q/K permutation, Mixtral's stacked experts take rows expert by expert, token_embd's delta is (B·A)ᵀ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quant.convert.checkpoint import HParams
from quant.convert.lora import LoraPair, read_adapter
from quant.convert.tensors import OutTensor
from quant.errors import ConversionError


@dataclass
class LoraDelta:
    """One adapter's delta for one output tensor; its factors are read on first use and dropped after the
    tensor's last row."""

    pair: LoraPair
    scale: float  # the user's scale times PEFT's scaling
    _left: np.ndarray | None = field(default=None, repr=False)  # [rows, r] or [experts, rows, r], scaled
    _right: np.ndarray | None = field(default=None, repr=False)  # [r, cols] or [experts, r, cols]
    _tmp: np.ndarray | None = field(default=None, repr=False)

    def _load(self) -> None:
        maps: dict[Path, np.ndarray] = {}

        def view(path: Path) -> np.ndarray:
            return maps.setdefault(path, np.memmap(path, dtype=np.uint8, mode="r"))

        a, b = self.pair.matrices(view)
        if self.pair.embedding:  # token_embd [vocab, embd] += s * (B @ A)^T = s * A^T @ B^T
            left, right = a.T, b.T
        else:
            left, right = b, a
        self._left = np.ascontiguousarray(left * np.float32(self.scale), dtype=np.float32)
        self._right = np.ascontiguousarray(right, dtype=np.float32)

    def add(self, x: np.ndarray, start: int, stop: int, n_rows: int) -> None:
        """x (float32 rows [start, stop) of the tensor, n_rows in all) += the delta's rows, in place."""
        if self._left is None:
            self._load()
        left, right = self._left, self._right
        assert left is not None and right is not None
        if self._tmp is None or self._tmp.shape[0] < x.shape[0]:
            self._tmp = np.empty((x.shape[0], x.shape[1]), dtype=np.float32)
        if left.ndim == 2:
            tmp = self._tmp[: stop - start]
            np.matmul(left[start:stop], right, out=tmp)
            x += tmp
        else:
            per = left.shape[1]
            pos = start
            while pos < stop:
                e, r0 = divmod(pos, per)
                r1 = min(per, r0 + (stop - pos))
                tmp = self._tmp[: r1 - r0]
                np.matmul(left[e, r0:r1], right[e], out=tmp)
                x[pos - start : pos - start + (r1 - r0)] += tmp
                pos += r1 - r0
        if stop >= n_rows:
            self._left = self._right = self._tmp = None


def attach_loras(hp: HParams, tensors: list[OutTensor], loras: list[tuple[Path, float]]) -> list[Path]:
    """Read each (adapter folder, scale) against `hp` and attach its deltas to the output tensors; returns
    the adapter files read (inputs the output must not replace)."""
    by_name = {t.name: t for t in tensors}
    files: list[Path] = []
    for path, scale in loras:
        adapter = read_adapter(path, hp)
        files += adapter.files
        if adapter.norms:
            name, src = adapter.norms[0]
            raise ConversionError(
                f"{src.shard}: tensor {src.name!r} is a full norm weight (mergekit); only LoRA pairs can be merged"
            )
        for pair in adapter.pairs:
            t = by_name.get(pair.gguf_name)
            if t is None or t.columns is not None:
                raise ConversionError(
                    f"{pair.a[0].shard}: tensor {pair.a[0].name!r} adapts {pair.gguf_name}, which this base "
                    "checkpoint does not hold as a plain weight"
                )
            if pair.embedding and hp.tied:
                raise ConversionError(
                    f"{pair.a[0].shard}: tensor {pair.a[0].name!r} adapts the token embeddings, which this base "
                    "ties to the output head; merging would change both (load the adapter at run time instead)"
                )
            a, b = pair.a[0].shape, pair.b[0].shape
            shape: tuple[int, ...] = (a[1], b[0]) if pair.embedding else (b[0], a[1])
            shape = (len(pair.a), *shape) if len(pair.a) > 1 else shape
            if shape != t.shape:
                raise ConversionError(
                    f"{pair.b[0].shard}: tensor {pair.b[0].name!r} gives {t.name} shape {list(shape)} but the base "
                    f"checkpoint's is {list(t.shape)}: an adapter for another base?"
                )
            # pair.matrices() folds pair.alpha / adapter.alpha into B, so alpha / rank completes PEFT's scaling
            t.deltas = (*t.deltas, LoraDelta(pair, scale * adapter.alpha / pair.rank))
    return files


__all__ = ["LoraDelta", "attach_loras"]
