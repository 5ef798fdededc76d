"""llama.cpp's `llama4` architecture: Llama 4 Scout and Maverick (`conversion/llama.py`, `Llama4Model`).

What differs from `llama`:

- Config: the text model may sit in `text_config` (Llama4ForConditionalGeneration; its vision tower and
  projector are left out of the text GGUF). transformers' `intermediate_size` is the experts' (and the shared
  expert's) width and `intermediate_size_mlp` the dense layers'; the converter swaps them, so
  `feed_forward_length` is the dense width and `expert_feed_forward_length` the expert width.
- MoE on every `interleave_moe_layer_step`-th layer (Scout: all, Maverick: every second): a router
  (`ffn_gate_inp`, kept F32), the routed experts and one shared expert (`ffn_*_shexp`); dense SwiGLU elsewhere.
- The experts are fused in the checkpoint: `experts.gate_up_proj` [experts, hidden, 2 x ffn] and
  `experts.down_proj` [experts, ffn, hidden], without `.weight`. The GGUF stacks them as llama.cpp does:
  `ffn_gate_exps` / `ffn_up_exps` are the two column halves of gate_up_proj transposed to [experts, ffn,
  hidden], `ffn_down_exps` is down_proj transposed to [experts, hidden, ffn].
- RoPE works on adjacent pairs already (Meta's complex form): no Q/K row permutation.
- llama.cpp hard-codes the rest for this architecture (`src/models/llama4.cpp`): every 4th layer NoPE with
  attention temperature tuning, 8192-token attention chunks on the others, QK norm unless there are 128 experts.
  The converter writes only `sliding_window = 0` when transformers' `layer_types` are all full attention.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf

from quant.convert.archs.base import Architecture, FusedSlice, register
from quant.convert.archs.llama import ATTENTION_TENSORS, Llama, dense_shapes
from quant.errors import ConversionError

if TYPE_CHECKING:
    from quant.convert.checkpoint import HParams, SourceTensor
    from quant.convert.tensors import OutTensor

# transformers' Llama4TextConfig defaults (what AutoConfig fills in for keys config.json omits)
_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 202048,
    "hidden_size": 5120,
    "intermediate_size": 8192,
    "intermediate_size_mlp": 16384,
    "num_hidden_layers": 48,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 4096 * 32,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "num_experts_per_tok": 1,
    "num_local_experts": 16,
    "interleave_moe_layer_step": 1,
    "use_qk_norm": True,
    "no_rope_layer_interval": 4,
    "attention_chunk_size": 8192,
    "rope_theta": 500000.0,
}


# fixed in llama.cpp for this architecture (src/models/llama4.cpp)
CHUNK = 8192
SWA_PATTERN = 4  # three chunked layers, then one full


def layer_types(cfg: Mapping[str, Any]) -> list[str]:
    """transformers' `layer_types`: chunked attention on RoPE layers when there is a chunk size, else full."""
    if isinstance(cfg.get("layer_types"), list):
        return list(cfg["layer_types"])
    n, interval = cfg["num_hidden_layers"], cfg.get("no_rope_layer_interval") or 4
    no_rope = cfg.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(n)]
    chunk = cfg.get("attention_chunk_size")
    return ["chunked_attention" if rope and chunk is not None else "full_attention" for rope in no_rope]


def is_moe_layer(hp: HParams, i: int) -> bool:
    """llama.cpp's rule (`load_arch_tensors`): every interleave_moe_layer_step-th layer is MoE."""
    return (i + 1) % hp.extras["moe_step"] == 0


