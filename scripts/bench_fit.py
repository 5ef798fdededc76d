#!/usr/bin/env python
"""Two-sided fit check at real sizes: llama.cpp (through hubtui's runner) under hard memory caps.

For each real-shape model (random weights, built once: tests/fixtures/real_shapes.py), type and context:

- the plan's working set for what the run does (a prompt of --prompt tokens, then --gen generated ones) and
  for a full context (what `hubtui plan` reports);
- uncapped runs of scripts/fit_probe.py (load, one chat turn), interleaved with runs in a memory cgroup capped
  at that working set plus the plan's stated margin: the plan says "fits" at that budget, and llama.cpp must
  agree (no OOM kill, prompt time within 1.25x the uncapped median);
- a run capped 10 % below the working set: the plan says it does not fit ("pages from disk" or "does not
  fit"), and llama.cpp must agree: OOM-killed, or generation more than 2x slower (or not done in time).

A type the CPU repacks is checked in both load modes the plan can choose: mmap (its margin keeps room for the
repacked weights' still-mapped file pages) and --no-mmap (what the plan picks when that room is missing).
Besides the issue's criterion (prompt time), the table marks any fit whose generation is over 1.25x.

The model file's pages are dropped from the page cache before every run (posix_fadvise), so the capped run is
charged for reading them. Needs root (or a delegated cgroup v2 subtree).

    python scripts/bench_fit.py --root /work/scratch/bench-fit                     # the whole matrix
    python scripts/bench_fit.py --models Llama-3.1-8B --ctx 4096 --cap-target laptop-8g   # the laptop case
    python scripts/bench_fit.py ... --json out.json --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1 << 20
GIB = 1 << 30
FIT_PROMPT_RATIO = 1.25
REJECT_SLOWDOWN = 2.0


def ensure_ggufs(name: str, types: list[str], root: Path, keep_checkpoint: bool) -> dict[str, Path]:
    """The model's GGUFs under root/gguf, converted by `hubtui convert` from a checkpoint built once."""
    from tests.fixtures.real_shapes import build

    out = {t: root / "gguf" / f"{name}-{t}.gguf" for t in types}
    missing = [t for t, p in out.items() if not p.exists()]
    if missing:
        src = build(name, root / "checkpoints")
        (root / "gguf").mkdir(parents=True, exist_ok=True)
        for t in missing:
            cmd = [sys.executable, "-m", "hubtui", "convert", str(src), "-o", str(out[t]), "--type", t]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        if not keep_checkpoint:
            shutil.rmtree(src)
    return out


def settings_for(gguf: Path, n_ctx: int, filled: int | None, mmap: bool = True, mlock: bool = False):
    from hubtui.runner.machine import detect_machine
    from quant.sizing.memory import RunSettings
    from quant.sizing.repack import repack_rules

    repack = repack_rules(detect_machine().cpu_features)
    return RunSettings(n_ctx=n_ctx, repack=repack, filled=filled, mmap=mmap, mlock=mlock)


def predict(gguf: Path, n_ctx: int, filled: int | None, **mode) -> dict:
    """The plan's figures (bytes) for `gguf` at `n_ctx` with `filled` tokens in the cache (None: full)."""
    from quant.sizing.memory import estimate
    from quant.sizing.plan import gguf_shape

    _, _, shape = gguf_shape(gguf)
    host = estimate(shape, settings_for(gguf, n_ctx, filled, **mode)).host
    return {
        "working_set": host.working_set,
        "margin": host.margin,
        "read_once": host.read_once,
        "anonymous": host.anonymous_resident,
        "in_place": host.working_set - host.anonymous_resident,
        "repack": host.repack,
        "peak_rss": host.peak_rss,
    }


