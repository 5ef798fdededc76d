"""LoRA adapters: the adapter GGUF, adapters at run time, and merging while converting.

Adapters are built with numpy (tests/fixtures/adapters.py) in PEFT's layout; the yardstick is the numpy
forward pass of the base with PEFT's W + scaling·B·A added (tests/reference/forward.py), and llama.cpp's own
`convert_lora_to_gguf.py` / `llama_model_quantize` where they define the bytes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest

from quant.convert import convert
from quant.convert.lora_gguf import convert_adapter
from tests.fixtures.adapters import adapter_tensors, merged_weights, read_adapter_arrays, write_adapter
from tests.reference.forward import Model
from tests.reference.llamacpp import LlamaCpp, cosine
from tests.support.cli_helpers import Cli
from tests.support.convert_support import anchor, llama_quantize, tensor_bytes

IDS = [1, 450, 7483, 310, 3444, 338, 3681, 29889, 13, 1576]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kv(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("GGUF.")}


@pytest.fixture(scope="module")
def base_f32(llama3_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(llama3_tiny_dir, tmp_path_factory.mktemp("base") / "base-f32.gguf", "F32").path


def _permuted(b: np.ndarray, n_head: int) -> np.ndarray:
    """B's rows in llama.cpp's Q/K order (HF rotate-half pairs -> adjacent pairs), written out longhand."""
    d = b.shape[0] // n_head
    out = np.empty_like(b)
    for h in range(n_head):
        for i in range(d // 2):
            out[h * d + 2 * i] = b[h * d + i]
            out[h * d + 2 * i + 1] = b[h * d + d // 2 + i]
    return out


def test_adapter_gguf_keys_tensors_and_values(
    llama3_tiny_dir: Path, mixtral_tiny_dir: Path, tmp_path: Path
) -> None:
    ad = write_adapter(tmp_path / "My-Adapter", llama3_tiny_dir, r=8, alpha=16)
    out = convert_adapter(ad, llama3_tiny_dir, tmp_path / "ad.gguf", "F32").path
    kv = _kv(out)
    assert kv["general.architecture"] == "llama"
    assert kv["general.type"] == "adapter" and kv["adapter.type"] == "lora"
    assert kv["adapter.lora.alpha"] == 16.0 and kv["general.quantization_version"] == 2
    assert not any(k.startswith(("tokenizer.", "llama.")) or k == "general.file_type" for k in kv)
    assert list(kv)[:3] == ["general.architecture", "general.type", "adapter.type"]
    assert list(kv)[-2:] == ["adapter.lora.alpha", "general.quantization_version"]

    _, src = read_adapter_arrays(ad)
    t = tensor_bytes(out)
    n_head, n_kv = 8, 2  # llama3-tiny
    p = "base_model.model.model.layers.1."
    assert len(t) == 2 * 7 * 4
    a_type, a_ne, a_raw = t["blk.1.attn_k.weight.lora_a"]
    b_type, b_ne, b_raw = t["blk.1.attn_k.weight.lora_b"]
    assert (a_type, a_ne, b_type, b_ne) == ("F32", (512, 8), "F32", (8, 128))
    assert np.array_equal(
        np.frombuffer(a_raw, np.float32).reshape(8, 512), src[p + "self_attn.k_proj.lora_A.weight"]
    )
    got_b = np.frombuffer(b_raw, np.float32).reshape(128, 8)
    assert np.array_equal(got_b, _permuted(src[p + "self_attn.k_proj.lora_B.weight"], n_kv))
    got_q = np.frombuffer(t["blk.1.attn_q.weight.lora_b"][2], np.float32).reshape(512, 8)
    assert np.array_equal(got_q, _permuted(src[p + "self_attn.q_proj.lora_B.weight"], n_head))
    v = np.frombuffer(t["blk.1.attn_v.weight.lora_b"][2], np.float32).reshape(128, 8)
    assert np.array_equal(v, src[p + "self_attn.v_proj.lora_B.weight"])  # V is not permuted

    # Mixtral: per-expert pairs stacked, A [in, r, experts] and B [r, out, experts] in ggml order; Q8_0
    # falls back to F16 where the row (r = 8 for B) is not a multiple of 32, as gguf-py's quantiser does
    mx = write_adapter(tmp_path / "mx", mixtral_tiny_dir, r=8, dtype="BF16")
    t = tensor_bytes(convert_adapter(mx, mixtral_tiny_dir, tmp_path / "mx.gguf", "Q8_0").path)
    a_type, a_ne, _ = t["blk.0.ffn_down_exps.weight.lora_a"]
    b_type, b_ne, _ = t["blk.0.ffn_down_exps.weight.lora_b"]
    assert (a_type, b_type) == ("Q8_0", "F16")
    assert a_ne[1:] == (8, 8) and b_ne[0] == 8 and b_ne[2] == 8
    assert "blk.0.ffn_gate_inp.weight.lora_a" not in t


@pytest.mark.parametrize(
    ("fixture", "qtype", "dtype"),
    [("llama3_tiny_dir", "F32", "F32"), ("mistral_tiny_dir", "Q8_0", "BF16"), ("mixtral_tiny_dir", "F16", "F16"),
     ("llama3_tiny_dir", "BF16", "BF16")],
)  # fmt: skip
def test_adapter_gguf_equals_llama_cpp_converter(
    request: pytest.FixtureRequest, fixture: str, qtype: str, dtype: str, tmp_path: Path
) -> None:
    """Opt-in: our file is convert_lora_to_gguf.py's, byte for byte."""
    python, llama_src = anchor()
    base = request.getfixturevalue(fixture)
    ad = write_adapter(tmp_path / "adapter", base, dtype=dtype)
    ref = tmp_path / "ref.gguf"
    env = dict(os.environ, PYTHONPATH=str(Path(llama_src) / "gguf-py"))
    script = str(Path(llama_src) / "convert_lora_to_gguf.py")
    subprocess.run(
        [python, script, str(ad), "--base", str(base), "--outtype", qtype.lower(), "--outfile", str(ref)],
        check=True,
        capture_output=True,
        env=env,
    )
    ours = convert_adapter(ad, base, tmp_path / "ours.gguf", qtype).path
    assert _sha256(ours) == _sha256(ref)


