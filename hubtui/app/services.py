"""Glue between the screens and the library: targets, plans, local models, the download queue file.

Most of this blocks (disk, hardware probes, the hub cache) and is called from thread workers; only
`human_bytes` and `target_names` run on the UI thread. Heavy modules come in through `imports.load`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubtui.app.imports import load

if TYPE_CHECKING:
    from quant.plan import Plan
    from quant.profiles import Target

MACHINE = "this machine"


def target_names() -> list[str]:
    load("quant.profiles")
    from quant.profiles import PROFILES

    return [MACHINE, *PROFILES]


def resolve_target(name: str) -> Target:
    """A named profile, or this machine as `hubtui plan` sees it (same probes)."""
    load("quant.profiles")
    from quant.profiles import get_profile, machine_target

    if name and name != MACHINE:
        return get_profile(name)
    load("hubtui.commands.hw")
    from hubtui.commands.hw import detect_machine

    return machine_target(detect_machine())


def plan_for(src: str | Path, target_name: str) -> Plan:
    load("quant.plan")
    from quant.plan import plan

    return plan(src, resolve_target(target_name))


def fit_rows(p: Plan) -> list[tuple[str, str, str, str, str]]:
    """(type, file size, memory, fit, max ctx) per type; the recommended one is marked with ★."""
    load("hubtui.commands.plan")
    from hubtui.commands.plan import FIT_LABELS

    rec = p.recommendation.qtype if p.recommendation else None
    rows = []
    for r in p.rows:
        d = r.to_dict()
        mark = "★ " if r.qtype == rec else "  "
        rows.append(
            (
                mark + r.qtype,
                human_bytes(d["file_size"]),
                human_bytes(d["total"]),
                FIT_LABELS[d["fit"]],
                str(d["max_ctx"] or "-"),
            )
        )
    return rows


def human_bytes(n: float) -> str:
    from hubtui.units import format_bytes  # not via hubtui.hub: that would load huggingface_hub here

    return format_bytes(n)


def snapshot_dir(repo_id: str, cache_dir: str | None = None) -> Path | None:
    """The newest cached snapshot of `repo_id` that holds a config.json (what convert and plan read)."""
    load("hubtui.hub.download")
    from hubtui.hub.download import storage_folder

    load("hubtui.hub.settings")
    from hubtui.hub.settings import cache_dir as hf_cache

    snaps = storage_folder(hf_cache(cache_dir), repo_id) / "snapshots"
    if not snaps.is_dir():
        return None
    found = [s for s in snaps.iterdir() if (s / "config.json").is_file()]
    return max(found, key=lambda s: s.stat().st_mtime) if found else None


@dataclass
class LocalModel:
    """One row of the Local screen: a cached checkpoint or a GGUF file."""

    kind: str  # "checkpoint" or "gguf"
    name: str
    path: str
    size: int
    detail: str  # type of a GGUF, revision of a checkpoint
    last_used: float
    remove_target: str  # what `hubtui cache rm` takes, or the file path


def list_local(output_dir: Path, cache_dir: str | None = None) -> tuple[list[LocalModel], list[str]]:
    """Cached repos, their GGUFs, and GGUFs in the output folder; plus the cache's warnings."""
    load("hubtui.hub")
    from hubtui.hub import list_cache

    load("hubtui.hub.files")
    from hubtui.hub.files import gguf_quant

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
                )
            )
        for g in r.gguf_files:
            rows.append(
                LocalModel(
                    "gguf",
                    f"{r.repo_id}/{g.name}",
                    str(g.path),
                    g.size,
                    g.quant or "?",
                    r.last_accessed,
                    str(g.path),
                )
            )
    if output_dir.is_dir():
        for f in sorted(output_dir.glob("*.gguf")):
            st = f.stat()
            rows.append(
                LocalModel("gguf", f.name, str(f), st.st_size, gguf_quant(f.name) or "?", st.st_atime, str(f))
            )
    return rows, list(report.warnings)


def remove_local(model: LocalModel, cache_dir: str | None = None) -> int:
    """Delete a cached repo or a GGUF file exactly as `hubtui cache rm` does; returns the bytes freed."""
    load("hubtui.hub")
    from hubtui.hub import remove

    return remove(model.remove_target, cache_dir).freed


def inspect_text(path: str) -> str:
    """Exactly what `hubtui inspect FILE` prints."""
    from click.testing import CliRunner

    load("hubtui.commands.inspect")
    from hubtui.commands.inspect import command

    result = CliRunner().invoke(command, [path])
    if result.exit_code != 0:
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        raise RuntimeError(result.output.strip())
    return result.output


# -- the download queue, kept on disk so unfinished downloads resume after a restart ---------------


@dataclass
class QueuedDownload:
    repo_id: str
    gguf: str | None = None
    state: str = "queued"  # queued, running, paused, done, failed, cancelled
    error: str = ""

    @property
    def key(self) -> str:
        return self.repo_id + (f" [{self.gguf}]" if self.gguf else "")


def state_dir() -> Path:
    base = os.environ.get("HUBTUI_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "hubtui"
    )
    return Path(base)


def load_queue(path: Path) -> list[QueuedDownload]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [QueuedDownload(**item) for item in data]
    except (OSError, ValueError, TypeError):
        return []


def save_queue(path: Path, items: list[QueuedDownload]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([asdict(i) for i in items], indent=1), encoding="utf-8")
    os.replace(tmp, path)


def fit_table_text(src: str | Path, target_name: str) -> str:
    """The fit table as Rich markup: the same plan `hubtui plan SRC --target ...` prints."""
    return plan_markup(plan_for(src, target_name))


def plan_markup(p: Plan) -> str:
    head = ("type", "file", "memory", "fit", "max ctx")
    rows = fit_rows(p)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    out = [f"[b]Fit[/b] for {p.target.name} at context {p.settings.n_ctx} (★ recommended)"]
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
        out.append(f"[b]{line}[/b]" if r[0].startswith("★") else line)
    out += [f"[yellow]{w}[/]" for w in p.warnings]
    return "\n".join(out)
