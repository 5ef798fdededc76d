"""Row production of output tensors: Q/K permutation (weights and biases), BF16 widening, expert stacking."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hubtui.demo.checkpoint_writer import f32_to_bf16_bits
from quant.convert.checkpoint import SourceTensor
from quant.convert.tensors import OutTensor


def source(name: str, arr: np.ndarray, dtype: str) -> tuple[SourceTensor, np.ndarray]:
    raw = (f32_to_bf16_bits(arr) if dtype == "BF16" else arr.astype(np.float32)).view(np.uint8).ravel()
    return SourceTensor(name, dtype, arr.shape, Path("x.safetensors"), 0, raw.size), raw


def reference_permutation(w: np.ndarray, n_head: int) -> np.ndarray:
    d = w.shape[0] // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for i in range(d // 2):
            for j in range(2):
                out[h * d + 2 * i + j] = w[h * d + j * (d // 2) + i]
    return out


def test_q_permutation_of_weight_and_bias_in_chunks() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4 * 8, 16), dtype=np.float32)
    src, raw = source("model.layers.0.self_attn.q_proj.weight", w, "F32")
    t = OutTensor("blk.0.attn_q.weight", w.shape, (src,), permute_heads=4)
    rows = np.concatenate([t.rows(r, min(r + 5, 32), [src.array(raw)])[0] for r in range(0, 32, 5)])
    np.testing.assert_array_equal(rows, reference_permutation(w, 4))
    b = rng.standard_normal(32, dtype=np.float32)
    bsrc, braw = source("model.layers.0.self_attn.k_proj.bias", b, "F32")
    bt = OutTensor("blk.0.attn_k.bias", b.shape, (bsrc,), permute_heads=4, keep_f32=True)
    got, bad = bt.rows(0, 1, [bsrc.array(braw)])
    np.testing.assert_array_equal(got[0], reference_permutation(b[:, None], 4)[:, 0])
    assert bad == -1


def test_bf16_widening_is_exact_and_flags_non_finite_rows() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 40), dtype=np.float32)
    w[4, 7] = np.inf
    src, raw = source("w", w, "BF16")
    t = OutTensor("blk.0.ffn_up.weight", w.shape, (src,))
    got, bad = t.rows(1, 6, [src.array(raw)])
    want = (f32_to_bf16_bits(w).astype(np.uint32) << 16).view(np.float32)[1:6]
    np.testing.assert_array_equal(got, want)
    assert bad == 3  # row 4 of the tensor, the 4th of this block


def test_stacked_experts_rows_cross_expert_boundaries() -> None:
    rng = np.random.default_rng(2)
    experts = [rng.standard_normal((3, 8), dtype=np.float32) for _ in range(4)]
    parts, raws = zip(*(source(f"e{k}", e, "F32") for k, e in enumerate(experts)), strict=True)
    t = OutTensor("blk.0.ffn_up_exps.weight", (4, 3, 8), tuple(parts))
    got, bad = t.rows(2, 10, [p.array(r) for p, r in zip(parts, raws, strict=True)])
    np.testing.assert_array_equal(got, np.concatenate(experts)[2:10])
    assert bad == -1 and t.n_rows == 12
