#!/usr/bin/env python
"""TUI start-up: wall time from launching `hubtui` to the first usable screen (the focused search box drawn).

Each run starts `python -m hubtui` on a fresh pseudo-terminal (80x24, xterm-256color), reads what it draws and
stops the clock when the search box's placeholder appears (or the Local screen's note, offline); then it
sends ctrl+q. Isolated HF home, config and queue under a temporary folder; the hub endpoint is a local HTTP
server that answers 404 (the reachability probe runs in a worker and must not delay the screen).

    python scripts/bench_startup.py             # median of 7 runs
    python scripts/bench_startup.py --runs 11 --offline
"""

from __future__ import annotations

import argparse
import http.server
import os
import pty
import re
import select
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ONLINE_MARK = b"Search models"
OFFLINE_MARK = b"local models"
_CSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]")


def one_run(home: Path, offline: bool, endpoint: str, limit: float = 60.0) -> tuple[float, float]:
    """(wall seconds to the first usable screen, CPU seconds the process used from start to exit)."""
    import fcntl
    import termios

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_CACHE": str(home / "hf" / "hub"),
        "HF_ENDPOINT": endpoint,
        "HUBTUI_STATE_DIR": str(home / "state"),
        "HUBTUI_CONFIG": str(home / "config.toml"),
        "TERM": "xterm-256color",
        "COLUMNS": "80",
        "LINES": "24",
    }
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    mark = OFFLINE_MARK if offline else ONLINE_MARK
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: size its terminal before Python starts, so the first frame is 80x24
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.chdir(home)
        os.execvpe(sys.executable, [sys.executable, "-m", "hubtui"], env)
    seen = b""
    elapsed = None
    try:
        while time.perf_counter() - t0 < limit:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if mark in _CSI.sub(b"", seen):  # styles (the cursor, say) may split the text
                elapsed = time.perf_counter() - t0
                break
        os.write(fd, b"\x11")  # ctrl+q
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            with _quiet():
                if select.select([fd], [], [], 0.1)[0]:
                    os.read(fd, 65536)
        else:
            os.kill(pid, 9)
            _, _, usage = os.wait4(pid, 0)
    finally:
        os.close(fd)
    if elapsed is None:
        tail = _CSI.sub(b"", seen)[-2000:].decode(errors="replace")
        raise SystemExit(f"the first screen never appeared within {limit} s; the terminal showed:\n{tail}")
    return elapsed, usage.ru_utime + usage.ru_stime


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--offline", action="store_true", help="HF_HUB_OFFLINE=1: the app opens on Local")
    args = ap.parse_args()
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    times, cpu = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="hubtui-startup-") as tmp:
            home = Path(tmp)
            for i in range(args.runs + 1):
                t, c = one_run(home, args.offline, endpoint)
                if i:  # the first run warms the OS page cache and Python's bytecode cache
                    times.append(t)
                    cpu.append(c)
    finally:
        server.shutdown()
    load = os.getloadavg()[0]
    print(
        f"start-up to first usable screen ({'offline, Local' if args.offline else 'online, Browse'}): "
        f"median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms over {len(times)} runs; CPU time start to exit median "
        f"{statistics.median(cpu) * 1000:.0f} ms (load average {load:.1f}, {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
