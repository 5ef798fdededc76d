#!/usr/bin/env python
"""IQ kernel throughput with importance weights: this project vs llama.cpp's ggml_quantize_chunk, side by side.

Every IQ type (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S) quantises the same float32 matrix (standard
normal, seed 0) with the same importance weights (one per column, log-normal like llama-imatrix's mean squared
activations) in one process: ours through the type's `quantize_rows` (every row's scale validated; the weights are
checked by the front end, not here) with 1 and with all threads, and llama.cpp's `ggml_quantize_chunk`
(libggml-base from llama-cpp-python, scalar C, single-threaded). Rounds are interleaved (ours, llama.cpp, next
type, ...) and each figure is the median; the CPU time of the calling thread is the steadier single-thread figure
on a shared machine. Our bytes are compared with llama.cpp's for the whole matrix.

    python scripts/bench_iquants.py                      # 1024x4096, 3 rounds
    python scripts/bench_iquants.py --rows 4096          # 4096x4096 (llama.cpp needs about 30 s a round)
    python scripts/bench_iquants.py --startup            # also: import, table build, first calls, JIT compile
    python scripts/bench_iquants.py --json
"""

from __future__ import annotations

import argparse
import json
import os
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

from scripts.bench_quant import interleaved_rounds, machine, single_thread_cpu_clock  # noqa: E402
from tests.support import ggml_ref  # noqa: E402  (llama.cpp through ctypes; quant never loads llama_cpp)

TYPES = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"]


def bench(rows: int, cols: int, rounds: int, types: list[str]) -> dict:
    import numba

    from quant import QUANT_TYPES
    from quant.kernels.api import default_threads

    load = os.getloadavg()[0]
    x = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    qw = np.random.default_rng(1).lognormal(0.0, 1.5, cols).astype(np.float32)
    nthreads = default_threads()
    lib = ggml_ref.libggml()
    runs: dict[str, dict[str, list]] = {}
    outs = {}
    for qtype in types:
        cls = QUANT_TYPES[qtype]
        outs[qtype] = (
            np.empty((rows, cls.row_bytes(cols)), np.uint8),
            np.empty((rows, cls.row_bytes(cols)), np.uint8),
        )
        lib.ggml_quantize_init(ggml_ref.GGML_TYPES[qtype])  # llama.cpp's table build, outside the timing
        cls.quantize_rows(
            x[:2], outs[qtype][0][:2], qw
        )  # ours: kernels and tables loaded, outside the timing
        runs[qtype] = {"ours_1t": [], "ours_nt": [], "ggml": []}

    def ours(cls, out, n):
        saved = numba.get_num_threads()
        numba.set_num_threads(n)
        try:
            assert cls.quantize_rows(x, out, qw) == -1
        finally:
            numba.set_num_threads(saved)

    def ggml(t, out):
        lib.ggml_quantize_chunk(t, x.ctypes.data, out.ctypes.data, 0, rows, cols, qw.ctypes.data)

    # one dict for every type, so the rounds interleave them all: ours 1t, llama.cpp, ours all threads, next type
    contenders = {}
    for qtype in types:
        cls, (mine, theirs) = QUANT_TYPES[qtype], outs[qtype]
        contenders[qtype, "ours_1t"] = lambda c=cls, o=mine: ours(c, o, 1)
        contenders[qtype, "ggml"] = lambda t=ggml_ref.GGML_TYPES[qtype], o=theirs: ggml(t, o)
        contenders[qtype, "ours_nt"] = lambda c=cls, o=mine: ours(c, o, nthreads)
    clock = single_thread_cpu_clock()
    for (qtype, kind), (walls, cpus) in interleaved_rounds(contenders, rounds, clock).items():
        runs[qtype][kind] = list(zip(walls, cpus, strict=True))
    results = []
    mblocks = rows * cols / 256 / 1e3
    for qtype in types:
        r = runs[qtype]
        med = {
            k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in r.items()
        }
        results.append(
            {
                "type": qtype,
                "ours_1t_s": med["ours_1t"][0],
                "ours_1t_cpu_s": med["ours_1t"][1],
                "ours_nt_s": med["ours_nt"][0],
                "llama_cpp_1t_s": med["ggml"][0],
                "llama_cpp_1t_cpu_s": med["ggml"][1],
                "ours_1t_kblocks_s": mblocks / med["ours_1t"][0],
                "llama_cpp_1t_kblocks_s": mblocks / med["ggml"][0],
                "ratio_1t_wall": med["ggml"][0] / med["ours_1t"][0],
                "ratio_1t_cpu": med["ggml"][1] / med["ours_1t"][1],
                "ratio_nt_wall": med["ggml"][0] / med["ours_nt"][0],
                "cpu_ratios_per_round": [g[1] / o[1] for o, g in zip(r["ours_1t"], r["ggml"], strict=True)],
                "identical_to_llama_cpp": bool(np.array_equal(outs[qtype][0], outs[qtype][1])),
            }
        )
    return {
        "matrix": [rows, cols],
        "rounds": rounds,
        "threads": nthreads,
        "machine": machine(),
        "numba_threading_layer": numba.threading_layer(),
        "cpu_clock": clock.__name__,
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "results": results,
    }


