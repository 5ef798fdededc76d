"""Smoke test: run `hubtui smoke`'s checks on a GGUF in a worker, say what it is doing while llama.cpp works,
and show the report as a readable panel."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Markdown, Static

from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import JobDone, JobStatus, JobUpdate, StartChat
from hubtui.app.modals import ModelPicker
from hubtui.app.session import UsesSession

# what each stage of `run_smoke` means to someone watching it
STAGES = {
    "header": "reading the GGUF header",
    "load": "loading the model into llama.cpp",
    "tokenizer": "checking the tokenizer round trip",
    "generate": "generating a greedy chat reply",
    "perplexity": "measuring perplexity on a short passage",
    "baseline": "comparing with the baseline",
}
ON_QUIT = "is stopped (its llama.cpp process ends)"


class SmokePane(UsesSession, ReportsWorkerErrors, VerticalScroll):
    BINDINGS = [
        Binding("ctrl+o", "pick", "Open GGUF", id="smoke.pick", priority=True),
        Binding("ctrl+t", "smoke", "Smoke test", id="smoke.run", priority=True),
        Binding("ctrl+x", "cancel", "Cancel", id="smoke.cancel", priority=True),
        Binding("ctrl+y", "chat", "Chat", id="smoke.chat", priority=True),
    ]
    can_focus = True

    class Stage(Message):
        def __init__(self, stage: str, text: str) -> None:
            super().__init__()
            self.stage = stage
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
        self.cancel: threading.Event | None = None
        self.stage = ""
        self.started = 0.0
        self._ticker: Any = None

    def compose(self) -> ComposeResult:
        yield Static(
            "No GGUF chosen: ctrl+o opens one, or pick it on Local (F4) and press ctrl+t.", id="smoke-status"
        )
        yield Markdown("", id="smoke-report")

    def start(self, path: str) -> None:
        if self.running:
            self.app.notify("A smoke test is already running (ctrl+x stops it).", severity="warning")
            return
        self.running = True
        self.path = path
        self.report = None
        self.cancel = threading.Event()
        self.started = time.monotonic()
        self.stage = "starting"
        self.query_one("#smoke-report", Markdown).update("")
        self._show_stage()
        self._ticker = self.set_interval(1.0, self._show_stage)
        self._run(path, self.cancel)

    @work(thread=True, exit_on_error=False, group="smoke")
    def _run(self, path: str, cancel: threading.Event) -> None:
        from hubtui.runner.smoke import run_smoke

        try:
            report = run_smoke(
                path, on_progress=lambda stage, msg: self.post_message(self.Stage(stage, msg)), cancel=cancel
            )
        except Exception as exc:
            self.post_message(self.Reported(path, None, worker_failed(f"smoke test of {path}", exc)))
            return
        self.post_message(self.Reported(path, report))

    def on_smoke_pane_stage(self, message: Stage) -> None:
        if self.running:
            self.stage = STAGES.get(message.stage, message.text)
            self._show_stage()

    def _show_stage(self) -> None:
        if not self.running:
            return
        name = Path(self.path or "").name
        elapsed = f"{time.monotonic() - self.started:.0f} s"
        self.query_one("#smoke-status", Static).update(
            f"Smoke-testing {escape(name)}: {escape(self.stage)}… {elapsed}  [dim](ctrl+x stops it)[/]"
        )
        self.post_message(
            JobUpdate(
                JobStatus(
                    "smoke", "smoke", f"Smoke-testing {name}", None, f"{self.stage} · {elapsed}", ON_QUIT
                )
            )
        )

    def on_smoke_pane_reported(self, message: Reported) -> None:
        from hubtui.runner.smoke_report import render_markdown

        self.running = False
        self.cancel = None
        if self._ticker is not None:
            self._ticker.stop()
        self.post_message(JobDone("smoke"))
        status = self.query_one("#smoke-status", Static)
        name = Path(message.path).name
        if message.report is None:
            status.update(f"[red]Smoke test could not run:[/] {escape(message.error)}")
            self.app.notify(message.error, title="Smoke test failed to run", severity="error", timeout=10)
            return
        self.report = message.report
        verdict = message.report.verdict
        colour = {"pass": "green", "warn": "yellow"}.get(verdict, "red")
        status.update(f"[b {colour}]{verdict.upper()}[/]: {escape(name)}   (ctrl+y chats with it)")
        self.query_one("#smoke-report", Markdown).update(render_markdown(message.report))
        self.app.notify(
            f"{name}: {verdict}",
            title="Smoke test finished",
            severity="error" if verdict == "fail" else "information",
        )

    def action_pick(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.start(path)

        self.app.push_screen(ModelPicker("gguf", self.session.output_dir, self.path), chosen)

    def action_smoke(self) -> None:
        """Again on the GGUF shown, or pick one first."""
        if self.path and not self.running:
            self.start(self.path)
        elif not self.path:
            self.action_pick()

    def action_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.set()
            self.stage = "stopping"
            self._show_stage()

    def stop_for_quit(self) -> None:
        if self.cancel is not None:
            self.cancel.set()

    def action_chat(self) -> None:
        if self.path:
            self.post_message(StartChat(self.path))
        else:
            self.app.notify("Smoke-test a GGUF first, or open one on Chat (F7, ctrl+o).", severity="warning")