def verdict_at(gguf: Path, n_ctx: int, filled: int | None, budget: int, **mode) -> str:
    """What the plan says about a CPU machine with `budget` bytes (fits, tight, pages from disk, ...)."""
    from quant.sizing.plan import fit, gguf_shape
    from quant.sizing.profiles import Target

    _, _, shape = gguf_shape(gguf)
    settings = settings_for(gguf, n_ctx, filled, **mode)
    return fit(shape, settings, Target("cap", budget, repack=settings.repack)).verdict


def run_probe(
    gguf: Path,
    n_ctx: int,
    prompt: int,
    gen: int,
    *,
    cap: int = 0,
    timeout: float = 3600,
    mmap: bool = True,
    mlock: bool = False,
) -> dict:
    """One fit_probe run (uncapped, or in a cgroup capped at `cap` bytes); never raises for a dead child."""
    from tests.support.memcap import CgroupCap, evict

    still_cached = evict(gguf)
    if still_cached > 0.02:  # another process maps it: the capped run would not be charged for those pages
        print(f"warning: {still_cached:.0%} of {gguf.name} is still in the page cache", file=sys.stderr)
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "fit_probe.py"),
        str(gguf),
        str(n_ctx),
        str(prompt),
        str(gen),
    ]
    cmd += [] if mmap else ["--no-mmap"]
    cmd += ["--mlock"] if mlock else []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    group = CgroupCap(cap) if cap else None
    if group is not None and group.dir is None:
        raise SystemExit(
            "cannot create a memory cgroup here: run as root (or in a delegated cgroup v2 subtree)"
        )
    try:
        full = (group.enter_cmd() if group else []) + cmd
        proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            timed_out = True
        stats = group.stats() if group else {}
    finally:
        if group is not None:
            group.close()
    row: dict = {
        "cap": cap,
        "rc": proc.returncode,
        "wall": time.monotonic() - t0,
        "load": load,
        "timed_out": timed_out,
        "cgroup": stats,
        "cached_before": still_cached,
    }
    if proc.returncode == 0 and out.strip():
        r = json.loads(out.strip().splitlines()[-1])
        first, end = r["first_token"] or r["after_generation"], r["after_generation"]
        row |= {
            "ok": True,
            "prompt_tokens": r["reply"]["prompt_tokens"],
            "tokens": r["reply"]["tokens"],
            "prompt_s": r["reply"]["prompt_seconds"],
            "gen_s": r["reply"]["seconds"],
            "anon": end["RssAnon"],
            "file_rss": end["RssFile"],
            "hwm": end["VmHWM"],
            "locked": end["VmLck"],
            "file_referenced": r["smaps"]["file_referenced"],
            "majflt_prompt": first["majflt"] - r["after_load"]["majflt"],
            "majflt_gen": end["majflt"] - first["majflt"],
        }
    else:
        row |= {"ok": False, "stderr": err.strip().splitlines()[-3:] if err else []}
    row["oom"] = bool(stats.get("oom_kill")) or proc.returncode in (-9, 137)
    # with the file's pages charged to the group, a capped run always fills its cap with page cache
    row["cap_reached"] = bool(cap) and stats.get("max_usage_in_bytes", stats.get("peak", 0)) >= 0.98 * cap
    return row


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get("ok")]
    return statistics.median(values) if values else None


def modes_for(gguf: Path, n_ctx: int, args: argparse.Namespace) -> list[dict]:
    """The load modes to check: the one asked for, or mmap and (for repacked weights) --no-mmap too."""
    if args.no_mmap or args.mlock or args.mmap_only:
        return [{"mmap": not args.no_mmap, "mlock": args.mlock}]
    modes = [{"mmap": True, "mlock": False}]
    if predict(gguf, n_ctx, None, mmap=True)["read_once"]:
        modes.append({"mmap": False, "mlock": False})
    return modes


