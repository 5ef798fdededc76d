"""Ministral 3 / Mistral 3 (llama.cpp's `mistral3`) and Mistral's own layout, against llama.cpp itself.

As for the Llama fixtures, llama.cpp's `llama_model_quantize` of our F32 output is the reference for every
other type: tensor by tensor and KV by KV (the whole file for K-quants, which llama.cpp only makes that
way). The F32 output itself is checked against llama.cpp's logits and a numpy forward pass (yarn RoPE, the
llama 4 attention temperature), and its tokenizer against mistral-common's. Whole files against
convert_hf_to_gguf.py are compared in test_convert_anchor.py (opt-in).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from quant.convert import convert, file_layout, resolve_file_type
from quant.errors import ConversionError
from tests.fixtures.cache import checkpoint
from tests.fixtures.checkpoints import MISTRAL3_BUILDERS, native_weights, random_weights
from tests.fixtures.tekken_tokenizer import tekkenizer
from tests.support.bad_checkpoints import assert_fails
from tests.support.convert_support import clone_checkpoint, read_gguf, tensor_bytes, write_tiny_checkpoint
from tests.test_convert import Converted
from tests.test_vocab import TRICKY

TYPES = ("Q8_0", "Q4_K_M", "F16")
PARITY_FAST = [("ministral3-tiny", "Q4_K_M"), ("mistral3-tiny", "Q8_0"), ("ministral3-native-tiny", "F16")]
PARITY_SLOW = [(f, q) for f in MISTRAL3_BUILDERS for q in TYPES if (f, q) not in PARITY_FAST]
TEKKEN = {
    "ministral3-tiny": "tekken_240718.json",
    "mistral3-tiny": "tekken_240911.json",
    "ministral3-native-tiny": "tekken_240718.json",
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    return Converted(
        {name: checkpoint(name) for name in MISTRAL3_BUILDERS}, tmp_path_factory.mktemp("mistral3")
    )


def kvs(path: Path) -> dict[str, object]:
    return read_gguf(path)[0]


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def assert_parity(converted: Converted, fixture: str, qtype: str) -> None:
    ours, ref = converted(fixture, qtype), converted.reference(fixture, qtype)
    got, want = tensor_bytes(ours), tensor_bytes(ref)
    assert list(got) == list(want) if resolve_file_type(qtype).by_quantize else set(got) == set(want)
    for name, (rtype, rshape, rdata) in want.items():
        assert got[name][:2] == (rtype, rshape), name
        assert got[name][2] == rdata, f"{name} ({rtype}) differs from llama.cpp's bytes"
    assert kvs(ours) == kvs(ref)  # every key and value (F16: in the converter's order rather than quantize's)
    if resolve_file_type(qtype).by_quantize:
        assert sha256(ours) == sha256(ref)


@pytest.mark.parametrize(("fixture", "qtype"), PARITY_FAST)
def test_tensors_and_keys_equal_llama_quantize(converted: Converted, fixture: str, qtype: str) -> None:
    assert_parity(converted, fixture, qtype)


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "qtype"), PARITY_SLOW)
def test_tensors_and_keys_equal_llama_quantize_all(
    request: pytest.FixtureRequest, converted: Converted, fixture: str, qtype: str
) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the rest of the parity matrix runs with -m slow")
    assert_parity(converted, fixture, qtype)


def test_ministral3_keys_and_tensors() -> None:
    layout = file_layout(checkpoint("ministral3-tiny"), "Q4_K_M")
    kv = layout.kv
    assert kv["general.architecture"] == "mistral3"
    assert kv["mistral3.rope.scaling.type"] == "yarn" and kv["mistral3.rope.scaling.factor"] == 16.0
    assert kv["mistral3.rope.scaling.original_context_length"] == 16
    assert kv["mistral3.rope.scaling.yarn_log_multiplier"] == 1.0
    assert kv["mistral3.attention.temperature_scale"] == pytest.approx(0.1)
    assert kv["mistral3.attention.key_length"] == 64 and kv["tokenizer.ggml.pre"] == "tekken"
    names = {t.name for t in layout.tensors}
    assert "output.weight" not in names and "rope_freqs.weight" not in names  # tied; yarn needs no factors
    by_name = {t.name: t for t in layout.tensors}
    assert by_name["token_embd.weight"].type == "Q6_K"  # the tied embedding is quantised like output


def test_mistral3_leaves_the_vision_tower_out_of_the_text_model() -> None:
    layout = file_layout(checkpoint("mistral3-tiny"), "Q8_0")
    kv = layout.kv
    assert kv["general.architecture"] == "mistral3" and kv["mistral3.attention.key_length"] == 96
    assert "mistral3.rope.scaling.type" not in kv and "mistral3.attention.temperature_scale" not in kv
    assert all(not t.name.startswith(("v.", "mm.")) for t in layout.tensors)
    assert {t.name for t in layout.tensors} >= {"output.weight", "token_embd.weight", "blk.1.attn_q.weight"}
    assert layout.n_params == sum(int(np.prod(t.shape)) for t in layout.tensors)


def test_layout_predicts_each_file_exactly(converted: Converted) -> None:
    for fixture, qtype in (("ministral3-tiny", "Q4_K_M"), ("ministral3-native-tiny", "F16")):
        path, layout = converted(fixture, qtype), file_layout(checkpoint(fixture), qtype)
        assert path.stat().st_size == layout.file_size
        assert [t.name for t in layout.tensors] == list(tensor_bytes(path))


def test_native_layout_gives_the_hf_layouts_tensors(converted: Converted) -> None:
    """Same weights, Mistral's names and rotary layout: every output tensor is the same, byte for byte."""
    for qtype in ("F32", "Q4_K_M"):
        native, hf = (
            tensor_bytes(converted("ministral3-native-tiny", qtype)),
            tensor_bytes(converted("ministral3-tiny", qtype)),
        )
        assert native == hf, qtype
    kv = kvs(converted("ministral3-native-tiny", "F32"))
    assert kv["general.architecture"] == "mistral3" and kv["tokenizer.ggml.model"] == "gpt2"
    assert kv["mistral3.vocab_size"] == 131072 and kv["tokenizer.ggml.padding_token_id"] == 11
    keys = list(kv)
    assert keys.index("tokenizer.ggml.token_type") < keys.index("mistral3.vocab_size")


