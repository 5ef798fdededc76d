"""A plain numpy forward pass for Llama 4 text models (Llama4ForCausalLM, Llama4ForConditionalGeneration).

It reads the Hugging Face weights straight from the checkpoint (FP8 dequantised like the other reference) and
follows transformers' `modeling_llama4` and llama.cpp's `src/models/llama4.cpp`:

- RoPE on adjacent pairs (Meta's complex-number form, so no Q/K row permutation), with llama3 frequency
  scaling when configured; layers whose `no_rope_layers` entry is 0 (every 4th) use no position encoding.
- QK norm (a weightless RMS norm of each head's q and k after RoPE) on RoPE layers when `use_qk_norm`.
- Attention temperature tuning on NoPE layers: q is scaled by log(floor((pos + 1) / floor_scale) + 1) *
  attn_scale + 1, which departs from 1 from position floor_scale - 1 on.
- Chunked attention on RoPE layers: a query sees the keys of its own `attention_chunk_size` chunk only;
  NoPE layers attend to the whole causal prefix.
- MoE layers (every `interleave_moe_layer_step`-th): a router picks the top-k experts by logit and weights
  them by sigmoid(logit); the weight multiplies the expert's input (not its output), and a shared expert
  (an ordinary SwiGLU MLP) is added. The other layers have a dense SwiGLU MLP of `intermediate_size_mlp`.

Written for clarity; attention is computed in query blocks so prompts past a chunk (8192 tokens) fit in memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tests.reference.forward import read_weights, silu

_QUERY_BLOCK = 1024


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The text model's config: `text_config` of a Llama4ForConditionalGeneration, else the config itself."""
    return config["text_config"] if isinstance(config.get("text_config"), dict) else config


