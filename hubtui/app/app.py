"""The hubtui Textual application shell."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static


class HubtuiApp(App[None]):
    """Keyboard-driven front end over the same library code the CLI uses."""

    TITLE = "hubtui"
    SUB_TITLE = "Llama & Mistral: browse · download · quantise · size · chat"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("hubtui: screens arrive with the TUI issue.", id="placeholder")
        yield Footer()
