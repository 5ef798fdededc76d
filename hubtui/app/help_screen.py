"""F1: every key of the app, grouped by screen, in a panel that scrolls (arrows, PgUp/PgDn, the mouse)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# (key, action, binding id)
Row = tuple[str, str, str]
KEY_NAMES = {"slash": "/", "delete": "del", "escape": "esc"}


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close", id="help.close")]

    def __init__(self, groups: list[tuple[str, list[Row]]]) -> None:
        super().__init__()
        self.groups = groups

    @property
    def rows(self) -> list[Row]:
        return [row for _, rows in self.groups for row in rows]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(
                "[b]hubtui keys[/b]  (Esc closes; remap a key by its id under \\[keymap] in config.toml)",
                id="help-title",
            )
            with VerticalScroll(id="help-scroll", can_focus=True):
                for title, rows in self.groups:
                    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
                    table.add_column(width=12, no_wrap=True)
                    table.add_column(ratio=1)
                    table.add_column(style="dim", no_wrap=True, overflow="ellipsis", max_width=24)
                    for key, action, bid in rows:
                        table.add_row(KEY_NAMES.get(key, key), action, bid)
                    yield Static(Text(title, style="bold"), classes="help-title")
                    yield Static(table, classes="help-group")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()
