"""`hubtui convert` progress rendering: a bar with rate and ETA on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import io

from hubtui.commands.convert import StderrProgress


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def feed(progress: StderrProgress, total: int = 1000) -> None:
    for i, done in enumerate(range(0, total + 1, 50)):
        progress(f"blk.{i}.ffn_down.weight", done, total)
    progress("", total, total)


def test_plain_lines_when_not_a_terminal() -> None:
    stream = FakeStream(tty=False)
    feed(StderrProgress(stream))
    lines = stream.getvalue().splitlines()
    assert 2 <= len(lines) <= 12  # one per tenth of the work, not one per tensor
    assert "\r" not in stream.getvalue()
    assert lines[-1].endswith(", done") and "1000 B of 1000 B" in lines[-1]
    assert "blk.0.ffn_down.weight" in lines[0]


def test_bar_with_rate_and_eta_on_a_terminal() -> None:
    stream = FakeStream(tty=True)
    progress = StderrProgress(stream)
    progress("token_embd.weight", 0, 4_000_000)
    progress("", 4_000_000, 4_000_000)
    out = stream.getvalue()
    assert out.startswith("\r[") and "token_embd.weight" in out
    assert "iB/s" in out and "ETA" in out and "100.0%" in out
    assert out.endswith("\n")
