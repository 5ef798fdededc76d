"""`hubtui convert` on bad input: exit 1 (2 for usage) with one line naming the culprit, and nothing left behind."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from quant.convert import ConversionCancelled, convert
from quant.errors import ConversionError
from tests.support.bad_checkpoints import assert_fails, edit_config, shard
from tests.support.cli_helpers import Cli
from tests.support.convert_support import clone_checkpoint, rewrite_header, write_tiny_checkpoint


def test_tiny_checkpoint_converts(tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    code, out, _ = cli("convert", str(tiny_dir), "-o", str(tmp_path / "t.gguf"), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["path"] == str(tmp_path / "t.gguf") and result["type"] == "Q4_K_M"
    assert result["bytes"] == (tmp_path / "t.gguf").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["t.gguf"]


def test_pickle_only_checkpoint_is_refused(bad: Path, tmp_path: Path, cli) -> None:
    for p in bad.glob("model*"):
        p.unlink()
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    msg = assert_fails(bad, tmp_path / "out", cli, "pytorch_model.bin", "pickle")
    assert "code" in msg


def test_unsupported_architecture_is_named(bad: Path, tmp_path: Path, cli) -> None:
    edit_config(bad, architectures=["GPT2LMHeadModel"])
    assert_fails(bad, tmp_path / "out", cli, "GPT2LMHeadModel", "LlamaForCausalLM", "MixtralForCausalLM")


def test_missing_config_key_is_named(bad: Path, tmp_path: Path, cli) -> None:
    edit_config(bad, hidden_size=None)
    assert_fails(bad, tmp_path / "out", cli, "config.json", "'hidden_size'")


def test_inconsistent_config_key_is_named(bad: Path, tmp_path: Path, cli) -> None:
    edit_config(bad, num_key_value_heads=3)
    assert_fails(bad, tmp_path / "out", cli, "'num_key_value_heads'")


def test_config_disagreeing_with_tensor_shapes_names_the_tensor(bad: Path, tmp_path: Path, cli) -> None:
    edit_config(bad, intermediate_size=256)
    assert_fails(bad, tmp_path / "out", cli, "mlp.", "intermediate_size")


def test_missing_tokenizer(bad: Path, tmp_path: Path, cli) -> None:
    (bad / "tokenizer.model").unlink()
    assert_fails(bad, tmp_path / "out", cli, "tokenizer")


def test_truncated_safetensors(bad: Path, tmp_path: Path, cli) -> None:
    data = shard(bad).read_bytes()
    shard(bad).unlink()
    shard(bad).write_bytes(data[: len(data) - 1000])
    assert_fails(bad, tmp_path / "out", cli, shard(bad).name, "out of range")


def test_header_length_past_end(bad: Path, tmp_path: Path, cli) -> None:
    shard(bad).unlink()
    shard(bad).write_bytes((10**9).to_bytes(8, "little") + b"{}")
    assert_fails(bad, tmp_path / "out", cli, shard(bad).name, "header length")


def test_offsets_out_of_range(bad: Path, tmp_path: Path, cli) -> None:
    def edit(h):
        name = next(k for k in h if k != "__metadata__")
        begin, end = h[name]["data_offsets"]
        h[name]["data_offsets"] = [begin + 10**8, end + 10**8]

    rewrite_header(shard(bad, 2), edit)
    assert_fails(bad, tmp_path / "out", cli, shard(bad, 2).name, "out of range")


def test_shape_dtype_mismatch(bad: Path, tmp_path: Path, cli) -> None:
    victim = {}

    def edit(h):
        name = sorted(k for k in h if k != "__metadata__")[-1]
        h[name]["dtype"] = "F32"
        victim["name"] = name

    rewrite_header(shard(bad, 2), edit)
    assert_fails(bad, tmp_path / "out", cli, victim["name"], "bytes")


def test_tensor_missing_from_index(bad: Path, tmp_path: Path, cli) -> None:
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors"
    (bad / "model.safetensors.index.json").unlink()
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_fails(bad, tmp_path / "out", cli, "model.layers.9.mlp.up_proj.weight")


def test_index_naming_a_missing_shard(bad: Path, tmp_path: Path, cli) -> None:
    shard(bad, 2).unlink()
    assert_fails(bad, tmp_path / "out", cli, shard(bad, 2).name)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_name_the_tensor_and_remove_the_part_file(
    mistral_tiny_dir: Path, tmp_path: Path, cli, value: float
) -> None:
    from hubtui.demo.checkpoint_writer import write_weights
    from tests.fixtures.checkpoints import random_weights
    from tests.support.convert_support import tiny_config

    ckpt = write_tiny_checkpoint(tmp_path / "nan", mistral_tiny_dir)
    weights = random_weights(tiny_config(), 7)
    weights["model.layers.1.mlp.down_proj.weight"][3, 5] = value  # late in the file: data already streamed
    (ckpt / "model.safetensors").unlink()
    write_weights(ckpt, weights, "F16")
    for qtype in ("Q8_0", "F16"):
        assert_fails(
            ckpt,
            tmp_path / "out",
            cli,
            "model.layers.1.mlp.down_proj.weight",
            "NaN",
            extra=("--type", qtype),
        )


def test_weights_that_overflow_f16_are_refused_with_tensor_and_row(
    mistral_tiny_dir: Path, tmp_path: Path, cli
) -> None:
    """A float32 weight beyond 65504 would become inf in an F16 GGUF; llama.cpp's row check rejects that."""
    from hubtui.demo.checkpoint_writer import write_weights
    from tests.fixtures.checkpoints import random_weights
    from tests.support.convert_support import tiny_config

    ckpt = write_tiny_checkpoint(tmp_path / "big", mistral_tiny_dir)
    weights = random_weights(tiny_config(), 7)
    big = "model.layers.1.mlp.down_proj.weight"
    weights[big] = weights[big].astype(np.float32)
    weights[big][40, 5] = 1.0e6
    (ckpt / "model.safetensors").unlink()
    write_weights(ckpt, weights, "F32")
    line = assert_fails(
        ckpt, tmp_path / "out", cli, "blk.1.ffn_down.weight", "row 40", "F16", extra=("--type", "F16")
    )
    assert "too large" in line
    out = tmp_path / "q8" / "out.gguf"
    out.parent.mkdir()
    code, _, err = cli("convert", str(ckpt), "-o", str(out), "--type", "Q8_0")
    assert code == 0, err  # a Q8_0 block scale of 1e6/127 still fits fp16
    assert out.exists()


