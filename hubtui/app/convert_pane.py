"""Convert: a local checkpoint to GGUF, with the fit table for the app's target, live progress and a cancel
that leaves nothing behind (the converter removes its temporary).

The type list starts on "auto", the type `hubtui convert --type auto` would pick for the target; a type the
user picks stays picked whatever sizing says later.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from hubtui.app.jobs import eta_text
from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import JobDone, JobStatus, JobUpdate, LocalChanged, StartChat, StartSmoke
from hubtui.app.modals import ConfirmScreen, ModelPicker
from hubtui.app.session import UsesSession
from hubtui.units import format_bytes
from quant.filetypes import FILE_TYPES  # plain data: cheap to import, unlike the converter

AUTO = "auto"
ON_QUIT = "is cancelled; its partial file is removed"


def file_types() -> tuple[str, ...]:
    """The converter's file types, best quality first (quant.filetypes, the one list)."""
    return tuple(FILE_TYPES)


class ConvertPane(UsesSession, ReportsWorkerErrors, VerticalScroll):
    """Keys are priority bindings: they must work while an Input has focus."""

    BINDINGS = [
        Binding("ctrl+o", "pick", "Open checkpoint", id="convert.pick", priority=True),
        Binding("ctrl+r", "convert", "Convert", id="convert.start", priority=True),
        Binding("ctrl+x", "cancel", "Cancel", id="convert.cancel", priority=True),
        Binding("ctrl+t", "smoke", "Smoke test", id="convert.smoke", priority=True),
        Binding("ctrl+y", "chat", "Chat", id="convert.chat", priority=True),
    ]

    class Planned(Message):
        def __init__(
            self, src: str, target: str, text: str, recommended: str | None, error: str = ""
        ) -> None:
            super().__init__()
            self.src = src
            self.target = target
            self.text = text
            self.recommended = recommended
            self.error = error

    class TypesLoaded(Message):
        def __init__(self, types: tuple[str, ...]) -> None:
            super().__init__()
            self.types = types

    class Started(Message):
        """The type is known (an "auto" conversion has sized first)."""

        def __init__(self, qtype: str, note: str) -> None:
            super().__init__()
            self.qtype = qtype
            self.note = note

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
        self.recommended: str | None = None  # for the source and target on screen
        self.planned_for: tuple[str, str] | None = None
        self.src_name = ""
        self.qtype = ""
        self.types: tuple[str, ...] = ()
        self._types_asked = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label("Source ", classes="label")
            yield Input(
                placeholder="checkpoint folder or downloaded repo id (ctrl+o picks one)",
                id="cv-src",
                compact=True,
            )
        with Horizontal(classes="field"):
            yield Label("Type   ", classes="label")
            yield Select(self._type_options(), value=AUTO, allow_blank=False, id="cv-type", compact=True)
            yield Static("", id="cv-target")
        yield Static(self._type_hint(AUTO), id="cv-type-hint")
        with Horizontal(classes="field"):
            yield Label("Output ", classes="label")
            yield Input(
                placeholder="blank: llama.cpp's file name in the output folder", id="cv-out", compact=True
            )
        with Horizontal(classes="buttons"):
            yield Button("Convert (ctrl+r)", variant="primary", id="cv-start")
            yield Button("Cancel (ctrl+x)", variant="error", id="cv-cancel", disabled=True)
            yield Button("Smoke test (ctrl+t)", id="cv-smoke")
            yield Button("Chat (ctrl+y)", id="cv-chat")
        yield ProgressBar(total=100, show_eta=False, id="cv-bar")
        yield Static("", id="cv-status")
        yield Static("Enter a source to size it.", id="cv-fit")

    def _type_options(self) -> list[tuple[str, str]]:
        auto = f"auto: {self.recommended}" if self.recommended else "auto (recommended)"
        return [(auto, AUTO), *((t, t) for t in self.types)]

    def on_mount(self) -> None:
        self._show_target()
        self._after(False)

    def on_show(self) -> None:
        if not self.types and not self._types_asked:  # first shown: not during start-up, where it competes
            self._types_asked = True
            self._load_types()

    @work(thread=True, exit_on_error=False, group="convert-types")
    def _load_types(self) -> None:
        """The list loads off the UI thread (the converter's table comes with gguf-py: 0.3 s to import)."""
        self.post_message(self.TypesLoaded(file_types()))

    def on_convert_pane_types_loaded(self, message: TypesLoaded) -> None:
        self.types = message.types
        self._refresh_types()

    def _show_target(self) -> None:
        self.query_one("#cv-target", Static).update(
            f"  for [b]{escape(self.session.target.label)}[/b] [dim](F8 or ctrl+p changes it)[/]"
        )

    def _after(self, ready: bool) -> None:
        for bid in ("#cv-smoke", "#cv-chat"):
            self.query_one(bid, Button).display = ready

    def on_unmount(self) -> None:
        self.stop_for_quit()

    def stop_for_quit(self) -> None:
        """Quitting mid-conversion cancels it: the converter removes its temporary, nothing is left."""
        if self.cancel_event is not None:
            self.cancel_event.set()

    # -- source and fit ---------------------------------------------------------------------------
    def set_source(self, src: str) -> None:
        self.query_one("#cv-src", Input).value = src
        self.replan()

    @on(Input.Submitted, "#cv-src")
    def _src_submitted(self) -> None:
        self.replan()

    @on(Select.Changed, "#cv-type")
    def _type_changed(self, event: Select.Changed) -> None:
        self.query_one("#cv-type-hint", Static).update(self._type_hint(str(event.value)))

    def _type_hint(self, value: str) -> str:
        """The chosen type's bits per weight and quality (for auto: the recommended type's)."""
        ft = FILE_TYPES.get(self.recommended if value == AUTO and self.recommended else value)
        return ft.summary if ft else ""

    def target_changed(self) -> None:
        self._show_target()
        if self.query_one("#cv-src", Input).value.strip():
            self.replan()

    def action_pick(self) -> None:
        current = self.query_one("#cv-src", Input).value.strip() or None

        def chosen(path: str | None) -> None:
            if path:
                self.set_source(path)

        self.app.push_screen(ModelPicker("checkpoint", self.session.output_dir, current), chosen)

    def replan(self) -> None:
        src = self.query_one("#cv-src", Input).value.strip()
        if not src:
            return
        self._recommend(None)
        self.query_one("#cv-fit", Static).update(
            f"Sizing {escape(src)} for {escape(self.session.target.label)}…"
        )
        self._plan(src, self.session.target.label)

    @work(thread=True, exclusive=True, exit_on_error=False, group="convert-plan")
    def _plan(self, src: str, label: str) -> None:
        from hubtui.app.services import plan_for, plan_markup

        try:
            p = plan_for(self._resolve(src), self.session.target.resolve())
            text = plan_markup(p)
        except Exception as exc:
            self.post_message(self.Planned(src, label, "", None, worker_failed(f"sizing {src}", exc)))
            return
        rec = p.recommendation.qtype if p.recommendation else None
        self.post_message(self.Planned(src, label, text, rec))

    @staticmethod
    def _resolve(src: str) -> str:
        """A downloaded repo id means its snapshot, as `hubtui convert OWNER/NAME`."""
        from hubtui.hub.errors import HubError
        from hubtui.hub.snapshots import resolve_checkpoint

        try:
            return str(resolve_checkpoint(src))
        except HubError:
            return src  # not downloaded: sized from its headers, as `hubtui plan OWNER/NAME`

    def on_convert_pane_planned(self, message: Planned) -> None:
        if message.src != self.query_one("#cv-src", Input).value.strip():
            return  # an older source's plan
        fit = self.query_one("#cv-fit", Static)
        if message.error:
            fit.update(f"[red]{escape(message.error)}[/]")
            return
        fit.update(message.text)
        self.planned_for = (message.src, message.target)
        self._recommend(message.recommended)

    def _recommend(self, qtype: str | None) -> None:
        """Show the recommendation in the "auto" entry's label; the value chosen stays as it is."""
        if qtype == self.recommended:
            return
        self.recommended = qtype
        self._refresh_types()

    def _refresh_types(self) -> None:
        select = self.query_one("#cv-type", Select)
        chosen = select.value
        self.query_one("#cv-type-hint", Static).update(self._type_hint(str(chosen)))
        options = self._type_options()
        with select.prevent(Select.Changed):
            select.set_options(options)
            if len(options) > 1:  # set_options keeps an unchanged value's old label: pass through another
                select.value = options[1][1] if chosen == AUTO else AUTO
            select.value = chosen

    # -- conversion -------------------------------------------------------------------------------
    @on(Button.Pressed, "#cv-start")
    def action_convert(self, force: bool = False) -> None:
        if self.cancel_event is not None:
            self.app.notify("A conversion is already running.", severity="warning")
            return
        src = self.query_one("#cv-src", Input).value.strip()
        if not src:
            self.app.notify("Choose a source checkpoint first (ctrl+o).", severity="warning")
            return
        out = self.query_one("#cv-out", Input).value.strip() or self.session.output_dir
        qtype = str(self.query_one("#cv-type", Select).value)
        if qtype == AUTO and self.planned_for == (src, self.session.target.label) and self.recommended:
            qtype = self.recommended  # what the fit table on screen recommends
        self.cancel_event = threading.Event()
        self.started = time.monotonic()
        self.src_name = Path(src).name
        self.qtype = qtype
        self.query_one("#cv-start", Button).disabled = True
        self.query_one("#cv-cancel", Button).disabled = False
        self._after(False)
        self.query_one("#cv-bar", ProgressBar).update(total=100, progress=0)
        doing = "sizing to choose the type" if qtype == AUTO else f"converting to {qtype}"
        self.query_one("#cv-status", Static).update(f"{escape(self.src_name)}: {doing}…")
        self._report(None, doing)
        self._convert(src, out, qtype, self.cancel_event, force)

    @work(thread=True, exit_on_error=False, group="convert")
    def _convert(self, src: str, out: str, qtype: str, cancel: threading.Event, force: bool) -> None:
        from quant.convert import ConversionCancelled, convert
        from quant.errors import OutputExistsError

        last = [0.0]

        def progress(name: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1 or done >= total:
                last[0] = now
                self.post_message(self.Progress(name, done, total))

        try:
            path = self._resolve(src)
            if qtype == AUTO:  # as `hubtui convert --type auto`: the plan's recommendation for the target
                from hubtui.app.services import plan_for

                target = self.session.target.resolve()
                p = plan_for(path, target)
                if p.recommendation is None:
                    raise RuntimeError(
                        f"no type of {Path(path).name} fits {target.name} at context {p.settings.n_ctx}; "
                        "pick a type"
                    )
                qtype = p.recommendation.qtype
                self.post_message(self.Started(qtype, f"auto: recommended for {target.name}"))
            if not out.endswith(".gguf"):
                Path(out).mkdir(parents=True, exist_ok=True)
            result = convert(path, Path(out), qtype, progress=progress, cancel=cancel, force=force)
        except OutputExistsError as exc:  # ask before overwriting anything
            self.post_message(self.Finished(None, exists=str(exc.path)))
            return
        except ConversionCancelled:
            self.post_message(self.Finished(None, cancelled=True))
            return
        except Exception as exc:
            self.post_message(self.Finished(None, worker_failed(f"converting {src}", exc)))
            return
        self.post_message(self.Finished(result))

    def on_convert_pane_started(self, message: Started) -> None:
        self.qtype = message.qtype
        self.query_one("#cv-status", Static).update(
            f"{escape(self.src_name)}: converting to {message.qtype} ({escape(message.note)})…"
        )
        self._report(None, f"converting to {message.qtype}")

    def on_convert_pane_progress(self, message: Progress) -> None:
        if self.cancel_event is None:
            return
        elapsed = time.monotonic() - self.started
        rate = message.done / elapsed if elapsed > 0 else 0.0
        eta = (message.total - message.done) / rate if rate > 0 else None
        self.query_one("#cv-bar", ProgressBar).update(total=message.total or 1, progress=message.done)
        detail = (
            f"{format_bytes(message.done)} of {format_bytes(message.total)} · {format_bytes(rate)}/s · "
            f"ETA {eta_text(eta)}"
        )
        self.query_one("#cv-status", Static).update(
            f"{escape(message.name or 'finishing')}  {detail}"
            if not self.cancel_event.is_set()
            else "Cancelling…"
        )
        self._report(message.done / message.total if message.total else None, detail)

    def _report(self, fraction: float | None, detail: str) -> None:
        title = f"Converting {self.src_name}" + (f" to {self.qtype}" if self.qtype != AUTO else "")
        self.post_message(JobUpdate(JobStatus("convert", "convert", title, fraction, detail, ON_QUIT)))

    def on_convert_pane_finished(self, message: Finished) -> None:
        self.cancel_event = None
        self.post_message(JobDone("convert"))
        self.query_one("#cv-start", Button).disabled = False
        self.query_one("#cv-cancel", Button).disabled = True
        status = self.query_one("#cv-status", Static)
        if message.exists:
            status.update(f"{escape(message.exists)} already exists.")

            def answered(yes: bool | None) -> None:
                if yes:
                    self.action_convert(force=True)

            self.app.push_screen(ConfirmScreen(f"{message.exists} already exists.\nOverwrite it?"), answered)
            return
        if message.cancelled:
            self.query_one("#cv-bar", ProgressBar).update(progress=0)
            status.update("Cancelled; no output file was left behind.")
            self.app.notify("Conversion cancelled; nothing left behind.", title="Convert")
            return
        if message.error:
            status.update(f"[red]Failed:[/] {escape(message.error)}")
            self.app.notify(message.error, title="Conversion failed", severity="error", timeout=10)
            return
        r = message.result
        self.last_output = str(r.path)
        status.update(
            f"[green]Wrote[/] {escape(str(r.path))} ({r.type}, {format_bytes(r.bytes)}, {r.n_tensors} tensors) "
            f"in {r.seconds:.1f} s. Smoke-test it (ctrl+t) or chat (ctrl+y)."
        )
        self._after(True)
        self.app.notify(f"{r.path.name} written.", title="Conversion finished")
        self.post_message(LocalChanged())

    @on(Button.Pressed, "#cv-cancel")
    def action_cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.query_one("#cv-status", Static).update("Cancelling…")

    @on(Button.Pressed, "#cv-smoke")
    def action_smoke(self) -> None:
        if self.last_output:
            self.post_message(StartSmoke(self.last_output))
        else:
            self.app.notify(
                "Convert a checkpoint first; then ctrl+t smoke-tests the result.", severity="warning"
            )

    @on(Button.Pressed, "#cv-chat")
    def action_chat(self) -> None:
        if self.last_output:
            self.post_message(StartChat(self.last_output))
        else:
            self.app.notify(
                "Convert a checkpoint first; then ctrl+y chats with the result.", severity="warning"
            )
