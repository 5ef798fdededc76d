"""llama.cpp's `llama` architecture: Llama, Mistral (7B, Nemo) and Mixtral checkpoints (`conversion/llama.py`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import gguf
import numpy as np

from quant.convert.archs.base import Architecture, ExpertStack, register

if TYPE_CHECKING:
    from quant.convert.checkpoint import HParams
    from quant.convert.tensors import OutTensor

# transformers' config-class defaults for keys config.json may omit (AutoConfig would add them).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "MistralForCausalLM": {"max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "MixtralForCausalLM": {
        "max_position_embeddings": 4096 * 32,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e6,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
    },
}


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


# GGUF -> HF names (per layer) of the attention block and the norms around it, shared by the Llama families
ATTENTION_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
}


# The config keys behind each dimension, for messages (Mistral's params.json names them differently).
HF_KEYS = {
    "vocab": "vocab_size",
    "hidden": "hidden_size",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "ffn": "intermediate_size",
}


def dense_shapes(hp: HParams, keys: Mapping[str, str] = HF_KEYS) -> dict[str, tuple[tuple[int, ...], str]]:
    """The shapes of a Llama-style decoder's tensors (GGUF base names) and the config keys behind them."""
    q, kv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    k = keys
    vocab_hidden = f"{k['vocab']}, {k['hidden']}"
    q_keys, kv_keys = f"{k['heads']} x {k['head_dim']}", f"{k['kv_heads']} x {k['head_dim']}"
    return {
        "token_embd.weight": ((hp.n_vocab, hp.n_embd), vocab_hidden),
        "output.weight": ((hp.n_vocab, hp.n_embd), vocab_hidden),
        "output_norm.weight": ((hp.n_embd,), k["hidden"]),
        "attn_norm.weight": ((hp.n_embd,), k["hidden"]),
        "ffn_norm.weight": ((hp.n_embd,), k["hidden"]),
        "attn_q.weight": ((q, hp.n_embd), f"{q_keys}, {k['hidden']}"),
        "attn_k.weight": ((kv, hp.n_embd), f"{kv_keys}, {k['hidden']}"),
        "attn_v.weight": ((kv, hp.n_embd), f"{kv_keys}, {k['hidden']}"),
        "attn_output.weight": ((hp.n_embd, q), f"{k['hidden']}, {q_keys}"),
        "attn_q.bias": ((q,), q_keys),
        "attn_k.bias": ((kv,), kv_keys),
        "attn_v.bias": ((kv,), kv_keys),
        "attn_output.bias": ((hp.n_embd,), k["hidden"]),
        "ffn_gate.weight": ((hp.n_ff, hp.n_embd), f"{k['ffn']}, {k['hidden']}"),
        "ffn_up.weight": ((hp.n_ff, hp.n_embd), f"{k['ffn']}, {k['hidden']}"),
        "ffn_down.weight": ((hp.n_embd, hp.n_ff), f"{k['hidden']}, {k['ffn']}"),
    }


@register
class Llama(Architecture):
    """LlamaForCausalLM, MistralForCausalLM and MixtralForCausalLM (stacked experts) -> `llama`."""

    name = "llama"
    hf_architectures: ClassVar[tuple[str, ...]] = (
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
    )
    moe_architectures = frozenset({"MixtralForCausalLM"})
    expert_stack = ExpertStack(
        marker="block_sparse_moe.experts",
        weights=("w1", "w2", "w3"),
        merged="layers.{bid}.feed_forward.experts.{wid}.weight",
        count_key="num_local_experts",
    )

    def config_defaults(self, hf_arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
        defaults = dict(_DEFAULTS.get(hf_arch, {}))
        # transformers' LlamaConfig and MistralConfig (AutoConfig picks the class by model_type) fill in
        # head_dim, so convert_hf_to_gguf writes attention.key_length/value_length for them even when
        # config.json has no head_dim; MixtralConfig leaves it None.
        heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
        fills = config.get("model_type") in ("llama", "mistral")
        if fills and isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
            defaults["head_dim"] = hidden // heads
        return defaults

    def add_family_kvs(self, w: gguf.GGUFWriter, hp: HParams) -> None:
        """LlamaModel.set_gguf_parameters: vocab size and rope dimensions after TextModel's KVs."""
        w.add_vocab_size(hp.n_vocab)
        w.add_rope_dimension_count(hp.head_dim)

    def extra_tensors(self, hp: HParams) -> list[OutTensor]:
        from quant.convert.tensors import OutTensor

        if hp.rope_scaling is not None and hp.rope_scaling.type == "llama3":
            factors = llama3_rope_factors(hp)
            return [OutTensor("rope_freqs.weight", factors.shape, data=factors, keep_f32=True)]
        return []

    def expected_shapes(self, hp: HParams) -> dict[str, tuple[tuple[int, ...], str]]:
        return dense_shapes(hp) | {
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

    def required_tensors(self, hp: HParams) -> dict[str, str]:
        needed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
        per_layer = dict(ATTENTION_TENSORS)
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
        return needed