# (adapter_config.json extras, run-time scales): each kind of PEFT scaling llama.cpp must reproduce
ADAPTERS = {
    "plain": ({}, (1.0,)),
    # rsLoRA's alpha/sqrt(r) (written as alpha·sqrt(r)) with per-module alphas and ranks on top
    "rslora-patterns": (
        {
            "use_rslora": True,
            "alpha_pattern": {"q_proj": 4, "down_proj": 40},
            "rank_pattern": {"v_proj": 4},
        },
        (0.5,),
    ),
    "rslora": ({"use_rslora": True}, (1.0, 0.5)),
    "patterns": (
        {"alpha_pattern": {"q_proj": 4, "down_proj": 40}, "rank_pattern": {"v_proj": 4}},
        (1.0, 0.5),
    ),
}


@pytest.mark.parametrize(
    "kind",
    [
        "plain",
        "rslora-patterns",
        # each part alone, at both scales: the combined case above covers the same arithmetic
        pytest.param("rslora", marks=pytest.mark.slow),
        pytest.param("patterns", marks=pytest.mark.slow),
    ],
)
def test_runtime_adapter_logits_match_numpy(
    request: pytest.FixtureRequest, kind: str, llama3_tiny_dir: Path, base_f32: Path, tmp_path: Path
) -> None:
    if request.node.get_closest_marker("slow") and "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("each scaling alone, at both scales, runs with -m slow")
    cfg, scales = ADAPTERS[kind]
    ad = write_adapter(tmp_path / "ad", llama3_tiny_dir, config=cfg, ranks=cfg.get("rank_pattern"))
    gg = convert_adapter(ad, llama3_tiny_dir, tmp_path / "ad.gguf", "F32").path
    model = Model(llama3_tiny_dir)
    base_w, base_logits = dict(model.w), model.logits(IDS)
    for scale in scales:
        model.w = merged_weights(base_w, ad, scale)
        ref = model.logits(IDS)
        assert cosine(ref, base_logits) < 0.9  # the adapter changes the model a lot
        got = LlamaCpp(base_f32, lora=gg, lora_scale=scale).logits(IDS)
        assert cosine(got, ref) >= 0.9999, (kind, scale)


