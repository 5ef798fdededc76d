"""The local Hugging Face cache: what is there (repos, GGUF files, LoRA adapters, incomplete downloads) and
deleting it.

Built on huggingface_hub's `scan_cache_dir` and its delete strategies, so it agrees with `hf cache ls`.
Also lists (and `remove_stale` deletes) the temporaries a killed hubtui left wherever it was writing
(`quant.outputs`): unlike an incomplete download they resume nothing. Works offline.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hubtui.hub import settings
from hubtui.hub.errors import HubError
from hubtui.hub.files import ADAPTER_CONFIG, base_model_of_card, gguf_quant
from quant.outputs import StaleTemporary, remove_stale_temporaries, stale_temporaries


@dataclass(frozen=True)
class CachedGGUF:
    repo_id: str
    name: str
    path: Path
    size: int
    quant: str | None
    adapter: bool = False  # a LoRA adapter GGUF (general.type = adapter), not a model
    base: str | None = None  # the base model an adapter names
    architecture: str | None = None  # general.architecture (an adapter's is its base's)


@dataclass(frozen=True)
class CachedAdapter:
    """A PEFT LoRA adapter repo in the cache: its rank, alpha and the base model it was trained on."""

    r: int | None
    alpha: float | None
    base: str | None


@dataclass(frozen=True)
class Incomplete:
    repo_id: str | None
    path: Path
    size: int


@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    repo_type: str
    path: Path
    size: int
    nb_files: int
    last_accessed: float
    last_modified: float
    revisions: list[str]
    refs: list[str]
    gguf_files: list[CachedGGUF] = field(default_factory=list)
    incomplete: list[Incomplete] = field(default_factory=list)
    adapter: CachedAdapter | None = None


@dataclass(frozen=True)
class CacheReport:
    cache_dir: Path
    repos: list[CachedRepo]
    incomplete: list[Incomplete]
    warnings: list[str]
    stale: list[StaleTemporary] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.repos)

    @property
    def incomplete_size(self) -> int:
        return sum(i.size for i in self.incomplete)

    @property
    def stale_size(self) -> int:
        return sum(s.size for s in self.stale)

    def to_json(self) -> dict[str, object]:
        return {
            "cache_dir": str(self.cache_dir),
            "size": self.size,
            "incomplete_size": self.incomplete_size,
            "repos": [
                {
                    "repo_id": r.repo_id,
                    "repo_type": r.repo_type,
                    "path": str(r.path),
                    "size": r.size,
                    "nb_files": r.nb_files,
                    "last_accessed": r.last_accessed,
                    "last_modified": r.last_modified,
                    "revisions": r.revisions,
                    "refs": r.refs,
                    "gguf_files": [
                        {
                            "name": g.name,
                            "path": str(g.path),
                            "size": g.size,
                            "quant": g.quant,
                            "adapter": g.adapter,
                            "base": g.base,
                        }
                        for g in r.gguf_files
                    ],
                    "adapter": r.adapter.__dict__ if r.adapter else None,
                    "incomplete": [{"path": str(i.path), "size": i.size} for i in r.incomplete],
                }
                for r in self.repos
            ],
            "incomplete": [
                {"repo_id": i.repo_id, "path": str(i.path), "size": i.size} for i in self.incomplete
            ],
            "stale": [
                {"path": str(s.path), "output": str(s.output), "size": s.size, "mtime": s.mtime}
                for s in self.stale
            ],
            "warnings": self.warnings,
        }


def _repo_of(path: Path, cache: Path) -> str | None:
    try:
        folder = path.relative_to(cache).parts[0]
    except (ValueError, IndexError):
        return None
    kind, _, rest = folder.partition("--")
    return rest.replace("--", "/") if kind in ("models", "datasets", "spaces") and rest else None


def describe_gguf(repo_id: str, rel: str, path: Path, size: int) -> CachedGGUF:
    """A GGUF (cached, or in the output folder with repo_id ""), with its kind, architecture and base read
    from the header's leading KVs (not the vocabulary)."""
    from quant.errors import GGUFError
    from quant.gguf_file import base_model_of, read_gguf_general

    try:
        kv = read_gguf_general(path)
    except (GGUFError, OSError, ValueError):  # an odd file in the cache is listed, not fatal
        kv = {}
    adapter = kv.get("general.type") == "adapter"
    arch = kv.get("general.architecture")
    return CachedGGUF(
        repo_id,
        rel,
        path,
        size,
        None if adapter else gguf_quant(rel),
        adapter,
        base_model_of(kv),
        arch if isinstance(arch, str) else None,
    )


