"""Which cached snapshot a repo id means: the one rule the CLI and the app share (standard library only).

huggingface_hub resolves a repo offline through `refs/main`: the commit it names is the snapshot, and it
refuses a snapshot it cannot confirm complete. We follow `refs/main` too, so `hubtui convert OWNER/NAME`
converts what `hf download OWNER/NAME` fetched last. Where `refs/main` is missing (a download by commit or
another branch) or names a snapshot that holds no complete checkpoint (an interrupted download of a newer
commit), we take the newest complete snapshot instead and say so in `Snapshot.note`, so the caller can
tell the user which revision is used and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hubtui.hub import settings
from hubtui.hub.errors import HubError
from quant.checkpoint_format import is_checkpoint_dir

_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def storage_folder(cache: Path, repo_id: str) -> Path:
    """The cache folder of a model repo (`models--owner--name`), as huggingface_hub lays it out."""
    return cache / ("models--" + repo_id.replace("/", "--"))


def looks_like_repo_id(text: str) -> bool:
    """ "owner/name", and not a path the user means (./x, /x, ~/x)."""
    return bool(_REPO_ID.fullmatch(text))


@dataclass(frozen=True)
class Snapshot:
    """A cached snapshot chosen for a repo id; `note` says why when it is not the one `refs/main` names."""

    repo_id: str
    path: Path
    commit: str
    note: str | None = None


def is_complete(snapshot: Path) -> bool:
    """A checkpoint the converter can read: its config is there, and every shard its index names."""
    if not is_checkpoint_dir(snapshot):
        return False
    index = snapshot / "model.safetensors.index.json"
    if not index.is_file():
        return True
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False
    return isinstance(weight_map, dict) and all(
        (snapshot / str(f)).is_file() for f in set(weight_map.values())
    )


def find_snapshot(repo_id: str, cache_dir: str | Path | None = None) -> Snapshot | None:
    """The snapshot `refs/main` names when it is complete, else the newest complete one; None if none is."""
    snaps = storage_folder(settings.cache_dir(cache_dir), repo_id) / "snapshots"
    if not snaps.is_dir():
        return None
    ref = snaps.parent / "refs" / "main"
    main = ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
    if main and is_complete(snaps / main):
        return Snapshot(repo_id, snaps / main, main)
    found = [s for s in snaps.iterdir() if s.name != main and is_complete(s)]
    if not found:
        return None
    newest = max(found, key=lambda s: (s.stat().st_mtime, s.name))
    why = f"refs/main names {main[:12]}, which holds no complete checkpoint" if main else "no refs/main"
    return Snapshot(
        repo_id,
        newest,
        newest.name,
        f"{repo_id}: {why}; using snapshot {newest.name[:12]}, the newest complete",
    )


def snapshot_dir(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """The folder of `find_snapshot`, or None when the repo has no complete cached checkpoint."""
    found = find_snapshot(repo_id, cache_dir)
    return found.path if found else None


def resolve_checkpoint(
    src: str | Path, cache_dir: str | Path | None = None, *, note: Callable[[str], None] | None = None
) -> Path:
    """A local path as given; an "owner/name" that is no local path, its cached snapshot (`find_snapshot`).

    Raises `HubError` naming the repo when it has no complete snapshot in the cache. `note` hears why a
    snapshot other than the one refs/main names was taken.
    """
    path = Path(src).expanduser()
    text = str(src)
    if path.exists() or not looks_like_repo_id(text):
        return path
    found = find_snapshot(text, cache_dir)
    if found is None:
        cache = settings.cache_dir(cache_dir)
        where = "no complete checkpoint in" if storage_folder(cache, text).is_dir() else "not in"
        raise HubError(
            f"{text}: not a local directory, and {where} the hub cache ({cache}); "
            f"download it first with `hubtui download {text}`"
        )
    if found.note and note is not None:
        note(found.note)
    return found.path
