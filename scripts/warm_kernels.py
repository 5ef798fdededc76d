#!/usr/bin/env python
"""Compile every quantisation kernel into Numba's on-disk cache, in two processes at once.

A fresh checkout has no compiled kernels: the first quantise or dequantise of each type family pays its JIT
compile (about 145 s for all of them on one core of the 2-core benchmark machine; Q2_K/Q3_K alone about 50 s).
In a test run those compiles happen one after another inside the tests that first touch a type. The README's
test command runs this script in the background while ruff and mypy run, so the compiles use the second core
and the tests find the kernels cached. The work is split by type family into two child processes; the cache
is Numba's own (`__pycache__` beside each kernel module, or NUMBA_CACHE_DIR), shared with every later process.

    python scripts/warm_kernels.py            # both halves in parallel, then exit
    python scripts/warm_kernels.py --half 0   # one half in this process
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# Two halves of about equal compile time (seconds measured on the benchmark machine, one core each).
HALVES = (
    ("Q2_K", "Q3_K", "IQ1_S", "IQ1_M", "Q4_0", "Q4_1", "Q5_0", "Q5_1"),  # ~77 s
    ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS", "Q4_K", "Q5_K", "Q6_K", "F32", "F16",
     "BF16", "Q8_0"),  # ~68 s
)  # fmt: skip


def warm(types: tuple[str, ...]) -> None:
    import numpy as np

    from quant import QUANT_TYPES, dequantize, quantize

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 512)).astype(np.float32)
    weights = rng.random(512).astype(np.float32) + 0.5
    for name in types:
        cls = QUANT_TYPES[name]
        t0 = time.perf_counter()
        q = quantize(x, name)  if not cls.requires_quant_weights else None  # fmt: skip
        if cls.uses_quant_weights:
            q = quantize(x, name, quant_weights=weights)
        assert q is not None
        dequantize(q, name, x.shape)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--half", type=int, choices=(0, 1), help="Warm one half in this process.")
    args = p.parse_args()
    if args.half is not None:
        warm(HALVES[args.half])
        return 0
    t0 = time.perf_counter()
    children = [subprocess.Popen([sys.executable, __file__, "--half", str(i)]) for i in (0, 1)]
    codes = [c.wait() for c in children]
    print(f"kernels compiled and cached in {time.perf_counter() - t0:.1f} s", flush=True)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
