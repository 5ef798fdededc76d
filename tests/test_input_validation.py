"""Absurd or hostile input caught cheaply and first: declared sizes against the tensors present, index entries
outside the checkpoint, outputs that would replace an input, a corrupt tokenizer.model, FIFOs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from quant.convert.vocab import load_vocab
from quant.errors import ConversionError
from tests.support.bad_checkpoints import assert_fails, edit_config
from tests.support.cli_helpers import Cli
from tests.support.convert_support import clone_checkpoint


@pytest.fixture
def no_big_name_maps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if gguf-py's tensor-name map is built for more than 64 layers (it is per layer)."""
    sizes: list[int] = []
    real = gguf.get_tensor_name_map

    def guarded(arch, n_blocks):  # noqa: ANN001, ANN202
        sizes.append(n_blocks)
        assert n_blocks <= 64, f"a tensor-name map for {n_blocks} layers was built"
        return real(arch, n_blocks)

    monkeypatch.setattr(gguf, "get_tensor_name_map", guarded)
    return sizes


def test_an_absurd_layer_count_fails_before_anything_is_built_for_it(
    bad: Path,
    tmp_path: Path,
    cli: Cli,
    no_big_name_maps: list[int],
) -> None:
    edit_config(bad, num_hidden_layers=100_000)
    line = assert_fails(bad, tmp_path / "out", cli, "config.json", "'num_hidden_layers' is 100000")
    assert "layers 0-1" in line and "model.layers.2." in line
    assert no_big_name_maps == []  # failed before the map


@pytest.mark.parametrize(
    ("change", "culprits"),
    [
        ({"vocab_size": 10**12}, ("embed_tokens.weight", "'vocab_size' (1000000000000)")),
        ({"hidden_size": 2**40, "head_dim": 16}, ("embed_tokens.weight", "'hidden_size'")),
        ({"intermediate_size": 10**11}, ("up_proj.weight", "'intermediate_size'")),
    ],
    ids=["vocab_size", "hidden_size", "intermediate_size"],
)
def test_declared_sizes_are_checked_against_the_tensors(
    bad: Path,
    tmp_path: Path,
    cli: Cli,
    no_big_name_maps: list[int],
    change: dict,
    culprits: tuple[str, ...],
) -> None:
    edit_config(bad, **change)
    assert_fails(bad, tmp_path / "out", cli, *culprits)


