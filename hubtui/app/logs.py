"""Failures in background work: the traceback goes to a log file with `--debug`, the screen shows one line.

Workers catch what they expect and post a message; `worker_failed` records the traceback first so an
unexpected one is never only a toast. Without `--debug` nothing is written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("hubtui.app")
log.addHandler(logging.NullHandler())
log.propagate = False


def debugging() -> bool:
    return bool(os.environ.get("HUBTUI_DEBUG"))


def start_debug_log(path: Path) -> Path:
    """Send the app's log records (tracebacks included) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return path


def stop_debug_log() -> None:
    for handler in list(log.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            log.removeHandler(handler)


def worker_failed(what: str, exc: BaseException) -> str:
    """Log `exc` with its traceback under `what`; return the one line to show."""
    log.error("%s failed", what, exc_info=exc)
    return str(exc) or type(exc).__name__


class ReportsWorkerErrors:
    """For widgets that start workers: one that raised instead of posting its failure is logged with its
    traceback and named in one line (Textual would otherwise end the app or say nothing)."""

    def on_worker_state_changed(self, event) -> None:  # noqa: ANN001
        from textual.worker import WorkerState

        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            line = worker_failed(worker.name or worker.group, worker.error)
            where = f" (traceback in {_log_path()})" if _log_path() else " (--debug logs the traceback)"
            self.notify(line + where, title="Internal error", severity="error", timeout=10)  # type: ignore[attr-defined]


def _log_path() -> str | None:
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None
