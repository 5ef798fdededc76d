"""Fixtures and helpers for tests that break a checkpoint and expect one clear error; tests/conftest.py
registers this module (`pytest_plugins`), so `tiny_dir` and `bad` are fixtures of every test;
`assert_fails` runs `hubtui convert` through the `cli` fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli_helpers import Cli
from tests.support.convert_support import clone_checkpoint, write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_dir(mistral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-64 Mistral-style checkpoint in two shards with an index (about 9 MB)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-mistral", mistral_tiny_dir, shards=2)


@pytest.fixture
def bad(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private symlink clone of the tiny checkpoint for a test to break."""
    return clone_checkpoint(tiny_dir, tmp_path / "ckpt")


def assert_fails(bad: Path, out_dir: Path, cli: Cli, *culprits: str, extra: tuple[str, ...] = ()) -> str:
    out_dir.mkdir(exist_ok=True)
    code, _, err = cli("convert", str(bad), "-o", str(out_dir / "out.gguf"), "--type", "Q8_0", *extra)
    lines = [line for line in err.splitlines() if line.startswith("hubtui:")]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("hubtui: error: "), err
    for c in culprits:
        assert c in lines[0], lines[0]
    assert sorted(p.name for p in out_dir.iterdir()) == [], "partial output left behind"
    return lines[0]


def shard(bad: Path, i: int = 1) -> Path:
    return bad / f"model-0000{i}-of-00002.safetensors"


def edit_config(bad: Path, **changes) -> None:
    cfg = json.loads((bad / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (bad / "config.json").unlink()
    (bad / "config.json").write_text(json.dumps(cfg))
