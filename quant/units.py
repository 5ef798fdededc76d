"""Sizes and counts for people, with no imports: the one formatter of the CLI, the TUI (which formats on its
UI thread before the hub client has been loaded) and quant's own messages (the sizing targets).

One convention everywhere: binary units (KiB, MiB, GiB, TiB), as llama.cpp, `hubtui plan`, `hubtui hw`
and the target profiles use them, so a file shows the same size on every screen and in every command.
"""

from __future__ import annotations

_BINARY = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
_COUNT = (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3))
_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def format_bytes(n: float) -> str:
    """29.74 MiB, 4.00 GiB, 512 B."""
    for unit, scale in _BINARY:
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def format_count(n: float | None) -> str:
    """A parameter count: 8.0B, 135.0M; '-' when unknown."""
    if n is None:
        return "-"
    for unit, div in _COUNT:
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def parse_count(text: str | None) -> float | None:
    """'7B', '500M', '1.5e9' -> a parameter count; ValueError names the text that is not one."""
    if text is None:
        return None
    t = text.strip().upper()
    try:
        return float(t[:-1]) * _SUFFIX[t[-1]] if t and t[-1] in _SUFFIX else float(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a parameter count like 8B or 500M") from None


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 local model', '2 local models'."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
