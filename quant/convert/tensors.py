"""Which tensors a GGUF holds, in convert_hf_to_gguf's order, and how to produce their rows.

Nothing here reads weights: an `OutTensor` describes where its data lives (one source tensor, or one per
expert for Mixtral's stacked `ffn_*_exps`), the Q/K row permutation, and the shape; `rows()` produces float32
row blocks on demand so the writer can stream any tensor in bounded memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gguf
import numpy as np

from quant.convert.archs.base import is_multimodal_tensor
from quant.convert.checkpoint import HParams, SourceTensor
from quant.convert.fp8 import dequantize_rows
from quant.errors import ConversionError
from quant.kernels.bits import first_row_with_all_ones
from quant.kernels.fused import F32_EXP_MASK, bf16_rows_to_f32_bits

if TYPE_CHECKING:
    from quant.convert.lora_merge import LoraDelta


@dataclass
class OutTensor:
    """One tensor of the output GGUF (numpy-order shape; GGUF ne is its reverse)."""

    name: str
    shape: tuple[int, ...]
    parts: tuple[SourceTensor, ...] = ()  # one per stacked expert, else one
    permute_heads: int = 0  # >0: Q/K rotate-half -> adjacent-pair row permutation with this many heads
    data: np.ndarray | None = None  # generated tensors (rope_freqs)
    keep_f32: bool = False  # the converter always writes it as F32 (1-D, norms, router, biases)
    type: str = "F32"  # ggml type name, set by the mixture
    # rows are source columns [first, first + count) of each [A, B] matrix of the one part (FusedSlice)
    columns: tuple[int, int] | None = None
    deltas: tuple[LoraDelta, ...] = ()  # LoRA adapters merged into this tensor while converting

    def merged_rows(
        self,
        start: int,
        stop: int,
        arrays: list[np.ndarray],
        scales: list[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, int]:
        """`rows` with every merged adapter's delta added (float32, before any quantisation)."""
        x, bad = self.rows(start, stop, arrays, scales)
        for d in self.deltas:
            if not x.flags.writeable or (self.data is not None and np.shares_memory(x, self.data)):
                x = x.copy()
            d.add(x, start, stop, self.n_rows)
        return x, bad

    @property
    def n_rows(self) -> int:
        return math.prod(self.shape[:-1]) if len(self.shape) > 1 else 1

    @property
    def n_cols(self) -> int:
        return self.shape[-1]

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    def row_map(self) -> np.ndarray | None:
        """Source row for each output row of one part (None when rows are not moved)."""
        if not self.permute_heads:
            return None
        rows = self.shape[-2] if len(self.shape) > 1 else self.shape[0]
        h = self.permute_heads
        d = rows // h
        # out_row[h*d + 2i + j] = in_row[h*d + j*(d/2) + i]
        idx = np.arange(rows).reshape(h, 2, d // 2).swapaxes(1, 2).reshape(rows)
        return idx

    def rows(
        self,
        start: int,
        stop: int,
        arrays: list[np.ndarray],
        scales: list[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Float32 rows [start, stop) and the index (within them) of the first row holding NaN/inf, or -1.

        `arrays` are the memory-mapped views of `parts`, `scales` those of their FP8 scales (None for a part
        without); BF16 is widened and checked in one parallel pass, FP8 dequantised in one.
        """
        if self.data is not None:
            x = np.ascontiguousarray(
                self.data.reshape(self.n_rows, self.n_cols)[start:stop], dtype=np.float32
            )
            return x, first_row_with_all_ones(x.view(np.uint32), F32_EXP_MASK)
        if self.columns is not None:
            return self._column_rows(start, stop, arrays[0])
        rmap = self.row_map()
        scales = scales or [None] * len(arrays)
        if len(self.shape) == 1:  # 1-D (norms, biases): one row; a q/k bias is permuted along it
            if scales[0] is not None:
                x = np.empty((1, self.n_cols), dtype=np.float32)
                dequantize_rows(self.parts[0], arrays[0].reshape(1, -1), scales[0], np.zeros(1, np.int64), x)
                x = np.ascontiguousarray(x[:, rmap]) if rmap is not None else x
            else:
                vec = arrays[0][rmap] if rmap is not None else arrays[0]
                x = _to_f32(vec.reshape(1, -1))
            return x, first_row_with_all_ones(x.view(np.uint32), F32_EXP_MASK)
        per_part = self.n_rows // len(arrays)
        out = np.empty((stop - start, self.n_cols), dtype=np.float32)
        bits = out.view(np.uint32)
        first_bad = -1
        pos = start
        while pos < stop:
            p, r0 = divmod(pos, per_part)
            r1 = min(per_part, r0 + (stop - pos))
            src = arrays[p].reshape(per_part, self.n_cols)
            o0 = pos - start
            scale = scales[p]
            if scale is not None:
                idx = rmap[r0:r1] if rmap is not None else np.arange(r0, r1)
                bad = dequantize_rows(self.parts[p], src, scale, idx, out[o0 : o0 + (r1 - r0)])
            elif src.dtype == np.uint16:
                idx = rmap[r0:r1] if rmap is not None else np.arange(r0, r1)
                bad = bf16_rows_to_f32_bits(src, idx, bits[o0 : o0 + (r1 - r0)])
            else:
                dst = out[o0 : o0 + (r1 - r0)]
                dst[...] = src[rmap[r0:r1]] if rmap is not None else src[r0:r1]
                bad = first_row_with_all_ones(bits[o0 : o0 + (r1 - r0)], F32_EXP_MASK)
            if bad >= 0 and first_bad < 0:
                first_bad = o0 + bad
            pos += r1 - r0
        return out, first_bad

    def column_matrix(self, row: int) -> int:
        """For a `columns` tensor: which [A, B] matrix of the source output row `row` comes from."""
        assert self.columns is not None
        return row // self.columns[1]

    def _column_rows(self, start: int, stop: int, src: np.ndarray) -> tuple[np.ndarray, int]:
        """Rows [start, stop) of a `columns` tensor: per matrix, a strided column block, transposed."""
        first, count = self.columns  # type: ignore[misc]
        a, b = src.shape[-2], src.shape[-1]
        mats = src.reshape(-1, a, b)
        out = np.empty((stop - start, self.n_cols), dtype=np.float32)
        pos = start
        while pos < stop:
            m, r0 = divmod(pos, count)
            r1 = min(count, r0 + (stop - pos))
            out[pos - start : pos - start + (r1 - r0)] = _to_f32(mats[m, :, first + r0 : first + r1].T)
            pos += r1 - r0
        return out, first_row_with_all_ones(out.view(np.uint32), F32_EXP_MASK)


def _to_f32(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.uint16:  # bf16 bits -> f32, exact
        return (block.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(block, dtype=np.float32)


def _layer_of(name: str) -> int | None:
    for part in name.split("."):
        if part.isdecimal():
            return int(part)
    return None


def shape_mismatch(
    expected: dict[str, tuple[tuple[int, ...], str]], gguf_name: str, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], str] | None:
    """(the shape the config implies, the config keys it comes from) when `gguf_name`'s `shape` differs from it;
    `expected` is keyed by the name without its `blk.N.` prefix (the family's `expected_shapes`)."""
    base = gguf_name.split(".", 2)[2] if gguf_name.startswith("blk.") else gguf_name
    if base in expected and shape != expected[base][0]:
        return expected[base]
    return None


def map_tensors(hp: HParams, sources: list[SourceTensor]) -> list[OutTensor]:
    """The output tensors in the converter's order; validates names, shapes and completeness.

    What each architecture contributes (renames, skipped and generated tensors, stacked experts, expected
    shapes, required tensors) comes from its family in `quant.convert.archs`.
    """
    family = hp.family
    tmap = gguf.get_tensor_name_map(family.gguf_arch(hp), hp.n_layer)
    expected = family.expected_shapes(hp)
    out: list[OutTensor] = list(family.extra_tensors(hp))
    stack = family.expert_stack
    experts: dict[int, dict[tuple[str, int], SourceTensor]] = {}

    def add(
        hf_name: str,
        parts: tuple[SourceTensor, ...],
        shape: tuple[int, ...],
        bid: int | None,
        columns: tuple[int, int] | None = None,
    ) -> None:
        gguf_name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConversionError(
                f"{parts[0].shard}: cannot map tensor {parts[0].name!r} to a GGUF tensor name"
            )
        want_keys = shape_mismatch(expected, gguf_name, shape)
        if want_keys is not None:
            want, keys = want_keys
            raise ConversionError(
                f"{parts[0].shard}: tensor {parts[0].name!r} has shape {list(shape)} but {family.config_file} "
                f"({keys}) implies {list(want)}"
            )
        if bid is not None and bid >= hp.n_layer:
            raise ConversionError(
                f"{parts[0].shard}: tensor {parts[0].name!r} is in layer {bid} but num_hidden_layers is {hp.n_layer}"
            )
        permute = family.permute_heads(hf_name, hp)
        keep = family.keep_f32(gguf_name, shape)
        out.append(OutTensor(gguf_name, shape, parts, permute, keep_f32=keep, columns=columns))

    skipped: list[SourceTensor] = []
    for t in sources:
        name = family.source_name(t.name)
        if name is None:
            skipped.append(t)
            continue
        bid = _layer_of(name)
        slices = family.fused_slices(name, t, hp)
        if slices is not None:
            for sl in slices:
                add(sl.hf_name, (t,), sl.shape, bid, sl.columns)
            continue
        if stack is not None and stack.marker in name:
            where = stack.locate(name)
            if where is None:
                raise ConversionError(f"{t.shard}: cannot map tensor {t.name!r} to a GGUF tensor name")
            bid, xid, wid = where
            if not stack.holds(xid, wid, hp.n_expert):
                raise ConversionError(
                    f"{t.shard}: unexpected expert tensor {t.name!r} ({stack.count_key} is {hp.n_expert})"
                )
            layer = experts.setdefault(bid, {})
            layer[(wid, xid)] = t
            if len(layer) == len(stack.weights) * hp.n_expert:
                for wid in stack.weights:
                    parts = tuple(layer[(wid, x)] for x in range(hp.n_expert))
                    shapes = {p.shape for p in parts}
                    if len(shapes) != 1:
                        raise ConversionError(
                            f"{parts[0].shard}: experts of layer {bid} {wid} differ in shape"
                        )
                    add(stack.merged.format(bid=bid, wid=wid), parts, (hp.n_expert, *parts[0].shape), bid)
                del experts[bid]
            continue
        add(name, (t,), t.shape, bid)
    if experts:
        assert stack is not None
        bid, layer = next(iter(experts.items()))
        have = {f"experts.{x}.{w}" for (w, x) in layer}
        missing = next(
            f"model.layers.{bid}.{stack.marker}.{x}.{w}.weight"
            for x in range(hp.n_expert)
            for w in stack.weights
            if f"experts.{x}.{w}" not in have
        )
        raise ConversionError(f"checkpoint is missing tensor {missing!r}")
    if len(out) == len(family.extra_tensors(hp)) and any(is_multimodal_tensor(t.name) for t in skipped):
        shard = skipped[0].shard
        raise ConversionError(
            f"{shard}: holds only vision-tower tensors (e.g. {skipped[0].name!r}) and no text model; "
            "a vision-only checkpoint has nothing to convert to a text GGUF"
        )
    names = {t.name for t in out}
    for gguf_name, hf_name in family.required_tensors(hp).items():
        if gguf_name not in names:
            raise ConversionError(f"checkpoint is missing tensor {hf_name!r}")
    return out
