"""The smoke test: is this GGUF usable? A verdict (pass/warn/fail) with reasons and every figure.

The header is checked here in Python; loading, tokenising, generating and scoring happen in a child
process (`smoke_worker`) under a timeout, so a native crash or hang becomes a "fail" verdict
instead of taking the caller (CLI or TUI) down.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hubtui.runner.errors import RunnerError
from hubtui.runner.gguf_check import Finding, GGUFFacts, check_facts, read_facts
from hubtui.signals import deferred_signals
from quant.units import format_bytes

ProgressCallback = Callable[[str, str], object]  # what it returns is ignored

# Thresholds for the verdict. Perplexity on the shipped passage: trained small models score
# roughly 5-40; above WARN_PPL something is off. Against a baseline (say F16): a quant whose
# perplexity is more than 25 % worse, or whose mean KL exceeds 0.25 nats, deserves a look.
WARN_PPL = 200.0
WARN_PPL_RATIO = 1.25
WARN_KL = 0.25
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CTX = 1024


@dataclass
class SmokeReport:
    """Everything the smoke test found; `to_dict` is the `--json` output."""

    path: str
    verdict: str = "fail"
    reasons: list[str] = field(default_factory=list)
    checks: list[Finding] = field(default_factory=list)
    facts: GGUFFacts | None = None
    n_ctx: int = DEFAULT_CTX
    measurements: dict[str, Any] = field(default_factory=dict)
    mmap: bool = True
    mlock: bool = False
    plan: dict[str, Any] | None = None  # the sizing row for this machine and mode (quant.sizing.plan)

    def add(self, check: str, level: str, message: str) -> None:
        self.checks.append(Finding(check, level, message))

    def decide(self) -> None:
        levels = [c.level for c in self.checks]
        self.verdict = "fail" if "fail" in levels else "warn" if "warn" in levels else "pass"
        self.reasons = [c.message for c in self.checks if c.level == self.verdict and self.verdict != "pass"]

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == "fail" else 0

    def to_dict(self) -> dict[str, Any]:
        m = self.measurements
        return {
            "path": self.path,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "checks": [{"check": c.check, "level": c.level, "message": c.message} for c in self.checks],
            "gguf": self.facts.to_dict() if self.facts else None,
            "n_ctx": self.n_ctx,
            "mmap": self.mmap,
            "mlock": self.mlock,
            "memory_plan": self.plan,
            "load_seconds": m.get("load_seconds"),
            "peak_rss_bytes": m.get("peak_rss_bytes"),
            "prompt_tokens_per_s": (m.get("perplexity") or {}).get("prompt_tokens_per_s"),
            "generation_tokens_per_s": (m.get("generation") or {}).get("tokens_per_s"),
            "perplexity": (m.get("perplexity") or {}).get("perplexity"),
            "baseline": m.get("baseline"),
            "gpu_layers": m.get("gpu_layers"),
            "measurements": m,
        }


def _repo_root() -> str:
    import hubtui

    return str(Path(hubtui.__file__).resolve().parent.parent)


def run_child(
    module: str,
    request: dict[str, Any],
    timeout: float,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """Run `python -m module REQ OUT` with a deadline; `cancel` set kills the child within half a second.

    Returns (result, failure, last_stage): failure is a one-line reason when the child crashed,
    timed out, was cancelled or wrote no result.
    """
    with tempfile.TemporaryDirectory(prefix="hubtui-smoke-") as tmp:
        req_path, out_path, err_path = (os.path.join(tmp, n) for n in ("req.json", "out.json", "stderr.txt"))
        with open(req_path, "w", encoding="utf-8") as fh:
            json.dump(request, fh)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH")) if p)
        with open(err_path, "wb") as err:
            proc: subprocess.Popen[bytes] | None = None
            try:  # from the fork on, any exception (Ctrl-C, SIGTERM once the handlers are back) stops the child
                with deferred_signals() as deferred:  # no signal between the fork and knowing the child
                    proc = subprocess.Popen(
                        [sys.executable, "-m", module, req_path, out_path],
                        stdout=subprocess.PIPE,
                        stderr=err,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop the child
                    )
                events: queue.Queue[dict[str, str] | None] = queue.Queue()

                def pump() -> None:
                    assert proc is not None and proc.stdout is not None
                    for raw in proc.stdout:
                        try:
                            ev = json.loads(raw)
                        except ValueError:
                            continue  # native code printing to stdout: not ours
                        if isinstance(ev, dict) and "stage" in ev:
                            events.put(ev)
                    events.put(None)

                reader = threading.Thread(target=pump, daemon=True)
                reader.start()
                deadline = time.monotonic() + timeout
                stage: str | None = None
                timed_out = cancelled = False
                deferred.deliver()  # a Ctrl-C or SIGTERM that came during the spawn: now the child is stopped
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        timed_out = True
                        break
                    if cancel is not None and cancel.is_set():
                        cancelled = True
                        break
                    try:
                        ev = events.get(timeout=min(left, 0.5))
                    except queue.Empty:
                        continue
                    if ev is None:
                        break
                    stage = ev["stage"]
                    if on_progress:
                        on_progress(ev["stage"], ev.get("message", ""))
                if not timed_out and not cancelled:
                    try:  # stdout closed; a child that then hangs on exit still meets the deadline
                        proc.wait(timeout=max(5.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        timed_out = True
                if timed_out or cancelled:
                    proc.kill()
                rc = proc.wait(timeout=30)
            except BaseException:
                if proc is not None:
                    proc.kill()
                    proc.wait()
                raise
            reader.join(timeout=5)
        if cancelled:
            return None, "cancelled", stage
        if timed_out:
            return None, f"timed out after {timeout:g} s" + (f" during {stage}" if stage else ""), stage
        if rc != 0:
            tail = ""
            with open(err_path, "rb") as errors:
                lines = [ln for ln in errors.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            if lines:
                tail = f": {lines[-1].strip()[:200]}"
            how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
            where = f" during {stage}" if stage else ""
            return None, f"llama.cpp process died{where} ({how}){tail}", stage
        if not os.path.exists(out_path):
            return None, "the smoke-test process wrote no result", stage
        with open(out_path, encoding="utf-8") as fh:
            return json.load(fh), None, stage


# The smoke test's own memory beyond a chat's: with logits for every passage token, llama.cpp's output buffer,
# the numpy copy of the scores and their log-softmax each hold tokens × n_vocab floats.
SMOKE_LOGITS_COPIES = 3


def _memory_check(
    report: SmokeReport,
    path: str | os.PathLike[str],
    n_ctx: int,
    gpu_layers: int | str,
    *,
    choose_mode: bool = False,
) -> None:
    """Refuse a file that cannot fit before llama.cpp tries: the plan's working set for this machine and
    load mode (mmap or not, mlock), plus the perplexity pass's logits. Paging is a warning, not a failure.

    `choose_mode`: the plan may load the file with --no-mmap where mapping it does not fit; `report.mmap`
    then says how the worker loads it."""
    import llama_cpp

    from hubtui.runner.machine import detect_machine
    from quant.errors import QuantError
    from quant.sizing.memory import RunSettings
    from quant.sizing.plan import NO_MMAP_REASON, plan
    from quant.sizing.profiles import machine_target

    target = machine_target(detect_machine())
    settings = RunSettings(repack=target.repack, mmap=report.mmap, mlock=report.mlock)
    on_cpu = gpu_layers in (0, "0") or (gpu_layers == "auto" and not llama_cpp.llama_supports_gpu_offload())
    facts = report.facts
    n_vocab = facts.n_vocab_tokens if facts else 0
    extra = SMOKE_LOGITS_COPIES * min(n_ctx, 512) * n_vocab * 4 if on_cpu else 0
    # the logits are anonymous memory on top of the model's: the plan (and its choice of mode) gets the rest
    budget = replace(target, ram=max(0, target.ram - extra))
    try:
        row = plan(Path(path), budget, ctx=n_ctx, settings=settings, choose_mode=choose_mode).rows[0]
    except QuantError as exc:
        report.add("memory", "warn", f"cannot size it: {exc}")
        return
    report.plan = row.to_dict()
    report.mmap = row.placement.mmap
    if not on_cpu:
        report.add("memory", "ok", f"sized for the GPU: {row.placement.verdict} ({row.placement.kind})")
        return
    need = report.plan["working_set"] + report.plan["margin"] + extra
    avail = target.ram
    mode = row.placement.mode + (f" ({NO_MMAP_REASON})" if row.placement.mode_switched else "")
    name = Path(path).name
    what = f"working set {format_bytes(report.plan['working_set'])} at ctx {n_ctx} with {mode}"
    if row.placement.kind == "none" or report.plan["anonymous"] + extra > avail:
        report.add(
            "memory",
            "fail",
            f"{name} needs about {format_bytes(need)} ({what}, plus {format_bytes(extra)} for the perplexity logits) "
            f"but only {format_bytes(avail)} of RAM is available",
        )
    elif need > avail:
        report.add(
            "memory",
            "warn",
            f"{name}: {what} is more than the {format_bytes(avail)} available: weights will page from disk (slow)",
        )
    else:
        report.add("memory", "ok", f"{what}; {format_bytes(avail)} RAM available")


def _judge(report: SmokeReport, res: dict[str, Any]) -> None:
    facts = report.facts
    assert facts is not None
    model = res.get("model", {})
    if model and model.get("n_vocab") != facts.n_vocab_tokens:
        report.add(
            "vocabulary",
            "fail",
            f"llama.cpp sees {model.get('n_vocab')} tokens, the header {facts.n_vocab_tokens}",
        )

    trips = res.get("round_trip", [])
    bad = [t for t in trips if not t["ok"]]
    if trips and len(bad) == len(trips):
        report.add(
            "tokenizer",
            "fail",
            f"tokenizer round trip failed on every sample (e.g. {bad[0]['text']!r} -> {bad[0]['decoded']!r})",
        )
    elif bad:
        report.add(
            "tokenizer",
            "warn",
            f"tokenizer round trip differs on {len(bad)}/{len(trips)} samples (e.g. {bad[0]['text']!r} -> {bad[0]['decoded']!r})",
        )
    else:
        report.add("tokenizer", "ok", f"tokenizer round trip exact on {len(trips)} samples")

    gen = res.get("generation", {})
    if gen.get("non_finite_at_step") is not None:
        report.add("generation", "fail", f"NaN/inf logits at generation step {gen['non_finite_at_step']}")
    elif not gen.get("text", "").strip():
        report.add(
            "generation",
            "fail",
            "greedy generation produced no text"
            + (" (immediate end-of-turn)" if gen.get("stopped_at_eog") else ""),
        )
    elif not gen.get("stopped_at_eog"):
        report.add(
            "generation",
            "warn",
            f"greedy reply did not reach an end-of-turn token within {gen.get('tokens')} tokens",
        )
    else:
        report.add(
            "generation",
            "ok",
            f"greedy reply of {gen['tokens']} tokens ending at end-of-turn: {gen['text'].strip()[:80]!r}",
        )

    ppl = res.get("perplexity", {})
    value = ppl.get("perplexity")
    if not ppl.get("finite_logits", True) or value is None or not math.isfinite(value):
        report.add("perplexity", "fail", "non-finite logits on the perplexity passage")
    elif value > WARN_PPL:
        report.add(
            "perplexity",
            "warn",
            f"perplexity {value:.1f} on the passage is high (> {WARN_PPL:g}): untrained or damaged weights?",
        )
    else:
        report.add("perplexity", "ok", f"perplexity {value:.2f} over {ppl['tokens']} tokens")

    base = res.get("baseline")
    if base is not None:
        if "error" in base:
            report.add("baseline", "fail", f"baseline: {base['error']}")
        else:
            ratio, kl = base["perplexity_ratio"], base["mean_kl"]
            level = "warn" if ratio > WARN_PPL_RATIO or kl > WARN_KL else "ok"
            report.add(
                "baseline",
                level,
                f"perplexity ratio {ratio:.4f} and mean KL {kl:.4f} vs baseline"
                + (f" (limits {WARN_PPL_RATIO:g} and {WARN_KL:g})" if level == "warn" else ""),
            )


def run_smoke(
    path: str | os.PathLike[str],
    *,
    n_ctx: int = DEFAULT_CTX,
    gpu_layers: int | str = "auto",
    baseline: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    on_progress: ProgressCallback | None = None,
    lora: str | os.PathLike[str] | None = None,
    lora_scale: float = 1.0,
    mmap: bool | None = None,
    mlock: bool = False,
    cancel: threading.Event | None = None,
) -> SmokeReport:
    """Smoke-test `path`; never raises for a bad model file (the report says fail), only for bad arguments.

    `lora`: a LoRA adapter GGUF applied at run time (scaled by `lora_scale`); a `baseline` equal to `path`
    then means the same model without the adapter. `mmap`/`mlock` are llama.cpp's load modes; the memory
    check sizes for the same mode (`mmap` None: the plan's choice, see `quant.sizing.plan.fit`). `cancel`
    set stops the llama.cpp child; the report then fails with
    "cancelled"."""
    from hubtui.runner.passage import passage_text

    if n_ctx < 128:
        raise RunnerError(f"--ctx {n_ctx} is too small for the smoke test (at least 128)")
    report = SmokeReport(path=str(path), n_ctx=n_ctx, mmap=mmap is not False, mlock=mlock)
    if on_progress:
        on_progress("header", f"reading {path}")
    try:
        facts = read_facts(path)
    except RunnerError as exc:
        report.add("gguf", "fail", str(exc))
        report.decide()
        return report
    report.facts = facts
    report.add("gguf", "ok", f"GGUF with {facts.n_tensors} tensors, {facts.n_params / 1e6:.1f} M parameters")
    report.checks.extend(check_facts(facts))
    _memory_check(report, path, n_ctx, gpu_layers, choose_mode=mmap is None and not mlock)
    if lora is not None:
        from hubtui.runner.adapters import check_adapter

        problem = check_adapter(lora, facts.architecture)
        report.add(
            "adapter",
            "fail" if problem else "ok",
            problem or f"LoRA adapter {Path(lora).name} x {lora_scale:g}",
        )
    if baseline is not None:
        try:
            bfacts = read_facts(baseline)
        except RunnerError as exc:
            report.add("baseline", "fail", f"baseline {exc}")
            bfacts = None
        if bfacts is not None and bfacts.n_vocab_tokens != facts.n_vocab_tokens:
            report.add(
                "baseline",
                "fail",
                f"baseline {Path(baseline).name} has {bfacts.n_vocab_tokens} tokens, the model {facts.n_vocab_tokens}",
            )
    if any(c.level == "fail" for c in report.checks):
        report.decide()  # llama.cpp would abort or misbehave on these: do not load
        return report

    request = {
        "path": str(Path(path).resolve()),
        "n_ctx": n_ctx,
        "gpu_layers": gpu_layers,
        "passage": passage_text(),
        "baseline": str(Path(baseline).resolve()) if baseline else None,
        "lora": str(Path(lora).resolve()) if lora else None,
        "lora_scale": lora_scale,
        "mmap": report.mmap,
        "mlock": mlock,
    }
    if on_progress:  # the child's first word comes after llama.cpp's import, seconds from now
        on_progress("load", f"starting llama.cpp to load {Path(path).name}")
    res, failure, _stage = run_child("hubtui.runner.smoke_worker", request, timeout, on_progress, cancel)
    if failure is not None:
        report.add("load", "fail", f"{Path(path).name}: {failure}")
        report.decide()
        return report
    assert res is not None
    report.measurements = res
    if "error" in res:
        report.add(
            "load", "fail", f"{Path(path).name}: llama.cpp could not load it: {res['error']['message']}"
        )
    else:
        report.add("load", "ok", f"loaded in {res['load_seconds']:.2f} s")
        _judge(report, res)
    report.decide()
    return report