def check(
    gguf: Path, n_ctx: int, args: argparse.Namespace, mode: dict, *, cap_reject: int | None = None
) -> dict:
    """The two-sided check of one configuration: caps at the working set plus the margin and 10 % below it."""
    filled = args.prompt + args.gen + 16  # the chat template adds a few tokens around the prompt
    pred = predict(gguf, n_ctx, filled, **mode)
    planned = predict(gguf, n_ctx, None, **mode)
    ws = pred["working_set"]
    cap_fit = ws + pred["margin"]
    cap_reject = cap_reject if cap_reject is not None else int(ws * 0.9)
    row: dict = {
        "model": gguf.stem,
        "ctx": n_ctx,
        "mode": ("mmap" if mode["mmap"] else "no-mmap") + (" + mlock" if mode["mlock"] else ""),
        "predicted": pred,
        "planned_full_ctx": planned,
        "cap_fit": cap_fit,
        "cap_reject": cap_reject,
        "plan_fit": verdict_at(gguf, n_ctx, filled, cap_fit, **mode),
        "plan_fit_full_ctx": verdict_at(gguf, n_ctx, None, cap_fit, **mode),
        "plan_reject": verdict_at(gguf, n_ctx, filled, cap_reject, **mode) if cap_reject else None,
    }
    free, capped = [], []
    for _ in range(args.rounds):  # interleaved, so a change in the machine's load hits both sides
        free.append(run_probe(gguf, n_ctx, args.prompt, args.gen, **mode))
        capped.append(run_probe(gguf, n_ctx, args.prompt, args.gen, cap=cap_fit, **mode))
        print(
            json.dumps({"model": row["model"], "ctx": n_ctx, "free": free[-1], "fit": capped[-1]}),
            file=sys.stderr,
        )
    base_prompt, base_gen = _median(free, "prompt_s"), _median(free, "gen_s")
    fit_prompt, fit_gen = _median(capped, "prompt_s"), _median(capped, "gen_s")
    row |= {
        "free": free,
        "fit": capped,
        "prompt_s": base_prompt,
        "gen_s": base_gen,
        "fit_prompt_ratio": fit_prompt / base_prompt if fit_prompt and base_prompt else None,
        "fit_gen_ratio": fit_gen / base_gen if fit_gen and base_gen else None,
        "load_avg": statistics.median(r["load"] for r in free + capped),
    }
    row["fit_holds"] = all(r["ok"] and not r["oom"] for r in capped) and (
        row["fit_prompt_ratio"] is not None and row["fit_prompt_ratio"] <= FIT_PROMPT_RATIO
    )
    if cap_reject:
        wall = statistics.median(r["wall"] for r in free if r["ok"])
        rej = run_probe(gguf, n_ctx, args.prompt, args.gen, cap=cap_reject, timeout=3 * wall + 60, **mode)
        print(json.dumps({"model": row["model"], "ctx": n_ctx, "reject": rej}), file=sys.stderr)
        row["reject"] = rej
        row["reject_gen_ratio"] = rej["gen_s"] / base_gen if rej.get("ok") and base_gen else None
        row["reject_prompt_ratio"] = rej["prompt_s"] / base_prompt if rej.get("ok") and base_prompt else None
        row["reject_holds"] = (
            rej["oom"] or rej["timed_out"] or (row["reject_gen_ratio"] or 0) > REJECT_SLOWDOWN
        )
    return row


