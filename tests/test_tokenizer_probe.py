"""quant.convert.tokenizer_probe: the `tokenizers` facts computed in a child process equal the in-process ones,
the vocabulary built from them equals tokenizers' own, and no child outlives a failed conversion."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import psutil
import pytest
from tokenizers import Tokenizer

from quant.convert import tokenizer_probe
from quant.convert.layout import prepare
from quant.convert.tokenizer_probe import (
    ProbeError,
    TokenizerProbe,
    pre_tokenizer_hash,
    probe_in_process,
)
from quant.convert.vocab import _full_vocab
from quant.errors import ConversionError


def _with_added_tokens(src: Path, dst: Path) -> Path:
    """SmolLM2's tokenizer.json plus added tokens that exercise the overlay: a new id past the model's
    vocabulary, one the model already has (tokenizers keeps the model's id), and a normalised one."""
    dst.mkdir()
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    n = max(tj["model"]["vocab"].values()) + 1
    tj["added_tokens"] += [
        {"id": n, "content": "<|tool|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": n + 1, "content": "hello", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
        {"id": n + 2, "content": " spaced word", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False},
    ]  # fmt: skip
    (dst / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    return dst / "tokenizer.json"


@pytest.fixture(scope="module")
def tokenizer_files(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    extra = _with_added_tokens(checkpoints["smollm2-135m"], tmp_path_factory.mktemp("probe") / "extra")
    return [
        checkpoints["smollm2-135m"] / "tokenizer.json",
        checkpoints["llama3-tiny"] / "tokenizer.json",
        extra,
    ]


def test_child_and_in_process_give_the_same_facts(tokenizer_files: list[Path]) -> None:
    for path in tokenizer_files:
        probe = TokenizerProbe(path)
        assert probe.proc is not None  # really ran in a child
        in_child = probe.result()
        assert in_child == probe_in_process(path)
        tok = Tokenizer.from_file(str(path))
        assert in_child.chkhsh == pre_tokenizer_hash(tok)
        assert in_child.base_size == tok.get_vocab_size(with_added_tokens=False)
        added = tok.get_added_tokens_decoder()
        assert {i: (a.content, a.special, a.normalized) for i, a in in_child.added.items()} == {
            i: (a.content, a.special, a.normalized) for i, a in added.items()
        }
        for tid, text in in_child.roundtrip.items():
            ids = tok.encode(added[tid].content, add_special_tokens=False).ids
            assert text == tok.decode(ids, skip_special_tokens=False)
        assert set(in_child.roundtrip) == {i for i, a in added.items() if not a.normalized}


def test_vocab_built_from_the_facts_equals_tokenizers_get_vocab(tokenizer_files: list[Path]) -> None:
    for path in tokenizer_files:
        tj = json.loads(path.read_text(encoding="utf-8"))
        expected = Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)
        assert _full_vocab(path, tj, probe_in_process(path)) == expected
    path = tokenizer_files[-1]
    tj = json.loads(path.read_text(encoding="utf-8"))
    full = _full_vocab(path, tj, probe_in_process(path))
    n = max(tj["model"]["vocab"].values()) + 1
    assert full["<|tool|>"] == n and "<|tool|>" not in tj["model"]["vocab"]  # a new id comes from the overlay
    assert full["hello"] == tj["model"]["vocab"]["hello"]  # an added token the model has keeps the model's id


def test_falls_back_in_process_when_no_child_can_run(
    tokenizer_files: list[Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tokenizer_files[1]
    expected = probe_in_process(path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    probe = TokenizerProbe(path)
    assert probe.proc is None
    assert probe.result() == expected
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # starts, then dies without an answer
    probe = TokenizerProbe(path)
    assert probe.proc is not None
    assert probe.result() == expected
    impostor = tmp_path / "impostor"  # answers, but not with the probe's data
    impostor.write_text('#!/bin/sh\necho "site noise"\necho \'{"something": "else"}\'\n')
    impostor.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(impostor))
    assert TokenizerProbe(path).result() == expected
    monkeypatch.setattr(sys, "executable", "")
    assert TokenizerProbe(path).proc is None


def test_a_child_that_hangs_is_killed_and_replaced(
    tokenizer_files: list[Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tokenizer_files[0]
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nsleep 60\n")
    hang.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(hang))
    monkeypatch.setattr(tokenizer_probe, "CHILD_TIMEOUT_S", 0.5)
    probe = TokenizerProbe(path)
    child = probe.proc
    assert child is not None
    assert probe.result() == probe_in_process(path)
    assert child.poll() is not None  # killed, not left running


@pytest.mark.parametrize("use_process", [True, False])
def test_unloadable_file_is_a_probe_error_either_way(tmp_path: Path, use_process: bool) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": {"type": "BPE", "vocab": []}}))
    with pytest.raises(ProbeError) as e, TokenizerProbe(path, use_process=use_process) as probe:
        probe.result()
    assert str(e.value) and "\n" not in str(e.value)


def test_failed_prepare_leaves_no_child(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    src.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(checkpoints["llama3-tiny"] / name, src / name)
    (src / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(ConversionError, match="GPT2LMHeadModel"):
        prepare(src, "Q8_0")
    assert {p.pid for p in psutil.Process().children()} - before == set()
