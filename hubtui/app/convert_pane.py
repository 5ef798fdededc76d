"""Convert: a local checkpoint to GGUF with the fit table, the recommended type preselected, live progress
and a cancel that leaves nothing behind (the converter removes its .part file)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from hubtui.app.imports import load
from hubtui.app.modals import ConfirmScreen

# the converter's file types (quant.convert.mixture.FILE_TYPES; not imported here to keep start-up fast)
TYPES = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_K_S", "BF16", "F32")


class ConvertPane(VerticalScroll):
    """Keys are priority bindings: ctrl+x and ctrl+r must work while an Input has focus."""

    BINDINGS = [
        Binding("ctrl+r", "start", "Convert", id="convert.start", priority=True),
        Binding("ctrl+x", "cancel", "Cancel", id="convert.cancel", priority=True),
        Binding("ctrl+t", "smoke", "Smoke result", id="convert.smoke", priority=True),
        Binding("ctrl+y", "chat", "Chat result", id="convert.chat", priority=True),
    ]

    class Planned(Message):
        def __init__(self, src: str, text: str, recommended: str | None, error: str = "") -> None:
            super().__init__()
            self.src = src
            self.text = text
            self.recommended = recommended
            self.error = error

    class Progress(Message):
        def __init__(self, name: str, done: int, total: int) -> None:
            super().__init__()
            self.name = name
            self.done = done
            self.total = total

    class Finished(Message):
        def __init__(self, result: Any, error: str = "", cancelled: bool = False, exists: str = "") -> None:
            super().__init__()
            self.exists = exists
            self.result = result
            self.error = error
            self.cancelled = cancelled

    def __init__(self) -> None:
        super().__init__()
        self.cancel_event: threading.Event | None = None
        self.started = 0.0
        self.last_output: str | None = None

    def compose(self) -> ComposeResult:
        from hubtui.app.services import target_names

        with Horizontal(classes="field"):
            yield Label("Source ", classes="label")
            yield Input(placeholder="checkpoint folder (Local: c on a checkpoint)", id="cv-src")
        with Horizontal(classes="field"):
            yield Label("Target ", classes="label")
            yield Select([(n, n) for n in target_names()], allow_blank=False, id="cv-target")
            yield Label(" Type ", classes="label")
            yield Select([(t, t) for t in TYPES], value="Q4_K_M", allow_blank=False, id="cv-type")
        with Horizontal(classes="field"):
            yield Label("Output ", classes="label")
            yield Input(placeholder="blank: llama.cpp's file name in the output folder", id="cv-out")
        yield Static("Enter a source to size it.", id="cv-fit")
        with Horizontal(classes="buttons"):
            yield Button("Convert (ctrl+r)", variant="primary", id="cv-start")
            yield Button("Cancel (ctrl+x)", variant="error", id="cv-cancel", disabled=True)
        yield ProgressBar(total=100, show_eta=False, id="cv-bar")
        yield Static("", id="cv-status")
        with Horizontal(classes="buttons", id="cv-after"):
            yield Button("Smoke test (ctrl+t)", id="cv-smoke")
            yield Button("Chat (ctrl+y)", id="cv-chat")

    def on_mount(self) -> None:
        self.query_one("#cv-target", Select).value = self.app.target_name
        self.query_one("#cv-after").display = False

    def on_unmount(self) -> None:
        """Quitting mid-conversion cancels it: the converter removes its .part file, nothing is left."""
        if self.cancel_event is not None:
            self.cancel_event.set()

    # -- source and fit ---------------------------------------------------------------------------
    def set_source(self, src: str) -> None:
        self.query_one("#cv-src", Input).value = src
        self.replan()

    @on(Input.Submitted, "#cv-src")
    def _src_submitted(self) -> None:
        self.replan()

    @on(Select.Changed, "#cv-target")
    def _target_changed(self) -> None:
        if self.query_one("#cv-src", Input).value:
            self.replan()

    def replan(self) -> None:
        src = self.query_one("#cv-src", Input).value.strip()
        if not src:
            return
        self.query_one("#cv-fit", Static).update(f"Sizing {src}…")
        self._plan(src, str(self.query_one("#cv-target", Select).value))

    @work(thread=True, exclusive=True, exit_on_error=False, group="convert-plan")
    def _plan(self, src: str, target: str) -> None:
        from hubtui.app.services import plan_for, plan_markup

        try:
            p = plan_for(src, target)
            text = plan_markup(p)
        except Exception as exc:
            self.post_message(self.Planned(src, "", None, str(exc)))
            return
        rec = p.recommendation.qtype if p.recommendation else None
        self.post_message(self.Planned(src, text, rec))

    def on_convert_pane_planned(self, message: Planned) -> None:
        fit = self.query_one("#cv-fit", Static)
        if message.error:
            fit.update(f"[red]{message.error}[/]")
            return
        fit.update(message.text)
        if message.recommended in TYPES:
            self.query_one("#cv-type", Select).value = message.recommended

    # -- conversion -------------------------------------------------------------------------------
    @on(Button.Pressed, "#cv-start")
    def action_start(self, force: bool = False) -> None:
        if self.cancel_event is not None:
            self.app.notify("A conversion is already running.", severity="warning")
            return
        src = self.query_one("#cv-src", Input).value.strip()
        if not src:
            self.app.notify("Choose a source checkpoint first.", severity="warning")
            return
        out = self.query_one("#cv-out", Input).value.strip() or self.app.output_dir
        qtype = str(self.query_one("#cv-type", Select).value)
        self.cancel_event = threading.Event()
        self.started = time.monotonic()
        self.query_one("#cv-start", Button).disabled = True
        self.query_one("#cv-cancel", Button).disabled = False
        self.query_one("#cv-after").display = False
        self.query_one("#cv-bar", ProgressBar).update(total=100, progress=0)
        self.query_one("#cv-status", Static).update(f"Converting {src} to {qtype}…")
        self._convert(src, out, qtype, self.cancel_event, force)

    @work(thread=True, exit_on_error=False, group="convert")
    def _convert(self, src: str, out: str, qtype: str, cancel: threading.Event, force: bool) -> None:
        load("quant.convert")
        from quant.convert import ConversionCancelled, convert
        from quant.errors import OutputExistsError

        last = [0.0]

        def progress(name: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1 or done >= total:
                last[0] = now
                self.post_message(self.Progress(name, done, total))

        try:
            if not out.endswith(".gguf"):
                Path(out).mkdir(parents=True, exist_ok=True)
            result = convert(src, Path(out), qtype, progress=progress, cancel=cancel, force=force)
        except OutputExistsError as exc:  # ask before overwriting anything
            self.post_message(self.Finished(None, exists=str(exc.path)))
            return
        except ConversionCancelled:
            self.post_message(self.Finished(None, cancelled=True))
            return
        except Exception as exc:
            self.post_message(self.Finished(None, str(exc)))
            return
        self.post_message(self.Finished(result))

    def on_convert_pane_progress(self, message: Progress) -> None:
        if self.cancel_event is None:
            return
        elapsed = time.monotonic() - self.started
        rate = message.done / elapsed if elapsed > 0 else 0.0
        eta = (message.total - message.done) / rate if rate > 0 else 0.0
        self.query_one("#cv-bar", ProgressBar).update(total=message.total or 1, progress=message.done)
        self.query_one("#cv-status", Static).update(
            f"{message.name or 'finishing'}  {message.done / 1e6:,.1f}/{message.total / 1e6:,.1f} MB  "
            f"{rate / 1e6:,.1f} MB/s  ETA {eta:.0f} s"
        )

    def on_convert_pane_finished(self, message: Finished) -> None:
        self.cancel_event = None
        self.query_one("#cv-start", Button).disabled = False
        self.query_one("#cv-cancel", Button).disabled = True
        status = self.query_one("#cv-status", Static)
        if message.exists:
            status.update(f"{message.exists} already exists.")

            def answered(yes: bool | None) -> None:
                if yes:
                    self.action_start(force=True)

            self.app.push_screen(ConfirmScreen(f"{message.exists} already exists.\nOverwrite it?"), answered)
            return
        if message.cancelled:
            self.query_one("#cv-bar", ProgressBar).update(progress=0)
            status.update("Cancelled; no output file was left behind.")
            self.app.notify("Conversion cancelled; nothing left behind.", title="Convert")
            return
        if message.error:
            status.update(f"[red]Failed:[/] {message.error}")
            self.app.notify(message.error, title="Conversion failed", severity="error", timeout=10)
            return
        r = message.result
        self.last_output = str(r.path)
        status.update(
            f"[green]Wrote[/] {r.path} ({r.type}, {r.bytes / 1e6:,.1f} MB, {r.n_tensors} tensors) in {r.seconds:.1f} s. "
            "Smoke-test it (ctrl+t) or chat (ctrl+y)."
        )
        self.query_one("#cv-after").display = True
        self.app.notify(f"{r.path.name} written.", title="Conversion finished")
        self.app.local_changed()

    @on(Button.Pressed, "#cv-cancel")
    def action_cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.query_one("#cv-status", Static).update("Cancelling…")

    @on(Button.Pressed, "#cv-smoke")
    def action_smoke(self) -> None:
        if self.last_output:
            self.app.start_smoke(self.last_output)

    @on(Button.Pressed, "#cv-chat")
    def action_chat(self) -> None:
        if self.last_output:
            self.app.start_chat(self.last_output)
