"""Download progress as plain data for callbacks (CLI bar, TUI widgets), never printed here."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FileStatus:
    """One file: `state` is queued, downloading, verifying, done, cached or failed; rate in bytes/s."""

    name: str
    size: int
    done: int
    state: str
    rate: float = 0.0

    @property
    def eta(self) -> float | None:
        return (self.size - self.done) / self.rate if self.rate > 0 and self.state == "downloading" else None


@dataclass(frozen=True)
class DownloadProgress:
    """One event: the file it concerns plus the aggregate over all files of the download."""

    file: FileStatus
    done: int
    total: int
    files_done: int
    files_total: int
    rate: float  # bytes per second over the last few seconds of network transfer
    eta: float | None  # seconds, None while the rate is unknown

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[DownloadProgress], object]  # what it returns is ignored


class ProgressTracker:
    """Thread-safe aggregation; calls the callback (serialised) at most `hz` times a second plus on state changes."""

    def __init__(
        self,
        files: dict[str, int],
        callback: ProgressCallback | None,
        hz: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._cb = callback
        self._clock = clock
        self._interval = 1.0 / hz
        self._last_emit = -1e9
        self._files = {name: FileStatus(name, size, 0, "queued") for name, size in files.items()}
        self._net = 0
        self._window: deque[tuple[float, int]] = deque()
        self._started: dict[str, tuple[float, int]] = {}  # file -> (clock, bytes on disk) when it started

    @property
    def total(self) -> int:
        return sum(f.size for f in self._files.values())

    def state(self, name: str, state: str, done: int | None = None) -> None:
        with self._lock:
            f = self._files[name]
            done = f.done if done is None else done
            if state == "downloading":
                self._started[name] = (self._clock(), done)
            self._files[name] = FileStatus(
                name, f.size, done, state, f.rate if state == "downloading" else 0.0
            )
            self._emit(name, force=True)

    def advance(self, name: str, n: int) -> None:
        with self._lock:
            f = self._files[name]
            t0, d0 = self._started.get(name, (self._clock(), f.done))
            elapsed = self._clock() - t0
            rate = (f.done + n - d0) / elapsed if elapsed > 0 else f.rate
            self._files[name] = FileStatus(name, f.size, f.done + n, f.state, rate)
            self._net += n
            self._emit(name, force=False)

    def rewind(self, name: str, n: int) -> None:
        """The server ignored a Range: bytes counted before must be fetched again."""
        with self._lock:
            f = self._files[name]
            self._files[name] = FileStatus(name, f.size, max(f.done - n, 0), f.state, f.rate)
            self._started[name] = (self._clock(), max(f.done - n, 0))

    def _rate(self, now: float) -> float:
        self._window.append((now, self._net))
        while len(self._window) > 2 and now - self._window[0][0] > 5.0:
            self._window.popleft()
        t0, b0 = self._window[0]
        return (self._net - b0) / (now - t0) if now > t0 else 0.0

    def _emit(self, name: str, force: bool) -> None:
        now = self._clock()
        rate = self._rate(now)
        if self._cb is None or (not force and now - self._last_emit < self._interval):
            return
        self._last_emit = now
        done = sum(f.done for f in self._files.values())
        total = self.total
        finished = sum(f.state in ("done", "cached") for f in self._files.values())
        eta = (total - done) / rate if rate > 0 else None
        self._cb(DownloadProgress(self._files[name], done, total, finished, len(self._files), rate, eta))
