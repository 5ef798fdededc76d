"""Shared pieces of the TUI tests: an isolated app environment and waiting for background work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input

from hubtui.app.app import HubtuiApp
from hubtui.app.config import Settings


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Queue file, GGUF output folder and config under tmp_path; Input cursors frozen (deterministic)."""
    monkeypatch.setenv("HUBTUI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HUBTUI_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None, raising=False)
    out = tmp_path / "gguf"
    out.mkdir(exist_ok=True)
    return out


def make_app(out: Path, endpoint: str | None, **settings: str) -> HubtuiApp:
    return HubtuiApp(Settings(output_dir=str(out), **settings), endpoint=endpoint)


async def wait_until(pilot: Pilot, cond: Callable[[], bool], what: str, limit: float = 240.0) -> None:
    """Let the app run until `cond()` holds (background workers post their results as messages)."""
    import time

    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"gave up waiting for {what}")
        await pilot.pause(0.05)


def text_of(app: App, selector: str) -> str:
    """What a Static shows, as plain text."""
    from textual.css.query import NoMatches

    try:
        widget = app.screen.query_one(selector)  # a modal's own widgets first
    except NoMatches:
        widget = app.query_one(selector)
    return str(widget.render())


async def ready(pilot: Pilot) -> None:
    """Every screen exists (they are built just after the first frame)."""
    await wait_until(pilot, lambda: pilot.app.screens_built, "the screens to be built", 30)
