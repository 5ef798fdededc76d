"""Glue between the screens and the library: plans and fit tables, local models, inspect, the download queue.

Everything here that touches disk, the hub or the sizing modules blocks, and is called from thread workers;
heavy modules are imported inside the functions that need them (docs/architecture.md). The screens format with `quant.units` and
`hubtui.formatting`, the same words and units as the CLI.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from quant.units import format_bytes

if TYPE_CHECKING:
    from quant.sizing.plan import ModelSource, Plan
    from quant.sizing.profiles import Target

# -- sizing -----------------------------------------------------------------------------------------

IMATRIX_MARK = "*"  # after a type made only with an importance matrix (quant.filetypes needs_imatrix)
BADGES = {"gpu": "● GPU", "partial": "◐ part GPU", "cpu": "○ CPU", "slow": "✗ pages", "none": "✗ too big"}


def plan_for(src: str | Path | ModelSource, target: Target, *, has_imatrix: bool = False) -> Plan:
    """`hubtui plan SRC` for `target` (`--imatrix` when `has_imatrix`: the imatrix-only types may be
    recommended, the float types are not)."""
    from quant.sizing.plan import plan

    return plan(src, target, has_imatrix=has_imatrix)


def fit_rows(p: Plan) -> list[tuple[str, str, str, str, str, str]]:
    """(type, file size, bits per weight, working set, fit, max ctx) per type, read from the plan; the
    recommended one has a ★, a type made only with an importance matrix a * (IMATRIX_MARK)."""
    from hubtui.formatting import fit_label

    rec = p.recommendation.qtype if p.recommendation else None
    rows = []
    for r in p.rows:
        d = r.to_dict()
        rows.append(
            (
                ("★ " if r.qtype == rec else "  ") + r.qtype + (IMATRIX_MARK if r.needs_imatrix else ""),
                format_bytes(d["file_size"]),
                "-" if d["bpw"] is None else f"{d['bpw']:.2f}",
                format_bytes(d["working_set"]),
                fit_label(d),
                str(d["max_ctx"] or "-"),
            )
        )
    return rows


def plan_markup(p: Plan) -> str:
    """The fit table as Rich markup: the same plan `hubtui plan SRC --target ...` prints."""
    head = ("type", "file", "bpw", "memory", "fit", "max ctx")
    rows = fit_rows(p)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    legend = "★ recommended" + (
        f", {IMATRIX_MARK} needs an imatrix" if any(r.needs_imatrix for r in p.rows) else ""
    )
    out = [f"[b]Fit[/b] for {p.target.name} at context {p.settings.n_ctx} ({legend})"]
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
        out.append(f"[b]{line}[/b]" if r[0].startswith("★") else line)
    out += [f"[yellow]{w}[/]" for w in p.warnings]
    return "\n".join(out)


def fit_badge(p: Plan) -> str:
    """One cell for a search result: the recommended type and how it fits, or why none does."""
    rec = p.recommendation
    if rec is None:
        kinds = {r.placement.kind for r in p.rows}
        return BADGES["slow" if "slow" in kinds else "none"]
    return f"{rec.qtype} {BADGES[rec.placement.kind]}"


class RepoSources:
    """Each hub repo's sizes, read once (its downloaded snapshot, or config, tokenizer and safetensors
    headers alone) and planned for any target afterwards without touching the network again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, tuple[ModelSource, str]] = {}
        self._reading: dict[str, threading.Lock] = {}  # one reader per repo: details and badges share it

    def forget(self) -> None:
        """Drop everything (a download may have added snapshots)."""
        with self._lock:
            self._sources.clear()

    def get(self, repo_id: str, endpoint: str | None) -> tuple[ModelSource, str]:
        """(source, where it came from: "downloaded checkpoint" or "headers; nothing downloaded")."""
        with self._lock:
            reading = self._reading.setdefault(repo_id, threading.Lock())
        with reading:
            with self._lock:
                hit = self._sources.get(repo_id)
            if hit is None:
                hit = self._read(repo_id, endpoint)
                with self._lock:
                    self._sources[repo_id] = hit
            return hit

    def _read(self, repo_id: str, endpoint: str | None) -> tuple[ModelSource, str]:
        from hubtui.hub.snapshots import snapshot_dir
        from quant.sizing.plan import load_source

        snap = snapshot_dir(repo_id)
        if snap is not None:
            return load_source(snap), "downloaded checkpoint"
        return _headers_source(repo_id, endpoint), "headers; nothing downloaded"


def _headers_source(repo_id: str, endpoint: str | None) -> ModelSource:
    """As `hubtui plan OWNER/NAME`: a stand-in built from the repo's config, tokenizer and safetensors
    headers, with no weights fetched."""
    import tempfile

    from hubtui.hub.standin import headers_only_checkpoint
    from quant.sizing.plan import load_source

    with tempfile.TemporaryDirectory(prefix="hubtui-fit-") as tmp:
        try:
            return load_source(headers_only_checkpoint(repo_id, Path(tmp), endpoint=endpoint))
        except Exception as exc:  # name the repo, not the temporary stand-in folder
            raise RuntimeError(str(exc).replace(str(Path(tmp) / repo_id.split("/")[-1]), repo_id)) from None


