"""SIGTERM and SIGHUP handled like Ctrl-C: `timeout`, `kill`, `docker stop` and a dropped SSH session.

Python's default for both is to die on the spot, which skips every `finally`: a conversion left its partial
file, a bundle its half-copied folder. Here the first such signal raises `Terminated` in the main thread,
so the same clean-up paths that Ctrl-C takes run (temporaries removed, child processes stopped, downloads'
partial files kept for resuming), and the CLI exits with 128 + the signal number (143, 129) and one line.
Later signals are ignored while that clean-up runs. The TUI installs its own handlers on its event loop
(`hubtui.app.app`), since an exception raised inside the loop would skip Textual's terminal restore.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):  # noqa: N818  (like KeyboardInterrupt: not an Exception, so nothing swallows it)
    """A SIGTERM or SIGHUP arrived; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"terminated by {self.name}")


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise `Terminated` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if fired:  # clean-up of the first one is running: let it finish
            return
        fired.append(signum)
        raise Terminated(signum)

    previous = {}
    for sig in HANDLED:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old)


class _Deferred:
    """Signals that arrived inside `deferred_signals`; `deliver` hands them to the handlers they skipped."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}

    def deliver(self) -> None:
        pending, self.pending = self.pending, []
        for signum in pending:
            handler = self.previous.get(signum, signal.SIG_DFL)
            if callable(handler):
                handler(signum, None)  # raises Terminated / KeyboardInterrupt in this thread
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


@contextlib.contextmanager
def deferred_signals() -> Iterator[_Deferred]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while a child process is being started.

    An exception raised inside `subprocess.Popen` after its fork leaves a child nobody knows the pid of
    (a smoke worker went on running after hubtui had exited). Within the block they are only recorded;
    call `deliver()` once the child is in hands that stop it. Main thread only; elsewhere a no-op.
    """
    deferred = _Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield deferred
        return

    def record(signum: int, frame: object) -> None:
        deferred.pending.append(signum)

    for sig in (signal.SIGINT, *HANDLED):
        with contextlib.suppress(ValueError, OSError):
            deferred.previous[sig] = signal.signal(sig, record)
    try:
        yield deferred
    finally:
        for signum, old in deferred.previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, old)  # type: ignore[arg-type]
