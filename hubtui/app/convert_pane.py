"""Convert: a local checkpoint to GGUF, with the fit table for the app's target, live progress and a cancel
that leaves nothing behind (the converter removes its temporary).

The type list starts on "auto", the type `hubtui convert --type auto` would pick for the target; a type the
user picks stays picked whatever sizing says later. The importance matrix is off, "auto" (`convert --imatrix
auto`: computed from the default calibration text first) or a file (`--imatrix FILE`); the fit table and the
recommendation follow it (`plan --imatrix`), and the imatrix-only types are refused without one.
"""

from __future__ import annotations

import contextlib
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
from textual.widgets import Button, Input, Label, ProgressBar, Static

from hubtui.app.jobs import eta_text
from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import (
    ImatrixChanged,
    JobDone,
    JobStatus,
    JobUpdate,
    LocalChanged,
    StartChat,
    StartSmoke,
)
from hubtui.app.modals import ConfirmScreen, ModelPicker
from hubtui.app.select import Select
from hubtui.app.session import UsesSession
from quant.filetypes import FILE_TYPES  # plain data: cheap to import, unlike the converter
from quant.units import format_bytes

AUTO = "auto"
IMATRIX_OFF, IMATRIX_AUTO, IMATRIX_FILE = "off", "auto", "file"
IMATRIX_CHOICES = [
    ("off", IMATRIX_OFF),
    ("auto: from the default calibration text", IMATRIX_AUTO),
    ("file", IMATRIX_FILE),
]
PREPARING = "importance matrix: a temporary GGUF of the checkpoint to run"
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
            self,
            src: str,
            target: str,
            text: str,
            recommended: str | None,
            error: str = "",
            has_imatrix: bool = False,
        ) -> None:
            super().__init__()
            self.has_imatrix = has_imatrix
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

    class ImatrixStep(Message):
        """A chunk of the "auto" importance matrix is done."""

        def __init__(self, done: int, total: int, eta_s: float | None, tokens_per_s: float) -> None:
            super().__init__()
            self.done = done
            self.total = total
            self.eta_s = eta_s
            self.tokens_per_s = tokens_per_s

    class ImatrixChecked(Message):
        def __init__(self, path: str, error: str) -> None:
            super().__init__()
            self.path = path
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
        self.recommended: str | None = None  # for the source and target on screen
        self.planned_for: tuple[str, str, bool] | None = None
        self.src_name = ""
        self.qtype = ""
        self.types: tuple[str, ...] = ()
        self._types_asked = False
        self.imatrix_error = ""  # why the imatrix file on screen cannot be read ("" when it can)

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
            yield Label("Imatrix", classes="label")
            yield Select(IMATRIX_CHOICES, value=IMATRIX_OFF, allow_blank=False, id="cv-imatrix", compact=True)
            yield Input(
                placeholder="imatrix file: llama-imatrix's .gguf or legacy .dat (enter checks it)",
                id="cv-imatrix-file",
                compact=True,
            )
        yield Static("", id="cv-imatrix-note")
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
        return [(auto, AUTO), *((self._type_label(t), t) for t in self.types)]

    @staticmethod
    def _type_label(qtype: str) -> str:
        """The imatrix-only types are marked: they convert only with an importance matrix."""
        return f"{qtype} (needs imatrix)" if FILE_TYPES[qtype].needs_imatrix else qtype

    def on_mount(self) -> None:
        self._show_target()
        self._after(False)
        self.query_one("#cv-imatrix-file", Input).display = False

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

    # -- importance matrix ------------------------------------------------------------------------
    def _imatrix_choice(self) -> str:
        """The session's value for the control: "" off, "auto", or the file's path ("" while none is typed)."""
        mode = str(self.query_one("#cv-imatrix", Select).value)
        if mode == IMATRIX_FILE:
            return self.query_one("#cv-imatrix-file", Input).value.strip()
        return IMATRIX_AUTO if mode == IMATRIX_AUTO else ""

    @on(Select.Changed, "#cv-imatrix")
    def _imatrix_mode_changed(self, event: Select.Changed) -> None:
        file_input = self.query_one("#cv-imatrix-file", Input)
        file_input.display = event.value == IMATRIX_FILE
        note = self.query_one("#cv-imatrix-note", Static)
        self.imatrix_error = ""
        if event.value == IMATRIX_AUTO:
            from hubtui.runner.imatrix import AUTO_IMATRIX_CHUNKS

            note.update(
                f"[dim]Computed before converting: {AUTO_IMATRIX_CHUNKS} chunks of the default calibration "
                "text (minutes on a large model).[/]"
            )
        elif event.value == IMATRIX_FILE:
            note.update("[dim]Type the path and press enter.[/]")
            file_input.focus()
            if file_input.value.strip():
                self._check_imatrix(file_input.value.strip())
        else:
            note.update("")
        self._imatrix_changed()

    @on(Input.Submitted, "#cv-imatrix-file")
    def _imatrix_file_submitted(self) -> None:
        path = self.query_one("#cv-imatrix-file", Input).value.strip()
        if path:
            self.query_one("#cv-imatrix-note", Static).update(f"Reading {escape(path)}…")
            self._check_imatrix(path)
        self._imatrix_changed()

    @work(thread=True, exclusive=True, exit_on_error=False, group="convert-imatrix")
    def _check_imatrix(self, path: str) -> None:
        """Read the file as the converter will (`quant.imatrix.format.read_imatrix`): a bad one is named now."""
        from quant.imatrix.format import read_imatrix

        try:
            matrix = read_imatrix(path)
        except Exception as exc:
            self.post_message(self.ImatrixChecked(path, worker_failed(f"reading {path}", exc)))
            return
        del matrix
        self.post_message(self.ImatrixChecked(path, ""))

    def on_convert_pane_imatrix_checked(self, message: ImatrixChecked) -> None:
        if message.path != self._imatrix_choice():
            return  # an older path's answer
        self.imatrix_error = message.error
        note = self.query_one("#cv-imatrix-note", Static)
        note.update(
            f"[red]{escape(message.error)}[/]" if message.error else f"[green]✓[/] {escape(message.path)}"
        )

    def _imatrix_changed(self) -> None:
        choice = self._imatrix_choice()
        if choice == self.session.imatrix:
            return
        self.session.imatrix = choice
        if self.query_one("#cv-src", Input).value.strip():
            self.replan()
        self.post_message(ImatrixChanged())

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
        self._plan(src, self.session.target.label, self.session.has_imatrix)

    @work(thread=True, exclusive=True, exit_on_error=False, group="convert-plan")
    def _plan(self, src: str, label: str, has_imatrix: bool) -> None:
        from hubtui.app.services import plan_for, plan_markup

        try:
            p = plan_for(self._resolve(src), self.session.target.resolve(), has_imatrix=has_imatrix)
            text = plan_markup(p)
        except Exception as exc:
            self.post_message(
                self.Planned(src, label, "", None, worker_failed(f"sizing {src}", exc), has_imatrix)
            )
            return
        rec = p.recommendation.qtype if p.recommendation else None
        self.post_message(self.Planned(src, label, text, rec, has_imatrix=has_imatrix))

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
        if (
            message.src != self.query_one("#cv-src", Input).value.strip()
            or message.has_imatrix != self.session.has_imatrix
        ):
            return  # an older source's (or imatrix choice's) plan
        fit = self.query_one("#cv-fit", Static)
        if message.error:
            fit.update(f"[red]{escape(message.error)}[/]")
            return
        fit.update(message.text)
        self.planned_for = (message.src, message.target, message.has_imatrix)
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
        imatrix = self._imatrix_choice()
        if not self._imatrix_ready(qtype, imatrix):
            return
        planned = (src, self.session.target.label, bool(imatrix))
        if qtype == AUTO and self.planned_for == planned and self.recommended:
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
        if imatrix == IMATRIX_AUTO:
            doing = "computing the importance matrix"
        self.query_one("#cv-status", Static).update(f"{escape(self.src_name)}: {doing}…")
        self._report(None, doing)
        self._convert(src, out, qtype, imatrix, self.cancel_event, force)

    def _imatrix_ready(self, qtype: str, imatrix: str) -> bool:
        """The CLI's check (`quant.filetypes.check_imatrix_use`) and guidance, before anything starts."""
        from quant.errors import OptionError
        from quant.filetypes import check_imatrix_use

        mode = str(self.query_one("#cv-imatrix", Select).value)
        problem = ""
        if mode == IMATRIX_FILE and not imatrix:
            problem = "Imatrix is set to file: type the imatrix file's path (or set Imatrix to off or auto)."
        elif mode == IMATRIX_FILE and self.imatrix_error:
            problem = self.imatrix_error
        elif qtype != AUTO:
            try:
                check_imatrix_use(FILE_TYPES[qtype], bool(imatrix))
            except OptionError as exc:
                where = "set Imatrix to auto or file" if imatrix == "" else "set Imatrix to off"
                problem = f"{exc}. Here: {where}."
        if problem:
            self.query_one("#cv-status", Static).update(f"[red]Not started:[/] {escape(problem)}")
            self.app.notify(problem, title="Convert", severity="warning", timeout=10)
        return not problem

    @work(thread=True, exit_on_error=False, group="convert")
    def _convert(
        self, src: str, out: str, qtype: str, imatrix: str, cancel: threading.Event, force: bool
    ) -> None:
        from hubtui.runner.imatrix import ImatrixCancelled
        from quant.convert import ConversionCancelled
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
                p = plan_for(path, target, has_imatrix=bool(imatrix))
                if p.recommendation is None:
                    raise RuntimeError(
                        f"no type of {Path(path).name} fits {target.name} at context {p.settings.n_ctx}; "
                        "pick a type"
                    )
                qtype = p.recommendation.qtype
                self.post_message(self.Started(qtype, f"auto: recommended for {target.name}"))
            result = self._convert_with(path, Path(out), qtype, imatrix, cancel, force, progress)
        except OutputExistsError as exc:  # ask before overwriting anything
            self.post_message(self.Finished(None, exists=str(exc.path)))
            return
        except (ConversionCancelled, ImatrixCancelled):
            self.post_message(self.Finished(None, cancelled=True))
            return
        except Exception as exc:
            self.post_message(self.Finished(None, worker_failed(f"converting {src}", exc)))
            return
        self.post_message(self.Finished(result))

    def _convert_with(
        self,
        path: str,
        out: Path,
        qtype: str,
        imatrix: str,
        cancel: threading.Event,
        force: bool,
        progress: Any,
    ) -> Any:
        """The conversion, after `convert --imatrix auto`'s matrix (`auto_imatrix`) when the choice is auto."""
        from quant.convert import convert
        from quant.errors import OutputExistsError

        if not out.name.endswith(".gguf"):
            out.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            matrix: Any = imatrix or None
            if imatrix == IMATRIX_AUTO:
                from hubtui.runner.imatrix import auto_imatrix

                if out.name.endswith(".gguf") and out.exists() and not force:
                    raise OutputExistsError(out)  # before minutes of computing, not after

                def chunk(p: Any) -> None:
                    self.post_message(
                        self.ImatrixStep(p.chunks_done, p.chunks_total, p.eta_s, p.tokens_per_s)
                    )

                where = out if out.is_dir() else out.parent
                matrix = stack.enter_context(
                    auto_imatrix(
                        path,
                        where,
                        progress=chunk,
                        cancel=cancel,
                        on_convert=lambda _name, done, total: progress(PREPARING, done, total),
                    )
                )
                self.post_message(self.Started(qtype, "with the importance matrix just computed"))
            return convert(path, out, qtype, progress=progress, cancel=cancel, force=force, imatrix=matrix)

    def on_convert_pane_imatrix_step(self, message: ImatrixStep) -> None:
        if self.cancel_event is None:
            return
        self.query_one("#cv-bar", ProgressBar).update(total=message.total, progress=message.done)
        detail = (
            f"importance matrix: chunk {message.done}/{message.total} · {message.tokens_per_s:.0f} tokens/s · "
            f"ETA {eta_text(message.eta_s)}"
        )
        self.query_one("#cv-status", Static).update(
            f"{escape(self.src_name)}: {detail}" if not self.cancel_event.is_set() else "Cancelling…"
        )
        self._report(message.done / message.total if message.total else None, detail)

    def on_convert_pane_started(self, message: Started) -> None:
        self.started = time.monotonic()  # the conversion's rate and ETA count from here
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