# -- local models -----------------------------------------------------------------------------------


@dataclass
class LocalModel:
    """One row of the Local screen: a cached checkpoint, a GGUF model or a LoRA adapter GGUF."""

    kind: str  # "checkpoint", "gguf" or "adapter"
    name: str
    path: str
    size: int
    detail: str  # type of a GGUF, revision of a checkpoint, an adapter's architecture and base
    last_used: float
    remove_target: str  # what `hubtui cache rm` takes, or the file or folder path
    repo_id: str | None = None  # the hub repo it came from


def list_local(output_dir: Path, cache_dir: str | None = None) -> tuple[list[LocalModel], list[str]]:
    """Cached repos, their GGUFs, GGUFs in the output folder and what `hubtui demo` built; plus the cache's
    warnings."""
    from hubtui.formatting import adapter_label
    from hubtui.hub import list_cache
    from hubtui.hub.cache import CachedGGUF, describe_gguf
    from hubtui.hub.snapshots import snapshot_dir

    def kind_detail(g: CachedGGUF) -> tuple[str, str]:
        return ("adapter", adapter_label(g.architecture, g.base)) if g.adapter else ("gguf", g.quant or "?")

    report = list_cache(cache_dir)
    rows: list[LocalModel] = []
    for r in report.repos:
        snap = snapshot_dir(r.repo_id, cache_dir)
        if snap is not None:
            rows.append(
                LocalModel(
                    "checkpoint",
                    r.repo_id,
                    str(snap),
                    r.size,
                    ",".join(r.refs) or "-",
                    r.last_accessed,
                    r.repo_id,
                    r.repo_id,
                )
            )
        for g in r.gguf_files:
            kind, detail = kind_detail(g)
            rows.append(
                LocalModel(
                    kind,
                    f"{r.repo_id}/{g.name}",
                    str(g.path),
                    g.size,
                    detail,
                    r.last_accessed,
                    str(g.path),
                    r.repo_id,
                )
            )
    folders = [(output_dir, "")]
    from hubtui.demo.run import demo_dir

    demo = demo_dir()
    if demo.resolve() != output_dir.resolve():
        folders.append((demo, "demo: "))
    for folder, prefix in folders:
        if not folder.is_dir():
            continue
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()):
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            rows.append(
                LocalModel("checkpoint", prefix + d.name, str(d), size, "folder", d.stat().st_mtime, str(d))
            )
        for f in sorted(folder.glob("*.gguf")):
            st = f.stat()
            kind, detail = kind_detail(describe_gguf("", f.name, f, st.st_size))
            rows.append(LocalModel(kind, prefix + f.name, str(f), st.st_size, detail, st.st_atime, str(f)))
    return rows, list(report.warnings)


def remove_local(model: LocalModel, cache_dir: str | None = None) -> int:
    """Delete a cached repo or a GGUF file exactly as `hubtui cache rm` does, or a checkpoint folder of the
    output or demo folder; returns the bytes freed."""
    folder = Path(model.remove_target)
    if model.kind == "checkpoint" and folder.is_dir() and (folder / "config.json").is_file():
        import shutil

        shutil.rmtree(folder)
        return model.size
    from hubtui.hub import remove

    return remove(model.remove_target, cache_dir).freed


def local_repo_ids(cache_dir: str | None = None) -> set[str]:
    """Hub repos with something downloaded (a snapshot or a GGUF): the ✓ on Browse."""
    from hubtui.hub import list_cache

    return {r.repo_id for r in list_cache(cache_dir).repos if r.size}


_INSPECTED: dict[tuple[str, int, int], str] = {}


def inspect_text(path: str) -> str:
    """Exactly what `hubtui inspect FILE` prints (one header walk, then remembered while the file is
    unchanged)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key not in _INSPECTED:
        from hubtui.formatting import aligned, inspect_rows
        from quant.gguf_file import read_gguf_summary

        _INSPECTED[key] = aligned(inspect_rows(read_gguf_summary(path)))
    return _INSPECTED[key]


# -- the download queue, kept on disk so unfinished downloads resume after a restart ---------------


@dataclass
class QueuedDownload:
    repo_id: str
    gguf: str | None = None
    state: str = "queued"  # queued, running, paused, done, failed, cancelled
    error: str = ""
    done: int = 0  # bytes on disk when last seen (what a paused or cancelled download resumes from)
    total: int = 0
    files: str = ""  # "2/5" files finished

    @property
    def key(self) -> str:
        return self.repo_id + (f" [{self.gguf}]" if self.gguf else "")


def state_dir() -> Path:
    from quant.outputs import state_dir as hubtui_state_dir

    return hubtui_state_dir()


def load_queue(path: Path) -> list[QueuedDownload]:
    """The saved queue; entries from other versions keep the fields this one knows."""
    known = {f.name for f in fields(QueuedDownload)}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [QueuedDownload(**{k: v for k, v in item.items() if k in known}) for item in data]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def save_queue(path: Path, items: list[QueuedDownload]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([asdict(i) for i in items], indent=1), encoding="utf-8")
    os.replace(tmp, path)