def llama4_inv_freq(cfg: dict[str, Any]) -> np.ndarray:
    """Rotary inverse frequencies (default, or llama3-scaled as transformers computes them)."""
    head_dim = cfg["head_dim"]
    params = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = params.get("rope_theta", cfg.get("rope_theta", 500000.0))
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    kind = (params.get("rope_type") or params.get("type") or "default").lower()
    if kind == "default":
        return inv
    if kind != "llama3":
        raise NotImplementedError(f"rope type {kind}")
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    old_ctx = params["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    out = np.where(wavelen > old_ctx / low, inv / factor, inv)
    medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    if medium.any():  # Scout has low == high, so no frequency is in between
        smooth = (old_ctx / wavelen[medium] - low) / (high - low)
        out[medium] = (1 - smooth) * out[medium] / factor + smooth * out[medium]
    return out


def rope_pairs(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of [tokens, heads, head_dim] by angles [tokens, head_dim/2]."""
    c, s = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * c - odd * s
    out[..., 1::2] = even * s + odd * c
    return out


def weightless_rms_norm(x: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return weightless_rms_norm(x, eps) * weight


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Llama4:
    """A Llama 4 text model loaded from a HF checkpoint directory; `logits(ids)` runs the whole prompt."""

    def __init__(self, ckpt: Path) -> None:
        config = json.loads((Path(ckpt) / "config.json").read_text())
        arch = config["architectures"][0]
        if arch not in ("Llama4ForCausalLM", "Llama4ForConditionalGeneration"):
            raise NotImplementedError(arch)
        self.config = cfg = text_config(config)
        self.w = {
            name.removeprefix("language_model."): w
            for name, w in read_weights(Path(ckpt)).items()
            if not name.startswith(("vision_model.", "multi_modal_projector."))
        }
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head, self.n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.head_dim = cfg["head_dim"]
        self.eps = cfg["rms_norm_eps"]
        self.inv_freq = llama4_inv_freq(cfg)
        interval = cfg.get("no_rope_layer_interval", 4)
        self.use_rope = cfg.get("no_rope_layers") or [
            int((i + 1) % interval != 0) for i in range(self.n_layer)
        ]
        step = cfg["interleave_moe_layer_step"]
        self.moe_layers = set(cfg.get("moe_layers") or range(step - 1, self.n_layer, step))
        self.chunk = cfg.get("attention_chunk_size")
        self.top_k = cfg["num_experts_per_tok"]
        self.output = self.w.get("lm_head.weight")
        if self.output is None:
            self.output = self.w["model.embed_tokens.weight"]

    def _temperature(self, pos: np.ndarray) -> np.ndarray:
        cfg = self.config
        if not cfg.get("attn_temperature_tuning", True):
            return np.ones(len(pos), dtype=np.float32)
        scale = np.log1p(np.floor((pos + 1.0) / cfg["floor_scale"])) * cfg["attn_scale"] + 1.0
        return scale.astype(np.float32)

    def _attention(self, i: int, h: np.ndarray, pos: np.ndarray) -> np.ndarray:
        p, w, t, d = f"model.layers.{i}.self_attn.", self.w, h.shape[0], self.head_dim
        q = (h @ w[p + "q_proj.weight"].T).reshape(t, self.n_head, d)
        k = (h @ w[p + "k_proj.weight"].T).reshape(t, self.n_kv, d)
        v = (h @ w[p + "v_proj.weight"].T).reshape(t, self.n_kv, d)
        rope = bool(self.use_rope[i])
        if rope:
            angles = (pos[:, None] * self.inv_freq[None, :]).astype(np.float32)
            q, k = rope_pairs(q, angles), rope_pairs(k, angles)
            if self.config.get("use_qk_norm", True):
                q, k = weightless_rms_norm(q, self.eps), weightless_rms_norm(k, self.eps)
        else:
            q = q * self._temperature(pos)[:, None, None]
        chunked = rope and self.chunk is not None
        group = self.n_head // self.n_kv
        out = np.empty((t, self.n_head, d), dtype=np.float32)
        scale = np.float32(1.0 / math.sqrt(d))
        for q0 in range(0, t, _QUERY_BLOCK):
            q1 = min(t, q0 + _QUERY_BLOCK)
            k0 = (
                (q0 // self.chunk) * self.chunk if chunked else 0
            )  # no query of the block sees keys before it
            qp, kp = pos[q0:q1, None], pos[None, k0:q1]
            visible = kp <= qp
            if chunked:
                visible &= (kp // self.chunk) == (qp // self.chunk)
            for hd in range(self.n_head):
                kv = hd // group
                scores = (q[q0:q1, hd] @ k[k0:q1, kv].T) * scale
                scores = np.where(visible, scores, -np.inf)
                scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
                out[q0:q1, hd] = (scores / scores.sum(axis=-1, keepdims=True)) @ v[k0:q1, kv]
        return out.reshape(t, self.n_head * d) @ w[p + "o_proj.weight"].T

    def _mlp(self, prefix: str, x: np.ndarray) -> np.ndarray:
        w = self.w
        gate, up = x @ w[prefix + "gate_proj.weight"].T, x @ w[prefix + "up_proj.weight"].T
        return (silu(gate) * up) @ w[prefix + "down_proj.weight"].T

    def _moe(self, i: int, x: np.ndarray) -> np.ndarray:
        p = f"model.layers.{i}.feed_forward."
        logits = x @ self.w[p + "router.weight"].T  # [tokens, experts]
        top = np.argsort(-logits, axis=-1, kind="stable")[:, : self.top_k]
        gate_up, down = self.w[p + "experts.gate_up_proj"], self.w[p + "experts.down_proj"]
        ffn = down.shape[1]
        out = self._mlp(p + "shared_expert.", x)
        for row in range(x.shape[0]):
            for e in top[row]:
                xe = x[row] * sigmoid(logits[row, e])  # the routing weight scales the expert's input
                gu = xe @ gate_up[e]
                out[row] += (silu(gu[:ffn]) * gu[ffn:]) @ down[e]
        return out

    def logits(self, ids: list[int]) -> np.ndarray:
        """Last-position logits of the prompt `ids`."""
        pos = np.arange(len(ids), dtype=np.float64)
        x = self.w["model.embed_tokens.weight"][np.asarray(ids)]
        for i in range(self.n_layer):
            p = f"model.layers.{i}."
            x = x + self._attention(i, rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps), pos)
            h = rms_norm(x, self.w[p + "post_attention_layernorm.weight"], self.eps)
            x = x + (self._moe(i, h) if i in self.moe_layers else self._mlp(p + "feed_forward.", h))
        return rms_norm(x[-1], self.w["model.norm.weight"], self.eps) @ self.output.T