@register
class Llama4(Architecture):
    """Llama4ForCausalLM and the text model of Llama4ForConditionalGeneration -> `llama4`."""

    name = "llama4"
    hf_architectures = ("Llama4ForCausalLM", "Llama4ForConditionalGeneration")
    moe_architectures = frozenset(hf_architectures)
    permute_qk = False

    def config_defaults(self, hf_arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(_TEXT_DEFAULTS)

    def adjust_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """Llama4Model.__init__: the dense width becomes `intermediate_size`, the expert width moves aside."""
        return {
            **cfg,
            "intermediate_size_moe": cfg["intermediate_size"],
            "intermediate_size": cfg["intermediate_size_mlp"],
        }

    def parse_extras(self, path: Path, cfg: Mapping[str, Any], rope: Mapping[str, Any]) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        for key, name in (("interleave_moe_layer_step", "moe_step"), ("intermediate_size_moe", "n_ff_exp")):
            value = cfg.get(key)
            shown = "intermediate_size" if key == "intermediate_size_moe" else key
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConversionError(f"{path}: key {shown!r} must be a positive integer, got {value!r}")
            extras[name] = value
        types = layer_types(cfg)
        if len(types) != cfg["num_hidden_layers"]:
            raise ConversionError(
                f"{path}: key 'layer_types' has {len(types)} entries but num_hidden_layers is {cfg['num_hidden_layers']}"
            )
        extras["all_full_attention"] = all(t == "full_attention" for t in types)
        extras["hf_prefix"] = "language_model." if "text_config" in cfg else ""
        return extras

    def add_family_kvs(self, w: gguf.GGUFWriter, hp: HParams) -> None:
        """LlamaModel's vocab size and rope dimensions, then Llama4Model's keys."""
        w.add_vocab_size(hp.n_vocab)
        w.add_rope_dimension_count(hp.head_dim)
        w.add_interleave_moe_layer_step(hp.extras["moe_step"])
        w.add_expert_feed_forward_length(hp.extras["n_ff_exp"])
        if hp.extras["all_full_attention"]:
            w.add_sliding_window(0)

    def attention_windows(self, n_layer: int, kv: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
        """llama.cpp (`llama_model_llama4::load_arch_hparams`): unless sliding_window is 0, 8192-token chunks
        on three layers of every four (the fourth, NoPE, attends to everything)."""
        if kv.get(f"{self.name}.attention.sliding_window") == 0:
            return 0, ()
        return CHUNK, tuple(i for i in range(n_layer) if i % SWA_PATTERN < SWA_PATTERN - 1)

    def extra_tensors(self, hp: HParams) -> list[OutTensor]:
        return Llama().extra_tensors(hp)  # llama3 rope_freqs, as LlamaModel.generate_extra_tensors

    def fused_slices(self, name: str, t: SourceTensor, hp: HParams) -> list[FusedSlice] | None:
        if not name.endswith((".experts.gate_up_proj", ".experts.down_proj")):
            return None
        n_exp, n_embd, n_ff = hp.n_expert, hp.n_embd, hp.extras["n_ff_exp"]
        gate_up = name.endswith("gate_up_proj")
        want = (n_exp, n_embd, 2 * n_ff) if gate_up else (n_exp, n_ff, n_embd)
        if t.shape != want:
            keys = "hidden_size, 2 x intermediate_size" if gate_up else "intermediate_size, hidden_size"
            raise ConversionError(
                f"{t.shard}: tensor {t.name!r} has shape {list(t.shape)} but config.json "
                f"(num_local_experts, {keys}) implies {list(want)}"
            )
        if t.scale is not None:
            raise ConversionError(
                f"{t.shard}: tensor {t.name!r}: FP8 weights in Llama 4's fused expert layout are not supported"
            )
        base = name.rsplit(".", 1)[0]  # ...feed_forward.experts
        if gate_up:
            return [
                FusedSlice(f"{base}.gate_proj.weight", (n_exp, n_ff, n_embd), (0, n_ff)),
                FusedSlice(f"{base}.up_proj.weight", (n_exp, n_ff, n_embd), (n_ff, n_ff)),
            ]
        return [FusedSlice(f"{base}.down_proj.weight", (n_exp, n_embd, n_ff), (0, n_embd))]

    def expected_shapes(self, hp: HParams) -> dict[str, tuple[tuple[int, ...], str]]:
        e, h, f = hp.n_expert, hp.n_embd, hp.extras["n_ff_exp"]
        shapes = dense_shapes(hp)
        for gguf_name in ("ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"):
            shape, keys = shapes[gguf_name]
            shapes[gguf_name] = (shape, keys.replace("intermediate_size", "intermediate_size_mlp"))
        return shapes | {
            "ffn_gate_inp.weight": ((e, h), "num_local_experts, hidden_size"),
            "ffn_gate_shexp.weight": ((f, h), "intermediate_size, hidden_size"),
            "ffn_up_shexp.weight": ((f, h), "intermediate_size, hidden_size"),
            "ffn_down_shexp.weight": ((h, f), "hidden_size, intermediate_size"),
        }

    def required_tensors(self, hp: HParams) -> dict[str, str]:
        p = hp.extras["hf_prefix"]
        needed = {
            "token_embd.weight": f"{p}model.embed_tokens.weight",
            "output_norm.weight": f"{p}model.norm.weight",
        }
        moe = {
            "ffn_gate_inp.weight": "feed_forward.router.weight",
            "ffn_gate_exps.weight": "feed_forward.experts.gate_up_proj",
            "ffn_up_exps.weight": "feed_forward.experts.gate_up_proj",
            "ffn_down_exps.weight": "feed_forward.experts.down_proj",
            "ffn_gate_shexp.weight": "feed_forward.shared_expert.gate_proj.weight",
            "ffn_up_shexp.weight": "feed_forward.shared_expert.up_proj.weight",
            "ffn_down_shexp.weight": "feed_forward.shared_expert.down_proj.weight",
        }
        dense = {
            "ffn_gate.weight": "feed_forward.gate_proj.weight",
            "ffn_up.weight": "feed_forward.up_proj.weight",
            "ffn_down.weight": "feed_forward.down_proj.weight",
        }
        for i in range(hp.n_layer):
            per_layer = ATTENTION_TENSORS | (moe if is_moe_layer(hp, i) else dense)
            needed |= {f"blk.{i}.{g}": f"{p}model.layers.{i}.{h}" for g, h in per_layer.items()}
        return needed