@pytest.mark.parametrize("fixture", ["mistral_tiny_dir", "mixtral_tiny_dir"])
def test_merged_f32_logits_match_numpy(request: pytest.FixtureRequest, fixture: str, tmp_path: Path) -> None:
    base = request.getfixturevalue(fixture)
    one = write_adapter(tmp_path / "one", base, seed=1)
    two = write_adapter(tmp_path / "two", base, seed=2, targets=("q_proj", "v_proj"), r=4, alpha=8)
    out = convert(base, tmp_path / "merged.gguf", "F32", loras=[(one, 1.0), (two, 0.5)]).path
    model = Model(base)
    base_logits = model.logits(IDS)
    model.w = merged_weights(merged_weights(model.w, one), two, 0.5)
    ref = model.logits(IDS)
    assert cosine(ref, base_logits) < 0.9
    assert cosine(LlamaCpp(out).logits(IDS), ref) >= 0.9999


def test_merged_kquant_equals_llama_quantize_of_merged_f32(mistral_tiny_dir: Path, tmp_path: Path) -> None:
    ad = write_adapter(tmp_path / "ad", mistral_tiny_dir, r=16)
    f32 = convert(mistral_tiny_dir, tmp_path / "m-f32.gguf", "F32", loras=[(ad, 0.8)]).path
    ours = convert(mistral_tiny_dir, tmp_path / "m-q4km.gguf", "Q4_K_M", loras=[(ad, 0.8)]).path
    ref = llama_quantize(f32, tmp_path / "ref-q4km.gguf", "Q4_K_M")
    assert _sha256(ours) == _sha256(ref)
    # and the merge is real: the plain conversion differs on every adapted tensor, not elsewhere
    plain = tensor_bytes(convert(mistral_tiny_dir, tmp_path / "p.gguf", "Q4_K_M").path)
    merged = tensor_bytes(ours)
    changed = {n for n in plain if plain[n][2] != merged[n][2]}
    assert changed == {n for n in plain if n.startswith("blk.") and "norm" not in n}


def test_merged_with_an_imatrix_equals_llama_quantize_of_merged_f32(
    mistral_tiny_dir: Path, tmp_path: Path
) -> None:
    """--lora and --imatrix together: the merged weights are quantised with the importance weights exactly as
    llama_model_quantize quantises our merged F32 with the same imatrix file."""
    from quant.imatrix.format import write_imatrix
    from tests.support.convert_support import QuantizeImatrix
    from tests.test_imatrix_apply import entries_for

    ad = write_adapter(tmp_path / "ad", mistral_tiny_dir, r=8)
    f32 = convert(mistral_tiny_dir, tmp_path / "m-f32.gguf", "F32", loras=[(ad, 1.0)]).path
    im = write_imatrix(
        tmp_path / "m.imatrix.gguf", entries_for(f32), datasets=["t.txt"], chunk_count=3, chunk_size=512
    )
    ours = convert(
        mistral_tiny_dir, tmp_path / "m-iq4xs.gguf", "IQ4_XS", loras=[(ad, 1.0)], imatrix=str(im)
    ).path
    ref = llama_quantize(f32, tmp_path / "ref.gguf", "IQ4_XS", imatrix=QuantizeImatrix.from_file(str(im)))
    assert _sha256(ours) == _sha256(ref)
    plain = convert(mistral_tiny_dir, tmp_path / "p.gguf", "IQ4_XS", imatrix=str(im)).path
    assert tensor_bytes(plain)["blk.0.attn_q.weight"] != tensor_bytes(ours)["blk.0.attn_q.weight"]  # merged


