"""Smoke test: run `hubtui smoke`'s checks on a GGUF in a worker and show the report as a readable panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Markdown, Static

from hubtui.app.imports import load


class SmokePane(VerticalScroll):
    BINDINGS = [Binding("ctrl+y", "chat", "Chat with it", id="smoke.chat", priority=True)]

    class Stage(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Reported(Message):
        def __init__(self, path: str, report: Any, error: str = "") -> None:
            super().__init__()
            self.path = path
            self.report = report
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.path: str | None = None
        self.report: Any = None
        self.running = False

    def compose(self) -> ComposeResult:
        yield Static("Pick a GGUF on Local (F4) and press s, or convert one (F5).", id="smoke-status")
        yield Markdown("", id="smoke-report")

    def start(self, path: str) -> None:
        if self.running:
            self.app.notify("A smoke test is already running.", severity="warning")
            return
        self.running = True
        self.path = path
        self.report = None
        self.query_one("#smoke-status", Static).update(f"Smoke-testing {Path(path).name}…")
        self.query_one("#smoke-report", Markdown).update("")
        self._run(path)

    @work(thread=True, exit_on_error=False, group="smoke")
    def _run(self, path: str) -> None:
        load("hubtui.runner.smoke")
        from hubtui.runner.smoke import run_smoke

        try:
            report = run_smoke(
                path, on_progress=lambda stage, msg: self.post_message(self.Stage(f"{stage}: {msg}"))
            )
        except Exception as exc:
            self.post_message(self.Reported(path, None, str(exc)))
            return
        self.post_message(self.Reported(path, report))

    def on_smoke_pane_stage(self, message: Stage) -> None:
        if self.running:
            self.query_one("#smoke-status", Static).update(
                f"Smoke-testing {Path(self.path or '').name}: {message.text}"
            )

    def on_smoke_pane_reported(self, message: Reported) -> None:
        load("hubtui.runner.smoke_report")
        from hubtui.runner.smoke_report import render_markdown

        self.running = False
        status = self.query_one("#smoke-status", Static)
        name = Path(message.path).name
        if message.report is None:
            status.update(f"[red]Smoke test could not run:[/] {message.error}")
            self.app.notify(message.error, title="Smoke test failed to run", severity="error", timeout=10)
            return
        self.report = message.report
        verdict = message.report.verdict
        colour = {"pass": "green", "warn": "yellow"}.get(verdict, "red")
        status.update(f"[b {colour}]{verdict.upper()}[/]: {name}   (ctrl+y chats with it)")
        self.query_one("#smoke-report", Markdown).update(render_markdown(message.report))
        self.app.notify(
            f"{name}: {verdict}",
            title="Smoke test finished",
            severity="error" if verdict == "fail" else "information",
        )

    def action_chat(self) -> None:
        if self.path:
            self.app.start_chat(self.path)
