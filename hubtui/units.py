"""Byte counts for people, with no imports: the TUI formats sizes on its UI thread before the hub client
(and huggingface_hub behind it) has been loaded."""

from __future__ import annotations


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
