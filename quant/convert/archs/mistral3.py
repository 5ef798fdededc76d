"""llama.cpp's `mistral3` architecture: Ministral 3 and Mistral 3 (Small 3.x, Magistral, Devstral) checkpoints.

llama.cpp's `conversion/mistral3.py` converts `Ministral3ForCausalLM` and the text model of
`Mistral3ForConditionalGeneration` as a Llama model (Q/K permuted, llama-hf/gpt2 vocab, the same KVs) under
the `mistral3` architecture. A `ministral3` text model (the 2025-12 Ministral 3 family) must have yarn RoPE,
and adds the yarn log multiplier (`mscale_all_dim`) and the llama 4 attention-temperature scale
(`llama_4_scaling_beta`). The vision tower and projector are left out of the text GGUF (see `mmproj`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf

from quant.convert.archs.base import register
from quant.convert.archs.llama import Llama
from quant.errors import ConversionError

if TYPE_CHECKING:
    from quant.convert.checkpoint import HParams

# transformers 5 Ministral3Config's defaults (models/ministral3/configuration_ministral3.py).
MINISTRAL3_ROPE = {
    "type": "yarn",
    "rope_type": "yarn",
    "rope_theta": 1000000.0,
    "factor": 16.0,
    "original_max_position_embeddings": 16384,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "mscale_all_dim": 1.0,
    "mscale": 1.0,
    "llama_4_scaling_beta": 0.1,
}


def text_model_type(config: Mapping[str, Any]) -> str | None:
    """The text model's model_type (text_config's when there is one), as llama.cpp's merged hparams hold it."""
    raw = config.get("text_config")
    if isinstance(raw, dict) and raw.get("model_type") is not None:
        return raw["model_type"]
    return config.get("model_type")


@register
class Mistral3(Llama):
    """Ministral3ForCausalLM and Mistral3ForConditionalGeneration's text model -> `mistral3`."""

    name = "mistral3"
    hf_architectures = ("Ministral3ForCausalLM", "Mistral3ForConditionalGeneration")
    moe_architectures = frozenset()

    def config_defaults(self, hf_arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """What AutoConfig fills in: Ministral3Config for `ministral3` text, MistralConfig for `mistral`.

        Both always set head_dim (so llama.cpp always writes key_length/value_length).
        """
        if text_model_type(config) == "ministral3":
            defaults: dict[str, Any] = {
                "max_position_embeddings": 262144,
                "rms_norm_eps": 1e-5,
                "head_dim": 128,
                "tie_word_embeddings": False,
            }
            if config.get("rope_parameters") is None and config.get("rope_scaling") is None:
                defaults["rope_parameters"] = {
                    **MINISTRAL3_ROPE,
                    "max_position_embeddings": config.get("max_position_embeddings", 262144),
                }
            return defaults
        defaults = {"max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
        hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
            defaults["head_dim"] = hidden // heads
        return defaults

    def parse_extras(self, path: Path, cfg: Mapping[str, Any], rope: Mapping[str, Any]) -> dict[str, Any]:
        """A ministral3 text model's yarn log multiplier and attention temperature (Ministral3Model)."""
        if text_model_type(cfg) == "mistral4":
            raise ConversionError(
                f"{path}: model_type 'mistral4' (llama.cpp converts it as a DeepSeek-V2-style mixture of "
                "experts) is not supported"
            )
        if text_model_type(cfg) != "ministral3":
            return {}
        kind = rope.get("rope_type", rope.get("type"))
        if not rope or kind != "yarn":
            raise ConversionError(
                f"{path}: a ministral3 model needs yarn RoPE ('rope_parameters' with rope_type 'yarn'), "
                f"got {kind!r}"
            )
        out = {}
        for key, name in (
            ("mscale_all_dim", "yarn_log_mul"),
            ("llama_4_scaling_beta", "attn_temperature_scale"),
        ):
            value = rope.get(key)
            if value is None:
                raise ConversionError(
                    f"{path}: rope_parameters lacks key {key!r} (a ministral3 model needs it)"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConversionError(f"{path}: rope_parameters key {key!r} must be a number, got {value!r}")
            out[name] = float(value)
        return out

    def add_family_kvs(self, w: gguf.GGUFWriter, hp: HParams) -> None:
        super().add_family_kvs(w, hp)
        if "yarn_log_mul" in hp.extras:
            w.add_rope_scaling_yarn_log_mul(hp.extras["yarn_log_mul"])
            w.add_attn_temperature_scale(hp.extras["attn_temperature_scale"])
