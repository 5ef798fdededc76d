#!/usr/bin/env python
"""Quantisation kernel throughput: this project vs llama.cpp's ggml_quantize_chunk vs gguf-py's numpy quantiser.

Every type runs on the same 4096×4096 float32 matrix (standard normal, seed 0) in one process. Output is
preallocated for every contender, so only the quantiser is timed. Rounds interleave the contenders (ours on
one thread, llama.cpp, ours on every thread) so load from other processes hits them alike; each figure is the
median of --repeats rounds, and the ratios are medians of the per-round ratios. The bytes of ours and
llama.cpp's are compared too (they must be identical).

    python scripts/bench_quant.py                 # table
    python scripts/bench_quant.py --imatrix       # also the importance-weighted paths (ggml's imatrix argument)
    python scripts/bench_quant.py --json          # machine-readable
    python scripts/bench_quant.py --startup       # also: JIT compile time (fresh cache) and cached start-up
    python scripts/bench_quant.py --markdown      # the table for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import ggml_ref  # noqa: E402  (llama.cpp through ctypes; quant never loads llama_cpp)

TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"]  # 1- and 32-element blocks
TYPES += ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"]  # 256
GGUF_PY = {
    "BF16",
    "Q8_0",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
}  # gguf-py can quantise these (others: dequantise only)


def interleaved_rounds(
    contenders: dict, repeats: int, cpu_clock
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall-clock and CPU seconds (by `cpu_clock`) of each contender over `repeats` interleaved rounds. A short
    pause follows each run, so a numba worker left spin-waiting by an all-threads run has gone to sleep before
    the next contender starts (on 2 cores it would otherwise compete with it)."""
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            c0, t0 = cpu_clock(), time.perf_counter()
            fn()
            times[name][0].append(time.perf_counter() - t0)
            times[name][1].append(cpu_clock() - c0)
            time.sleep(0.05)
    return times


def single_thread_cpu_clock():
    """The CPU clock for single-threaded contenders: the calling thread's own. Process CPU time would also count
    the numba worker that an all-threads run leaves spin-waiting (OpenMP's default), which inflated whatever
    ran next by up to 40 % on a loaded 2-core machine. numba's workqueue layer runs even one-thread regions on
    a worker, so there only the process clock sees the work."""
    import numba

    return time.process_time if numba.threading_layer() == "workqueue" else time.thread_time


def _median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i] (how many times faster b is than a)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU seconds of `repeats` calls.

    On a shared machine the CPU time of a single-threaded run is the steadier figure: it leaves out the
    time the process waited for a core.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _ggml_quantizer(qtype: str, x: np.ndarray, weights: np.ndarray | None = None):
    """A closure running ggml_quantize_chunk into a preallocated buffer (it is single-threaded)."""
    lib = ggml_ref.libggml()
    t = ggml_ref.GGML_TYPES[qtype]
    lib.ggml_quantize_init(t)
    rows, cols = x.shape
    dst = np.empty((rows, ggml_ref.row_size(qtype, cols)), dtype=np.uint8)
    imatrix = ctypes.c_void_p(None if weights is None else weights.ctypes.data)

    def run() -> np.ndarray:
        lib.ggml_quantize_chunk(t, x.ctypes.data, dst.ctypes.data, 0, rows, cols, imatrix)
        return dst

    return run