def _logit_prompts(n_vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(5)
    # past 16 (the fixture's original context), so the attention temperature takes effect
    return [[1, 2, 3], [1, *rng.integers(1000, n_vocab, 11).tolist()], [1, *rng.integers(1000, n_vocab, 29)]]


@pytest.mark.parametrize(
    ("fixture", "qtype", "reference"),
    [
        ("ministral3-tiny", "F32", "ministral3-tiny"),
        ("mistral3-tiny", "F16", "mistral3-tiny"),
        ("ministral3-native-tiny", "F32", "ministral3-tiny"),
    ],
)
def test_llama_cpp_logits_match_the_numpy_forward(
    converted: Converted, fixture: str, qtype: str, reference: str
) -> None:
    from tests.reference.forward import Model
    from tests.reference.llamacpp import LlamaCpp, cosine

    llm = LlamaCpp(converted(fixture, qtype), n_ctx=64)
    ref = Model(checkpoint(reference))
    for ids in _logit_prompts(131072):
        cos = cosine(llm.logits(ids), ref.logits(ids))
        assert cos >= 0.9999, f"{fixture} {qtype}: cosine {cos:.6f} for a prompt of {len(ids)} tokens"


@pytest.mark.parametrize("fixture", list(MISTRAL3_BUILDERS))
def test_llama_cpp_tokenises_like_mistral_common(converted: Converted, fixture: str) -> None:
    from llama_cpp import Llama

    llm = Llama(str(converted(fixture, "F32")), vocab_only=True, verbose=False)
    tekken = tekkenizer(TEKKEN[fixture])
    for text in TRICKY:
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == tekken.encode(
            text, bos=True, eos=False
        )
    chat = "[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]What is 2+2?[/INST]4</s>"
    ids = llm.tokenize(chat.encode(), add_bos=True, special=True)
    assert ids[:2] == [1, 17] and ids[-1] == 2 and 3 in ids and 4 in ids


# ---- Mistral's layout with a SentencePiece tokenizer and without llama_4_scaling (older models: `llama`)


@pytest.fixture(scope="module")
def native_spm(mistral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(HF twin, the same weights in Mistral's layout with tokenizer.model.v3 and no chat_template.jinja)."""
    from hubtui.demo.checkpoint_writer import write_json, write_safetensors
    from tests.fixtures.checkpoints import mistral_common_tokenizer

    root = tmp_path_factory.mktemp("native-spm")
    hf = write_tiny_checkpoint(root / "hf", mistral_tiny_dir, dtype="BF16")
    config = json.loads((hf / "config.json").read_text())
    native = root / "Mistral-7B-native"
    native.mkdir()
    params = {
        "dim": 64, "n_layers": 2, "head_dim": 16, "hidden_dim": 128, "n_heads": 4, "n_kv_heads": 2,
        "norm_eps": 1e-5, "rope_theta": 1000000.0, "vocab_size": 32768, "max_position_embeddings": 4096,
    }  # fmt: skip
    write_json(native / "params.json", params)
    write_safetensors(
        native / "consolidated.safetensors", native_weights(random_weights(config, 7), config), "BF16"
    )
    shutil.copyfile(mistral_common_tokenizer("v3"), native / "tokenizer.model.v3")
    return hf, native


def test_native_sentencepiece_layout_is_a_llama_model(native_spm: tuple[Path, Path], tmp_path: Path) -> None:
    from llama_cpp import Llama

    from tests.reference.forward import Model
    from tests.reference.llamacpp import LlamaCpp, cosine
    from tests.test_vocab import _sentencepiece_reference

    hf, native = native_spm
    out = convert(native, tmp_path / "n.gguf", "F32", threads=2).path
    kv = kvs(out)
    assert kv["general.architecture"] == "llama" and kv["llama.vocab_size"] == 32768
    assert kv["tokenizer.ggml.model"] == "llama" and "tokenizer.ggml.pre" not in kv
    assert kv["tokenizer.chat_template"] == "mistral-v3"  # llama.cpp's built-in template of that name
    assert "llama.rope.scaling.type" not in kv and "llama.attention.temperature_scale" not in kv
    llm = Llama(str(out), vocab_only=True, verbose=False)
    for text in TRICKY:
        want = _sentencepiece_reference(native / "tokenizer.model.v3", text, add_bos=True)
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == want
    del llm
    # chat renders the named template through llama.cpp's own implementation of it
    from hubtui.runner.chat import load_model, prompt_tokens
    from hubtui.runner.formats import chat_format_for

    model = load_model(out, n_ctx=64, gpu_layers=0)
    fmt = chat_format_for(model)
    assert fmt.source == "gguf" and fmt.builtin
    assert fmt.render([{"role": "user", "content": "Hi"}]) == "[INST] Hi[/INST]"
    assert prompt_tokens(model, fmt, [{"role": "user", "content": "Hi"}])[:2] == [1, 3]  # <s> [INST]
    del model
    logits, ref = LlamaCpp(out, n_ctx=64), Model(hf)
    for ids in _logit_prompts(32768)[:2]:
        assert cosine(logits.logits(ids), ref.logits(ids)) >= 0.9999


# ---- bad input: one line naming the file and key, exit 1, nothing left behind


@pytest.fixture
def native(tmp_path: Path) -> Path:
    return clone_checkpoint(checkpoint("ministral3-native-tiny"), tmp_path / "native")


def _edit_params(ckpt: Path, **changes: object) -> None:
    params = json.loads((ckpt / "params.json").read_text())
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    (ckpt / "params.json").unlink()
    (ckpt / "params.json").write_text(json.dumps(params))


@pytest.mark.parametrize("key", ["head_dim", "n_heads", "dim", "max_position_embeddings", "norm_eps"])
def test_params_json_missing_a_key(native: Path, tmp_path: Path, cli, key: str) -> None:
    _edit_params(native, **{key: None})
    assert_fails(native, tmp_path / "out", cli, "params.json", f"'{key}'")


def test_params_json_with_a_broken_yarn_or_vocab_size(native: Path, tmp_path: Path, cli) -> None:
    _edit_params(native, yarn={"factor": 16.0, "beta": 32.0})
    assert_fails(native, tmp_path / "a", cli, "params.json", "'yarn'", "'alpha'")
    _edit_params(native, yarn=None, vocab_size=32000)
    assert_fails(native, tmp_path / "b", cli, "params.json", "'vocab_size'", "131072")
    _edit_params(native, vocab_size=131072, moe={"num_experts": 8})
    assert_fails(native, tmp_path / "c", cli, "params.json", "'moe'")


def test_vision_only_checkpoints_are_refused(tmp_path: Path, cli) -> None:
    from hubtui.demo.checkpoint_writer import write_safetensors
    from tests.fixtures.checkpoints import MISTRAL3_TINY_CONFIG, vision_weights

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(MISTRAL3_TINY_CONFIG))
    write_safetensors(hf / "model.safetensors", vision_weights(MISTRAL3_TINY_CONFIG, 1), "BF16")
    line = assert_fails(hf, tmp_path / "a", cli, "model.safetensors", "vision")
    native = clone_checkpoint(
        checkpoint("ministral3-native-tiny"), tmp_path / "n", skip=("consolidated.safetensors",)
    )
    write_safetensors(
        native / "consolidated.safetensors",
        {"vision_encoder.ln_pre.weight": np.ones(64, np.float32)},
        "BF16",
    )
    assert_fails(native, tmp_path / "b", cli, "consolidated.safetensors", "vision")
    assert "traceback" not in line.lower()


def test_ministral3_without_yarn_or_its_keys_is_refused(tmp_path: Path, cli) -> None:
    src = checkpoint("ministral3-tiny")
    for i, (rope, culprit) in enumerate(
        [
            ({"rope_type": "default", "rope_theta": 1e6}, "yarn"),
            (
                {
                    **json.loads((src / "config.json").read_text())["rope_parameters"],
                    "llama_4_scaling_beta": None,
                },
                "'llama_4_scaling_beta'",
            ),
        ]
    ):
        ckpt = clone_checkpoint(src, tmp_path / f"c{i}", skip=("config.json",))
        cfg = json.loads((src / "config.json").read_text())
        cfg["rope_parameters"] = {k: v for k, v in rope.items() if v is not None}
        (ckpt / "config.json").write_text(json.dumps(cfg))
        assert_fails(ckpt, tmp_path / f"o{i}", cli, "config.json", culprit)


def test_mistral4_text_model_is_refused_by_name(tmp_path: Path) -> None:
    src = checkpoint("mistral3-tiny")
    ckpt = clone_checkpoint(src, tmp_path / "c", skip=("config.json",))
    cfg = json.loads((src / "config.json").read_text())
    cfg["text_config"]["model_type"] = "mistral4"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="mistral4"):
        file_layout(ckpt, "Q8_0")


# ---- the vision projector (--mmproj)


def test_mmproj_is_llama_cpps_projector_and_mtmd_loads_it(tmp_path: Path, cli) -> None:
    from tests.reference.forward import read_weights
    from tests.reference.llamacpp import mtmd_loads

    src = checkpoint("mistral3-tiny")
    text, proj = tmp_path / "text.gguf", tmp_path / "mmproj.gguf"
    code, out, _ = cli(
        "convert", str(src), "-o", str(text), "--type", "Q8_0", "--mmproj", str(proj), "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["mmproj"]["path"] == str(proj) and result["mmproj"]["type"] == "F16"
    kv = kvs(proj)
    assert kv["general.architecture"] == "clip" and kv["general.type"] == "mmproj"
    assert kv["clip.projector_type"] == "pixtral" and kv["clip.has_vision_encoder"] is True
    assert kv["clip.vision.projection_dim"] == 128 and kv["clip.vision.block_count"] == 3
    assert kv["clip.vision.spatial_merge_size"] == 2 and kv["clip.use_silu"] is True
    assert kv["clip.vision.image_mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    got = tensor_bytes(proj)
    assert got["v.patch_embd.weight"][0] == "F16" and got["v.blk.0.ln1.weight"][0] == "F32"
    assert not any(n.startswith(("blk.", "token_embd", "output")) for n in got)
    hf = read_weights(src)
    row = np.frombuffer(got["v.token_embd.img_break"][2], dtype=np.float32)
    np.testing.assert_array_equal(row, hf["language_model.model.embed_tokens.weight"][12])  # [IMG_BREAK]
    q = hf["vision_tower.transformer.layers.0.attention.q_proj.weight"]
    permuted = q.reshape(4, 2, q.shape[0] // 8, q.shape[1]).swapaxes(1, 2).reshape(q.shape)
    np.testing.assert_array_equal(
        np.frombuffer(got["v.blk.0.attn_q.weight"][2], dtype=np.float16).reshape(q.shape),
        permuted.astype(np.float16),
    )
    assert mtmd_loads(text, proj)
    code, out, _ = cli("inspect", str(proj))
    assert code == 0 and "pixtral projector, 3 blocks, embd 64" in out


def test_mmproj_needs_a_vision_tower_and_leaves_nothing_behind(tmp_path: Path, cli) -> None:
    out = tmp_path / "out"
    assert_fails(
        checkpoint("ministral3-tiny"),
        out,
        cli,
        "config.json",
        "--mmproj",
        extra=("--mmproj", str(out / "p.gguf")),
    )
    assert_fails(
        checkpoint("ministral3-native-tiny"),
        out,
        cli,
        "params.json",
        "--mmproj",
        extra=("--mmproj", str(out / "p.gguf")),
    )


def test_mmproj_and_model_are_committed_together(tmp_path: Path, cli, monkeypatch) -> None:
    """A projector that fails while being written takes nothing with it: the model's old file (under --force)
    stays as it was, and neither output nor a temporary is left; an existing projector without --force
    stops the run before anything is written."""
    import quant.convert.writer as writer

    src = checkpoint("mistral3-tiny")
    text, proj = tmp_path / "text.gguf", tmp_path / "mmproj.gguf"
    text.write_bytes(b"the user's older file")
    real = writer.write_data
    written: list[str] = []

    def failing_projector(f, prep, **kw):  # noqa: ANN001, ANN003
        written.append(prep.layout.file_type.name)
        if any(t.name.startswith("v.") for t in prep.layout.tensors):
            raise ConversionError("v.blk.0.attn_q.weight: disk on fire")
        return real(f, prep, **kw)

    monkeypatch.setattr(writer, "write_data", failing_projector)
    args = ["convert", str(src), "-o", str(text), "--type", "Q8_0", "--mmproj", str(proj), "--force"]
    code, _, err = cli(*args)
    assert code == 1 and "v.blk.0.attn_q.weight: disk on fire" in err
    assert len(written) == 2  # the model was written in full before the projector failed
    assert text.read_bytes() == b"the user's older file" and not proj.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.gguf"]

    monkeypatch.setattr(writer, "write_data", real)
    text.unlink()
    proj.write_bytes(b"an older projector")
    code, _, err = cli(*args[:-1])  # no --force
    assert code == 1 and str(proj) in err and "exists" in err
    assert not text.exists() and proj.read_bytes() == b"an older projector"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mmproj.gguf"]
    code, _, err = cli("convert", str(src), "-o", str(text), "--type", "Q8_0", "--mmproj", str(text))
    assert code != 0 and "different names" in err and not text.exists()


# ---- downstream: sizing, the runner's header checks, inspect


def test_plan_sizes_mistral_layout_checkpoints_exactly() -> None:
    from quant.sizing.plan import load_source

    src = checkpoint("ministral3-native-tiny")
    source = load_source(src, ["Q8_0", "Q4_K_M"])
    assert source.kind == "checkpoint"
    for qtype, shape in source.shapes.items():
        assert shape.file_size == file_layout(src, qtype).file_size


def test_runner_checks_accept_mistral3(converted: Converted) -> None:
    from hubtui.runner.gguf_check import check_facts, read_facts

    findings = {f.check: f for f in check_facts(read_facts(converted("ministral3-tiny", "Q4_K_M")))}
    assert findings["architecture"].level == "ok" and "mistral3" in findings["architecture"].message
    assert all(f.level == "ok" for f in findings.values()), findings


def test_inspect_shows_yarn_and_the_attention_temperature(tmp_path: Path, cli) -> None:
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(path, "mistral3")
    w.add_block_count(1)
    w.add_context_length(262144)
    w.add_rope_freq_base(1e6)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(16.0)
    w.add_rope_scaling_orig_ctx_len(16384)
    w.add_attn_temperature_scale(0.1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    code, out, _ = cli("inspect", str(path))
    assert code == 0 and "yarn x16 from context 16384, attention temperature 0.1" in out
    code, out, _ = cli("inspect", str(path), "--json")
    assert json.loads(out)["rope"] == {
        "freq_base": 1e6,
        "scaling": "yarn",
        "factor": 16.0,
        "original_context": 16384,
        "attn_temperature_scale": pytest.approx(0.1),
    }


def test_a_mistral_layout_download_is_what_convert_and_the_tui_take(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hubtui download` of a repo with only Mistral's layout leaves params.json, no config.json."""
    from hubtui.hub.snapshots import snapshot_dir

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    storage = cache / "models--mistralai--Ministral-3-tiny"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text("0123abcd")
    snap = clone_checkpoint(checkpoint("ministral3-native-tiny"), storage / "snapshots" / "0123abcd")
    assert snapshot_dir("mistralai/Ministral-3-tiny") == snap
    out = tmp_path / "m.gguf"
    code, _, err = cli("convert", "mistralai/Ministral-3-tiny", "-o", str(out), "--type", "Q8_0")
    assert code == 0, err
    assert kvs(out)["general.name"] == "Ministral 3 Tiny"  # named after the repo, not the commit


def test_chat_renders_the_checkpoints_own_template(converted: Converted) -> None:
    from llama_cpp import Llama

    from hubtui.runner.chat import prompt_tokens
    from hubtui.runner.formats import chat_format_for

    llm = Llama(str(converted("ministral3-tiny", "Q4_K_M")), vocab_only=True, verbose=False)
    fmt = chat_format_for(llm)
    assert fmt.source == "gguf" and not fmt.builtin
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert fmt.render(messages) == "<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]2+2?[/INST]"
    ids = prompt_tokens(llm, fmt, messages)
    assert ids[:2] == [1, 17] and ids.count(1) == 1 and ids[-1] == 4  # one <s>; ends with [/INST]


def test_the_hugging_face_layout_wins_when_both_are_there(tmp_path: Path) -> None:
    from quant.checkpoint_format import HF, MISTRAL, checkpoint_format, is_checkpoint_dir

    def layout(*names: str) -> str:
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        d.mkdir()
        for n in names:
            (d / n).write_bytes(b"")
        return checkpoint_format(d)

    both = ("config.json", "params.json", "model-00001-of-00002.safetensors", "consolidated.safetensors")
    assert layout(*both) == HF
    assert layout("config.json", "model.safetensors.index.json", "params.json") == HF
    assert layout("params.json", "consolidated-00001-of-00002.safetensors", "tekken.json") == MISTRAL
    # a download of only Mistral's weights may still carry config.json: the weights decide
    assert layout("config.json", "params.json", "consolidated.safetensors") == MISTRAL
    assert layout("config.json") == HF and not is_checkpoint_dir(tmp_path / "nowhere")
