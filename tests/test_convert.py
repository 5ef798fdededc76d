"""The converter against llama.cpp itself: quantisation parity, logits of the F32/F16 output, a chat answer.

Each fixture is converted to F32 once per session; llama.cpp's `llama_model_quantize` of that F32 file is the
reference our direct K-quant conversion must equal byte for byte and type for type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quant.convert import convert, file_layout, resolve_file_type
from tests.support.convert_support import Converted, only_with_slow, sha256, tensor_bytes

FIXTURES = ("smollm2-135m", "llama3-tiny", "mistral-tiny", "mixtral-tiny", "llama3-tiny-fp8")

# Every K-quant file type on at least one fixture and every fixture at least once; the full
# cross product runs with -m slow.
# SmolLM2 (the real model) is a K-quant file in the default run through tests/test_convert_filetypes.py's
# Q3_K_M; its Q4_K_M here (70 s: llama.cpp quantises all 135M parameters) runs with -m slow.
PARITY_FAST = [
    ("llama3-tiny", "Q4_K_S"),
    ("mistral-tiny", "Q5_K_M"),
    ("mistral-tiny", "Q8_0"),
    ("mixtral-tiny", "Q4_K_M"),
    ("mixtral-tiny", "Q6_K"),
    ("llama3-tiny-fp8", "Q4_K_M"),
]
PARITY_SLOW = [
    (f, q)
    for f in FIXTURES
    for q in ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q8_0")
    if (f, q) not in PARITY_FAST
]


def _assert_parity(converted: Converted, fixture: str, qtype: str) -> None:
    ours = tensor_bytes(converted(fixture, qtype))
    ref = tensor_bytes(converted.reference(fixture, qtype))
    assert set(ours) == set(ref)
    for name, (rtype, rshape, rdata) in ref.items():
        otype, oshape, odata = ours[name]
        assert (otype, oshape) == (rtype, rshape), name
        assert odata == rdata, f"{name} ({otype}) differs from llama.cpp's bytes"
    if resolve_file_type(qtype).by_quantize:
        # llama.cpp makes K-quant files only with llama-quantize: ours is that whole file, header included
        # (our F32 output is convert_hf_to_gguf's, see test_vocab's opt-in comparison and the benchmark)
        assert sha256(converted(fixture, qtype)) == sha256(converted.reference(fixture, qtype))


@pytest.mark.parametrize(("fixture", "qtype"), PARITY_FAST)
def test_quantised_tensors_equal_llama_quantize(converted: Converted, fixture: str, qtype: str) -> None:
    _assert_parity(converted, fixture, qtype)


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "qtype"), PARITY_SLOW)
def test_quantised_tensors_equal_llama_quantize_all(
    request: pytest.FixtureRequest, converted: Converted, fixture: str, qtype: str
) -> None:
    only_with_slow(request, "the rest of the parity matrix")
    _assert_parity(converted, fixture, qtype)


def test_layout_predicts_the_file_exactly(converted: Converted, checkpoints: dict[str, Path]) -> None:
    for fixture, qtype in (("mixtral-tiny", "Q4_K_M"), ("llama3-tiny", "Q4_K_S"), ("mistral-tiny", "Q8_0")):
        path = converted(fixture, qtype)
        layout = file_layout(checkpoints[fixture], qtype)
        assert path.stat().st_size == layout.file_size
        got = tensor_bytes(path)
        assert [t.name for t in layout.tensors] == list(got)
        for t in layout.tensors:
            assert (t.type, t.ne, t.nbytes) == (got[t.name][0], got[t.name][1], len(got[t.name][2]))


def test_mixtral_layout_stacks_experts_and_keeps_router_f32(checkpoints: dict[str, Path]) -> None:
    layout = file_layout(checkpoints["mixtral-tiny"], "Q4_K_M")
    by_name = {t.name: t for t in layout.tensors}
    hp = layout.hparams
    assert by_name["blk.0.ffn_gate_exps.weight"].ne == (hp.n_embd, hp.n_ff, 8)
    assert by_name["blk.0.ffn_down_exps.weight"].ne == (hp.n_ff, hp.n_embd, 8)
    assert by_name["blk.0.ffn_gate_inp.weight"].type == "F32"
    assert by_name["blk.1.attn_k.weight"].type == by_name["blk.1.attn_v.weight"].type == "Q8_0"
    assert by_name["blk.1.attn_output.weight"].type == "Q5_K"
    assert layout.kv["llama.expert_count"] == 8 and layout.kv["llama.expert_used_count"] == 2


def test_llama3_rope_freqs_and_tied_embedding_quantised_like_output(
    checkpoints: dict[str, Path],
) -> None:
    layout = file_layout(checkpoints["llama3-tiny"], "Q4_K_M")
    by_name = {t.name: t for t in layout.tensors}
    assert by_name["rope_freqs.weight"].type == "F32"
    assert by_name["rope_freqs.weight"].ne == (layout.head_dim // 2,)
    assert "output.weight" not in by_name
    assert by_name["token_embd.weight"].type == "Q6_K"


def test_tensor_and_kv_order_follow_the_llama_cpp_tool_that_makes_the_type(
    checkpoints: dict[str, Path],
) -> None:
    """convert_hf_to_gguf's order for the types it writes itself; llama-quantize's for the K-quant mixtures."""
    direct = file_layout(checkpoints["llama3-tiny"], "F16")
    names = [t.name for t in direct.tensors]
    assert names[:3] == ["rope_freqs.weight", "token_embd.weight", "blk.0.attn_norm.weight"]
    keys = list(direct.kv)
    assert keys.index("general.file_type") < keys.index("tokenizer.ggml.model") < len(keys) - 2
    quantized = file_layout(checkpoints["llama3-tiny"], "Q4_K_M")
    names = [t.name for t in quantized.tensors]
    assert names[:4] == [
        "output_norm.weight",
        "rope_freqs.weight",
        "token_embd.weight",
        "blk.0.attn_k.weight",
    ]
    assert sorted(names, key=lambda n: (int(n.split(".")[1]) if n.startswith("blk.") else -1, n)) == names
    assert list(quantized.kv)[-2:] == ["general.quantization_version", "general.file_type"]
    assert set(quantized.kv) == set(direct.kv)


def _llama_logits(path: Path, prompts: list[list[int]]) -> list[np.ndarray]:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=64, n_batch=64, n_threads=2, logits_all=True, verbose=False)
    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        out.append(np.array(llm.scores[len(ids) - 1], dtype=np.float64))
    return out


LOGIT_CASES = [
    ("llama3-tiny", "F32"),
    ("mistral-tiny", "F16"),
    ("mixtral-tiny", "F32"),
    ("smollm2-135m", "F16"),
    ("llama3-tiny-fp8", "F32"),
]


@pytest.mark.parametrize(("fixture", "qtype"), LOGIT_CASES)
def test_llama_cpp_logits_match_reference_forward(
    converted: Converted, checkpoints: dict[str, Path], fixture: str, qtype: str
) -> None:
    from tests.reference.forward import Model

    layout = file_layout(checkpoints[fixture], qtype)
    rng = np.random.default_rng(5)
    prompts = [
        [1, 2, 3],
        rng.integers(3, layout.n_vocab, 12).tolist(),
        rng.integers(3, layout.n_vocab, 30).tolist(),
    ]
    ref = Model(checkpoints[fixture])
    ours = _llama_logits(converted(fixture, qtype), prompts)
    for ids, got in zip(prompts, ours, strict=True):
        want = ref.logits(ids).astype(np.float64)
        cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cos >= 0.9999, f"{fixture} {qtype}: cosine {cos:.6f} for prompt of {len(ids)} tokens"


def test_smollm2_q4_k_m_answers_paris(converted: Converted) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(str(converted("smollm2-135m", "Q4_K_M")), n_ctx=256, n_threads=2, verbose=False)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    text = llm(prompt, max_tokens=24, temperature=0.0, top_k=1)["choices"][0]["text"]
    assert "Paris" in text, text


def test_progress_reports_every_tensor_and_reaches_total(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    seen: list[tuple[str, int, int]] = []
    result = convert(
        checkpoints["mixtral-tiny"], tmp_path / "m.gguf", "Q8_0", progress=lambda *a: seen.append(a)
    )
    layout = file_layout(checkpoints["mixtral-tiny"], "Q8_0")
    assert {n for n, _, _ in seen if n} == {t.name for t in layout.tensors}
    assert seen[-1][1] == seen[-1][2] == layout.tensor_bytes
    assert all(b[1] >= a[1] for a, b in zip(seen, seen[1:], strict=False))
    assert result.bytes == layout.file_size and result.n_tensors == len(layout.tensors)
    assert result.type_counts == layout.type_counts() and result.peak_rss_bytes > 0