def bench(rows: int, cols: int, repeats: int, types: list[str], imatrix: bool = False) -> dict:
    """One table: every type without importance weights, or (imatrix=True) with the same lognormal weights
    for ours and llama.cpp (gguf-py has no weighted quantiser)."""
    import numba
    from gguf import GGMLQuantizationType
    from gguf import quants as gguf_quants

    from quant import QUANT_TYPES, quantize
    from quant.kernels.api import default_threads

    load = os.getloadavg()[0]
    x = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    weights = np.random.default_rng(1).lognormal(0.0, 2.0, cols).astype(np.float32) if imatrix else None
    nthreads = default_threads()
    melem = x.size / 1e6
    cpu_clock = None
    results = []
    for qtype in types:
        if qtype not in QUANT_TYPES:
            results.append({"type": qtype, "missing": True})
            continue
        if imatrix and not QUANT_TYPES[qtype].uses_quant_weights:
            continue
        out = np.empty((rows, QUANT_TYPES[qtype].row_bytes(cols)), dtype=np.uint8)
        outn = np.empty_like(out)
        quantize(x[:4], qtype, out=out[:4], quant_weights=weights)  # load the kernels (cached) before timing
        cpu_clock = cpu_clock or single_thread_cpu_clock()
        ggml = _ggml_quantizer(qtype, x, weights)
        times = interleaved_rounds(
            {
                "ours_1t": lambda q=qtype, o=out: quantize(x, q, threads=1, out=o, quant_weights=weights),
                "llama_cpp": ggml,
                "ours_nt": lambda q=qtype, o=outn: quantize(
                    x, q, threads=nthreads, out=o, quant_weights=weights
                ),
            },
            repeats,
            cpu_clock,
        )
        (w1, c1), (wg, cg), (wn, _) = times["ours_1t"], times["llama_cpp"], times["ours_nt"]
        row = {
            "type": qtype,
            "ours_1t_melem_s": melem / statistics.median(w1),
            "ours_nt_melem_s": melem / statistics.median(wn),
            "llama_cpp_1t_melem_s": melem / statistics.median(wg),
            "ratio_1t_vs_llama_cpp": _median_ratio(wg, w1),
            "ratio_nt_vs_llama_cpp": _median_ratio(wg, wn),
            "ours_1t_cpu_melem_s": melem / statistics.median(c1),
            "llama_cpp_1t_cpu_melem_s": melem / statistics.median(cg),
            "ratio_1t_cpu_vs_llama_cpp": _median_ratio(cg, c1),
            "identical_to_llama_cpp": bool(np.array_equal(out, ggml()) and np.array_equal(outn, out)),
        }
        if qtype in GGUF_PY and not imatrix:
            gq = GGMLQuantizationType[qtype]
            first = _median_seconds(lambda q=gq: gguf_quants.quantize(x, q), 1)
            gguf_s, gguf_cpu = (
                first if first[0] > 2.0 else _median_seconds(lambda q=gq: gguf_quants.quantize(x, q), repeats)
            )
            row["gguf_py_melem_s"] = melem / gguf_s
            row["ratio_1t_vs_gguf_py"] = gguf_s / statistics.median(w1)
            row["ratio_1t_cpu_vs_gguf_py"] = gguf_cpu / statistics.median(c1)
        results.append(row)
    return {
        "matrix": [rows, cols],
        "repeats": repeats,
        "threads": nthreads,
        "imatrix": imatrix,
        "machine": machine(),
        "numba_threading_layer": numba.threading_layer(),
        "cpu_clock": getattr(cpu_clock, "__name__", None),
        "load_average": load,
        "load_average_end": os.getloadavg()[0],
        "results": results,
    }


_STARTUP_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from quant import quantize, dequantize, QUANT_TYPES
t1, c1 = time.perf_counter(), time.process_time()
x = np.random.default_rng(0).standard_normal((4, 256), dtype=np.float32)
first = {}
for t in sys.argv[1].split(","):
    if t in QUANT_TYPES:
        t2 = time.perf_counter()
        dequantize(quantize(x, t), t, x.shape)
        first[t] = time.perf_counter() - t2
