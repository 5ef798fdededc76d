"""Which tensors a Llama/Mistral/Mixtral GGUF holds, in convert_hf_to_gguf's order, and how to produce their rows.

Nothing here reads weights: an `OutTensor` describes where its data lives (one source tensor, or one per
expert for Mixtral's stacked `ffn_*_exps`), the Q/K row permutation, and the shape; `rows()` produces float32
row blocks on demand so the writer can stream any tensor in bounded memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gguf
import numpy as np

from quant.convert.checkpoint import HParams, SourceTensor
from quant.convert.rowkernels import F32_EXP_MASK, bf16_rows_to_f32_bits
from quant.errors import ConversionError
from quant.kernels.bits import first_row_with_all_ones

_DROPPED_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")
_EXPERT_WEIGHTS = ("w1", "w2", "w3")


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

    def rows(self, start: int, stop: int, arrays: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """Float32 rows [start, stop) and the index (within them) of the first row holding NaN/inf, or -1.

        `arrays` are the memory-mapped views of `parts`; BF16 is widened and checked in one parallel pass.
        """
        if self.data is not None:
            x = np.ascontiguousarray(
                self.data.reshape(self.n_rows, self.n_cols)[start:stop], dtype=np.float32
            )
            return x, first_row_with_all_ones(x.view(np.uint32), F32_EXP_MASK)
        rmap = self.row_map()
        if len(self.shape) == 1:  # 1-D (norms, biases): one row; a q/k bias is permuted along it
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
            if src.dtype == np.uint16:
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


def _to_f32(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.uint16:  # bf16 bits -> f32, exact
        return (block.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(block, dtype=np.float32)


def llama3_rope_factors(hp: HParams) -> np.ndarray:
    """`rope_freqs.weight` for llama3 rope scaling, computed in float32 like the converter (torch f32)."""
    assert hp.rope_scaling is not None
    p = hp.rope_scaling.params
    dim = hp.head_dim
    base = np.float32(p.get("rope_theta", hp.rope_theta))
    freqs = np.float32(1.0) / (base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    factor = float(hp.rope_scaling.factor)
    low = float(p.get("low_freq_factor", 1.0))
    high = float(p.get("high_freq_factor", 4.0))
    old_ctx = float(p.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for freq in freqs:
        wavelen = np.float32(2 * math.pi) / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (np.float32(old_ctx) / wavelen - np.float32(low)) / np.float32(high - low)
            out.append(np.float32(1) / ((np.float32(1) - smooth) / np.float32(factor) + smooth))
    return np.array(out, dtype=np.float32)


def _expected_shapes(hp: HParams) -> dict[str, tuple[tuple[int, ...], str]]:
    """GGUF base name (no blk prefix) -> (expected numpy shape, the config keys that determine it)."""
    q, kv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    return {
        "token_embd.weight": ((hp.n_vocab, hp.n_embd), "vocab_size, hidden_size"),
        "output.weight": ((hp.n_vocab, hp.n_embd), "vocab_size, hidden_size"),
        "output_norm.weight": ((hp.n_embd,), "hidden_size"),
        "attn_norm.weight": ((hp.n_embd,), "hidden_size"),
        "ffn_norm.weight": ((hp.n_embd,), "hidden_size"),
        "attn_q.weight": ((q, hp.n_embd), "num_attention_heads x head_dim, hidden_size"),
        "attn_k.weight": ((kv, hp.n_embd), "num_key_value_heads x head_dim, hidden_size"),
        "attn_v.weight": ((kv, hp.n_embd), "num_key_value_heads x head_dim, hidden_size"),
        "attn_output.weight": ((hp.n_embd, q), "hidden_size, num_attention_heads x head_dim"),
        "attn_q.bias": ((q,), "num_attention_heads x head_dim"),
        "attn_k.bias": ((kv,), "num_key_value_heads x head_dim"),
        "attn_v.bias": ((kv,), "num_key_value_heads x head_dim"),
        "attn_output.bias": ((hp.n_embd,), "hidden_size"),
        "ffn_gate.weight": ((hp.n_ff, hp.n_embd), "intermediate_size, hidden_size"),
        "ffn_up.weight": ((hp.n_ff, hp.n_embd), "intermediate_size, hidden_size"),
        "ffn_down.weight": ((hp.n_embd, hp.n_ff), "hidden_size, intermediate_size"),
        "ffn_gate_inp.weight": ((hp.n_expert, hp.n_embd), "num_local_experts, hidden_size"),
        "ffn_gate_exps.weight": (
            (hp.n_expert, hp.n_ff, hp.n_embd),
            "num_local_experts, intermediate_size, hidden_size",
        ),
        "ffn_up_exps.weight": (
            (hp.n_expert, hp.n_ff, hp.n_embd),
            "num_local_experts, intermediate_size, hidden_size",
        ),
        "ffn_down_exps.weight": (
            (hp.n_expert, hp.n_embd, hp.n_ff),
            "num_local_experts, hidden_size, intermediate_size",
        ),
    }


def _layer_of(name: str) -> int | None:
    for part in name.split("."):
        if part.isdecimal():
            return int(part)
    return None


def plan_tensors(hp: HParams, sources: list[SourceTensor]) -> list[OutTensor]:
    """The output tensors in the converter's order; validates names, shapes and completeness."""
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp.n_layer)
    expected = _expected_shapes(hp)
    out: list[OutTensor] = []
    if hp.rope_scaling is not None and hp.rope_scaling.type == "llama3":
        factors = llama3_rope_factors(hp)
        out.append(OutTensor("rope_freqs.weight", factors.shape, data=factors, keep_f32=True))
    experts: dict[int, dict[tuple[str, int], SourceTensor]] = {}

    def add(hf_name: str, parts: tuple[SourceTensor, ...], shape: tuple[int, ...], bid: int | None) -> None:
        gguf_name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConversionError(
                f"{parts[0].shard}: cannot map tensor {parts[0].name!r} to a GGUF tensor name"
            )
        base = gguf_name.split(".", 2)[2] if gguf_name.startswith("blk.") else gguf_name
        if base in expected and shape != expected[base][0]:
            want, keys = expected[base]
            raise ConversionError(
                f"{parts[0].shard}: tensor {parts[0].name!r} has shape {list(shape)} but config.json "
                f"({keys}) implies {list(want)}"
            )
        if bid is not None and bid >= hp.n_layer:
            raise ConversionError(
                f"{parts[0].shard}: tensor {parts[0].name!r} is in layer {bid} but num_hidden_layers is {hp.n_layer}"
            )
        permute = 0
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            permute = hp.n_head
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            permute = hp.n_head_kv
        keep_f32 = (
            len(shape) <= 1
            or gguf_name.endswith("_norm.weight")
            or not gguf_name.endswith(".weight")
            or "ffn_gate_inp" in gguf_name
        )
        out.append(OutTensor(gguf_name, shape, parts, permute, keep_f32=keep_f32))

    for t in sources:
        name = t.name.replace("text_model.", "")
        if name.endswith(_DROPPED_SUFFIXES):
            continue
        bid = _layer_of(name)
        if "block_sparse_moe.experts" in name:
            pieces = name.split(".")
            try:
                i = pieces.index("experts")
                xid, wid = int(pieces[i + 1]), pieces[i + 2]
            except (ValueError, IndexError):
                raise ConversionError(
                    f"{t.shard}: cannot map tensor {t.name!r} to a GGUF tensor name"
                ) from None
            if not hp.n_expert or bid is None or xid >= hp.n_expert or wid not in _EXPERT_WEIGHTS:
                raise ConversionError(
                    f"{t.shard}: unexpected expert tensor {t.name!r} (num_local_experts is {hp.n_expert})"
                )
            layer = experts.setdefault(bid, {})
            layer[(wid, xid)] = t
            if len(layer) == 3 * hp.n_expert:
                for wid in _EXPERT_WEIGHTS:
                    parts = tuple(layer[(wid, x)] for x in range(hp.n_expert))
                    shapes = {p.shape for p in parts}
                    if len(shapes) != 1:
                        raise ConversionError(
                            f"{parts[0].shard}: experts of layer {bid} {wid} differ in shape"
                        )
                    add(
                        f"layers.{bid}.feed_forward.experts.{wid}.weight",
                        parts,
                        (hp.n_expert, *parts[0].shape),
                        bid,
                    )
                del experts[bid]
            continue
        add(name, (t,), t.shape, bid)
    if experts:
        bid, layer = next(iter(experts.items()))
        have = {f"experts.{x}.{w}" for (w, x) in layer}
        missing = next(
            f"model.layers.{bid}.block_sparse_moe.experts.{x}.{w}.weight"
            for x in range(hp.n_expert)
            for w in _EXPERT_WEIGHTS
            if f"experts.{x}.{w}" not in have
        )
        raise ConversionError(f"checkpoint is missing tensor {missing!r}")
    _check_complete(hp, out)
    return out


