#!/usr/bin/env python
"""TUI start-up and quit: wall time from launching `hubtui` to the first usable screen (the focused search
box drawn), and from ctrl+q to the process being gone.

Each run starts `python -m hubtui` at 80x24 (xterm-256color), on a fresh pseudo-terminal or, with --tmux, in
a detached tmux session as a user over SSH would run it; it stops the first clock when the search box's
placeholder appears (or the Local screen's note, offline). With --search it then searches (Enter on the empty
box: the fake hub answers with its repos, and Browse sizes them in the background) and waits for the results
before ctrl+q, the case where background work is still running when the user quits. Isolated HF home, config
and queue under a temporary folder; the hub is the tests' fake hub on 127.0.0.1 (tests/fakehub).

    python scripts/bench_startup.py                      # median of 7 runs, pty
    python scripts/bench_startup.py --tmux --search      # through tmux, quitting right after a search
    python scripts/bench_startup.py --runs 11 --offline
    python scripts/bench_startup.py --compare /tmp/hubtui-main   # an older tree, rounds interleaved
    python scripts/bench_startup.py --offline --cached        # Local lists a checkpoint and a GGUF
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import re
import select
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ONLINE_MARK = b"Search models"
OFFLINE_MARK = b"GGUFs are written to"  # the listing is on screen
RESULTS_MARK = b"Tiny-Mistral"  # a result row
_CSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]")


def _fill_cache(hub_cache: Path) -> None:
    """A hub cache as after two downloads: a checkpoint repo and a GGUF repo (tiny files, real layout)."""
    if hub_cache.exists():
        return
    repos = {
        "models--meta-llama--Tiny": {"config.json": b"{}", "model.safetensors": b"\0" * 4096},
        "models--someone--Tiny-GGUF": {"tiny-Q4_K_M.gguf": b"GGUF" + (3).to_bytes(4, "little") + bytes(16)},
    }
    for folder, files in repos.items():
        base = hub_cache / folder
        (base / "refs").mkdir(parents=True)
        (base / "refs" / "main").write_text("0" * 40)
        snap = base / "snapshots" / ("0" * 40)
        snap.mkdir(parents=True)
        (base / "blobs").mkdir()
        for i, (name, data) in enumerate(files.items()):
            blob = base / "blobs" / f"{i:040d}"
            blob.write_bytes(data)
            (snap / name).symlink_to(blob)


def _ours(home: Path, offline: bool, endpoint: str, root: Path = REPO) -> dict[str, str]:
    env = {
        "PYTHONPATH": str(root),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_CACHE": str(home / "hf" / "hub"),
        "HF_ENDPOINT": endpoint,
        "NO_PROXY": "127.0.0.1,localhost",
        "HUBTUI_STATE_DIR": str(home / "state"),
        "HUBTUI_CONFIG": str(home / "config.toml"),
        "HUBTUI_DEMO_DIR": str(home / "demo"),
        "TERM": "xterm-256color",
        "COLUMNS": "80",
        "LINES": "24",
    }
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def _env(home: Path, offline: bool, endpoint: str, root: Path = REPO) -> dict[str, str]:
    # the warm-up round writes the bytecode cache, as an installed package has one: a session that set
    # PYTHONDONTWRITEBYTECODE would otherwise time compiling hubtui's sources at every start
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **_ours(home, offline, endpoint, root)}


def pty_run(
    home: Path, offline: bool, endpoint: str, search: bool, root: Path = REPO, limit: float = 60.0
) -> tuple[float, float]:
    """(seconds to the first usable screen, seconds from ctrl+q to exit), on a pseudo-terminal."""
    import fcntl
    import termios

    env = _env(home, offline, endpoint, root)
    mark = OFFLINE_MARK if offline else ONLINE_MARK
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: size its terminal before Python starts, so the first frame is 80x24
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.chdir(home)
        os.execvpe(sys.executable, [sys.executable, "-m", "hubtui"], env)
    seen = b""

    def read_until(marker: bytes, deadline: float) -> bool:
        nonlocal seen
        start = len(seen)
        while time.perf_counter() < deadline:
            if not select.select([fd], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            seen += chunk
            if marker in _CSI.sub(b"", seen[max(0, start - 256) :]):  # styles may split the text
                return True
        return False

    try:
        if not read_until(mark, t0 + limit):
            tail = _CSI.sub(b"", seen)[-2000:].decode(errors="replace")
            raise SystemExit(
                f"the first screen never appeared within {limit} s; the terminal showed:\n{tail}"
            )
        first = time.perf_counter() - t0
        if search:
            os.write(fd, b"\r")
            if not read_until(RESULTS_MARK, time.perf_counter() + limit):
                raise SystemExit("the search results never appeared")
        t_quit = time.perf_counter()
        os.write(fd, b"\x11")  # ctrl+q
        while True:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() - t_quit > 30:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise SystemExit("ctrl+q did not end the app within 30 s")
            if select.select([fd], [], [], 0.002)[0]:
                with contextlib.suppress(OSError):
                    os.read(fd, 65536)
        quit_s = time.perf_counter() - t_quit
    finally:
        os.close(fd)
    return first, quit_s


def tmux_run(
    home: Path, offline: bool, endpoint: str, search: bool, root: Path = REPO, limit: float = 60.0
) -> tuple[float, float]:
    """The same two figures through tmux (screen polled every 10 ms, so each is up to 10 ms late)."""
    name = f"hubtui-bench-{uuid.uuid4().hex[:8]}"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in _ours(home, offline, endpoint, root).items())
    command = f"cd {shlex.quote(str(home))} && env -u PYTHONDONTWRITEBYTECODE {exports} {shlex.quote(sys.executable)} -m hubtui"
    mark = (OFFLINE_MARK if offline else ONLINE_MARK).decode()

    def screen() -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True
        ).stdout

    def wait_for(text: str, deadline: float) -> bool:
        while time.perf_counter() < deadline:
            if text in screen():
                return True
            time.sleep(0.01)
        return False

    t0 = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", command], check=True)
    try:
        if not wait_for(mark, t0 + limit):
            raise SystemExit(f"the first screen never appeared within {limit} s:\n{screen()}")
        first = time.perf_counter() - t0
        if search:
            subprocess.run(["tmux", "send-keys", "-t", name, "Enter"], check=True)
            if not wait_for(RESULTS_MARK.decode(), time.perf_counter() + limit):
                raise SystemExit(f"the search results never appeared:\n{screen()}")
        t_quit = time.perf_counter()
        subprocess.run(["tmux", "send-keys", "-t", name, "C-q"], check=True)
        while subprocess.run(["tmux", "has-session", "-t", name], capture_output=True).returncode == 0:
            if time.perf_counter() - t_quit > 30:
                raise SystemExit("ctrl+q did not end the app within 30 s")
            time.sleep(0.01)
        return first, time.perf_counter() - t_quit
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def ms(xs: list[float]) -> str:
    return (
        f"median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--offline", action="store_true", help="HF_HUB_OFFLINE=1: the app opens on Local")
    ap.add_argument("--tmux", action="store_true", help="run in tmux instead of a pseudo-terminal")
    ap.add_argument("--search", action="store_true", help="search (and wait for the results) before ctrl+q")
    ap.add_argument(
        "--cached",
        action="store_true",
        help="start with a checkpoint and a GGUF in the hub cache (Local lists them)",
    )
    ap.add_argument(
        "--compare", metavar="TREE", help="another source tree of hubtui, run in alternate rounds"
    )
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.fakehub.fixtures import add_big_repo, add_gguf_repo, add_llama_repo, add_mistral_repo
    from tests.fakehub.server import FakeHub

    hub = FakeHub()
    for add in (add_llama_repo, add_gguf_repo, add_mistral_repo, add_big_repo):
        add(hub)
    run = tmux_run if args.tmux else pty_run
    roots = [REPO] + ([Path(args.compare).resolve()] if args.compare else [])
    firsts: dict[Path, list[float]] = {r: [] for r in roots}
    quits: dict[Path, list[float]] = {r: [] for r in roots}
    with hub, tempfile.TemporaryDirectory(prefix="hubtui-startup-") as tmp:
        for i in range(args.runs + 1):
            for root in roots:  # interleaved rounds: both trees see the same load
                home = Path(tmp) / str(roots.index(root))
                home.mkdir(exist_ok=True)
                if args.cached:
                    _fill_cache(home / "hf" / "hub")
                first, quit_s = run(home, args.offline, hub.url, args.search, root)
                if i:  # the first round warms the OS page cache and Python's bytecode cache
                    firsts[root].append(first)
                    quits[root].append(quit_s)
    load = os.getloadavg()[0]
    where = ("offline, Local" if args.offline else "online, Browse") + (
        ", cached repos" if args.cached else ""
    )
    how = "tmux" if args.tmux else "pty"
    after = " after a search" if args.search else ""
    for root in roots:
        print(f"{root}:")
        print(f"  start-up to first usable screen ({where}, {how}): {ms(firsts[root])} over {args.runs} runs")
        print(f"  ctrl+q to exit{after}: {ms(quits[root])}")
    print(f"load average {load:.1f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