def test_an_absurd_head_dim_fails_before_llama3_rope_factors_are_computed(
    llama3_tiny_dir: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quant.convert.archs.llama as llama_family

    ckpt = clone_checkpoint(llama3_tiny_dir, tmp_path / "ckpt")
    edit_config(ckpt, head_dim=2**30)  # llama3 rope scaling: factors would have 2**29 entries
    monkeypatch.setattr(
        llama_family, "llama3_rope_factors", lambda hp: pytest.fail("rope factors were built")
    )
    assert_fails(ckpt, tmp_path / "out", cli, "q_proj.weight", "head_dim (8 x 1073741824)")


def test_an_absurd_expert_count_is_refused(mixtral_tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    ckpt = clone_checkpoint(mixtral_tiny_dir, tmp_path / "ckpt")
    edit_config(ckpt, num_local_experts=10**6, num_experts_per_tok=2)
    assert_fails(ckpt, tmp_path / "out", cli, "'num_local_experts' is 1000000", "8 experts per layer")


@pytest.mark.parametrize("where", ["parent", "absolute", "linked-dir"])
def test_index_entries_must_stay_inside_the_checkpoint(
    bad: Path,
    tmp_path: Path,
    cli: Cli,
    where: str,
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    corrupt = outside / "model-00002-of-00002.safetensors"
    corrupt.write_bytes(b"\xff" * 64)  # would be reported as a corrupt header, had it been opened
    name = {
        "parent": "../elsewhere/model-00002-of-00002.safetensors",
        "absolute": str(corrupt),
        "linked-dir": "sub/model-00002-of-00002.safetensors",
    }[where]
    (bad / "sub").symlink_to(outside)
    index_path = bad / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {
        k: (name if v.startswith("model-00002") else v) for k, v in index["weight_map"].items()
    }
    index_path.unlink()
    index_path.write_text(json.dumps(index))
    line = assert_fails(bad, tmp_path / "out", cli, "model.safetensors.index.json", repr(name))
    assert "outside the checkpoint folder" in line and "corrupt" not in line


@pytest.mark.parametrize(
    "victim", ["model-00001-of-00002.safetensors", "tokenizer.model", "model.safetensors.index.json"]
)
def test_force_never_overwrites_an_input(
    tiny_dir: Path,
    tmp_path: Path,
    cli: Cli,
    victim: str,
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, ckpt)
    before = (ckpt / victim).read_bytes()
    code, _, err = cli("convert", str(ckpt), "-o", str(ckpt / victim), "--force", "--type", "F16")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"hubtui: error: {ckpt / victim}: is an input of this run ({ckpt / victim}); refusing to overwrite it, "
        "choose another output"
    )
    assert (ckpt / victim).read_bytes() == before
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(p.name for p in tiny_dir.iterdir())


def test_force_never_overwrites_a_hub_cache_blob_behind_a_snapshot_link(
    tiny_dir: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    blobs = tmp_path / "blobs"
    shutil.copytree(tiny_dir, blobs)
    snapshot = clone_checkpoint(blobs, tmp_path / "snapshot")  # symlinks, like the HF cache
    target = blobs / "model-00002-of-00002.safetensors"
    before = target.read_bytes()
    code, _, err = cli("convert", str(snapshot), "-o", str(target), "--force")
    assert code == 1 and "is an input of this run" in err
    assert target.read_bytes() == before


def _config(src: Path) -> dict:
    return json.loads((src / "config.json").read_text())


def test_a_corrupt_tokenizer_model_beside_a_good_tokenizer_json_is_an_error(
    llama3_tiny_dir: Path, tmp_path: Path
) -> None:
    src = clone_checkpoint(llama3_tiny_dir, tmp_path / "ckpt")
    assert load_vocab(src, _config(src)).model == "gpt2"  # tokenizer.json alone is fine
    (src / "tokenizer.model").write_bytes(b"not a protobuf" * 20)
    with pytest.raises(ConversionError) as err:
        load_vocab(src, _config(src))
    msg = str(err.value)
    assert msg.startswith(f"{src / 'tokenizer.model'}: not a SentencePiece model")
    assert "llama.cpp's converter reads it before tokenizer.json" in msg and "\n" not in msg


def test_fifos_among_the_checkpoint_files_are_refused_not_read(
    bad: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    (bad / "config.json").unlink()
    os.mkfifo(bad / "config.json")
    assert_fails(bad, tmp_path / "out", cli, "config.json: is a FIFO (named pipe), not a regular file")
    (bad / "config.json").unlink()
    (bad / "config.json").symlink_to(tiny_dir_config(bad))
    (bad / "chat_template.jinja").write_text("{{ messages }}")
    (bad / "additional_chat_templates").mkdir()
    os.mkfifo(bad / "additional_chat_templates" / "tool_use.jinja")
    assert_fails(bad, tmp_path / "out", cli, "tool_use.jinja: is a FIFO (named pipe), not a regular file")


def tiny_dir_config(ckpt: Path) -> Path:
    """The config.json the clone `ckpt` was made from (its other files are links into that checkpoint)."""
    return (ckpt / "tokenizer.model").resolve().parent / "config.json"


def test_a_fifo_generation_config_is_skipped_like_an_unreadable_one(
    tiny_dir: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    ckpt = clone_checkpoint(tiny_dir, tmp_path / "ckpt", skip=("generation_config.json",))
    os.mkfifo(ckpt / "generation_config.json")
    code, _, err = cli("convert", str(ckpt), "-o", str(tmp_path / "o.gguf"), "--type", "F16")
    assert code == 0, err


def test_a_gguf_declaring_absurd_layers_is_refused_before_sizing(tmp_path: Path, cli) -> None:
    path = tmp_path / "huge.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(4_000_000_000)  # a list per layer would need 32 GB
    w.add_context_length(256)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_vocab_size(4)
    w.add_token_list(["<unk>", "<s>", "</s>", "a"])
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    code, _, err = cli("plan", str(path), "--target", "laptop-8g")
    assert code == 2  # plan reads SRC while parsing its arguments: a bad SRC is a usage error
    assert f"{path}: llama.block_count is 4000000000 but the file has only 2 tensors" in err