def _check_complete(hp: HParams, tensors: list[OutTensor]) -> None:
    names = {t.name for t in tensors}
    needed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    per_layer = {
        "attn_norm.weight": "input_layernorm.weight",
        "ffn_norm.weight": "post_attention_layernorm.weight",
        "attn_q.weight": "self_attn.q_proj.weight",
        "attn_k.weight": "self_attn.k_proj.weight",
        "attn_v.weight": "self_attn.v_proj.weight",
        "attn_output.weight": "self_attn.o_proj.weight",
    }
    if hp.n_expert:
        per_layer |= {
            "ffn_gate_inp.weight": "block_sparse_moe.gate.weight",
            "ffn_gate_exps.weight": "block_sparse_moe.experts.*.w1.weight",
            "ffn_down_exps.weight": "block_sparse_moe.experts.*.w2.weight",
            "ffn_up_exps.weight": "block_sparse_moe.experts.*.w3.weight",
        }
    else:
        per_layer |= {
            "ffn_gate.weight": "mlp.gate_proj.weight",
            "ffn_up.weight": "mlp.up_proj.weight",
            "ffn_down.weight": "mlp.down_proj.weight",
        }
    for i in range(hp.n_layer):
        needed |= {f"blk.{i}.{g}": f"model.layers.{i}.{h}" for g, h in per_layer.items()}
    for gguf_name, hf_name in needed.items():
        if gguf_name not in names:
            raise ConversionError(f"checkpoint is missing tensor {hf_name!r}")
