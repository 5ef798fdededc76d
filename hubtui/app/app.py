"""The hubtui Textual application: one tab per task, every action a rebindable binding."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from hubtui.app.config import Settings, load_settings
from hubtui.app.hardware_pane import HardwarePane
from hubtui.app.help_screen import HelpScreen

# (tab id, title, key, binding id)
SCREENS: tuple[tuple[str, str, str, str], ...] = (
    ("browse", "Browse", "f2", "screen.browse"),
    ("downloads", "Downloads", "f3", "screen.downloads"),
    ("local", "Local", "f4", "screen.local"),
    ("convert", "Convert", "f5", "screen.convert"),
    ("smoke", "Smoke test", "f6", "screen.smoke"),
    ("chat", "Chat", "f7", "screen.chat"),
    ("hardware", "Hardware", "f8", "screen.hardware"),
)


class HubtuiApp(App[None]):
    """Keyboard-driven front end over the same library code the CLI uses."""

    TITLE = "hubtui"
    SUB_TITLE = "Llama & Mistral: browse · download · quantise · size · chat"
    CSS_PATH = Path(__file__).with_name("hubtui.tcss")
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("f1", "help", "Help", id="app.help", priority=True),
        *(
            Binding(key, f"show_tab('{tab}')", title, id=bid, priority=True)
            for tab, title, key, bid in SCREENS
        ),
    ]

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else load_settings()

    def on_mount(self) -> None:
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for tab, title, _key, _bid in SCREENS:
                with TabPane(title, id=tab):
                    if tab == "hardware":
                        yield HardwarePane()
                    else:
                        yield Static(f"{title}: coming with the TUI issue.", classes="placeholder")
        yield Footer()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def binding_rows(self) -> list[tuple[str, str, str]]:
        rows = []
        for active in self.screen.active_bindings.values():
            binding = active.binding
            rows.append(
                (self.get_key_display(binding), binding.description or binding.action, binding.id or "")
            )
        return rows

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.binding_rows()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab, title, _key, _bid in SCREENS:
            yield SystemCommand(
                f"Go to {title}", f"Show the {title} screen", lambda t=tab: self.action_show_tab(t)
            )
        yield SystemCommand("Help", "List every key binding", self.action_help)
