"""Build the test checkpoints: `python scripts/make_fixtures.py [OUT] [--only NAME ...]`.

Without OUT they go to the cache the test suite uses ($HUBTUI_FIXTURE_CACHE or ~/.cache/hubtui/test-fixtures).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.cache import build_into, cache_root  # noqa: E402
from tests.fixtures.checkpoints import ALL_BUILDERS as BUILDERS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, help="output directory (default: the test cache)")
    parser.add_argument(
        "--only", action="append", choices=sorted(BUILDERS), help="build only this checkpoint"
    )
    args = parser.parse_args()
    root = args.out or cache_root()
    for name in args.only or BUILDERS:
        start, cpu = time.perf_counter(), time.process_time()
        path = build_into(name, root)
        size = sum(f.stat().st_size for f in path.iterdir())
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{name:14} {size / 1e6:7.1f} MB  {wall:6.1f} s wall  {cpu:6.1f} s CPU  peak RSS so far {peak:5.0f} MB  {path}"
        )


if __name__ == "__main__":
    main()
