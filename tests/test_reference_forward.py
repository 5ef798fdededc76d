"""The numpy reference forward pass agrees with llama.cpp on exact (F32) copies of every fixture.

Other tests trust tests/reference/forward.py to say what a correct conversion computes, so it is checked
here against llama.cpp itself, through an F32 GGUF written without the project's converter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fixtures.prompts import render_chat
from tests.reference.f32_gguf import llama3_rope_factors, write_f32_gguf
from tests.reference.forward import Model, rope_inv_freq
from tests.reference.llamacpp import LlamaCpp, cosine

llama_cpp = pytest.importorskip("llama_cpp")

SHORT = [1, 500, 1000, 77, 31999, 5, 6, 7, 8, 9, 10, 11, 12, 100, 200, 300, 400, 2000, 3000, 25, 26, 27]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def long_prompt(n: int, vocab: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(n).integers(3, min(vocab, 32000), n)]


@pytest.fixture(scope="module")
def f32(tmp_path_factory):
    """name → (reference Model, llama.cpp on an F32 GGUF of the same checkpoint), made on first use."""
    made: dict[str, tuple[Model, LlamaCpp]] = {}

    def get(name: str, ckpt):
        if name not in made:
            gguf_path = write_f32_gguf(ckpt, tmp_path_factory.mktemp("f32") / f"{name}.gguf")
            made[name] = (Model(ckpt), LlamaCpp(gguf_path))
        return made[name]

    return get


@pytest.mark.parametrize("name", ["llama3-tiny", "mistral-tiny", "mixtral-tiny"])
def test_random_fixtures_match_llama_cpp(checkpoints, f32, name):
    model, llm = f32(name, checkpoints[name])
    for ids in (SHORT, long_prompt(128, model.config["vocab_size"])):
        ours, theirs = model.logits(ids), llm.logits(ids)
        assert cosine(ours, theirs) > 0.99999
        assert int(np.argmax(ours)) == int(np.argmax(theirs))
        np.testing.assert_allclose(ours, theirs, atol=0.02 * np.abs(theirs).max())


def test_kv_cache_decoding_equals_a_full_pass(mixtral_tiny_dir):
    model = Model(mixtral_tiny_dir)
    full = model.logits(SHORT)
    model.reset()
    model.forward(SHORT[:9])
    model.forward(SHORT[9:15])
    np.testing.assert_allclose(model.forward(SHORT[15:]), full, rtol=1e-4, atol=1e-5)


def test_llama3_rope_scaling_is_hf_formula_and_matters(llama3_tiny_dir, f32):
    cfg = json.loads((llama3_tiny_dir / "config.json").read_text())
    params = cfg["rope_parameters"]
    plain = rope_inv_freq({"rope_theta": params["rope_theta"]}, 64)
    scaled = rope_inv_freq(cfg, 64)
    # HF's smooth interpolation equals the per-frequency divisors llama.cpp reads from `rope_freqs`
    np.testing.assert_allclose(
        scaled, plain / llama3_rope_factors(params, params["rope_theta"], 64), rtol=1e-6
    )
    assert (scaled < plain).any() and (scaled == plain).any()
    # and the fixture is sensitive to it: ignoring the scaling moves the logits measurably
    model, llm = f32("llama3-tiny", llama3_tiny_dir)
    ids = long_prompt(128, 32000)
    theirs = llm.logits(ids)
    model.inv_freq = plain
    try:
        assert cosine(model.logits(ids), theirs) < 0.9999
    finally:
        model.inv_freq = scaled


def test_smollm2_answers_paris_like_llama_cpp_on_the_original_gguf(smollm2_dir, f32):
    """Greedy decoding of the rebuilt checkpoint = llama.cpp on its exact F32 copy = llama.cpp on the shipped GGUF."""
    from tokenizers import Tokenizer

    from hubtui.demo.smollm2 import bundled_gguf
    from tests.fixtures.prompts import PARIS_MESSAGES

    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    ids = tok.encode(render_chat(smollm2_dir, PARIS_MESSAGES)).ids
    eos = {tok.token_to_id("<|im_end|>")}
    model, exact = f32("smollm2-135m", smollm2_dir)
    ours = model.greedy(ids, 8, stop=eos)
    assert ours == exact.greedy(ids, 8, stop=eos)
    assert ours == LlamaCpp(bundled_gguf()).greedy(ids, 8, stop=eos)
    assert "Paris" in tok.decode(ours)


@pytest.mark.parametrize("qtype", ["Q4_K_M"])  # Q8_0 behaves the same (checked by hand)
def test_smollm2_quantised_by_llama_cpp_answers_paris_to_the_fixture_prompt(
    smollm2_dir, f32, tmp_path, qtype
):
    """What the converter tests can rely on: llama.cpp's own quantisation of this fixture answers Paris."""
    import ctypes

    from tokenizers import Tokenizer

    from tests.fixtures.prompts import PARIS_MESSAGES

    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    ids = tok.encode(render_chat(smollm2_dir, PARIS_MESSAGES)).ids
    model, exact = f32("smollm2-135m", smollm2_dir)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[
        qtype
    ]
    params.nthread = 2
    out = tmp_path / f"smollm2-{qtype}.gguf"
    source = exact.llm.model_path.encode()
    assert llama_cpp.llama_model_quantize(source, str(out).encode(), ctypes.byref(params)) == 0
    answer = tok.decode(LlamaCpp(out).greedy(ids, 12, stop={tok.token_to_id("<|im_end|>")}))
    assert "Paris" in answer


@pytest.mark.slow  # the greedy test above already compares against the shipped GGUF
def test_smollm2_is_close_to_the_original_gguf(smollm2_dir, f32):
    """The rebuilt checkpoint computes what the shipped Q4_1 GGUF computes, up to llama.cpp's rounding.

    llama.cpp quantises activations to 8 bits for Q4_1 matmuls, which is enough to swap two near-tied
    candidates (on this prompt it starts "L'Étoile" where exact arithmetic starts "The capital"), so greedy
    text is compared on the exact F32 copy above; here the logits must agree closely.
    """
    from tokenizers import Tokenizer

    from hubtui.demo.smollm2 import bundled_gguf

    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    model, exact = f32("smollm2-135m", smollm2_dir)
    original = LlamaCpp(bundled_gguf())
    for text in (render_chat(smollm2_dir, CHAT), "def fibonacci(n):\n"):
        ids = tok.encode(text).ids
        ours, theirs = model.logits(ids), original.logits(ids)
        assert cosine(ours, theirs) > 0.99
        assert set(np.argsort(-ours)[:2]) & set(np.argsort(-theirs)[:2])
        # the near tie is resolved the same way as llama.cpp in exact arithmetic
        assert int(np.argmax(ours)) == int(np.argmax(exact.logits(ids)))
