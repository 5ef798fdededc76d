"""The field bundle: one folder to hand to field staff with a laptop.

It holds the GGUF, the smoke-test report (JSON and Markdown, with the plan for the target machine),
an Ollama `Modelfile`, a `README.txt` with copy-paste commands for llama.cpp, Ollama, LM Studio and
hubtui, a standalone `hubtui-chat.pyz` (needs only llama-cpp-python), and `SHA256SUMS` over all of
them. The folder is assembled next to the destination and renamed into place, so a failure leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipapp
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtui.runner.errors import RunnerError
from hubtui.runner.gguf_check import GGUFFacts

SUMS = "SHA256SUMS"
CHAT_APP = "hubtui-chat.pyz"
# The modules the standalone chat needs: the engine, the REPL and what they import.
CHAT_APP_MODULES = (
    "hubtui/__init__.py",
    "hubtui/errors.py",
    "hubtui/runner/__init__.py",
    "hubtui/runner/errors.py",
    "hubtui/runner/llama_log.py",
    "hubtui/runner/llama_text.py",
    "hubtui/runner/formats.py",
    "hubtui/runner/gguf_check.py",
    "hubtui/runner/chat.py",
    "hubtui/runner/offload.py",
    "hubtui/runner/repl.py",
    "hubtui/runner/chat_main.py",
)
MAX_BUNDLE_CTX = 8192

Progress = Callable[[str, str], None]


@dataclass
class BundlePlan:
    """How to run the model on the target: context, GPU layers, threads, memory; plus how it was decided."""

    target: str
    description: str
    n_ctx: int | None
    n_gpu_layers: int
    threads: str
    memory_bytes: int | None
    fits: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def markdown(self) -> list[str]:
        mem = "n/a" if self.memory_bytes is None else f"{self.memory_bytes / 2**20:.0f} MiB"
        lines = [
            f"Target: **{self.target}** ({self.description})",
            "",
            f"- context: {self.n_ctx if self.n_ctx else 'does not fit'}",
            f"- GPU layers: {self.n_gpu_layers}",
            f"- threads: {self.threads}",
            f"- memory at that context: {mem}",
        ]
        return lines + [f"- {n}" for n in self.notes]


def plan_for_target(path: Path, facts: GGUFFacts, target_name: str | None) -> BundlePlan:
    """Context, GPU layers and memory for the target profile, from `quant.plan` (engineer H's sizing).

    The context is the largest that fits, capped at MAX_BUNDLE_CTX: field laptops gain little from
    more and pay for it in memory and prompt time. Without a target: laptop-8g, the smallest profile.
    """
    from quant.plan import load_source, max_context, plan
    from quant.profiles import get_profile

    target = get_profile(target_name or "laptop-8g")
    source = load_source(path)
    first = plan(source, target, ctx=min(MAX_BUNDLE_CTX, facts.context_length or MAX_BUNDLE_CTX))
    best = max_context(first.shape, first.settings, target)
    notes = list(target.assumptions)
    if best is None:
        return BundlePlan(
            target.name,
            target.description,
            None,
            0,
            "n/a",
            None,
            False,
            notes + first.warnings + ["the model does not fit this target"],
        )
    n_ctx = min(best, MAX_BUNDLE_CTX)
    final = plan(source, target, ctx=n_ctx) if n_ctx != first.settings.n_ctx else first
    row = final.rows[0]
    notes.append(
        f"largest context that fits: {best} tokens; bundle uses {n_ctx}"
        + (f" (capped at {MAX_BUNDLE_CTX})" if best > MAX_BUNDLE_CTX else "")
    )
    notes.append(f"placement: {row.placement.kind} (memory from quant.plan: llama.cpp's allocation model)")
    return BundlePlan(
        target.name,
        target.description,
        n_ctx,
        row.placement.n_gpu_layers,
        "the number of physical cores (llama.cpp's default)",
        row.placement.estimate.total,
        row.fits,
        notes + final.warnings,
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _modelfile(gguf_name: str, plan: BundlePlan, eos: str | None) -> str:
    lines = [
        "# Ollama: ollama create <name> -f Modelfile && ollama run <name>",
        "# The chat template comes from the GGUF itself (tokenizer.chat_template).",
        f"FROM ./{gguf_name}",
    ]
    if plan.n_ctx:
        lines.append(f"PARAMETER num_ctx {plan.n_ctx}")
    if plan.n_gpu_layers == 0:
        lines.append("PARAMETER num_gpu 0")
    lines.append("PARAMETER temperature 0.7")
    if eos:
        lines.append(f'PARAMETER stop "{eos}"')
    return "\n".join(lines) + "\n"


def _readme(gguf_name: str, model: str, plan: BundlePlan, verdict: str) -> str:
    ctx = plan.n_ctx or 2048
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(gguf_name).stem.lower())
    ngl = f" -ngl {plan.n_gpu_layers}" if plan.n_gpu_layers else ""
    return f"""{model}
{"=" * len(model)}

This folder holds a quantised model ({gguf_name}) ready to run offline, with the commands below.
Smoke test verdict: {verdict} (details in SMOKE.md and smoke-report.json).
Planned for: {plan.description}; context {ctx} tokens.

Check the files first (nothing was damaged in copying):
    sha256sum -c SHA256SUMS
    (or: hubtui bundle --verify .)

Chat in the terminal with hubtui's own chat (needs Python 3.11+ and llama-cpp-python):
    pip install llama-cpp-python
    python3 {CHAT_APP} {gguf_name} --ctx {ctx}
    (or, with hubtui installed: hubtui chat {gguf_name} --ctx {ctx})
    Commands inside: /reset, /system TEXT, /save FILE, /quit; Ctrl-C stops a reply.

llama.cpp (https://github.com/ggml-org/llama.cpp):
    llama-cli -m {gguf_name} -c {ctx}{ngl} --jinja -cnv
    llama-server -m {gguf_name} -c {ctx}{ngl} --jinja --host 127.0.0.1 --port 8080
    then open http://127.0.0.1:8080 in a browser (OpenAI-compatible API at /v1).

Ollama (https://ollama.com):
    ollama create {tag} -f Modelfile
    ollama run {tag}

LM Studio (https://lmstudio.ai):
    lms import {gguf_name}
    lms load {tag} --context-length {ctx}
    or in the app: My Models > import, then pick the model in the Chat tab.
"""


def build_bundle(
    gguf: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    target: str | None = None,
    smoke_timeout: float = 300.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Assemble the bundle for `gguf` in `out_dir` (which must not exist or be empty); returns a summary."""
    from hubtui.runner.gguf_check import read_facts
    from hubtui.runner.smoke import run_smoke
    from hubtui.runner.smoke_report import render_markdown

    src = Path(gguf)
    dest = Path(out_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RunnerError(f"{dest}: already exists and is not an empty directory")
    facts = read_facts(src)
    plan = plan_for_target(src, facts, target)  # unknown profile names fail here, before the slow parts

    def say(stage: str, msg: str) -> None:
        if progress:
            progress(stage, msg)

    say("smoke", f"smoke-testing {src.name}")
    report = run_smoke(src, n_ctx=min(plan.n_ctx or 1024, 1024), timeout=smoke_timeout, on_progress=progress)
    if report.verdict == "fail":
        raise RunnerError(f"{src.name} failed the smoke test: {'; '.join(report.reasons)}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would lock field staff out of a shared copy
        say("copy", f"copying {src.name}")
        shutil.copyfile(src, work / src.name)
        data = report.to_dict()
        data["plan"] = plan.to_dict()
        (work / "smoke-report.json").write_text(
            json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8"
        )
        (work / "SMOKE.md").write_text(render_markdown(report, plan.markdown()), encoding="utf-8")
        eos_text = _eos_text(src, facts)
        (work / "Modelfile").write_text(_modelfile(src.name, plan, eos_text), encoding="utf-8")
        model = facts.name or src.stem
        (work / "README.txt").write_text(_readme(src.name, model, plan, report.verdict), encoding="utf-8")
        say("chat", f"writing {CHAT_APP}")
        build_chat_app(work / CHAT_APP)
        say("checksums", "computing SHA-256 checksums")
        files = sorted(p.name for p in work.iterdir() if p.is_file())
        sums = {name: sha256_file(work / name) for name in files}
        (work / SUMS).write_text("".join(f"{h}  {n}\n" for n, h in sums.items()), encoding="utf-8")
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {
        "path": str(dest),
        "verdict": report.verdict,
        "files": files + [SUMS],
        "sha256": sums,
        "plan": plan.to_dict(),
    }


def _eos_text(path: Path, facts: GGUFFacts) -> str | None:
    from gguf import GGUFReader

    eos = facts.special_tokens.get("eot", facts.special_tokens.get("eos"))
    if eos is None:
        return None
    field_ = GGUFReader(path).fields.get("tokenizer.ggml.tokens")
    if field_ is None or eos >= len(field_.data):
        return None
    text = bytes(field_.parts[field_.data[eos]]).decode("utf-8", "replace")
    return text if '"' not in text else None


def build_chat_app(target: Path) -> Path:
    """A zipapp of the chat engine and REPL: `python3 hubtui-chat.pyz MODEL.gguf` with only llama-cpp-python."""
    import hubtui

    root = Path(hubtui.__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        for rel in CHAT_APP_MODULES:
            dst = Path(tmp) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, dst)
        (Path(tmp) / "__main__.py").write_text(
            "import sys\nfrom hubtui.runner.chat_main import main\nsys.exit(main())\n", encoding="utf-8"
        )
        zipapp.create_archive(tmp, target, interpreter="/usr/bin/env python3", compressed=True)
    return target


def verify_bundle(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Re-check SHA256SUMS; returns {"ok": bool, "files": {name: "ok"|"mismatch"|"missing"}, "extra": [...]}."""
    d = Path(directory)
    sums_path = d / SUMS
    if not sums_path.is_file():
        raise RunnerError(f"{d}: no {SUMS} file: not a hubtui bundle")
    expected: dict[str, str] = {}
    for i, line in enumerate(sums_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or "/" in name or name.startswith("."):
            raise RunnerError(f"{sums_path}: line {i} is not '<sha256>  <file name>'")
        expected[name.lstrip("*")] = digest.lower()
    status = {}
    for name, digest in expected.items():
        p = d / name
        status[name] = "missing" if not p.is_file() else ("ok" if sha256_file(p) == digest else "mismatch")
    extra = sorted(p.name for p in d.iterdir() if p.is_file() and p.name != SUMS and p.name not in expected)
    return {"path": str(d), "ok": all(s == "ok" for s in status.values()), "files": status, "extra": extra}
