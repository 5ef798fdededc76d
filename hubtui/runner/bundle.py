"""The field bundle: one folder to hand to field staff with a laptop.

It holds the GGUF, the smoke-test report (JSON and Markdown, with the plan for the target machine),
an Ollama `Modelfile`, a `README.txt` with copy-paste commands for llama.cpp, Ollama, LM Studio and
hubtui, a standalone `hubtui-chat.pyz` (needs only llama-cpp-python), and `SHA256SUMS` over all of
them. The destination is checked (path, free space) and claimed before the smoke test; the folder is
assembled next to it through `quant.outputs` and renamed into place, so a failure, Ctrl-C or SIGTERM
leaves nothing behind and a second bundle to the same folder fails at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import zipapp
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubtui.runner.errors import RunnerError
from hubtui.runner.gguf_check import GGUFFacts
from quant.units import format_bytes

if TYPE_CHECKING:
    from quant.sizing.profiles import Target

SUMS = "SHA256SUMS"
CHAT_APP = "hubtui-chat.pyz"
# The modules the standalone chat needs: the engine, the REPL and what they import (the GGUF header walk too).
CHAT_APP_MODULES = (
    "quant/__init__.py",
    "quant/errors.py",
    "quant/gguf_file.py",
    "quant/inputs.py",
    "hubtui/__init__.py",
    "hubtui/errors.py",
    "hubtui/runner/__init__.py",
    "hubtui/runner/errors.py",
    "hubtui/runner/llama_log.py",
    "hubtui/runner/llama_text.py",
    "hubtui/runner/formats.py",
    "hubtui/runner/gguf_check.py",
    "hubtui/runner/adapters.py",
    "hubtui/runner/chat.py",
    "hubtui/runner/offload.py",
    "hubtui/runner/chat_commands.py",
    "hubtui/runner/repl.py",
    "hubtui/runner/chat_main.py",
)
MAX_BUNDLE_CTX = 8192
BUNDLE_EXTRA_BYTES = 8 << 20  # room for everything beside the GGUF (the chat app is ~100 KB) and then some

Progress = Callable[[str, str], object]  # what it returns is ignored


@dataclass
class BundlePlan:
    """How to run the model on the target: context, GPU layers, threads, memory; plus how it was decided."""

    target: str
    description: str
    n_ctx: int | None
    n_gpu_layers: int
    threads: str
    memory_bytes: int | None  # the working set on the host
    fits: bool
    notes: list[str] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    verdict: str = ""  # fits, tight, pages from disk, does not fit
    mmap: bool = True  # False: the plan fits only with the weights read into RAM (--no-mmap)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def markdown(self) -> list[str]:
        mem = "n/a" if self.memory_bytes is None else format_bytes(self.memory_bytes)
        peak = "n/a" if self.peak_rss_bytes is None else format_bytes(self.peak_rss_bytes)
        lines = [
            f"Target: **{self.target}** ({self.description})",
            "",
            f"- context: {self.n_ctx if self.n_ctx else 'does not fit'}",
            f"- GPU layers: {self.n_gpu_layers}",
            f"- threads: {self.threads}",
            f"- memory at that context (working set, what must stay in RAM): {mem}"
            + (f" ({self.verdict})" if self.verdict else ""),
            f"- peak RSS (also counts mapped file pages the system can drop): {peak}",
        ]
        if not self.mmap:
            lines.append(
                "- load with --no-mmap (every command in README.txt does): mapping the file leaves too "
                "little room for the file pages of its repacked weights"
            )
        return lines + [f"- {n}" for n in self.notes]


def plan_for_target(path: Path, facts: GGUFFacts, target_name: str | Target | None) -> BundlePlan:
    """Context, GPU layers and memory for the target profile, from the project's sizing model
    (`quant.sizing.plan`).

    The context is the largest that fits (working set plus margin within the target's RAM, the same verdict
    as `hubtui plan`), capped at MAX_BUNDLE_CTX: field laptops gain little from more and pay for it in memory
    and prompt time. Without a target: laptop-8g, the smallest profile. A `Target` (a custom one, this
    machine) is taken as it is.
    """
    from quant.sizing.plan import load_source, max_context, plan
    from quant.sizing.profiles import Target, get_profile

    target = target_name if isinstance(target_name, Target) else get_profile(target_name or "laptop-8g")
    source = load_source(path)
    first = plan(source, target, ctx=min(MAX_BUNDLE_CTX, facts.context_length or MAX_BUNDLE_CTX))
    best = max_context(first.shape, first.settings, target, choose_mode=first.choose_mode)
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
    notes.append(
        f"placement: {row.placement.kind}, {row.placement.verdict} "
        "(memory from quant.sizing.plan: llama.cpp's allocations and what of them must stay resident)"
    )
    return BundlePlan(
        target.name,
        target.description,
        n_ctx,
        row.placement.n_gpu_layers,
        "the number of physical cores (llama.cpp's default)",
        row.placement.estimate.host.working_set,
        row.fits,
        notes + final.warnings,
        row.placement.estimate.host.peak_rss,
        row.placement.verdict,
        row.placement.mmap,
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class BundledAdapter:
    """A LoRA adapter GGUF shipped beside the base model, applied at run time with `scale`."""

    name: str
    scale: float

    def llama_cpp_args(self) -> str:
        return f" --lora {self.name}" if self.scale == 1 else f" --lora-scaled {self.name} {self.scale:g}"

    def hubtui_args(self) -> str:
        return f" --lora {self.name}" + ("" if self.scale == 1 else f" --lora-scale {self.scale:g}")


def _modelfile(gguf_name: str, plan: BundlePlan, eos: str | None, adapter: BundledAdapter | None) -> str:
    lines = [
        "# Ollama: ollama create <name> -f Modelfile && ollama run <name>",
        "# The chat template comes from the GGUF itself (tokenizer.chat_template).",
        f"FROM ./{gguf_name}",
    ]
    if adapter is not None:
        if adapter.scale != 1:
            lines.append(
                f"# Ollama applies an adapter at scale 1 (this bundle's scale is {adapter.scale:g})."
            )
        lines.append(f"ADAPTER ./{adapter.name}")
    if plan.n_ctx:
        lines.append(f"PARAMETER num_ctx {plan.n_ctx}")
    if plan.n_gpu_layers == 0:
        lines.append("PARAMETER num_gpu 0")
    if not plan.mmap:
        lines.append("# planned to load without mmap (llama.cpp --no-mmap): only that fits the target")
        lines.append("PARAMETER use_mmap false")
    lines.append("PARAMETER temperature 0.7")
    if eos:
        lines.append(f'PARAMETER stop "{eos}"')
    return "\n".join(lines) + "\n"


def _readme(
    gguf_name: str, model: str, plan: BundlePlan, verdict: str, adapter: BundledAdapter | None = None
) -> str:
    ctx = plan.n_ctx or 2048
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(gguf_name).stem.lower())
    ngl = f" -ngl {plan.n_gpu_layers}" if plan.n_gpu_layers else ""
    no_mmap = "" if plan.mmap else " --no-mmap"
    lora = adapter.llama_cpp_args() if adapter else ""
    lora_hubtui = adapter.hubtui_args() if adapter else ""
    what = (
        f"a quantised model ({gguf_name}) and a LoRA adapter for it ({adapter.name}, applied at scale "
        f"{adapter.scale:g} by every command below)"
        if adapter
        else f"a quantised model ({gguf_name})"
    )
    lm_studio = (
        "    LM Studio does not load LoRA adapters: use one of the tools above, or a merged bundle\n"
        "    (hubtui bundle CHECKPOINT --lora ADAPTER_DIR -o DIR).\n"
        if adapter
        else f"""    lms import {gguf_name}
    lms load {tag} --context-length {ctx}
    or in the app: My Models > import, then pick the model in the Chat tab.
