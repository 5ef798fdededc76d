#!/usr/bin/env python
"""`hubtui imatrix` against llama.cpp's `llama-imatrix`: wall time on the same GGUF, text, context and chunks.

Both run SmolLM2-135M-Instruct (the real checkpoint, built offline by tests.fixtures.cache and converted to
F16 or Q8_0) over the default calibration text (hubtui/runner/calibration.txt) with the same --ctx, --chunks
and threads, in alternating rounds (ours, llama.cpp, ours, ...) after an uncounted warm-up round; each figure is the median wall time of the
whole command (process start, model load, the run, writing the file). llama-imatrix runs with --no-ppl, since
`hubtui imatrix` computes no perplexity. The tool comes from tests/support/llama_tools.py (built from the
llama.cpp tree vendored in the installed llama-cpp-python's sdist, so both use the same ggml). The two files
are checked to hold the same entries and counts.

    python scripts/bench_imatrix.py --threads 2 --chunks 16 --rounds 5
    python scripts/bench_imatrix.py --type Q8_0 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.bench_imatrix_quality import cpu  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return seconds, proc.stdout


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from quant.imatrix.format import read_imatrix
    from tests.fixtures.cache import checkpoint
    from tests.support.llama_tools import find_tool

    tool = find_tool("llama-imatrix")
    if tool is None:
        raise SystemExit("llama-imatrix is not built (python tests/support/llama_tools.py llama-imatrix)")
    model = work / f"SmolLM2-135M-Instruct-{args.type}.gguf"
    subprocess.run(
        [sys.executable, "-m", "hubtui", "convert", str(checkpoint("smollm2-135m")), "--type", args.type,
         "-o", str(model), "--force"],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    text = REPO / "hubtui" / "runner" / "calibration.txt"
    ours_out, theirs_out = work / "ours.gguf", work / "theirs.gguf"
    common = ["--ctx", str(args.ctx), "--chunks", str(args.chunks)]
    ours = [sys.executable, "-m", "hubtui", "imatrix", str(model), "-o", str(ours_out), "--text", str(text),
            *common, "--threads", str(args.threads), "--force", "--json"]  # fmt: skip
    theirs = [str(tool), "-m", str(model), "-f", str(text), "-c", str(args.ctx), "--chunks", str(args.chunks),
              "-t", str(args.threads), "--no-ppl", "-o", str(theirs_out)]  # fmt: skip
    for _ in range(args.warmup):  # page cache, shared libraries, Numba's cache: not counted
        timed(ours)
        timed(theirs)
    times: dict[str, list[float]] = {"hubtui": [], "llama-imatrix": []}
    run_s: list[float] = []  # hubtui's own figure for running the model (loading and start-up excluded)
    for r in range(args.rounds):
        seconds, out = timed(ours)
        times["hubtui"].append(seconds)
        run_s.append(json.loads(out)["seconds"])
        times["llama-imatrix"].append(timed(theirs)[0])
        print(
            f"round {r + 1}: {times['hubtui'][-1]:.1f} s / {times['llama-imatrix'][-1]:.1f} s",
            file=sys.stderr,
        )
    a, b = read_imatrix(ours_out), read_imatrix(theirs_out)
    same = sorted(a.entries) == sorted(b.entries) and all(
        (a.entries[n].counts == b.entries[n].counts).all() for n in a.entries
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    model_name, flags = cpu()
    return {
        "machine": {"cpu": model_name, "flags": flags, "cores": len(os.sched_getaffinity(0))},
        "load_average": os.getloadavg()[0],
        "model": model.name,
        "ctx": args.ctx,
        "chunks": args.chunks,
        "threads": args.threads,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "times": times,
        "hubtui_run_seconds": run_s,
        "median": med,
        "ratio": med["hubtui"] / med["llama-imatrix"],
        "same_entries_and_counts": bool(same),
    }


def markdown(res: dict[str, Any]) -> str:
    t, m = res["times"], res["median"]
    lines = [
        "| tool | runs (s) | median (s) |",
        "|---|---|---|",
        f"| hubtui imatrix | {', '.join(f'{x:.1f}' for x in t['hubtui'])} | {m['hubtui']:.1f} |",
        f"| llama-imatrix --no-ppl | {', '.join(f'{x:.1f}' for x in t['llama-imatrix'])} "
        f"| {m['llama-imatrix']:.1f} |",
        f"| (hubtui: running the model only) | {', '.join(f'{x:.1f}' for x in res['hubtui_run_seconds'])} "
        f"| {statistics.median(res['hubtui_run_seconds']):.1f} |",
        "",
        f"Ratio hubtui / llama-imatrix: {res['ratio']:.2f}x ({res['model']}, --ctx {res['ctx']}, --chunks "
        f"{res['chunks']}, {res['threads']} threads, {res['rounds']} alternating rounds after {res['warmup']} warm-up; same entries and counts: "
        f"{'yes' if res['same_entries_and_counts'] else 'NO'}). Machine: {res['machine']['cpu']} "
        f"({', '.join(res['machine']['flags'])}), {res['machine']['cores']} cores, load average "
        f"{res['load_average']:.1f} at the end.",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--type", default="F16", choices=["F16", "Q8_0"])
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--chunks", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1, help="Uncounted rounds first.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-imatrix."))
    try:
        res = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=1) if args.json else markdown(res))


if __name__ == "__main__":
    main()
