"""Shared pieces of the TUI tests: an isolated app environment and waiting for background work."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input

from hubtui.app.app import HubtuiApp
from hubtui.app.config import Settings


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Queue file, GGUF output folder, config and demo folder under tmp_path; Input cursors frozen."""
    monkeypatch.setenv("HUBTUI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HUBTUI_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("HUBTUI_DEMO_DIR", str(tmp_path / "demo"))
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


def hold_conversion(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Hold the converter after its first written chunk until `go_on` is set (a cancel or a look at the
    screen then lands mid-file whatever the machine's speed); returns (first_chunk, go_on)."""
    import quant.convert.writer as convert_writer

    real_write_data = convert_writer.write_data
    first_chunk, go_on = threading.Event(), threading.Event()

    def held_write_data(f: Any, prep: Any, *, progress: Any = None, **kwargs: Any) -> Any:
        def held(name: str, done: int, total: int) -> None:
            if progress is not None:
                progress(name, done, total)
            if done and not first_chunk.is_set():
                first_chunk.set()
                go_on.wait(60)

        return real_write_data(f, prep, progress=held, **kwargs)

    monkeypatch.setattr(convert_writer, "write_data", held_write_data)
    return first_chunk, go_on


async def ready(pilot: Pilot) -> None:
    """Every screen exists (they are built just after the first frame)."""
    await wait_until(pilot, lambda: pilot.app.screens_built, "the screens to be built", 30)


class ScriptedEngine:
    """Stands in for ChatEngine: streams a fixed Markdown reply token by token; keeps the REPL's state."""

    format = SimpleNamespace(source="gguf")
    n_ctx = 4096
    REPLY = "**Paris** is the capital of France.\n\n- population: about 2.1 million"

    def __init__(self, model_path: str = "model.gguf") -> None:
        self.history: list[dict[str, str]] = []
        self.system: str | None = None
        self.model_path = model_path
        self.sent: list[str] = []

    def send(self, text: str, on_token: Any = None, on_notice: Any = None) -> Any:
        self.sent.append(text)
        for piece in self.REPLY.split(" "):
            on_token(piece + " ")
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": self.REPLY}]
        stats = SimpleNamespace(
            tokens=14, tokens_per_s=None, prompt_tokens=21, new_prompt_tokens=21, stop="end_of_turn"
        )
        return SimpleNamespace(text=self.REPLY, stats=stats)

    def set_system(self, text: str | None) -> None:
        self.system = text.strip() if text and text.strip() else None

    def reset(self) -> None:
        self.history.clear()

    def save(self, path: Any) -> Path:
        Path(path).write_text(json.dumps({"system": self.system, "messages": self.history}), encoding="utf-8")
        return Path(path)

    def cancel(self) -> None: ...

    def close(self) -> None: ...


async def pick_type(pilot: Pilot, qtype: str) -> None:
    """Choose a file type on Convert once its list is there (it loads when the screen is first shown)."""
    from textual.widgets import Select

    select = pilot.app.query_one("#cv-type", Select)
    await wait_until(pilot, lambda: any(value == qtype for _, value in select._options), "the type list", 60)
    select.value = qtype