"""
    )
    return f"""{model}
{"=" * len(model)}

This folder holds {what}, ready to run offline with the commands below.
Smoke test verdict: {verdict} (details in SMOKE.md and smoke-report.json).
Planned for: {plan.description}; context {ctx} tokens.

Check the files first (nothing was damaged in copying):
    sha256sum -c SHA256SUMS
    (or: hubtui bundle --verify .)

Chat in the terminal with hubtui's own chat (needs Python 3.11+ and llama-cpp-python):
    pip install llama-cpp-python
    python3 {CHAT_APP} {gguf_name}{lora_hubtui} --ctx {ctx}{no_mmap}
    (or, with hubtui installed: hubtui chat {gguf_name}{lora_hubtui} --ctx {ctx}{no_mmap})
    Commands inside: /reset, /system TEXT, /save FILE, /quit; Ctrl-C stops a reply.

llama.cpp (https://github.com/ggml-org/llama.cpp):
    llama-cli -m {gguf_name}{lora} -c {ctx}{ngl}{no_mmap} --jinja -cnv
    llama-server -m {gguf_name}{lora} -c {ctx}{ngl}{no_mmap} --jinja --host 127.0.0.1 --port 8080
    then open http://127.0.0.1:8080 in a browser (OpenAI-compatible API at /v1).

Ollama (https://ollama.com):
    ollama create {tag} -f Modelfile
    ollama run {tag}

LM Studio (https://lmstudio.ai):
{lm_studio}"""


@contextlib.contextmanager
def _parent_folder(dest: Path) -> Iterator[None]:
    """Create `dest`'s missing parent folders; remove the ones made here if the bundle is not finished."""
    made = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunnerError(
            f"{dest.parent}: cannot create the bundle's parent folder: {exc.strerror or exc}"
        ) from None
    try:
        yield
    except BaseException:
        for p in made:  # deepest first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def build_bundle(
    gguf: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    target: str | Target | None = None,
    smoke_timeout: float = 300.0,
    progress: Progress | None = None,
    lora: str | os.PathLike[str] | None = None,
    lora_scale: float = 1.0,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Assemble the bundle for `gguf` in `out_dir` (which must not exist or be empty); returns a summary.

    `lora`: a LoRA adapter GGUF shipped beside the model; the smoke test, README, Modelfile and chat app
    apply it at `lora_scale`. `cancel` set stops it between steps (and the smoke test at once) with
    `RunnerError`; nothing is left."""
    from hubtui.runner.gguf_check import read_facts
    from hubtui.runner.smoke import run_smoke
    from quant.inputs import require_regular
    from quant.outputs import claim_output, free_disk_bytes

    src = require_regular(Path(gguf), RunnerError)
    adapter_src = None if lora is None else require_regular(Path(lora), RunnerError)
    if adapter_src is not None and adapter_src.name == src.name:
        raise RunnerError(f"{adapter_src}: the adapter has the model's file name {src.name}; rename one")
    dest = Path(out_dir)

    def say(stage: str, msg: str) -> None:
        if cancel is not None and cancel.is_set():
            raise RunnerError(f"bundle of {src.name} cancelled")
        if progress:
            progress(stage, msg)

    # The destination is checked and claimed first (cheap), before reading the model and the smoke test
    # (minutes on a big one), and stays claimed until the finished folder is renamed into place: a second
    # bundle to it fails at once.
    inputs = [src] if adapter_src is None else [src, adapter_src]
    with _parent_folder(dest), claim_output(dest, inputs=inputs, directory=True) as claim:
        need = sum(p.stat().st_size for p in inputs) + BUNDLE_EXTRA_BYTES
        free = free_disk_bytes(claim.parent)
        if free < need:
            raise RunnerError(
                f"{claim.parent}: not enough free disk space for the bundle: need about {need} bytes "
                f"(the GGUF plus {BUNDLE_EXTRA_BYTES >> 20} MiB), {free} available"
            )
        facts = read_facts(src)
        adapter = None
        if adapter_src is not None:
            from hubtui.runner.adapters import check_adapter

            problem = check_adapter(adapter_src, facts.architecture)
            if problem:
                raise RunnerError(problem)
            adapter = BundledAdapter(adapter_src.name, lora_scale)
        plan = plan_for_target(src, facts, target)  # unknown profile names fail here, before the slow parts
        say("smoke", f"smoke-testing {src.name}" + (f" with {adapter.name}" if adapter else ""))
        report = run_smoke(
            src,
            n_ctx=min(plan.n_ctx or 1024, 1024),
            timeout=smoke_timeout,
            on_progress=progress,
            lora=adapter_src,
            lora_scale=lora_scale,
            cancel=cancel,
        )
        say("smoke", f"smoke test: {report.verdict}")
        if report.verdict == "fail":
            raise RunnerError(f"{src.name} failed the smoke test: {'; '.join(report.reasons)}")
        work = claim.create_dir()
        try:
            files, sums = _fill(work, src, facts, plan, report, say, adapter_src, adapter)
        except OSError as exc:
            where = exc.filename or work
            raise RunnerError(f"{where}: cannot write the bundle: {exc.strerror or exc}") from None
        claim.commit()
    return {
        "path": str(dest),
        "verdict": report.verdict,
        "files": files + [SUMS],
        "sha256": sums,
        "plan": plan.to_dict(),
        "adapter": None if adapter is None else {"file": adapter.name, "scale": adapter.scale},
    }


def build_merged_bundle(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    qtype: str,
    loras: list[tuple[Path, float]],
    target: str | None = None,
    smoke_timeout: float = 300.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """A bundle of `checkpoint` converted to `qtype` with the PEFT adapters `loras` ((folder, scale) pairs)
    merged while converting: one GGUF, no adapter to load. The conversion goes to a temporary folder beside
    `out_dir`, removed afterwards whatever happens."""
    from quant.convert import convert

    dest = Path(out_dir)
    # cheap first: a bundle that cannot be written is refused before minutes of conversion
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RunnerError(f"{dest}: already exists and is not an empty folder")
    with (
        _parent_folder(dest),
        tempfile.TemporaryDirectory(prefix=f".{dest.name}.merge-", dir=dest.parent) as tmp,
    ):
        if progress:
            names = ", ".join(f"{Path(d).name} x {s:g}" for d, s in loras)
            progress("convert", f"converting {Path(checkpoint).name} to {qtype}, merging {names}")
        merged = convert(Path(checkpoint), Path(tmp), qtype, loras=loras)
        summary = build_bundle(
            merged.path, dest, target=target, smoke_timeout=smoke_timeout, progress=progress
        )
    summary["merged"] = [{"adapter": str(d), "scale": s} for d, s in loras]
    return summary


def _fill(
    work: Path,
    src: Path,
    facts: GGUFFacts,
    plan: BundlePlan,
    report: Any,
    say: Callable[[str, str], None],
    adapter_src: Path | None = None,
    adapter: BundledAdapter | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Write every file of the bundle into `work`; returns the file names and their SHA-256 sums."""
    from hubtui.runner.smoke_report import render_markdown

    say("copy", f"copying {src.name}")
    shutil.copyfile(src, work / src.name)
    if adapter_src is not None and adapter is not None:
        say("copy", f"copying {adapter.name}")
        shutil.copyfile(adapter_src, work / adapter.name)
    data = report.to_dict()
    data["plan"] = plan.to_dict()
    (work / "smoke-report.json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    (work / "SMOKE.md").write_text(render_markdown(report, plan.markdown()), encoding="utf-8")
    eos_text = _eos_text(src, facts)
    (work / "Modelfile").write_text(_modelfile(src.name, plan, eos_text, adapter), encoding="utf-8")
    model = facts.name or src.stem
    (work / "README.txt").write_text(
        _readme(src.name, model, plan, report.verdict, adapter), encoding="utf-8"
    )
    say("chat", f"writing {CHAT_APP}")
    build_chat_app(work / CHAT_APP)
    say("checksums", "computing SHA-256 checksums")
    files = sorted(p.name for p in work.iterdir() if p.is_file())
    sums = {name: sha256_file(work / name) for name in files}
    say("checksums", "done")
    (work / SUMS).write_text("".join(f"{h}  {n}\n" for n, h in sums.items()), encoding="utf-8")
    for path in (work / SUMS, *(work / name for name in files)):
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    return files, sums


def _eos_text(path: Path, facts: GGUFFacts) -> str | None:
    from quant.gguf_file import read_gguf_summary

    eos = facts.special_tokens.get("eot", facts.special_tokens.get("eos"))
    if eos is None:
        return None
    tokens = read_gguf_summary(path).kv.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or eos >= len(tokens) or not isinstance(tokens[eos], str):
        return None
    return tokens[eos] if '"' not in tokens[eos] else None


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