def target_check(gguf: Path, n_ctx: int, args: argparse.Namespace, target_name: str) -> dict:
    """`hubtui plan FILE --target PROFILE --ctx N`'s verdict, and llama.cpp under a cap of the profile's RAM."""
    from quant.sizing.memory import RunSettings
    from quant.sizing.plan import plan
    from quant.sizing.profiles import get_profile

    target = get_profile(target_name)
    settings = RunSettings(repack=target.repack, mmap=not args.no_mmap, mlock=args.mlock)
    choose = not (args.no_mmap or args.mlock or args.mmap_only)
    (planned,) = plan(gguf, target, ctx=n_ctx, settings=settings, choose_mode=choose).rows
    expect_fit = planned.placement.fits
    mode = {"mmap": planned.placement.mmap, "mlock": settings.mlock}  # the mode the plan chose
    free, capped = [], []
    for _ in range(args.rounds if expect_fit else 1):
        free.append(run_probe(gguf, n_ctx, args.prompt, args.gen, **mode))
        limit = 3600 if expect_fit else 3 * free[-1]["wall"] + 60
        capped.append(run_probe(gguf, n_ctx, args.prompt, args.gen, cap=target.ram, timeout=limit, **mode))
        print(json.dumps({"model": gguf.stem, "free": free[-1], "capped": capped[-1]}), file=sys.stderr)
    base_prompt, base_gen = _median(free, "prompt_s"), _median(free, "gen_s")
    cap_prompt, cap_gen = _median(capped, "prompt_s"), _median(capped, "gen_s")
    row = {
        "model": gguf.stem,
        "ctx": n_ctx,
        "target": target.name,
        "cap": target.ram,
        "plan": planned.to_dict(),
        "verdict": planned.placement.verdict,
        "mode": planned.placement.mode,
        "free": free,
        "capped": capped,
        "prompt_ratio": cap_prompt / base_prompt if cap_prompt and base_prompt else None,
        "gen_ratio": cap_gen / base_gen if cap_gen and base_gen else None,
        "load_avg": statistics.median(r["load"] for r in free + capped),
    }
    if expect_fit:
        row["holds"] = all(r["ok"] and not r["oom"] for r in capped) and (
            row["prompt_ratio"] is not None and row["prompt_ratio"] <= FIT_PROMPT_RATIO
        )
    else:
        rej = capped[0]
        row["holds"] = rej["oom"] or rej["timed_out"] or (row["gen_ratio"] or 0) > REJECT_SLOWDOWN
    return row


