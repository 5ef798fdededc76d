"""Download throughput from a local fake hub: hubtui's resumable, verified downloader vs huggingface_hub.

Serves one file of random bytes (500 MB by default) from tests/fakehub on 127.0.0.1 (LFS-style: the
resolve URL redirects to a "CDN" origin, as on huggingface.co), then alternates
`hubtui.hub.download` (default: 4 parallel range requests for files above 256 MiB; and with
`connections=1`, one stream) and `huggingface_hub.hf_hub_download` of that file into fresh caches.
Reports the median MB/s of each and the ratio (hubtui / huggingface_hub; the target is >= 1.0).
hubtui also hashes every byte (sha256) and writes it to disk as it arrives so a restart can resume;
huggingface_hub checks only the size.

    python scripts/bench_download.py [--size-mb 500] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huggingface_hub import hf_hub_download  # noqa: E402

from hubtui.hub.download import download  # noqa: E402
from tests.fakehub import FakeHub, FakeRepo  # noqa: E402

REPO, NAME = "bench/random-weights", "model.safetensors"


def make_file(path: Path, size: int) -> None:
    chunk = 16 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def run_hubtui(url: str, cache: Path) -> Path:
    """The default: a file this big goes over 4 parallel range requests."""
    result = download(REPO, include=[NAME], endpoint=url, cache_dir=cache)
    return result.files[0].path


def run_hubtui_one_stream(url: str, cache: Path) -> Path:
    result = download(REPO, include=[NAME], endpoint=url, cache_dir=cache, connections=1)
    return result.files[0].path


def run_hf(url: str, cache: Path) -> Path:
    return Path(hf_hub_download(REPO, NAME, endpoint=url, cache_dir=cache, token=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    size = args.size_mb * 1_000_000
    work = Path(tempfile.mkdtemp(prefix="hubtui-bench-dl-"))
    try:
        source = work / "source.bin"
        make_file(source, size)
        hub = FakeHub()
        repo = hub.add_repo(FakeRepo(REPO))
        repo.add(NAME, source=source)
        runners = {"hubtui": run_hubtui, "hubtui-1-stream": run_hubtui_one_stream, "huggingface_hub": run_hf}
        times: dict[str, list[float]] = {k: [] for k in runners}
        with hub:
            for i in range(args.runs):
                for label, fn in runners.items():
                    cache = work / f"cache-{label}-{i}"
                    t0 = time.perf_counter()
                    path = fn(hub.url, cache)
                    times[label].append(time.perf_counter() - t0)
                    assert path.stat().st_size == size, (label, path)
                    shutil.rmtree(cache)
        mbps = {k: size / 1e6 / statistics.median(v) for k, v in times.items()}
        report = {
            "size_mb": args.size_mb,
            "runs": args.runs,
            "seconds": times,
            "median_mb_per_s": mbps,
            "ratio_hubtui_over_hf": mbps["hubtui"] / mbps["huggingface_hub"],
            "ratio_hubtui_1_stream_over_hf": mbps["hubtui-1-stream"] / mbps["huggingface_hub"],
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(
                f"file: {args.size_mb} MB random bytes from the fake hub on 127.0.0.1, {args.runs} runs each"
            )
            for k in times:
                runs = ", ".join(f"{t:.2f}" for t in times[k])
                print(f"{k:>16}: median {mbps[k]:7.1f} MB/s  (runs: {runs} s)")
            print(f"ratio hubtui / huggingface_hub: {report['ratio_hubtui_over_hf']:.2f}x")
            print(f"ratio hubtui-1-stream / huggingface_hub: {report['ratio_hubtui_1_stream_over_hf']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