def _adapter(snapshot: Path) -> CachedAdapter | None:
    """The PEFT adapter in a snapshot (adapter_config.json), its base from the card, else from the config."""
    import json

    import yaml
    from huggingface_hub.repocard import metadata_load

    try:
        config = json.loads((snapshot / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    base = None
    if (
        snapshot / "README.md"
    ).is_file():  # the card's base_model is a repo id; the config's may be a local path
        try:
            base = base_model_of_card((metadata_load(snapshot / "README.md") or {}).get("base_model"))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
            base = None
    base = base or base_model_of_card(config.get("base_model_name_or_path"))
    r, alpha = config.get("r"), config.get("lora_alpha")
    return CachedAdapter(
        r if isinstance(r, int) and not isinstance(r, bool) else None,
        float(alpha) if isinstance(alpha, int | float) and not isinstance(alpha, bool) else None,
        base,
    )


def list_cache(cache_dir: str | Path | None = None) -> CacheReport:
    """Every cached repo (size, last used, revisions), its GGUF files, and partial downloads."""
    cache = settings.cache_dir(cache_dir)
    stale = stale_temporaries()
    if not cache.is_dir():
        return CacheReport(cache, [], [], [], stale)
    from huggingface_hub import scan_cache_dir  # 0.2 s of imports, not spent when there is no cache

    info = scan_cache_dir(cache)
    incomplete = sorted(
        (
            Incomplete(_repo_of(i.file_path, cache), i.file_path, i.size_on_disk)
            for i in info.incomplete_files
        ),
        key=lambda i: str(i.path),
    )
    repos = []
    for r in sorted(info.repos, key=lambda r: r.repo_id):
        ggufs = {}
        adapter = None
        for rev in sorted(r.revisions, key=lambda rev: rev.last_modified):  # the newest revision wins
            for f in rev.files:
                rel = f.file_path.relative_to(rev.snapshot_path).as_posix()
                if rel.lower().endswith(".gguf"):
                    ggufs[rel] = describe_gguf(r.repo_id, rel, f.file_path, f.size_on_disk)
                elif rel == ADAPTER_CONFIG:
                    adapter = _adapter(rev.snapshot_path) or adapter
        repos.append(
            CachedRepo(
                repo_id=r.repo_id,
                repo_type=r.repo_type,
                path=r.repo_path,
                size=r.size_on_disk,
                nb_files=r.nb_files,
                last_accessed=r.last_accessed,
                last_modified=r.last_modified,
                revisions=sorted(rev.commit_hash for rev in r.revisions),
                refs=sorted(ref for rev in r.revisions for ref in rev.refs),
                gguf_files=sorted(ggufs.values(), key=lambda g: g.name),
                incomplete=[i for i in incomplete if i.repo_id == r.repo_id],
                adapter=adapter,
            )
        )
    return CacheReport(cache, repos, incomplete, [str(w) for w in info.warnings], stale)


@dataclass(frozen=True)
class Removal:
    target: str
    paths: list[Path]
    freed: int


def remove(target: str, cache_dir: str | Path | None = None) -> Removal:
    """Delete a cached repo (by id, with its partial downloads) or one file of the cache; report bytes freed."""
    from huggingface_hub import scan_cache_dir

    cache = settings.cache_dir(cache_dir)
    info = scan_cache_dir(cache) if cache.is_dir() else None
    repos = {r.repo_id: r for r in info.repos} if info else {}
    partials = [i for i in (info.incomplete_files if info else []) if _repo_of(i.file_path, cache) == target]
    if target in repos:
        repo = repos[target]
        strategy = info.delete_revisions(*(rev.commit_hash for rev in repo.revisions))  # type: ignore[union-attr]
        freed = strategy.expected_freed_size + sum(p.size_on_disk for p in partials)
        strategy.execute()
        for p in partials:
            p.file_path.unlink(missing_ok=True)
        if repo.repo_path.exists():
            shutil.rmtree(repo.repo_path, ignore_errors=True)
        return Removal(target, [repo.repo_path], freed)
    if partials:
        freed = sum(p.size_on_disk for p in partials)
        for p in partials:
            p.file_path.unlink(missing_ok=True)
        return Removal(target, [p.file_path for p in partials], freed)

    path = Path(target).expanduser()
    if not path.exists() and not path.is_symlink():
        raise HubError(
            f"nothing to remove: {target!r} is neither a cached repo nor an existing path (see `hubtui cache ls`)"
        )
    absolute = Path(path.absolute())
    if info is not None and absolute.is_relative_to(cache.absolute()):
        files = [
            f
            for r in info.repos
            for rev in r.revisions
            for f in rev.files
            if Path(f.file_path.absolute()) == absolute or Path(f.blob_path.absolute()) == absolute
        ]
        if not files:
            raise HubError(
                f"{target} is inside the cache but not a cached file; remove a repo by its id instead"
            )
        strategy = info.delete_files(*files)
        freed = strategy.expected_freed_size
        strategy.execute()
        return Removal(target, [f.file_path for f in files], freed)
    if path.is_file() and path.suffix.lower() == ".gguf":
        freed = path.stat().st_size
        path.unlink()
        return Removal(target, [path], freed)
    raise HubError(
        f"refusing to delete {target}: only cached repos, files inside {cache} and .gguf files can be removed"
    )


def remove_stale() -> Removal:
    """Delete every temporary a killed hubtui left behind (`quant.outputs.stale_temporaries`)."""
    removed = remove_stale_temporaries()
    return Removal("stale temporaries", [s.path for s in removed], sum(s.size for s in removed))