_STARTUP_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import quant.kernels
from quant import QUANT_TYPES
t1 = time.perf_counter()
x = np.random.default_rng(0).standard_normal((4, 256), dtype=np.float32)
qw = np.ones(256, np.float32)
first = {}
for t in sys.argv[1].split(","):
    cls = QUANT_TYPES[t]
    out = np.empty((4, cls.row_bytes(256)), np.uint8)
    y = np.empty((4, 256), np.float32)
    t2 = time.perf_counter()
    cls.quantize_rows(x, out, qw)
    cls.dequantize_rows(out, y)
    first[t] = time.perf_counter() - t2
print(json.dumps({"import_s": t1 - t0, "first_calls_s": sum(first.values()), "per_type_s": first}))
"""


def _child(types: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _STARTUP_CHILD, ",".join(types)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {"process_wall_s": time.perf_counter() - t0, **json.loads(out.stdout.strip().splitlines()[-1])}


def startup(types: list[str]) -> dict:
    """Fresh processes: an empty numba cache (JIT compile and table build), then everything cached, then the
    compiled kernels cached but the grid tables removed (the tables built from scratch)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(REPO))
        cold = _child(types, env)
        cached = _child(types, env)
        for p in Path(cache).glob("iq_tables.*.npz"):
            p.unlink()
        tables_rebuilt = _child(types, env)
    return {"cold_compile": cold, "cached": cached, "tables_rebuilt": tables_rebuilt}


def table(report: dict) -> str:
    n = report["threads"]
    lines = [
        f"| type | ours 1t (kblocks/s) | llama.cpp 1t (kblocks/s) | ours/llama.cpp 1t, CPU time | per round "
        f"| ours/llama.cpp 1t, wall | ours {n}t/llama.cpp 1t, wall | identical |",
        "|---|---:|---:|---:|---|---:|---:|:---:|",
    ]
    for r in report["results"]:
        rounds = ", ".join(f"{v:.2f}" for v in r["cpu_ratios_per_round"])
        lines.append(
            f"| {r['type']} | {r['ours_1t_kblocks_s']:.1f} | {r['llama_cpp_1t_kblocks_s']:.1f} "
            f"| {r['ratio_1t_cpu']:.2f} | {rounds} | {r['ratio_1t_wall']:.2f} | {r['ratio_nt_wall']:.2f} "
            f"| {'yes' if r['identical_to_llama_cpp'] else 'NO'} |"
        )
    m = report["machine"]
    rows, cols = report["matrix"]
    lines += [
        "",
        f"{rows}×{cols} float32 (standard normal) with log-normal importance weights; median of "
        f"{report['rounds']} interleaved rounds; load average {report['load_average_start']:.1f} at the start, "
        f"{report['load_average_end']:.1f} at the end; {m['cpu']}, {m['cores']} cores ({' '.join(m['cpu_flags'])}), "
        f"Python {m['python']}, numba {m['numba']} ({report['numba_threading_layer']}), numpy {m['numpy']}.",
    ]
    if "startup" in report:
        s = report["startup"]
        lines += [
            "",
            "| fresh process | import quant.kernels (s) | first quantize+dequantize of all 7 types (s) | process (s) |",
            "|---|---:|---:|---:|",
        ]
        for key, label in (
            ("cold_compile", "empty numba cache (JIT compile, tables built)"),
            ("cached", "kernels and tables cached"),
            ("tables_rebuilt", "kernels cached, tables removed"),
        ):
            v = s[key]
            lines.append(
                f"| {label} | {v['import_s']:.2f} | {v['first_calls_s']:.2f} | {v['process_wall_s']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--types", default=",".join(TYPES), help="comma-separated IQ type names")
    p.add_argument("--startup", action="store_true", help="also time import, table build, first calls, JIT")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    report = bench(args.rows, args.cols, args.rounds, types)
    if args.startup:
        report["startup"] = startup(types)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