cpu = time.process_time() - c1
print(json.dumps({"import_s": t1 - t0, "first_calls_s": sum(first.values()), "first_calls_cpu_s": cpu, "per_type_s": first}))
"""


def startup(types: list[str]) -> dict:
    """Import + first quantize/dequantize of each type in a fresh process with an empty numba cache, then again.

    The first process pays the JIT compile; the second must load everything from the cache.
    """
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", _STARTUP_CHILD, ",".join(types)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            runs.append({"process_wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])})
    return {"cold_compile": runs[0], "cached": runs[1]}


_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16")


def machine() -> dict:
    import numba

    model = platform.processor() or ""
    flags: list[str] = []
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("Flags:"):
                present = set(line.split(":", 1)[1].split())
                flags = [f for f in _SIMD_FLAGS if f in present]
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "numpy": np.__version__,
    }


def _fmt(v: float | None, spec: str = "8.0f") -> str:
    return "-" if v is None else format(v, spec)


def table(report: dict) -> str:
    n = report["threads"]
    title = (
        "With importance weights (lognormal, one per column)"
        if report.get("imatrix")
        else "Without importance weights"
    )
    head = (
        f"| type | ours 1 thread | ours {n} threads | llama.cpp 1 thread | gguf-py | ours/llama.cpp 1t "
        f"| ours/llama.cpp 1t, CPU time | ours {n}t/llama.cpp 1t | ours/gguf-py 1t, CPU time | identical |"
    )
    lines = [f"{title}:", "", head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in report["results"]:
        if r.get("missing"):
            lines.append(f"| {r['type']} | not registered | | | | | | | | |")
            continue
        lines.append(
            f"| {r['type']} | {_fmt(r['ours_1t_melem_s'])} | {_fmt(r['ours_nt_melem_s'])} "
            f"| {_fmt(r['llama_cpp_1t_melem_s'])} | {_fmt(r.get('gguf_py_melem_s'))} "
            f"| {_fmt(r['ratio_1t_vs_llama_cpp'], '.2f')} | {_fmt(r['ratio_1t_cpu_vs_llama_cpp'], '.2f')} "
            f"| {_fmt(r['ratio_nt_vs_llama_cpp'], '.2f')} | {_fmt(r.get('ratio_1t_cpu_vs_gguf_py'), '.1f')} "
            f"| {'yes' if r['identical_to_llama_cpp'] else 'NO'} |"
        )
    m = report["machine"]
    lines.append("")
    lines.append(
        f"Melem/s (wall clock), median of {report['repeats']} interleaved rounds, ratios the median of per-round "
        f"ratios (CPU: time.{report.get('cpu_clock')}); {report['matrix'][0]}×{report['matrix'][1]} float32 normal; load average "
        f"{report['load_average']:.1f} at the start, {report.get('load_average_end', float('nan')):.1f} at the end; "
        f"{m['cpu']} ({' '.join(m.get('cpu_flags', []))}), {m['cores']} cores, Python {m['python']}, "
        f"numba {m['numba']} ({report['numba_threading_layer']}), numpy {m['numpy']}."
    )
    if "startup" in report:
        cold, warm = report["startup"]["cold_compile"], report["startup"]["cached"]
        lines += [
            "",
            f"Start-up, fresh process, import quant then the first quantize+dequantize of each of the "
            f"{len(cold['per_type_s'])} types: empty numba cache {cold['import_s']:.2f} s import + "
            f"{cold['first_calls_s']:.1f} s JIT compile ({cold['first_calls_cpu_s']:.1f} s CPU); "
            f"cached {warm['import_s']:.2f} s import + "
            f"{warm['first_calls_s']:.2f} s first calls ({warm['process_wall_s']:.2f} s process wall).",
            "",
            "| type | first call, empty cache (s) | first call, cached (s) |",
            "|---|---:|---:|",
        ]
        for t, v in cold["per_type_s"].items():
            lines.append(f"| {t} | {v:.2f} | {warm['per_type_s'][t]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--types", default=",".join(TYPES), help="comma-separated ggml type names")
    p.add_argument("--startup", action="store_true", help="also time JIT compile and cached start-up")
    p.add_argument("--imatrix", action="store_true", help="also time the importance-weighted paths")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--markdown", action="store_true", help="print the markdown table (the default output)")
    args = p.parse_args(argv)
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    report = bench(args.rows, args.cols, args.repeats, types)
    if args.startup:
        report["startup"] = startup(types)
    reports = [report]
    if args.imatrix:
        reports.append(bench(args.rows, args.cols, args.repeats, types, imatrix=True))
    if args.json:
        print(json.dumps(reports if args.imatrix else report, indent=2))
    else:
        print("\n\n".join(table(r) for r in reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
