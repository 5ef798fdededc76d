"""Modal screens: a yes/no question before anything destructive, a read-only text panel, a choice among a
few values, the model picker of Chat, Smoke test and Convert, Chat's LoRA adapter picker, and the custom
target's RAM/VRAM form."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, LoadingIndicator, OptionList, Static
from textual.widgets.option_list import Option

from hubtui.app.services import LocalModel
from hubtui.app.target import CUSTOM, TargetChoice
from quant.units import format_bytes


class ConfirmScreen(ModalScreen[bool]):
    """Answers True only on an explicit yes (y or the Yes button); Esc and n say no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Static(self.question, id="confirm-text", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button(f"{self.no} (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextScreen(ModalScreen[None]):
    """A scrollable panel for `hubtui inspect` output and the like; opens at once, the text may follow."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="text.close")]

    def __init__(self, title: str, text: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.body = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box wide"):
            yield Static(f"[b]{escape(self.title_text)}[/b]  (Esc closes)")
            with VerticalScroll(id="text-scroll"):
                if self.body is None:
                    yield LoadingIndicator()
                else:
                    yield Static(self.body, markup=False, id="text-body")

    async def show_text(self, text: str) -> None:
        """Replace the loading indicator with the text (or an error line)."""
        self.body = text
        scroll = self.query_one("#text-scroll", VerticalScroll)
        await scroll.remove_children()
        await scroll.mount(Static(text, markup=False, id="text-body"))
        scroll.focus()


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of a few labelled values (a published GGUF to download, say); Esc picks nothing."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Static(f"[b]{escape(self.title_text)}[/b]  (Enter picks, Esc cancels)")
            yield OptionList(*(Option(label, id=value) for label, value in self.choices), id="choices")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ModelPicker(ModalScreen[str | None]):
    """The local GGUFs (or checkpoints) to open, newest use first; typing filters the list."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="picker.cancel")]

    class Listed(Message):
        def __init__(self, rows: list, error: str = "") -> None:
            super().__init__()
            self.rows = rows
            self.error = error

    def __init__(self, kind: str, output_dir: str, current: str | None = None) -> None:
        super().__init__()
        self.kind = kind  # "gguf" or "checkpoint"
        self.output_dir = output_dir
        self.current = current
        self.rows: list = []

    def compose(self) -> ComposeResult:
        what = "a GGUF" if self.kind == "gguf" else "a checkpoint"
        with Vertical(classes="modal-box"):
            yield Static(f"[b]Open {what}[/b]  (type to filter, Enter opens, Esc cancels)")
            yield Input(placeholder="filter by name", id="picker-filter")
            yield OptionList(id="picker-list")
            yield Static("Listing local models…", id="picker-note")

    def on_mount(self) -> None:
        self.query_one("#picker-filter", Input).focus()
        self._list()

    @work(thread=True, exit_on_error=False, group="picker")
    def _list(self) -> None:
        from hubtui.app.logs import worker_failed
        from hubtui.app.services import list_local

        try:
            rows, _ = list_local(Path(self.output_dir))
        except Exception as exc:
            self.post_message(self.Listed([], worker_failed("listing local models", exc)))
            return
        rows = sorted((m for m in rows if m.kind == self.kind), key=lambda m: -m.last_used)
        self.post_message(self.Listed(rows))

    def on_model_picker_listed(self, message: Listed) -> None:
        self.rows = message.rows
        note = self.query_one("#picker-note", Static)
        if message.error:
            note.update(f"[red]{escape(message.error)}[/]")
        elif not self.rows:
            where = "Local (F4)" if self.kind == "gguf" else "Browse (F2): download one"
            note.update(f"No {'GGUF files' if self.kind == 'gguf' else 'checkpoints'} yet; see {where}.")
        else:
            note.update(f"{len(self.rows)} on this machine")
        self._fill()

    @on(Input.Changed, "#picker-filter")
    def _fill(self) -> None:
        words = self.query_one("#picker-filter", Input).value.lower().split()
        options = self.query_one("#picker-list", OptionList)
        options.clear_options()
        for m in self.rows:
            if all(w in m.name.lower() for w in words):
                mark = "▶ " if m.path == self.current else "  "
                options.add_option(Option(f"{mark}{m.name}  {m.detail}  {format_bytes(m.size)}", id=m.path))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Submitted, "#picker-filter")
    def _take_highlighted(self) -> None:
        options = self.query_one("#picker-list", OptionList)
        if options.highlighted is not None:
            self.dismiss(options.get_option_at_index(options.highlighted).id)

    def on_key(self, event) -> None:  # noqa: ANN001
        """↑/↓ move through the list while the filter keeps the focus."""
        if event.key in ("up", "down") and self.focused is self.query_one("#picker-filter"):
            options = self.query_one("#picker-list", OptionList)
            if options.option_count:
                step = -1 if event.key == "up" else 1
                current = options.highlighted if options.highlighted is not None else -step
                options.highlighted = max(0, min(options.option_count - 1, current + step))
            event.stop()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class AdapterPicker(ModalScreen[tuple[str, float] | None]):
    """Chat's LoRA adapter: the local adapter GGUFs with llama.cpp's verdict for Chat's model (one made for
    another architecture is listed with the reason, not offered), "no adapter", and the scale. Dismisses with
    (adapter path or "" for none, scale); Esc with None."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="adapter.cancel")]
    NONE = "-"  # the option that detaches

    class Listed(Message):
        def __init__(self, rows: list[tuple[LocalModel, str | None]], error: str = "") -> None:
            super().__init__()
            self.rows = rows
            self.error = error

    def __init__(
        self,
        output_dir: str,
        model: str | None,
        current: tuple[str, float] | None = None,
        chosen: str | None = None,
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.model = model  # the GGUF Chat has loaded (or is loading); None: checked when one loads
        self.current = current
        self.chosen = chosen or (current[0] if current else None)  # highlighted first
        self.rows: list[tuple[LocalModel, str | None]] = []

    def compose(self) -> ComposeResult:
        on = f"for {Path(self.model).name}" if self.model else "(checked when a model loads)"
        scale = self.current[1] if self.current else 1.0
        with Vertical(classes="modal-box"):
            yield Static(f"[b]LoRA adapter[/b] {escape(on)}  (Enter attaches, Tab: scale, Esc cancels)")
            yield OptionList(id="adapter-list")
            with Horizontal(classes="form-field"):
                yield Label("Scale ", classes="label")
                yield Input(f"{scale:g}", placeholder="1.0", id="adapter-scale")
            yield Static("Listing local adapters…", id="adapter-note")

    def on_mount(self) -> None:
        self.query_one("#adapter-list", OptionList).focus()
        self._list()

    @work(thread=True, exit_on_error=False, group="picker")
    def _list(self) -> None:
        from hubtui.app.logs import worker_failed
        from hubtui.app.services import list_local
        from hubtui.runner.adapters import check_adapter_for

        try:
            rows, _ = list_local(Path(self.output_dir))
            found = [
                (m, check_adapter_for(m.path, self.model) if self.model else None)
                for m in sorted((m for m in rows if m.kind == "adapter"), key=lambda m: -m.last_used)
            ]
        except Exception as exc:
            self.post_message(self.Listed([], worker_failed("listing local adapters", exc)))
            return
        self.post_message(self.Listed(found))

    def on_adapter_picker_listed(self, message: Listed) -> None:
        self.rows = message.rows
        options = self.query_one("#adapter-list", OptionList)
        options.add_option(Option("  No adapter" + (" (detach)" if self.current else ""), id=self.NONE))
        for m, refused in self.rows:
            mark = "▶ " if self.current and m.path == self.current[0] else "  "
            label = f"{mark}{m.name}  {m.detail}" + (f"\n    ✗ {refused}" if refused else "")
            options.add_option(Option(label, id=m.path, disabled=refused is not None))
        usable = [i for i, (_, refused) in enumerate(self.rows, 1) if refused is None]
        wanted = [i for i, (m, _) in enumerate(self.rows, 1) if m.path == self.chosen]
        options.highlighted = (wanted or usable or [0])[0]
        note = self.query_one("#adapter-note", Static)
        refused_chosen = [r for m, r in self.rows if m.path == self.chosen and r]
        if message.error:
            note.update(f"[red]{escape(message.error)}[/]")
        elif refused_chosen:
            note.update(f"[red]Refused: {escape(refused_chosen[0])}[/]")
        elif not self.rows:
            note.update("No LoRA adapter GGUFs here yet: hubtui convert ADAPTER_DIR --base BASE makes one.")
        else:
            note.update(f"{len(usable)} of {len(self.rows)} fit this model" if self.model else "")

    def _answer(self, option_id: str | None) -> None:
        text = self.query_one("#adapter-scale", Input).value.strip()
        try:
            scale = float(text) if text else 1.0
        except ValueError:
            self.query_one("#adapter-note", Static).update(f"[red]scale: {escape(text)!r} is not a number[/]")
            return
        if option_id is None:
            return
        self.dismiss(("" if option_id == self.NONE else option_id, scale))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._answer(event.option.id)

    @on(Input.Submitted, "#adapter-scale")
    def _scale_submitted(self) -> None:
        options = self.query_one("#adapter-list", OptionList)
        if options.highlighted is not None:
            self._answer(options.get_option_at_index(options.highlighted).id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class TargetScreen(ModalScreen[TargetChoice | None]):
    """A custom target, as `hubtui plan --ram/--vram/--gpus` takes it; checked before it is accepted."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="target.cancel")]

    def __init__(self, current: TargetChoice) -> None:
        super().__init__()
        self.current = current if current.name == CUSTOM else TargetChoice(CUSTOM, "16G")

    def compose(self) -> ComposeResult:
        c = self.current
        with Vertical(classes="modal-box", id="target-box"):
            yield Static("[b]Custom target[/b]: the machine to size for (Enter applies, Esc cancels)")
            with Horizontal(classes="form-field"):
                yield Label("RAM        ", classes="label")
                yield Input(c.ram, placeholder="total RAM, e.g. 16G", id="tg-ram")
            with Horizontal(classes="form-field"):
                yield Label("GPU memory ", classes="label")
                yield Input(c.vram, placeholder="of each GPU, e.g. 12G (blank: no GPU)", id="tg-vram")
            with Horizontal(classes="form-field"):
                yield Label("GPUs       ", classes="label")
                yield Input("" if c.gpus is None else str(c.gpus), placeholder="1", id="tg-gpus")
            yield Static(
                "Sizes are binary (16G = 16 GiB). The usual reserves apply: the OS keeps max(1.5 GiB, 20 %) of "
                "RAM, each GPU 0.5 GiB for its context.",
                id="tg-help",
            )
            yield Static("", id="tg-error")

    def on_mount(self) -> None:
        self.query_one("#tg-ram", Input).focus()

    def on_input_submitted(self) -> None:
        from quant.sizing.profiles import TargetError, custom_target

        ram = self.query_one("#tg-ram", Input).value.strip()
        vram = self.query_one("#tg-vram", Input).value.strip()
        gpus_text = self.query_one("#tg-gpus", Input).value.strip()
        error = self.query_one("#tg-error", Static)
        try:
            gpus = int(gpus_text) if gpus_text else None
        except ValueError:
            error.update(f"[red]GPUs: {escape(gpus_text)!r} is not a whole number[/]")
            return
        try:
            custom_target(ram or None, vram or None, gpus)
        except TargetError as exc:
            error.update(f"[red]{escape(str(exc).replace('--', ''))}[/]")
            return
        self.dismiss(TargetChoice(CUSTOM, ram, vram, gpus))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
