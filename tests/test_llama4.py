"""Llama 4 (llama.cpp's `llama4`): conversion as llama.cpp does it, llama.cpp running the result, and downstream.

Two fixtures: llama4-tiny (Llama4ForCausalLM shaped like Scout: 16 experts on every layer, QK norm, llama3
RoPE scaling, tied) and llama4-vision-tiny (Llama4ForConditionalGeneration shaped like Maverick: dense and MoE
layers alternating, 128 experts, no QK norm, a vision tower the text GGUF leaves out). The yardsticks:
the checkpoint's own weights (the F32 tensors), llama.cpp's quantisers applied to our F32 output, the numpy
forward of tests/reference/forward_llama4.py (itself checked against transformers, opt-in) and, opt-in,
convert_hf_to_gguf.py's whole files.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from quant.convert import file_layout
from tests.reference.forward import read_weights
from tests.reference.forward_llama4 import Llama4, text_config
from tests.support.bad_checkpoints import assert_fails, edit_config
from tests.support.cli_helpers import Cli
from tests.support.convert_support import (
    anchor,
    assert_follows_f32,
    clone_checkpoint,
    convert_hf_to_gguf,
    converted_arrays,
    llama_quantize,
    rewrite_header,
)

FIXTURES = ("llama4-tiny", "llama4-vision-tiny")
# the rest of the matrix (the other fixture's F32 weights, F16 and Q8_0; smoke; a prompt past one attention
# chunk) runs with -m slow, like tests/test_convert.py's: the paths are shared with what the fast run covers
SLOW_FIXTURE = [pytest.param("llama4-vision-tiny", marks=pytest.mark.slow)]


def only_with_slow(request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("runs with -m slow")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Converted:
    """Module cache: (fixture, type) -> (GGUF path, arrays by name, layout), each conversion made once (the
    202k-token Llama 4 vocabulary makes every preparation cost seconds)."""

    def __init__(self, checkpoints: dict[str, Path], root: Path) -> None:
        self.checkpoints, self.root, self.made = checkpoints, root, {}

    def __call__(self, fixture: str, qtype: str) -> tuple[Path, dict[str, tuple[str, np.ndarray]]]:
        if (fixture, qtype) not in self.made:
            out = self.root / f"{fixture}-{qtype}.gguf"
            layouts: list = []
            arrays = converted_arrays(self.checkpoints[fixture], out, qtype, layouts=layouts)
            self.made[(fixture, qtype)] = (out, arrays, layouts[0])
        return self.made[(fixture, qtype)][:2]

    def layout(self, fixture: str, qtype: str):
        self(fixture, qtype)
        return self.made[(fixture, qtype)][2]


@pytest.fixture(scope="module")
def converted(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Converted:
    return Converted(checkpoints, tmp_path_factory.mktemp("llama4"))


@pytest.mark.parametrize("fixture", FIXTURES)
def test_layout_kvs_and_tensors(converted: Converted, checkpoints: dict[str, Path], fixture: str) -> None:
    src = checkpoints[fixture]
    cfg = text_config(json.loads((src / "config.json").read_text()))
    layout = converted.layout(fixture, "Q4_K_M")
    kv, by_name = layout.kv, {t.name: t for t in layout.tensors}
    assert kv["general.architecture"] == "llama4"
    assert kv["llama4.feed_forward_length"] == cfg["intermediate_size_mlp"]  # the dense layers' width
    assert kv["llama4.expert_feed_forward_length"] == cfg["intermediate_size"]
    assert kv["llama4.interleave_moe_layer_step"] == cfg["interleave_moe_layer_step"]
    assert kv["llama4.expert_count"] == cfg["num_local_experts"] and kv["llama4.expert_used_count"] == 1
    assert kv["llama4.attention.key_length"] == cfg["head_dim"]
    assert "llama4.attention.sliding_window" not in kv  # chunked layers exist, so llama.cpp's defaults apply
    e, h, f = cfg["num_local_experts"], cfg["hidden_size"], cfg["intermediate_size"]
    for i in range(cfg["num_hidden_layers"]):
        if i in cfg["moe_layers"]:
            assert by_name[f"blk.{i}.ffn_gate_exps.weight"].ne == (h, f, e)
            assert by_name[f"blk.{i}.ffn_down_exps.weight"].ne == (f, h, e)
            assert by_name[f"blk.{i}.ffn_gate_shexp.weight"].ne == (h, f)
            assert by_name[f"blk.{i}.ffn_gate_inp.weight"].type == "F32"
            assert f"blk.{i}.ffn_gate.weight" not in by_name
        else:
            assert by_name[f"blk.{i}.ffn_gate.weight"].ne == (h, cfg["intermediate_size_mlp"])
            assert f"blk.{i}.ffn_gate_inp.weight" not in by_name
    assert ("output.weight" in by_name) != cfg["tie_word_embeddings"]
    assert ("rope_freqs.weight" in by_name) == (cfg["rope_scaling"] is not None)
    assert not any("vision" in n or "mm" in n.split(".")[0] for n in by_name)


@pytest.mark.parametrize("fixture", ["llama4-tiny", *SLOW_FIXTURE])
def test_f32_tensors_are_the_checkpoint_weights(
    request: pytest.FixtureRequest, converted: Converted, checkpoints: dict[str, Path], fixture: str
) -> None:
    """Experts split and transposed as llama.cpp stacks them; Q/K rows not permuted (RoPE on pairs)."""
    if fixture != "llama4-tiny":
        only_with_slow(request)
    _, got = converted(fixture, "F32")
    w = {n.removeprefix("language_model."): t for n, t in read_weights(checkpoints[fixture]).items()}
    cfg = text_config(json.loads((checkpoints[fixture] / "config.json").read_text()))
    f = cfg["intermediate_size"]
    for i in cfg["moe_layers"]:
        gate_up = w[f"model.layers.{i}.feed_forward.experts.gate_up_proj"]  # [E, H, 2F]
        down = w[f"model.layers.{i}.feed_forward.experts.down_proj"]  # [E, F, H]
        assert np.array_equal(got[f"blk.{i}.ffn_gate_exps.weight"][1], gate_up[:, :, :f].transpose(0, 2, 1))
        assert np.array_equal(got[f"blk.{i}.ffn_up_exps.weight"][1], gate_up[:, :, f:].transpose(0, 2, 1))
        assert np.array_equal(got[f"blk.{i}.ffn_down_exps.weight"][1], down.transpose(0, 2, 1))
        router = w[f"model.layers.{i}.feed_forward.router.weight"]
        assert np.array_equal(got[f"blk.{i}.ffn_gate_inp.weight"][1], router)
    q = w["model.layers.0.self_attn.q_proj.weight"]
    assert np.array_equal(got["blk.0.attn_q.weight"][1], q)


@pytest.mark.parametrize("fixture", ["llama4-tiny", *SLOW_FIXTURE])
def test_f16_and_q8_0_are_what_llama_cpp_makes_of_our_f32(
    request: pytest.FixtureRequest, converted: Converted, fixture: str
) -> None:
    if fixture != "llama4-tiny":
        only_with_slow(request)
    f32 = converted(fixture, "F32")[1]
    for qtype in ("F16", "Q8_0"):
        assert_follows_f32(converted(fixture, qtype)[1], f32, qtype)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_q4_k_m_is_llama_quantize_of_our_f32(converted: Converted, fixture: str, tmp_path: Path) -> None:
    """The whole file, header included, as llama_model_quantize writes it: the expert rules of
    src/llama-quant.cpp (ffn_down layers by name, shared experts counted with them, the router kept F32)."""
    ours, arrays = converted(fixture, "Q4_K_M")
    ref = llama_quantize(converted(fixture, "F32")[0], tmp_path / "ref.gguf", "Q4_K_M")
    assert _sha256(ours) == _sha256(ref)
    types = {name: t for name, (t, _) in arrays.items()}
    # 4 layers: use_more_bits picks layers 2 and 3, for every ffn_down (routed, shared or dense) by its name
    for name, t in types.items():
        if ".ffn_down" in name:
            assert t == ("Q6_K" if name.startswith(("blk.2.", "blk.3.")) else "Q4_K"), name
    assert all(t == "F32" for n, t in types.items() if "ffn_gate_inp" in n)


@pytest.mark.slow
@pytest.mark.parametrize("qtype", ["Q4_K_S", "Q5_K_M", "Q6_K"])
@pytest.mark.parametrize("fixture", FIXTURES)
def test_other_k_quants_are_llama_quantize_of_our_f32(
    request: pytest.FixtureRequest, converted: Converted, fixture: str, qtype: str, tmp_path: Path
) -> None:
    only_with_slow(request)
    ref = llama_quantize(converted(fixture, "F32")[0], tmp_path / "ref.gguf", qtype)
    assert _sha256(converted(fixture, qtype)[0]) == _sha256(ref)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_llama_cpp_logits_on_our_f32_match_the_reference_forward(
    converted: Converted, checkpoints: dict[str, Path], fixture: str
) -> None:
    from tests.reference.llamacpp import LlamaCpp, cosine

    llm = LlamaCpp(converted(fixture, "F32")[0], n_ctx=64)
    ref = Llama4(checkpoints[fixture])
    rng = np.random.default_rng(11)
    for ids in (
        [200000, 1, 2],
        [200000, *rng.integers(3, 200000, 11)],
        [200000, *rng.integers(3, 200000, 29)],
    ):
        ids = [int(i) for i in ids]
        cos = cosine(llm.logits(ids), ref.logits(ids))
        assert cos >= 0.9999, f"{fixture}: cosine {cos:.6f} for {len(ids)} tokens"


def test_llama_cpp_tokenises_like_the_checkpoint_tokenizer(
    converted: Converted, llama4_tiny_dir: Path
) -> None:
    import llama_cpp
    from tokenizers import Tokenizer

    from tests.test_fixtures import TRICKY

    llm = llama_cpp.Llama(str(converted("llama4-tiny", "F32")[0]), vocab_only=True, verbose=False)
    tok = Tokenizer.from_file(str(llama4_tiny_dir / "tokenizer.json"))
    chat = "<|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\n"
    for text in [*TRICKY, chat]:
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == tok.encode(text).ids, text
    assert llm.token_eos() == 200008 and llm.token_bos() == 200000


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.fixture
def bad(llama4_tiny_dir: Path, tmp_path: Path) -> Path:
    return clone_checkpoint(llama4_tiny_dir, tmp_path / "ckpt")


def test_expert_tensors_not_matching_the_config(bad: Path, tmp_path: Path, cli) -> None:
    edit_config(bad, intermediate_size=128)  # the experts' width; the checkpoint's is 256
    line = assert_fails(
        bad, tmp_path / "out", cli, "'model.layers.0.feed_forward.experts.down_proj'", "[16, 256, 256]"
    )
    assert "config.json (num_local_experts, intermediate_size, hidden_size) implies [16, 128, 256]" in line


def test_fewer_experts_than_the_config_says(bad: Path, tmp_path: Path, cli) -> None:
    edit_config(bad, num_local_experts=8)
    assert_fails(bad, tmp_path / "out", cli, "experts.down_proj", "[16, 256, 256]", "[8, 256, 256]")


def test_missing_expert_tensor(bad: Path, tmp_path: Path, cli) -> None:
    rewrite_header(
        bad / "model.safetensors", lambda h: h.pop("model.layers.2.feed_forward.experts.down_proj")
    )
    assert_fails(bad, tmp_path / "out", cli, "missing tensor 'model.layers.2.feed_forward.experts.down_proj'")


def test_interleave_step_not_matching_the_tensors(bad: Path, tmp_path: Path, cli) -> None:
    edit_config(bad, interleave_moe_layer_step=2)  # layer 0 would be dense, but holds experts
    assert_fails(bad, tmp_path / "out", cli, "missing tensor 'model.layers.0.feed_forward.gate_proj.weight'")


# ---- downstream: plan, inspect, smoke, hub details -------------------------------------------------------


def test_plan_counts_active_parameters_and_chunked_kv_cache(checkpoints: dict[str, Path]) -> None:
    from dataclasses import replace

    from hubtui.commands.plan import render
    from quant.sizing.memory import RunSettings, kv_bytes_per_layer
    from quant.sizing.plan import load_source, plan
    from quant.sizing.profiles import get_profile

    src = checkpoints["llama4-vision-tiny"]
    cfg = text_config(json.loads((src / "config.json").read_text()))
    source = load_source(src, ["Q8_0"])
    shape = source.shapes["Q8_0"]
    layout = file_layout(src, "Q8_0")
    assert shape.n_params == layout.n_params
    e, h, f = cfg["num_local_experts"], cfg["hidden_size"], cfg["intermediate_size"]
    per_expert = 3 * h * f * len(cfg["moe_layers"])
    assert layout.n_expert_params == per_expert
    assert shape.n_active_params == shape.n_params - (e - 1) * per_expert
    assert shape.expert_bytes == sum(t.nbytes for t in layout.tensors if "_exps." in t.name)
    # llama.cpp: 8192-token chunks on layers 0, 1, 2 (of every 4); their cache is full size by default
    assert (shape.n_swa, shape.swa_layers) == (8192, (0, 1, 2))
    settings = RunSettings(n_ctx=32768)
    assert len({kv_bytes_per_layer(shape, settings, il) for il in range(4)}) == 1
    trimmed = replace(settings, swa_full=False)
    full = kv_bytes_per_layer(shape, trimmed, 3)
    assert full == kv_bytes_per_layer(shape, settings, 0)
    assert kv_bytes_per_layer(shape, trimmed, 0) == full * (8192 + 512) // 32768
    text = render(plan(source, get_profile("laptop-8g")))
    assert (
        "mixture of experts: 128 experts, 1 per token" in text and "chunked attention: 3 of 4 layers" in text
    )


def test_inspect_shows_experts_and_active_parameters(
    converted: Converted, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    import quant.gguf_file

    path = converted("llama4-vision-tiny", "Q4_K_M")[0]
    summary = quant.gguf_file.read_gguf_summary(path)  # read once: 202k tokens and 440k merges take seconds
    layout = converted.layout("llama4-vision-tiny", "Q4_K_M")
    assert summary.architecture == "llama4" and summary.n_params == layout.n_params
    assert summary.n_active_params == layout.n_params - 127 * layout.n_expert_params
    monkeypatch.setattr(quant.gguf_file, "read_gguf_summary", lambda _path: summary)
    res = cli("inspect", path)
    assert res.code == 0, res.err
    assert "128 (1 used per token: " in res.out and " parameters active)" in res.out
    as_json = cli("inspect", path, "--json").json()
    assert as_json["n_active_params"] == summary.n_active_params


def test_smoke_accepts_the_llama4_architecture(tmp_path: Path) -> None:
    from hubtui.runner.gguf_check import check_facts, read_facts
    from tests.support.runner_models import write_tiny_gguf

    facts = read_facts(write_tiny_gguf(tmp_path / "l4.gguf", n_tokens=100, embed_rows=100, arch="llama4"))
    assert [(f.level, f.message) for f in check_facts(facts) if f.check == "architecture"] == [
        ("ok", "architecture llama4")
    ]


def test_chat_uses_the_checkpoints_template_and_llama_cpp_replies(converted: Converted) -> None:
    from hubtui.runner.chat import ChatEngine, load_model

    llm = load_model(converted("llama4-tiny", "Q4_K_M")[0], n_ctx=256, gpu_layers=0)
    try:
        engine = ChatEngine(llm, temperature=0.0, max_tokens=6)
        assert engine.format.source == "gguf"
        assert engine.format.render(engine.messages([{"role": "user", "content": "Hi"}])) == (
            "<|begin_of_text|><|header_start|>user<|header_end|>\n\nHi<|eot|>"
            "<|header_start|>assistant<|header_end|>\n\n"
        )
        reply = engine.send("Hi")
        assert reply.stats.tokens > 0 and reply.stats.prompt_tokens == 11
    finally:
        llm.close()


@pytest.mark.slow
def test_smoke_runs_a_llama4_file(request: pytest.FixtureRequest, converted: Converted) -> None:
    """llama.cpp loads and runs it through `hubtui smoke`: perplexity and a greedy reply are measured (random
    weights, so the verdict is a warning about their quality)."""
    from hubtui.runner.smoke import run_smoke

    only_with_slow(request)
    report = run_smoke(converted("llama4-tiny", "Q8_0")[0], n_ctx=256).to_dict()
    assert report["verdict"] in ("pass", "warn"), report["reasons"]
    assert report["perplexity"] > 1 and report["measurements"]["generation"]["tokens"] > 0
    assert not any("architecture" in r for r in report["reasons"])


def test_hub_details_count_experts_and_active_parameters(fake_hub, llama4_vision_tiny_dir: Path) -> None:
    from hubtui.hub.details import details
    from tests.fakehub.server import FakeRepo

    repo = fake_hub.add_repo(FakeRepo("someone/llama4-vision-tiny"))
    for f in sorted(llama4_vision_tiny_dir.iterdir()):
        repo.add(f.name, source=f)
    d = details("someone/llama4-vision-tiny", endpoint=fake_hub.url)
    weights = read_weights(llama4_vision_tiny_dir)
    experts = sum(w.size for n, w in weights.items() if ".experts." in n)
    assert d.parameters == sum(w.size for w in weights.values())  # vision tower included: it is in the repo
    assert (d.experts, d.experts_used) == (128, 1)
    assert d.active_parameters == d.parameters - experts + experts // 128


# ---- long prompts: chunked attention and temperature tuning (slow) --------------------------------------


@pytest.mark.slow
def test_past_one_attention_chunk_llama_cpp_matches_the_reference(
    request: pytest.FixtureRequest, converted: Converted, llama4_tiny_dir: Path
) -> None:
    """8400 tokens: the RoPE layers see only their own 8192-token chunk and the NoPE layer's queries are
    scaled from position 8191 on; without either the reference's logits move away (cosine 0.55 / 0.99999)."""
    from tests.reference.llamacpp import LlamaCpp, cosine

    only_with_slow(request)
    ids = [200000, *(int(i) for i in np.random.default_rng(9).integers(3, 200000, 8400))]
    llm = LlamaCpp(converted("llama4-tiny", "F32")[0], n_ctx=8704)
    cos = cosine(llm.logits(ids), Llama4(llama4_tiny_dir).logits(ids))
    assert cos >= 0.9999, cos


