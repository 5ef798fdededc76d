"""Small modal screens: a yes/no confirmation before anything destructive, and a read-only text view."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Answers True only on an explicit yes (y or the Yes button); Esc and n say no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Static(self.question, id="confirm-text")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextScreen(ModalScreen[None]):
    """A scrollable panel for `hubtui inspect` output and the like."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="text.close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box wide"):
            yield Static(f"[b]{self.title_text}[/b]  (Esc closes)")
            with VerticalScroll():
                yield Static(self.body, markup=False, id="text-body")


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of a few labelled values (a published GGUF to download, say); Esc picks nothing."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList
        from textual.widgets.option_list import Option

        with Vertical(classes="modal-box"):
            yield Static(f"[b]{self.title_text}[/b]  (Enter picks, Esc cancels)")
            yield OptionList(*(Option(label, id=value) for label, value in self.choices), id="choices")

    def on_option_list_option_selected(self, event: object) -> None:
        self.dismiss(event.option.id)  # type: ignore[attr-defined]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