def test_bf16_weights_whose_q8_0_scale_overflows_are_refused(
    mistral_tiny_dir: Path, tmp_path: Path, cli
) -> None:
    """BF16 → Q8_0 goes through the fused row kernel; a block whose scale (amax / 127) passes 65504 is an
    fp16 inf that llama.cpp's row check rejects, so the fused path must refuse it, naming tensor and row."""
    from hubtui.demo.checkpoint_writer import write_weights
    from tests.fixtures.checkpoints import random_weights
    from tests.support.convert_support import tiny_config

    ckpt = write_tiny_checkpoint(tmp_path / "big", mistral_tiny_dir)
    weights = random_weights(tiny_config(), 7)
    big = "model.layers.1.mlp.up_proj.weight"
    weights[big] = weights[big].astype(np.float32)
    weights[big][23, 40] = 1.0e7  # 1e7 / 127 = 78740 > 65504
    weights[big][30, 8] = -2.0e7
    (ckpt / "model.safetensors").unlink()
    write_weights(ckpt, weights, "BF16")
    line = assert_fails(ckpt, tmp_path / "out", cli, "blk.1.ffn_up.weight", "row 23", "Q8_0")
    assert "block scale overflows fp16" in line


def test_existing_output_needs_force(tiny_dir: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "x.gguf"
    out.write_bytes(b"keep me")
    code, _, err = cli("convert", str(tiny_dir), "-o", str(out))
    assert code == 1 and "x.gguf" in err and "--force" in err
    assert out.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf"]
    code, _, _ = cli("convert", str(tiny_dir), "-o", str(out), "--force", "--type", "F16")
    assert code == 0 and out.read_bytes()[:4] == b"GGUF"


def test_not_enough_disk_space(tiny_dir: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import quant.convert.api as api

    monkeypatch.setattr(api, "free_disk_bytes", lambda directory: 1000)
    msg = assert_fails(tiny_dir, tmp_path / "out", cli, "disk space", "1000")
    assert "need" in msg


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--type", "TQ1_0"], "'TQ1_0'"),  # a llama-quantize type hubtui does not make
        (["--type", "IQ2_XXS"], "--type IQ2_XXS needs an importance matrix (--imatrix): compute one with"),
        (["--threads", "0"], "--threads"),
        (["--bogus"], "--bogus"),
        (["--tensor-type", "attn_v=q9_9"], "'q9_9'"),
        (["--tensor-type", "[attn=q8_0"], "'[attn=q8_0': bad regular expression"),
        (["--tensor-type", "atn_v=q8_0"], "'atn_v=q8_0' has no effect"),  # known only from the checkpoint
        (["--output-tensor-type", "q4_k"], "output.weight has rows of 64 values"),  # ditto
        (["--token-embedding-type", "q3"], "--token-embedding-type: unknown or unsupported ggml type 'q3'"),
        (["--type", "F16", "--leave-output-tensor"], "not F16"),
    ],
)
def test_usage_errors_exit_2(tiny_dir: Path, tmp_path: Path, cli, args: list[str], culprit: str) -> None:
    code, _, err = cli("convert", str(tiny_dir), "-o", str(tmp_path / "o.gguf"), *args)
    assert code == 2, err
    assert culprit in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_per_tensor_options_on_the_command_line(tiny_dir: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "o.gguf"
    args = ["--type", "Q8_0", "--tensor-type", r"blk\.1\.attn_v=f16", "--tensor-type", "ffn_up=Q5_0"]
    code, stdout, err = cli("convert", str(tiny_dir), "-o", str(out), *args, "--leave-output-tensor")
    assert code == 0, err
    counts = json.loads(cli("inspect", str(out), "--json")[1])["type_counts"]
    assert counts == {"F32": 6, "Q8_0": 12, "F16": 1, "Q5_0": 2}, counts  # 5 norms + output.weight in F32


def test_a_type_without_a_kernel_is_refused_before_writing(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quant.kernels import QUANT_TYPES

    monkeypatch.delitem(QUANT_TYPES, "Q5_0")  # rows of 64: Q4_K falls back to Q5_0
    with pytest.raises(
        ConversionError, match="Q4_K_M: tensor token_embd.weight needs ggml type Q5_0, which has no kernel"
    ):
        convert(tiny_dir, tmp_path / "k.gguf", "Q4_K_M")
    assert list(tmp_path.iterdir()) == []


def test_cancel_and_interrupt_remove_the_part_file(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.gguf"
    cancel = threading.Event()

    def stop_after_first(name: str, done: int, total: int) -> None:
        if done > 0:
            cancel.set()

    with pytest.raises(ConversionCancelled):
        convert(tiny_dir, out, "F16", progress=stop_after_first, cancel=cancel)
    assert list(tmp_path.iterdir()) == []

    def interrupt(name: str, done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(tiny_dir, out, "F16", progress=interrupt)
    assert list(tmp_path.iterdir()) == []
    assert issubclass(ConversionCancelled, ConversionError)


def test_repo_id_resolves_to_the_hub_cache_snapshot(
    tiny_dir: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    out = tmp_path / "r.gguf"
    code, _, err = cli("convert", "someone/tiny-mistral", "-o", str(out), "--type", "F16")
    assert code == 1 and "someone/tiny-mistral" in err and "hubtui download" in err and not out.exists()
    storage = cache / "models--someone--tiny-mistral"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text("0123abcd")
    clone_checkpoint(tiny_dir, storage / "snapshots" / "0123abcd")
    code, _, err = cli("convert", "someone/tiny-mistral", "-o", str(out), "--type", "F16")
    assert code == 0, err
    assert out.read_bytes()[:4] == b"GGUF"
