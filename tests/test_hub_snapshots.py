"""One rule picks a cached repo's snapshot for the CLI and the app (hubtui.hub.snapshots)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubtui.hub.errors import HubError
from hubtui.hub.snapshots import find_snapshot, resolve_checkpoint, snapshot_dir
from tests.support.cli_helpers import Cli

REPO = "someone/tiny-mistral"
OLD = "a" * 40  # the commit refs/main names
NEW = "b" * 40  # a newer snapshot (another revision fetched later)


def _snapshot(storage: Path, commit: str, src: Path, mtime: float) -> Path:
    snap = storage / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in src.iterdir():
        (snap / f.name).symlink_to(f)
    os.utime(snap, (mtime, mtime))
    return snap


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mistral_tiny_dir: Path) -> Path:
    """A hub cache holding REPO twice: refs/main names the older snapshot, the newer one is newer on disk."""
    root = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    storage = root / "models--someone--tiny-mistral"
    _snapshot(storage, OLD, mistral_tiny_dir, 1_000_000)
    _snapshot(storage, NEW, mistral_tiny_dir, 2_000_000)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(OLD)  # as huggingface_hub writes it
    return root


def _plan_source(cli: Cli, repo: str = REPO) -> tuple[str, str]:
    code, out, err = cli("plan", repo, "--target", "laptop-8g", "--type", "Q8_0", "--json")
    assert code == 0, err
    return json.loads(out)["source"]["path"], err


def _tui_rows(root: Path) -> list[str]:
    from hubtui.app.services import list_local

    rows, _ = list_local(root / "outputs", str(root))
    return [r.path for r in rows if r.kind == "checkpoint" and r.repo_id == REPO]


def test_refs_main_wins_over_a_newer_snapshot_for_cli_and_app(cache: Path, cli: Cli) -> None:
    old = cache / "models--someone--tiny-mistral" / "snapshots" / OLD
    found = find_snapshot(REPO)
    assert found is not None and found.path == old and found.commit == OLD and found.note is None
    path, err = _plan_source(cli)  # `hubtui plan OWNER/NAME`
    assert Path(path) == old and "note" not in err
    from hubtui.commands._common import checkpoint_source  # what convert and bundle call

    assert checkpoint_source(Path(REPO)) == old
    assert _tui_rows(cache) == [str(old)]  # the Local screen, and so the app's Convert
    assert snapshot_dir(REPO) == old


def test_an_incomplete_main_falls_back_to_the_newest_complete_snapshot_and_says_so(
    cache: Path, cli: Cli
) -> None:
    storage = cache / "models--someone--tiny-mistral"
    (storage / "snapshots" / OLD / "model-00002-of-00002.safetensors").unlink()  # an interrupted download
    new = storage / "snapshots" / NEW
    found = find_snapshot(REPO)
    assert found is not None and found.path == new
    assert found.note == f"{REPO}: refs/main names {OLD[:12]}, which holds no complete checkpoint; " + (
        f"using snapshot {NEW[:12]}, the newest complete"
    )
    path, err = _plan_source(cli)
    assert Path(path) == new and f"hubtui: note: {found.note}" in err
    assert _tui_rows(cache) == [str(new)]


def test_without_refs_main_the_newest_complete_snapshot_is_taken(cache: Path) -> None:
    storage = cache / "models--someone--tiny-mistral"
    (storage / "refs" / "main").unlink()
    found = find_snapshot(REPO)
    assert found is not None and found.path == storage / "snapshots" / NEW and "no refs/main" in found.note
    os.utime(storage / "snapshots" / OLD, (3_000_000, 3_000_000))
    assert snapshot_dir(REPO) == storage / "snapshots" / OLD


def test_a_repo_not_in_the_cache_is_a_one_line_error_naming_it(cache: Path, tmp_path: Path, cli: Cli) -> None:
    with pytest.raises(HubError, match=r"^someone/absent: not a local directory, and not in the hub cache"):
        resolve_checkpoint("someone/absent")
    out = tmp_path / "x.gguf"
    code, stdout, err = cli("convert", "someone/absent", "-o", str(out), "--type", "Q8_0")
    assert code == 1 and stdout == "" and not out.exists()
    assert err.startswith("hubtui: error: someone/absent: not a local directory") and err.count("\n") == 1
    assert find_snapshot("someone/absent") is None


def test_a_cached_repo_without_a_complete_snapshot_is_named_too(cache: Path) -> None:
    storage = cache / "models--someone--tiny-mistral"
    for commit in (OLD, NEW):
        (storage / "snapshots" / commit / "config.json").unlink()
    assert find_snapshot(REPO) is None
    with pytest.raises(
        HubError, match=rf"^{REPO}: not a local directory, and no complete checkpoint in the hub"
    ):
        resolve_checkpoint(REPO)


def test_a_local_path_is_taken_as_given(tmp_path: Path, mistral_tiny_dir: Path) -> None:
    assert resolve_checkpoint(mistral_tiny_dir) == mistral_tiny_dir
    assert resolve_checkpoint("./not/here") == Path("./not/here")  # the converter names it when it reads it