# ---- llama.cpp's converter and transformers (opt-in) ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fixture", FIXTURES)
def test_files_equal_llama_cpp_converter(
    converted: Converted, checkpoints: dict[str, Path], fixture: str, tmp_path: Path
) -> None:
    """F16 and Q8_0 as convert_hf_to_gguf.py writes them; Q4_K_M as llama-quantize makes it from its F32."""
    anchor()
    theirs = {
        t: convert_hf_to_gguf(checkpoints[fixture], t, tmp_path / f"{t}.gguf") for t in ("f32", "f16", "q8_0")
    }
    theirs["q4_k_m"] = llama_quantize(theirs["f32"], tmp_path / "q4_k_m.gguf", "Q4_K_M")
    for qtype, ref in theirs.items():
        assert _sha256(converted(fixture, qtype.upper())[0]) == _sha256(ref), qtype


TRANSFORMERS_LOGITS = """
import json, sys, numpy as np, torch, transformers
ckpt, ids = sys.argv[1], json.loads(sys.argv[2])
cfg = transformers.AutoConfig.from_pretrained(ckpt)
model = getattr(transformers, cfg.architectures[0]).from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager")
with torch.no_grad():
    print(json.dumps(model(input_ids=torch.tensor([ids])).logits[0, -1].tolist()))
"""


@pytest.mark.slow
@pytest.mark.parametrize("fixture", FIXTURES)
def test_reference_forward_matches_transformers(checkpoints: dict[str, Path], fixture: str) -> None:
    from tests.reference.llamacpp import cosine

    python, _ = anchor()
    ids = [200000, *(int(i) for i in np.random.default_rng(5).integers(3, 200000, 40))]
    proc = subprocess.run(
        [python, "-c", TRANSFORMERS_LOGITS, str(checkpoints[fixture]), json.dumps(ids)],
        check=True,
        capture_output=True,
        text=True,
    )
    theirs = np.array(json.loads(proc.stdout.strip().splitlines()[-1]), dtype=np.float32)
    ours = Llama4(checkpoints[fixture]).logits(ids)
    assert cosine(ours, theirs) >= 0.999999 and np.abs(ours - theirs).max() < 1e-4