def target_markdown(rows: list[dict]) -> str:
    lines = [
        "| file | ctx | cap | plan: working set, peak RSS, verdict | llama.cpp under the cap | holds | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, c = r["plan"], r["capped"][0]
        if c["oom"]:
            how = "OOM-killed"
        elif c["timed_out"]:
            how = f"not done in {c['wall']:.0f} s (uncapped: {r['free'][0]['wall']:.0f} s)"
        else:
            how = (
                f"prompt {r['prompt_ratio']:.2f}×, generation {r['gen_ratio']:.2f}× uncapped; "
                f"anon {_gib(c['anon'])} + file {_gib(c['file_rss'])} GiB resident"
            )
        lines.append(
            f"| {r['model']} | {r['ctx']} | {_gib(r['cap'])} GiB ({r['target']}) | {_gib(p['working_set'])} GiB, "
            f"{_gib(p['peak_rss'])} GiB, {r['verdict']} ({r.get('mode', 'mmap')}) | {how} "
            f"| {'yes' if r['holds'] else '**no**'} "
            f"| {r['load_avg']:.1f} |"
        )
    return "\n".join(lines)


def _gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | ctx | mode | planned WS (full ctx) | WS at run | measured anon + file used | "
        "file RSS | fit cap: plan / llama.cpp (prompt ×, gen ×) | reject cap: plan / llama.cpp | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = [x for x in r["free"] if x.get("ok")]
        anon = statistics.median(x["anon"] for x in ok) if ok else 0
        used = statistics.median(x["file_referenced"] for x in ok) if ok else 0
        frss = statistics.median(x["file_rss"] for x in ok) if ok else 0
        fit = "OK" if r["fit_holds"] else "**FAILS**"
        fit_txt = (
            f"{_gib(r['cap_fit'])} GiB: {r['plan_fit']} / {fit} "
            f"({r['fit_prompt_ratio'] or float('nan'):.2f}, {r['fit_gen_ratio'] or float('nan'):.2f})"
        )
        # the criterion is the prompt; say so when generation pages
        if (r["fit_gen_ratio"] or 0) > FIT_PROMPT_RATIO:
            fit_txt += " **generation slow**"
        if r.get("reject") is None:
            rej_txt = "-"
        else:
            rej = r["reject"]
            if rej["oom"]:
                how = "OOM-killed"
            elif rej["timed_out"]:
                how = f"not done in {rej['wall']:.0f} s"
            elif rej.get("ok"):
                how = f"gen {r['reject_gen_ratio']:.1f}× uncapped ({rej['majflt_gen']} major faults)"
            else:
                how = f"died (rc {rej['rc']})"
            mark = "" if r["reject_holds"] else " **does not hold**"
            if not rej.get("cap_reached", True) and not rej["oom"]:
                mark += " (cap never reached: the file's pages were charged elsewhere)"
            rej_txt = f"{_gib(r['cap_reject'])} GiB: {r['plan_reject']} / {how}{mark}"
        lines.append(
            f"| {r['model']} | {r['ctx']} | {r['mode']} | {_gib(r['planned_full_ctx']['working_set'])} "
            f"| {_gib(r['predicted']['working_set'])} | {_gib(anon)} + {_gib(used)} | {_gib(frss)} "
            f"| {fit_txt} | {rej_txt} | {r['load_avg']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    from tests.fixtures.real_shapes import MODELS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("bench-fit"), help="where checkpoints and GGUFs go")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--types", nargs="*", default=["Q4_K_M", "Q5_K_M", "Q8_0"])
    ap.add_argument("--ctx", type=int, nargs="*", default=[2048, 8192])
    ap.add_argument("--prompt", type=int, default=400, help="prompt tokens of the chat turn")
    ap.add_argument("--gen", type=int, default=32, help="tokens to generate")
    ap.add_argument("--rounds", type=int, default=2, help="uncapped and fit-capped runs, interleaved")
    ap.add_argument(
        "--cap-target",
        help="instead: plan for this profile (full context, as `hubtui plan --target` does) and run every "
        "type under a cap of its usable RAM; fits and tight must run, the rest must page or die",
    )
    ap.add_argument("--no-reject", action="store_true", help="skip the run below the working set")
    ap.add_argument("--no-mmap", action="store_true", help="check only --no-mmap")
    ap.add_argument("--mmap-only", action="store_true", help="check only mmap (also for repacked types)")
    ap.add_argument("--mlock", action="store_true")
    ap.add_argument(
        "--keep-checkpoint", action="store_true", help="keep the BF16 checkpoint after converting"
    )
    ap.add_argument("--json", type=Path, help="append one JSON line per configuration to this file")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--render",
        type=Path,
        nargs="*",
        help="only print the table of these --json files (a later row of a configuration replaces earlier ones)",
    )
    args = ap.parse_args()
    if args.render:
        latest: dict[tuple, dict] = {}
        for path in args.render:
            for line in path.read_text().splitlines():
                row = json.loads(line)
                latest[(row["model"], row["ctx"], row.get("mode"), row.get("target"))] = row
        found = list(latest.values())
        print(target_markdown(found) if found and "target" in found[0] else markdown(found))
        return
    rows = []
    for name in args.models:
        ggufs = ensure_ggufs(name, args.types, args.root, args.keep_checkpoint)
        for qtype in args.types:
            for n_ctx in args.ctx:
                if args.cap_target:
                    found = [target_check(ggufs[qtype], n_ctx, args, args.cap_target)]
                else:
                    reject = 0 if args.no_reject else None
                    found = [
                        check(ggufs[qtype], n_ctx, args, mode, cap_reject=reject)
                        for mode in modes_for(ggufs[qtype], n_ctx, args)
                    ]
                rows += found
                if args.json:
                    with args.json.open("a") as fh:
                        fh.writelines(json.dumps(row) + "\n" for row in found)
    if args.markdown:
        print(target_markdown(rows) if args.cap_target else markdown(rows))


if __name__ == "__main__":
    main()
