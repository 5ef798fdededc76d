"""FP8 checkpoints (quant_method "fp8"): dequantised exactly as llama.cpp's converter does, bad ones refused.

The reference is an independent numpy dequantisation (tests/reference/forward.py: E4M3 decoded from its bit
fields, scales repeated over their blocks, one float32 multiplication) written as an F32 GGUF by
tests/reference/f32_gguf.py; our F32 output must equal it bit for bit. Parity of the quantised types with
llama.cpp and logits on llama.cpp are in tests/test_convert.py; the whole-file comparison with
convert_hf_to_gguf.py is the opt-in test at the end.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from quant.convert import convert, file_layout
from quant.errors import ConversionError
from tests.reference.f32_gguf import reference_tensors
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
    write_fp8_checkpoint,
)


def assert_dequantised(
    ckpt: Path, got: dict[str, tuple[str, np.ndarray]], skip: tuple[str, ...] = ()
) -> None:
    """Every tensor of our F32 output (but `skip` and the generated rope_freqs) bit-equal to the reference."""
    got = {n: t for n, t in got.items() if n != "rope_freqs.weight"}
    config = json.loads((ckpt / "config.json").read_text())
    want = {n: t for n, t in reference_tensors(ckpt, config) if n not in skip}
    assert set(got) == set(want)
    for name, t in want.items():
        qtype, data = got[name]
        assert qtype == "F32" and data.shape == t.shape, name
        assert np.array_equal(data.view(np.uint32), t.view(np.uint32)), (
            f"{name} differs from the numpy dequantisation"
        )


# the fixture's BF16 embedding (65 M values) is covered by every other fixture; only FP8-derived tensors here
EMBEDDING = ("token_embd.weight",)


def test_fixture_f32_is_the_numpy_dequantisation_and_f16_q8_0_follow_from_it(
    llama3_tiny_fp8_dir: Path, tmp_path: Path
) -> None:
    """F32: the reference dequantisation bit for bit. F16: convert_hf_to_gguf's rounding of that float32.
    Q8_0: ggml's own quantiser (ggml_quantize_chunk) applied to it. Norms and rope_freqs stay F32."""

    want = converted_arrays(llama3_tiny_fp8_dir, tmp_path / "f32.gguf", "F32", EMBEDDING)
    assert_dequantised(llama3_tiny_fp8_dir, want, EMBEDDING)
    for qtype in ("F16", "Q8_0"):
        got = converted_arrays(llama3_tiny_fp8_dir, tmp_path / f"{qtype}.gguf", qtype, EMBEDDING)
        assert_follows_f32(got, want, qtype)


def test_fixture_is_really_fp8(llama3_tiny_fp8_dir: Path, llama3_tiny_dir: Path) -> None:
    """The fixture holds E4M3 bytes and block scales, and dequantises close to llama3-tiny's weights."""
    from tests.reference.forward import read_safetensors, read_weights

    header_len = int.from_bytes((llama3_tiny_fp8_dir / "model.safetensors").read_bytes()[:8], "little")
    with (llama3_tiny_fp8_dir / "model.safetensors").open("rb") as f:
        header = json.loads(f.read(8 + header_len)[8:])
    q = "model.layers.0.self_attn.q_proj.weight"
    assert header[q]["dtype"] == "F8_E4M3" and header[q]["shape"] == [512, 512]
    assert header[q + "_scale_inv"]["dtype"] == "F32" and header[q + "_scale_inv"]["shape"] == [4, 4]
    assert header["model.embed_tokens.weight"]["dtype"] == "BF16"
    fp8 = read_weights(llama3_tiny_fp8_dir)[q]
    bf16 = read_safetensors(llama3_tiny_dir / "model.safetensors", {q})[q]
    assert not np.array_equal(fp8, bf16)
    assert np.abs(fp8 - bf16).max() <= 0.07 * np.abs(bf16).max()  # 3 mantissa bits


