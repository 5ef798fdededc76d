"""The hubtui Textual application: one tab per task, every action a rebindable binding."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane

from hubtui.app.browse_pane import BrowsePane
from hubtui.app.chat_pane import ChatPane
from hubtui.app.config import Settings, load_settings
from hubtui.app.convert_pane import ConvertPane
from hubtui.app.downloads_pane import DownloadsPane
from hubtui.app.hardware_pane import HardwarePane
from hubtui.app.help_screen import HelpScreen
from hubtui.app.local_pane import LocalPane
from hubtui.app.services import MACHINE
from hubtui.app.smoke_pane import SmokePane

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
PANES = {
    "browse": BrowsePane,
    "downloads": DownloadsPane,
    "local": LocalPane,
    "convert": ConvertPane,
    "smoke": SmokePane,
    "chat": ChatPane,
    "hardware": HardwarePane,
}


def _hub_settings():  # noqa: ANN202
    """hubtui.hub.settings without the hub package's __init__ (huggingface_hub: ~0.3 s of start-up)."""
    import sys

    loaded = sys.modules.get("hubtui.hub.settings")
    if loaded is not None:
        return loaded
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "hubtui_app_hub_settings", Path(__file__).parents[1] / "hub" / "settings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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

    class Reachability(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(
        self, settings: Settings | None = None, *, endpoint: str | None = None, chat_model: str | None = None
    ) -> None:
        super().__init__()
        self.chat_model = chat_model  # open the Chat screen on this GGUF at start (`hubtui demo`)
        self._built = asyncio.Event()
        self.settings = settings if settings is not None else load_settings()
        self.endpoint = endpoint
        self.target_name = self.settings.target or MACHINE
        self.output_dir = str(Path(self.settings.output_dir or os.getcwd()).expanduser())
        self.offline = _hub_settings().is_offline()
        self.offline_note = (
            "[b yellow]Offline[/] (HF_HUB_OFFLINE=1): browsing and downloads are off; local models work."
            if self.offline
            else ""
        )

    def on_mount(self) -> None:
        self.call_after_refresh(self._build_other_screens)
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        if self.chat_model:
            self.start_chat(self.chat_model)
        elif not self.offline:
            self.query_one("#search", Input).focus()
            self._probe_hub()

    def compose(self) -> ComposeResult:
        yield Header()
        first = "local" if self.offline else "browse"
        with TabbedContent(id="tabs", initial=first):
            for tab, title, _key, _bid in SCREENS:
                with TabPane(title, id=tab):
                    if tab == first:  # the others are built once the first frame is on the terminal
                        yield PANES[tab]()
        yield Footer()

    async def _build_other_screens(self) -> None:
        for tab, *_ in SCREENS:
            pane = self.query_one(f"TabPane#{tab}", TabPane)
            if not pane.children and self.is_running:
                await pane.mount(PANES[tab]())
        self._built.set()

    @property
    def screens_built(self) -> bool:
        return self._built.is_set()

    def _when_built(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn` now, or as soon as every screen exists (a key pressed during the first frame)."""
        if self._built.is_set():
            fn(*args)
            return

        async def later() -> None:
            await self._built.wait()
            fn(*args)

        self.run_worker(later(), group="when-built")

    # -- reachability -----------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="probe")
    def _probe_hub(self) -> None:
        import urllib.request

        url = _hub_settings().endpoint(self.endpoint)
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
        except urllib.error.HTTPError:
            return  # the hub answered
        except Exception as exc:
            self.post_message(self.Reachability(f"{url} is unreachable ({type(exc).__name__})"))

    def on_hubtui_app_reachability(self, message: Reachability) -> None:
        self.offline_note = f"[b yellow]Offline[/]: {message.error}; local models work."
        self.notify(message.error + ": showing local models.", title="Offline", severity="warning", timeout=8)
        tabs = self.query_one(TabbedContent)
        if tabs.active == "browse" and not self.query_one("#search", Input).value:
            self.action_show_tab("local")
        for pane in self.query(LocalPane):  # not there yet if still waiting to be built: it lists when shown
            pane.reload()

    # -- navigation and cross-screen actions ------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        self._when_built(self._show_tab, tab)

    def _show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        pane = self.query_one(PANES[tab])
        if tab == "browse":
            self.query_one("#search", Input).focus()
        else:
            focusable = [w for w in pane.query("*") if w.focusable]
            if focusable:
                focusable[0].focus()
            elif pane.can_focus:
                pane.focus()

    def enqueue_download(self, repo_id: str, gguf: str | None = None) -> None:
        self._when_built(lambda: self.query_one(DownloadsPane).enqueue(repo_id, gguf))

    def open_convert(self, src: str) -> None:
        self._when_built(self._open_convert, src)

    def _open_convert(self, src: str) -> None:
        self._show_tab("convert")
        self.query_one(ConvertPane).set_source(src)

    def open_convert_for_repo(self, repo_id: str) -> None:
        self._find_snapshot(repo_id)

    @work(thread=True, exit_on_error=False, group="snapshot")
    def _find_snapshot(self, repo_id: str) -> None:
        from hubtui.app.services import snapshot_dir

        snap = snapshot_dir(repo_id)
        if snap is None:
            self.call_from_thread(
                self.notify, f"{repo_id} is not downloaded yet: ctrl+d downloads it.", severity="warning"
            )
        else:
            self.call_from_thread(self.open_convert, str(snap))

    def start_smoke(self, path: str) -> None:
        self._when_built(self._start_smoke, path)

    def _start_smoke(self, path: str) -> None:
        self._show_tab("smoke")
        self.query_one(SmokePane).start(path)

    def start_chat(self, path: str) -> None:
        self._when_built(self._start_chat, path)

    def _start_chat(self, path: str) -> None:
        self._show_tab("chat")
        self.query_one(ChatPane).load(path)

    def local_changed(self) -> None:
        for pane in self.query(LocalPane):
            pane.reload()
        browse = self.query_one(BrowsePane)
        if browse.current:
            browse._load_details(browse.current)

    # -- help and command palette -----------------------------------------------------------------
    def binding_rows(self) -> list[tuple[str, str, str]]:
        rows, seen = [], set()
        bindings = [b.binding for b in self.screen.active_bindings.values()]
        for pane in PANES.values():
            bindings += pane.BINDINGS  # every screen's keys, not only the focused one's
        keymap = getattr(self, "_keymap", {}) or {}
        for binding in bindings:
            if not binding.id or binding.id in seen:
                continue
            seen.add(binding.id)
            rows.append(
                (keymap.get(binding.id, binding.key), binding.description or binding.action, binding.id)
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
        titles = {tab: title for tab, title, *_ in SCREENS}
        for tab, pane_cls in PANES.items():
            for binding in pane_cls.BINDINGS:
                if not binding.id or binding.show is False:
                    continue
                yield SystemCommand(
                    f"{titles[tab]}: {binding.description}",
                    f"{binding.key} on the {tab} screen",
                    lambda t=tab, c=pane_cls, a=binding.action: self._run_pane_action(t, c, a),
                )

    def _run_pane_action(self, tab: str, pane_cls: type, action: str) -> None:
        self._show_tab(tab)
        self.run_action(action, self.query_one(pane_cls))
