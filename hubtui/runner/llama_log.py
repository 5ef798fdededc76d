"""Keep llama.cpp's own log chatter off the terminal, but remember it for error messages.

llama-cpp-python installs a callback that prints errors to stderr even with `verbose=False`; we
replace it with one that keeps the last lines in memory, so a failed load can quote llama.cpp's
reason in a one-line error instead of spraying its log.
"""

from __future__ import annotations

import collections
import ctypes
import threading
from typing import Any

_lines: collections.deque[str] = collections.deque(maxlen=200)
_lock = threading.Lock()
_partial: list[str] = []
_callback: Any = None  # keep a reference: ctypes must not collect it while llama.cpp holds it


def _record(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    chunk = text.decode("utf-8", errors="replace")
    with _lock:
        _partial.append(chunk)
        joined = "".join(_partial)
        if "\n" in joined:
            *done, rest = joined.split("\n")
            _lines.extend(line for line in done if line.strip())
            _partial[:] = [rest] if rest else []


def install() -> None:
    """Route llama.cpp's log into our ring buffer (idempotent)."""
    global _callback
    import llama_cpp
    import llama_cpp._logger  # noqa: F401  (imports set their own callback; ours must come after)

    if _callback is None:
        _callback = llama_cpp.llama_log_callback(_record)
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def recent(n: int = 20) -> list[str]:
    """The last `n` log lines llama.cpp wrote."""
    with _lock:
        return list(_lines)[-n:]


def last_error() -> str | None:
    """The most recent line that looks like a failure reason, for one-line error messages."""
    lines = recent(200)
    for line in reversed(lines):  # llama.cpp's own reason, e.g. "missing tensor 'blk.0.attn_norm.weight'"
        _, found, reason = line.partition("error loading model: ")
        if found and reason.strip():
            return reason.strip()
    keys = ("error", "failed", "invalid", "unable", "cannot", "exceed", "corrupt")
    for line in reversed(lines):
        if any(k in line.lower() for k in keys):
            return line.strip()
    return None
