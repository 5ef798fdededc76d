"""A minimal F32 GGUF of a test checkpoint, so llama.cpp can check the numpy reference forward pass.

Independent of the project's converter on purpose: the tensors are the exact float32 weights (Q/K rows
permuted for llama.cpp's RoPE, Mixtral experts stacked, llama3 `rope_freqs` computed the way
convert_hf_to_gguf does) and the vocabulary is a placeholder, since the checks feed token ids directly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gguf
import numpy as np

from tests.reference.forward import read_weights


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half rows → llama.cpp adjacent pairs: out[h·D + 2i + j] = in[h·D + j·D/2 + i]."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(params: dict, theta: float, dim: int) -> np.ndarray:
    """`rope_freqs`: per-frequency divisors, written as convert_hf_to_gguf's LlamaModel computes them."""
    factor, low, high = (
        params.get("factor", 8.0),
        params.get("low_freq_factor", 1.0),
        params.get("high_freq_factor", 4.0),
    )
    old_ctx = params.get("original_max_position_embeddings", 8192)
    freqs = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim)
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def reference_tensors(ckpt: Path, cfg: dict) -> list[tuple[str, np.ndarray]]:
    """The checkpoint's weights as the GGUF holds them: llama.cpp names, float32, Q/K rows permuted for
    llama.cpp's RoPE, Mixtral experts stacked (rope_freqs not included)."""
    n_layer, n_head, n_kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, n_layer)
    out: list[tuple[str, np.ndarray]] = []
    experts: dict[tuple[int, str], dict[int, np.ndarray]] = {}
    for name, t in sorted(read_weights(ckpt).items()):
        parts = name.split(".")
        if ".experts." in name:  # model.layers.N.block_sparse_moe.experts.E.wX.weight
            experts.setdefault((int(parts[2]), parts[6]), {})[int(parts[5])] = t
            continue
        if name.endswith("q_proj.weight"):
            t = permute_rows(t, n_head)
        elif name.endswith("k_proj.weight"):
            t = permute_rows(t, n_kv)
        out.append(
            (names.get_name(name, try_suffixes=(".weight",)), np.ascontiguousarray(t, dtype=np.float32))
        )
    stacked = {
        "w1": gguf.MODEL_TENSOR.FFN_GATE_EXP,
        "w2": gguf.MODEL_TENSOR.FFN_DOWN_EXP,
        "w3": gguf.MODEL_TENSOR.FFN_UP_EXP,
    }
    for (layer, wid), by_expert in sorted(experts.items()):
        name = gguf.TENSOR_NAMES[stacked[wid]].format(bid=layer) + ".weight"
        out.append((name, np.stack([by_expert[e] for e in sorted(by_expert)]).astype(np.float32)))
    return out


def write_f32_gguf(ckpt: Path, out: Path) -> Path:
    cfg = json.loads((ckpt / "config.json").read_text())
    n_layer, n_head, n_kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    vocab = cfg["vocab_size"]

    w = gguf.GGUFWriter(out, "llama")
    w.add_block_count(n_layer)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if "num_local_experts" in cfg:
        w.add_expert_count(cfg["num_local_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(head_dim)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([f"<tok{i}>" for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([gguf.TokenType.NORMAL] * vocab)

    if (rope.get("rope_type") or rope.get("type") or "").lower() == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(rope, theta, head_dim))
    for name, t in reference_tensors(ckpt, cfg):
        w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
