"""A plain numpy forward pass for LlamaForCausalLM / MistralForCausalLM / MixtralForCausalLM and the text
models of Ministral3ForCausalLM / Mistral3ForConditionalGeneration.

It reads the Hugging Face weights straight from a checkpoint directory and follows transformers' modelling
code (rotate-half RoPE, HF's llama3 and yarn frequency scaling with yarn's attention factor, GQA, SwiGLU,
Mixtral top-k routing, Ministral 3's llama 4 attention temperature), so it is an independent reference for
what a correct GGUF conversion must compute. Written for clarity, not speed.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64, "F8_E4M3": np.uint8}
TEXT_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Ministral3ForCausalLM")


def e4m3_to_f32(codes: np.ndarray) -> np.ndarray:
    """float8 E4M3 ("fn") bytes to float32: sign, 4-bit exponent (bias 7, 0 = subnormal), 3-bit mantissa."""
    c = codes.astype(np.int32)
    exp, man = (c >> 3) & 0xF, c & 7
    mag = np.ldexp(np.where(exp > 0, man + 8, man).astype(np.float64), np.maximum(exp, 1) - 10)
    mag[(exp == 0xF) & (man == 7)] = np.nan
    return np.where(c & 0x80, -mag, mag).astype(np.float32)


def read_safetensors(path: Path, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """The tensors of one safetensors file (all, or those in `names`) as float32, BF16 and FP8 widened exactly."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if names is not None and name not in names:
            continue
        begin, end = info["data_offsets"]
        arr = raw[begin:end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F8_E4M3":
            arr = e4m3_to_f32(arr)
        out[name] = np.array(arr, dtype=np.float32)
    return out


def fp8_dequantize(weight: np.ndarray, scale: np.ndarray, block: list[int] | None) -> np.ndarray:
    """An FP8 weight (already float32) times its `_scale_inv`: one scale per block of `block` (the last two
    dims), else per tensor or per row; one float32 multiplication per element."""
    if block is not None:
        for axis, size in zip((-2, -1), block, strict=True):
            scale = np.repeat(scale, size, axis=axis)
        scale = scale[..., : weight.shape[-2], : weight.shape[-1]]
    elif scale.size > 1:
        scale = scale.reshape(-1, 1)
    return (weight * scale.astype(np.float32)).astype(np.float32)


def read_weights(ckpt: Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint as float32; an "fp8" checkpoint's weights dequantised, its scales gone."""
    index = ckpt / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.exists()
        else ["model.safetensors"]
    )
    weights: dict[str, np.ndarray] = {}
    for name in files:
        weights |= read_safetensors(ckpt / name)
    quant = json.loads((ckpt / "config.json").read_text()).get("quantization_config")
    if quant and quant.get("quant_method") == "fp8":
        for name in [n for n in weights if n.endswith("_scale_inv")]:
            base = name.removesuffix("_scale_inv")
            weights[base] = fp8_dequantize(weights[base], weights.pop(name), quant.get("weight_block_size"))
        for name in [n for n in weights if n.endswith("activation_scale")]:
            del weights[name]
    return weights


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_attention_factor(config: dict[str, Any]) -> float:
    """The factor transformers multiplies cos/sin by (yarn's mscale ratio; 1 for the other types)."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    if (params.get("rope_type") or params.get("type") or "default").lower() != "yarn":
        return 1.0
    if params.get("attention_factor") is not None:
        return params["attention_factor"]
    factor, mscale, mscale_all = params["factor"], params.get("mscale"), params.get("mscale_all_dim")
    if mscale and mscale_all:
        return yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
    return yarn_mscale(factor)


def rope_inv_freq(config: dict[str, Any], head_dim: int) -> np.ndarray:
    """Rotary inverse frequencies as transformers computes them (default, linear, llama3 and yarn types)."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = (params.get("rope_type") or params.get("type") or "default").lower()
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if kind == "default":
        return inv
    if kind == "yarn":  # ramp between interpolation (1/factor) and extrapolation, truncated bounds
        factor, old_ctx = params["factor"], params["original_max_position_embeddings"]
        beta_fast, beta_slow = params.get("beta_fast") or 32, params.get("beta_slow") or 1

        def correction_dim(rotations: float) -> float:
            return head_dim * math.log(old_ctx / (rotations * 2 * math.pi)) / (2 * math.log(theta))

        low = max(math.floor(correction_dim(beta_fast)), 0)
        high = min(math.ceil(correction_dim(beta_slow)), head_dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(head_dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp
        return inv / factor * (1 - extrapolation) + inv * extrapolation
    if kind == "linear":
        return inv / params["factor"]
    if kind == "llama3":
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        old_ctx = params["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old_ctx / low, inv / factor, inv)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
        return np.where(medium, smoothed, scaled)
    raise NotImplementedError(f"rope type {kind}")


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """HF rotate-half RoPE on [tokens, heads, head_dim]; cos/sin are [tokens, head_dim/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


class Model:
    """A causal LM loaded from a HF checkpoint directory, with a KV cache for incremental decoding."""

    def __init__(self, ckpt: Path, dtype: type = np.float32) -> None:
        root = json.loads((Path(ckpt) / "config.json").read_text())
        arch = root["architectures"][0]
        if arch not in (*TEXT_ARCHITECTURES, "Mistral3ForConditionalGeneration"):
            raise NotImplementedError(arch)
        self.config = cfg = {**root, **root.get("text_config", {})}
        self.dtype = dtype
        self.w = {
            k.replace("language_model.", ""): v.astype(dtype, copy=False)
            for k, v in read_weights(Path(ckpt)).items()
            if not k.startswith(("vision_tower.", "multi_modal_projector."))
        }
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head, self.n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.n_head
        self.eps = cfg["rms_norm_eps"]
        self.inv_freq = rope_inv_freq(cfg, self.head_dim)
        self.cos_sin_scale = rope_attention_factor(cfg)
        rope = cfg.get("rope_parameters") or {}
        self.temperature = (  # Ministral 3: q *= 1 + beta * log(1 + floor(pos / original context))
            (rope["llama_4_scaling_beta"], rope["original_max_position_embeddings"])
            if rope.get("llama_4_scaling_beta") is not None
            else None
        )
        self.n_expert_used = cfg.get("num_experts_per_tok", 0)
        self.output = self.w.get("lm_head.weight")
        if self.output is None:
            if not cfg.get("tie_word_embeddings", False):
                raise ValueError("lm_head.weight is missing and the embeddings are not tied")
            self.output = self.w["model.embed_tokens.weight"]
        self.reset()

    def reset(self) -> None:
        self.cache: list[tuple[np.ndarray, np.ndarray]] = [
            (np.zeros((0, self.n_kv, self.head_dim), self.dtype),) * 2 for _ in range(self.n_layer)
        ]
        self.n_past = 0

    def _attention(self, i: int, h: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        p, w, t, d = f"model.layers.{i}.self_attn.", self.w, h.shape[0], self.head_dim
        q = rotate((h @ w[p + "q_proj.weight"].T).reshape(t, self.n_head, d), cos, sin)
        k = rotate((h @ w[p + "k_proj.weight"].T).reshape(t, self.n_kv, d), cos, sin)
        if self.temperature is not None:
            beta, old_ctx = self.temperature
            pos = self.n_past + np.arange(t)
            q = q * (1 + beta * np.log1p(np.floor(pos / old_ctx)))[:, None, None].astype(self.dtype)
        v = (h @ w[p + "v_proj.weight"].T).reshape(t, self.n_kv, d)
        k_all, v_all = (np.concatenate([old, new]) for old, new in zip(self.cache[i], (k, v), strict=True))
        self.cache[i] = (k_all, v_all)
        group = self.n_head // self.n_kv
        q = q.reshape(t, self.n_kv, group, d)
        scores = np.einsum("tkgd,skd->kgts", q, k_all) / np.sqrt(d).astype(self.dtype)
        query_pos = self.n_past + np.arange(t)[:, None]
        scores = np.where(np.arange(k_all.shape[0])[None, :] <= query_pos, scores, -np.inf)
        out = np.einsum("kgts,skd->tkgd", softmax(scores), v_all).reshape(t, self.n_head * d)
        return out @ w[p + "o_proj.weight"].T

    def _mlp(self, i: int, h: np.ndarray) -> np.ndarray:
        w = self.w
        if not self.n_expert_used:
            p = f"model.layers.{i}.mlp."
            return (silu(h @ w[p + "gate_proj.weight"].T) * (h @ w[p + "up_proj.weight"].T)) @ w[
                p + "down_proj.weight"
            ].T
        p = f"model.layers.{i}.block_sparse_moe."
        probs = softmax(h @ w[p + "gate.weight"].T)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, : self.n_expert_used]
        out = np.zeros_like(h)
        for row in range(h.shape[0]):
            chosen = probs[row, top[row]]
            for e, weight in zip(top[row], chosen / chosen.sum(), strict=True):
                x = f"{p}experts.{e}."
                y = silu(h[row] @ w[x + "w1.weight"].T) * (h[row] @ w[x + "w3.weight"].T)
                out[row] += weight * (y @ w[x + "w2.weight"].T)
        return out

    def forward(self, ids: list[int]) -> np.ndarray:
        """Feed `ids` after what the cache holds; returns the logits of the last of them."""
        pos = self.n_past + np.arange(len(ids))
        angles = pos[:, None] * self.inv_freq[None, :]
        cos = (np.cos(angles) * self.cos_sin_scale).astype(self.dtype)
        sin = (np.sin(angles) * self.cos_sin_scale).astype(self.dtype)
        x = self.w["model.embed_tokens.weight"][np.asarray(ids)]
        for i in range(self.n_layer):
            p = f"model.layers.{i}."
            x = x + self._attention(i, rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps), cos, sin)
            x = x + self._mlp(i, rms_norm(x, self.w[p + "post_attention_layernorm.weight"], self.eps))
        self.n_past += len(ids)
        return rms_norm(x[-1], self.w["model.norm.weight"], self.eps) @ self.output.T

    def logits(self, ids: list[int]) -> np.ndarray:
        """Last-position logits for the sequence `ids` (from an empty cache)."""
        self.reset()
        return self.forward(ids)

    def greedy(self, ids: list[int], n: int, stop: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Up to `n` greedily decoded token ids after `ids`, ending early after a token in `stop`."""
        out: list[int] = []
        logits = self.logits(ids)
        for _ in range(n):
            token = int(np.argmax(logits))
            out.append(token)
            if token in stop:
                break
            logits = self.forward([token])
        return out