# ---- bad input: one line naming the file/tensor/shape, exit 1, nothing left behind


def _cli_error(args: list[str], cli: Cli, out: Path) -> str:
    code, stdout, err = cli(*args)
    assert code == 1, err
    assert err.startswith("hubtui: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".") and out.name in p.name]
    return err


def test_adapter_errors(mixtral_tiny_dir: Path, mistral_tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "out" / "x.gguf"
    out.parent.mkdir()
    mistral_ad = write_adapter(tmp_path / "for-mistral", mistral_tiny_dir, targets=("q_proj", "k_proj"))
    # an adapter for another base: names the tensor and both shapes, converting it or merging it
    for args in (
        ["--base", str(mixtral_tiny_dir), str(mistral_ad)],
        [str(mixtral_tiny_dir), "--lora", str(mistral_ad)],
    ):
        err = _cli_error(["convert", *args, "-o", str(out)], cli, out)
        assert "layers.0.self_attn.k_proj.lora_B.weight" in err, err
        assert "[128, 512]" in err and "[128, 256]" in err and "another base" in err
    # missing base
    err = _cli_error(["convert", str(mistral_ad), "--base", str(tmp_path / "nope"), "-o", str(out)], cli, out)
    assert "nope" in err and "base model not found" in err
    err = _cli_error(["convert", str(mistral_ad), "-o", str(out)], cli, out)
    assert "--base" in err
    # unknown target module
    tensors = adapter_tensors(mistral_tiny_dir, targets=("q_proj",))
    tensors["base_model.model.model.layers.0.self_attn.qkv_fused.lora_A.weight"] = np.zeros(
        (8, 64), np.float32
    )
    tensors["base_model.model.model.layers.0.self_attn.qkv_fused.lora_B.weight"] = np.zeros(
        (64, 8), np.float32
    )
    bad = write_adapter(tmp_path / "unknown", mistral_tiny_dir, tensors=tensors)
    err = _cli_error(["convert", str(bad), "--base", str(mistral_tiny_dir), "-o", str(out)], cli, out)
    assert "unknown target module 'model.layers.0.self_attn.qkv_fused'" in err
    # rank 0, in the config and in the tensors
    zero = write_adapter(tmp_path / "r0", mistral_tiny_dir, config={"r": 0})
    err = _cli_error(["convert", str(zero), "--base", str(mistral_tiny_dir), "-o", str(out)], cli, out)
    assert "adapter_config.json" in err and "rank r must be a positive integer, got 0" in err
    tensors = adapter_tensors(mistral_tiny_dir, targets=("q_proj",), r=0)
    zero_t = write_adapter(tmp_path / "r0t", mistral_tiny_dir, tensors=tensors)
    err = _cli_error(["convert", str(zero_t), "--base", str(mistral_tiny_dir), "-o", str(out)], cli, out)
    assert "rank 0" in err and "q_proj.lora_A.weight" in err
    # DoRA and pickled adapters
    dora = write_adapter(tmp_path / "dora", mistral_tiny_dir, config={"use_dora": True})
    err = _cli_error(["convert", str(dora), "--base", str(mistral_tiny_dir), "-o", str(out)], cli, out)
    assert "DoRA" in err
    pickled = write_adapter(tmp_path / "pickled", mistral_tiny_dir)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    err = _cli_error(["convert", str(pickled), "--base", str(mistral_tiny_dir), "-o", str(out)], cli, out)
    assert "adapter_model.bin" in err and "pickle" in err
    # an adapter type the adapter GGUF cannot take is a usage error
    code, _, err = cli("convert", str(mistral_ad), "--base", str(mistral_tiny_dir), "--type", "Q4_K_M")
    assert code == 2 and "F32, F16, BF16, Q8_0" in err


def test_convert_adapter_cli(mistral_tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    ad = write_adapter(tmp_path / "ad", mistral_tiny_dir)
    out = tmp_path / "ad.gguf"
    code, stdout, err = cli(
        "convert", str(ad), "--base", str(mistral_tiny_dir), "-o", str(out), "--type", "F16"
    )
    assert code == 0, err
    assert "LoRA adapter for llama" in stdout and out.is_file()
    assert _kv(out)["adapter.type"] == "lora"


def test_smoke_with_lora_and_bare_baseline_compares_with_and_without(
    mistral_tiny_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    import json

    # the small-vocabulary base: four passes over the passage (two smoke runs, each with its baseline)
    base_f32 = convert(mistral_tiny_dir, tmp_path / "base-f32.gguf", "F32").path
    ad = convert_adapter(
        write_adapter(tmp_path / "ad", mistral_tiny_dir), mistral_tiny_dir, tmp_path / "ad.gguf", "F16"
    )
    code, out, err = cli(
        "smoke", str(base_f32), "--ctx", "128", "--lora", str(ad.path), "--baseline", "--json"
    )
    report = json.loads(out)
    assert {"check": "adapter", "level": "ok", "message": "LoRA adapter ad.gguf x 1"} in report["checks"]
    assert report["baseline"]["mean_kl"] > 0.05  # the adapter is applied, the baseline runs without it
    code, out, err = cli(
        "smoke",
        str(base_f32),
        "--ctx",
        "128",
        "--lora",
        str(ad.path),
        "--lora-scale",
        "0",
        "--baseline",
        "--json",
    )
    assert json.loads(out)["baseline"]["mean_kl"] < 1e-6  # scale 0: the same model
    code, out, err = cli("smoke", str(base_f32), "--lora", str(base_f32))
    assert code == 1 and "not a LoRA adapter GGUF" in out


def test_chat_model_runs_the_adapter(llama3_tiny_dir: Path, base_f32: Path, tmp_path: Path) -> None:
    from hubtui.runner.chat import load_model
    from hubtui.runner.errors import RunnerError

    ad = convert_adapter(
        write_adapter(tmp_path / "ad", llama3_tiny_dir), llama3_tiny_dir, tmp_path / "ad.gguf", "F32"
    )
    model = Model(llama3_tiny_dir)
    model.w = merged_weights(model.w, ad.path.parent / "ad", 0.5)
    llm = load_model(base_f32, n_ctx=256, gpu_layers=0, lora=ad.path, lora_scale=0.5)
    try:
        import llama_cpp

        llm.eval(IDS)
        got = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
        ).copy()
    finally:
        llm.close()
    assert cosine(got, model.logits(IDS)) >= 0.9999
    with pytest.raises(RunnerError, match="not a LoRA adapter GGUF"):
        load_model(base_f32, n_ctx=256, gpu_layers=0, lora=base_f32)


def test_inspect_names_an_adapters_base(mistral_tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    import json

    ad = write_adapter(tmp_path / "My-Adapter", mistral_tiny_dir)
    (ad / "README.md").write_text(
        "---\nbase_model: mistralai/Mistral-7B-v0.3\nlibrary_name: peft\n---\n# adapter\n"
    )
    out = convert_adapter(ad, mistral_tiny_dir, tmp_path / "ad.gguf", "F16").path
    code, stdout, err = cli("inspect", str(out))
    assert code == 0, err
    assert "LoRA adapter (alpha 16) for llama" in stdout and "mistralai/Mistral-7B-v0.3" in stdout
    code, stdout, err = cli("inspect", str(out), "--json")
    assert json.loads(stdout)["adapter"] == {
        "type": "lora",
        "alpha": 16.0,
        "base": "mistralai/Mistral-7B-v0.3",
    }
