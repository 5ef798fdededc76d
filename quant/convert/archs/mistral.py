"""Mistral's own layout (params.json, consolidated*.safetensors), as `convert_hf_to_gguf.py --mistral-format`
converts it (`conversion/mistral.py`, `MistralModel`).

The model is a Llama-style decoder whose weights are already in llama.cpp's rotary layout (no Q/K
permutation) under Meta's original names (`tok_embeddings`, `layers.N.attention.wq`, ...). The GGUF
architecture is `mistral3` when params.json has `llama_4_scaling` (the 2025 models), else `llama`. The KVs
are TextModel's from params.json's keys (no vocab size: the tokenizer gives it), then the yarn and
attention-temperature keys of `set_mistral_config`. Vision-encoder tensors are left out as in the HF layout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf

from quant.convert.archs.base import Architecture, register
from quant.convert.archs.llama import dense_shapes
from quant.errors import ConversionError

if TYPE_CHECKING:
    from quant.convert.checkpoint import HParams

# Which params.json key holds each dimension (for messages).
PARAMS_KEYS = {
    "vocab": "vocab_size",
    "hidden": "dim",
    "heads": "n_heads",
    "kv_heads": "n_kv_heads",
    "head_dim": "head_dim",
    "ffn": "hidden_dim",
}
# TextModel's context-length keys, in its order (params.json's `max_seq_len` is not one of them).
CONTEXT_KEYS = (
    "max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length",
)  # fmt: skip
_YARN_KEYS = ("factor", "beta", "alpha", "apply_scale", "original_max_position_embeddings")


def _number(path: Path, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConversionError(f"{path}: key {key!r} must be a number, got {value!r}")
    return float(value)


@register
class MistralNative(Architecture):
    """A checkpoint in Mistral's own layout -> `mistral3` (with llama_4_scaling) or `llama`."""

    name = "mistral3"
    config_file = "params.json"
    permute_qk = False  # consolidated weights are already in llama.cpp's rotary layout

    def arch_name(self, hp: HParams) -> str:
        return "mistral3" if hp.extras.get("llama_4_scaling") is not None else "llama"

    def parse(self, src: Path, params: dict[str, Any]) -> HParams:
        """params.json validated into HParams; errors name params.json and the key."""
        from quant.convert.checkpoint import HParams
        from quant.convert.checkpoint import _float as float_key
        from quant.convert.checkpoint import _int as int_key

        path = src / "params.json"
        if params.get("moe") is not None:
            raise ConversionError(
                f"{path}: key 'moe': Mistral-layout mixtures of experts (converted by llama.cpp as deepseek2) "
                "are not supported"
            )
        n_head = int_key(path, params, "n_heads")
        n_head_kv = int_key(path, params, "n_kv_heads")
        if n_head % n_head_kv:
            raise ConversionError(f"{path}: key 'n_kv_heads' ({n_head_kv}) must divide 'n_heads' ({n_head})")
        head_dim = int_key(path, params, "head_dim")
        if head_dim % 2:
            raise ConversionError(f"{path}: key 'head_dim' ({head_dim}) must be even for rotary embeddings")
        ctx_key = next((k for k in CONTEXT_KEYS if params.get(k) is not None), None)
        if ctx_key is None:
            raise ConversionError(
                f"{path}: missing key 'max_position_embeddings' (llama.cpp's converter would write no context "
                "length, and llama.cpp cannot load a file without one)"
            )
        extras: dict[str, Any] = {}
        theta = params.get("rope_theta")
        extras["rope_theta"] = None if theta is None else float_key(path, theta, "rope_theta")
        yarn = params.get("yarn")
        if yarn is not None:
            if not isinstance(yarn, dict):
                raise ConversionError(f"{path}: key 'yarn' must be an object, got {yarn!r}")
            for key in _YARN_KEYS:
                if key not in yarn:
                    raise ConversionError(f"{path}: key 'yarn' lacks {key!r}")
            extras["yarn"] = {
                "factor": _number(path, yarn["factor"], "yarn.factor"),
                "beta_fast": _number(path, yarn["beta"], "yarn.beta"),
                "beta_slow": _number(path, yarn["alpha"], "yarn.alpha"),
                "log_mul": 1.0 if not yarn["apply_scale"] else 0.0,
                "orig_ctx": int_key(path, yarn, "original_max_position_embeddings"),
            }
        scaling = params.get("llama_4_scaling")
        if scaling is not None:
            if not isinstance(scaling, dict) or "beta" not in scaling:
                raise ConversionError(f"{path}: key 'llama_4_scaling' lacks 'beta'")
            extras["llama_4_scaling"] = _number(path, scaling["beta"], "llama_4_scaling.beta")
        return HParams(
            architecture="",  # Mistral's layout names no architecture
            n_layer=int_key(path, params, "n_layers"),
            n_embd=int_key(path, params, "dim"),
            n_ff=int_key(path, params, "hidden_dim"),
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            head_dim_explicit=True,
            n_ctx_train=int_key(path, params, ctx_key),
            n_vocab=int_key(path, params, "vocab_size") if params.get("vocab_size") is not None else 0,
            rms_eps=float_key(path, params.get("norm_eps"), "norm_eps"),
            rope_theta=extras["rope_theta"] or 10000.0,  # llama.cpp's default when no freq_base is written
            rope_scaling=None,
            n_expert=0,
            n_expert_used=0,
            tied=bool(params.get("tied_embeddings", False)),
            raw=params,
            arch=self,
            extras=extras,
        )

    def add_rope_base(self, w: gguf.GGUFWriter, hp: HParams) -> None:
        if hp.extras["rope_theta"] is not None:  # TextModel writes none when params.json has no rope_theta
            w.add_rope_freq_base(hp.extras["rope_theta"])

    def add_family_kvs(self, w: gguf.GGUFWriter, hp: HParams) -> None:
        """LlamaModel's rope dimensions (no vocab size in this layout), then set_mistral_config's keys."""
        w.add_rope_dimension_count(hp.head_dim)
        if (yarn := hp.extras.get("yarn")) is not None:
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(yarn["factor"])
            w.add_rope_scaling_yarn_beta_fast(yarn["beta_fast"])
            w.add_rope_scaling_yarn_beta_slow(yarn["beta_slow"])
            w.add_rope_scaling_yarn_log_mul(yarn["log_mul"])
            w.add_rope_scaling_orig_ctx_len(yarn["orig_ctx"])
        if hp.extras.get("llama_4_scaling") is not None:
            w.add_attn_temperature_scale(hp.extras["llama_4_scaling"])

    def expected_shapes(self, hp: HParams) -> dict[str, tuple[tuple[int, ...], str]]:
        return dense_shapes(hp, PARAMS_KEYS)

    def required_tensors(self, hp: HParams) -> dict[str, str]:
        needed = {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.weight"}
        per_layer = {
            "attn_norm.weight": "attention_norm.weight",
            "ffn_norm.weight": "ffn_norm.weight",
            "attn_q.weight": "attention.wq.weight",
            "attn_k.weight": "attention.wk.weight",
            "attn_v.weight": "attention.wv.weight",
            "attn_output.weight": "attention.wo.weight",
            "ffn_gate.weight": "feed_forward.w1.weight",
            "ffn_down.weight": "feed_forward.w2.weight",
            "ffn_up.weight": "feed_forward.w3.weight",
        }
        for i in range(hp.n_layer):
            needed |= {f"blk.{i}.{g}": f"layers.{i}.{h}" for g, h in per_layer.items()}
        return needed