VARIANTS = {
    # blocks that do not divide the weights (a ragged last block in both dimensions), BF16 scales, a static
    # activation scheme (its activation_scale tensors are dropped), two shards
    "ragged-bf16-static-sharded": {"block": (48, 80), "scale_dtype": "BF16", "static": True, "shards": 2},
    # Mixtral experts, each with its own scales, stacked into ffn_*_exps; no weight_block_size (one scalar
    # scale per tensor); embeddings and output FP8 too
    "mixtral-per-tensor": {
        "block": None,
        "keep": (),
        "architectures": ["MixtralForCausalLM"],
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
    },
    # Ministral 3 (llama.cpp's mistral3: yarn RoPE, attention temperature), as its FP8 releases come
    "ministral3": {
        "architectures": ["Ministral3ForCausalLM"],
        "model_type": "ministral3",
        "head_dim": 16,
        "rope_parameters": {
            "rope_type": "yarn",
            "type": "yarn",
            "rope_theta": 1000000.0,
            "factor": 16.0,
            "original_max_position_embeddings": 256,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "llama_4_scaling_beta": 0.1,
        },
    },
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fp8_variants_f32_is_the_numpy_dequantisation(
    variant: str, mistral_tiny_dir: Path, tmp_path: Path
) -> None:
    src = write_fp8_checkpoint(tmp_path / f"fp8-{variant}", mistral_tiny_dir, **VARIANTS[variant])
    assert_dequantised(src, converted_arrays(src, tmp_path / "ours.gguf", "F32"))


def test_plan_sizes_an_fp8_checkpoint_from_shapes(llama3_tiny_fp8_dir: Path, llama3_tiny_dir: Path) -> None:
    """Sizes come from shapes: the FP8 checkpoint lays out exactly like the BF16 one, scales not counted."""
    for qtype in ("Q4_K_M",):
        fp8, bf16 = file_layout(llama3_tiny_fp8_dir, qtype), file_layout(llama3_tiny_dir, qtype)
        assert [(t.name, t.type, t.ne, t.nbytes) for t in fp8.tensors] == [
            (t.name, t.type, t.ne, t.nbytes) for t in bf16.tensors
        ]
        assert fp8.n_params == bf16.n_params
        assert (
            fp8.file_size - fp8.data_offset == bf16.file_size - bf16.data_offset
        )  # header: the name differs


# ---- downstream: plan from a hub repo's headers, hub details -------------------------------------------


def test_hub_details_and_plan_of_an_fp8_repo(
    fake_hub, tiny_fp8: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """details: the F8_E4M3 dtype, parameters without the scales; plan: the exact size from headers alone."""
    from hubtui.hub.details import details
    from tests.fakehub.server import FakeRepo
    from tests.reference.forward import read_safetensors

    repo = fake_hub.add_repo(FakeRepo("someone/tiny-fp8"))
    for f in sorted(tiny_fp8.iterdir()):
        repo.add(f.name, source=f)
    d = details("someone/tiny-fp8", endpoint=fake_hub.url)
    weights = read_safetensors(tiny_fp8 / "model.safetensors")
    fp8 = sum(w.size for n, w in weights.items() if n.endswith("proj.weight"))
    bf16 = sum(w.size for n, w in weights.items() if not n.endswith(("proj.weight", "_scale_inv")))
    assert d.dtypes == {"F8_E4M3": fp8, "BF16": bf16}
    assert d.parameters == fp8 + bf16 == file_layout(tiny_fp8, "Q8_0").n_params
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.delenv("HUBTUI_DEBUG", raising=False)
    code, out, err = cli("plan", "someone/tiny-fp8", "--type", "Q8_0", "--type", "Q4_K_M", "--json")
    assert code == 0, err
    sizes = {row["type"]: row["file_size"] for row in json.loads(out)["types"]}
    assert sizes == {q: file_layout(tiny_fp8, q).file_size for q in ("Q8_0", "Q4_K_M")}


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_fp8(mistral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fp8_checkpoint(tmp_path_factory.mktemp("fp8") / "tiny-fp8", mistral_tiny_dir)


@pytest.fixture
def bad_fp8(tiny_fp8: Path, tmp_path: Path) -> Path:
    return clone_checkpoint(tiny_fp8, tmp_path / "ckpt")


Q = "model.layers.1.self_attn.q_proj.weight"


@pytest.mark.parametrize("method", ["gptq", "awq", "bitsandbytes", "compressed-tensors", "mxfp4", None])
def test_other_quant_methods_are_refused_by_name(
    method: str | None, bad_fp8: Path, tmp_path: Path, cli: Cli
) -> None:
    edit_config(bad_fp8, quantization_config={"quant_method": method, "bits": 4})
    line = assert_fails(bad_fp8, tmp_path / "out", cli, "config.json", f"quant_method {method!r}")
    assert "not supported" in line


def test_fp8_weight_without_its_scale(bad_fp8: Path, tmp_path: Path, cli) -> None:
    rewrite_header(bad_fp8 / "model.safetensors", lambda h: h.pop(Q + "_scale_inv"))
    assert_fails(bad_fp8, tmp_path / "out", cli, f"{Q!r} is F8_E4M3", f"{Q + '_scale_inv'!r} is missing")


def test_fp8_weights_without_an_fp8_quantization_config(bad_fp8: Path, tmp_path: Path, cli) -> None:
    edit_config(bad_fp8, quantization_config=None)
    assert_fails(bad_fp8, tmp_path / "out", cli, "is F8_E4M3", "quant_method 'fp8'")


def test_scale_of_the_wrong_shape(bad_fp8: Path, tmp_path: Path, cli) -> None:
    def reshape(h: dict) -> None:
        assert h[Q + "_scale_inv"]["shape"] == [2, 2]
        h[Q + "_scale_inv"]["shape"] = [4, 1]  # same bytes, wrong grid

    rewrite_header(bad_fp8 / "model.safetensors", reshape)
    line = assert_fails(bad_fp8, tmp_path / "out", cli, f"{Q + '_scale_inv'!r}", "[4, 1]", "[64, 64]")
    assert "weight_block_size [32, 32] needs [2, 2]" in line


def test_scale_without_its_weight(bad_fp8: Path, tmp_path: Path, cli) -> None:
    rewrite_header(bad_fp8 / "model.safetensors", lambda h: h.pop(Q))
    assert_fails(bad_fp8, tmp_path / "out", cli, f"{Q + '_scale_inv'!r} scales {Q!r}", "does not have")


def test_bad_weight_block_size(bad_fp8: Path, tmp_path: Path, cli) -> None:
    edit_config(bad_fp8, quantization_config={"quant_method": "fp8", "weight_block_size": [128]})
    assert_fails(bad_fp8, tmp_path / "out", cli, "quantization_config.weight_block_size", "[128]")


def test_modelopt_export_is_refused(bad_fp8: Path, tmp_path: Path, cli) -> None:
    edit_config(bad_fp8, quantization_config=None)
    (bad_fp8 / "hf_quant_config.json").write_text('{"producer": {"name": "modelopt"}}')
    assert_fails(bad_fp8, tmp_path / "out", cli, "hf_quant_config.json", "ModelOpt")


def test_nan_in_an_fp8_weight_is_refused(bad_fp8: Path, tmp_path: Path) -> None:
    """E4M3 0x7F is NaN: refused with the tensor and row, like a NaN in any other weight."""
    path = bad_fp8 / "model.safetensors"
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    begin = json.loads(raw[8 : 8 + n])["model.layers.0.mlp.up_proj.weight"]["data_offsets"][0]
    raw[8 + n + begin + 64 * 3 + 5] = 0x7F  # row 3
    path.unlink()
    path.write_bytes(bytes(raw))
    with pytest.raises(ConversionError, match=r"'model.layers.0.mlp.up_proj.weight' .*NaN.*row 3"):
        convert(bad_fp8, tmp_path / "x.gguf", "Q8_0")
    assert not list(tmp_path.glob("x.gguf*"))


# ---- llama.cpp's own converter (opt-in: needs torch/transformers and llama.cpp's source) --------------


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@pytest.mark.slow
def test_fixture_files_equal_llama_cpp_converter(llama3_tiny_fp8_dir: Path, tmp_path: Path) -> None:
    """Whole files: F16 and Q8_0 as convert_hf_to_gguf.py writes them, Q4_K_M as llama_model_quantize makes
    it from convert_hf_to_gguf.py's F32 (the lossless intermediate for dequantised FP8)."""
    anchor()
    theirs = {
        t: convert_hf_to_gguf(llama3_tiny_fp8_dir, t, tmp_path / f"ref-{t}.gguf") for t in ("f16", "q8_0")
    }
    f32 = convert_hf_to_gguf(llama3_tiny_fp8_dir, "f32", tmp_path / "ref-f32.gguf")
    theirs["q4_k_m"] = llama_quantize(f32, tmp_path / "ref-q4_k_m.gguf", "Q4_K_M")
    for qtype, ref in theirs.items():
        ours = convert(llama3_tiny_fp8_dir, tmp_path / f"ours-{qtype}.gguf", qtype.upper(), threads=2).path
        assert _sha256(ours) == _sha256(ref), qtype


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_equal_llama_cpp_converter(variant: str, mistral_tiny_dir: Path, tmp_path: Path) -> None:
    anchor()
    src = write_fp8_checkpoint(tmp_path / f"fp8-{variant}", mistral_tiny_dir, **VARIANTS[variant])
    ref = convert_hf_to_gguf(src, "q8_0", tmp_path / "ref.gguf")
    assert _sha256(convert(src, tmp_path / "ours.gguf", "Q8_0", threads=2).path) == _sha256(ref)
