"""The hubtui Textual application: one tab per task, every action a rebindable binding with one key.

Screens read the typed `Session` and ask for everything else with the messages of `hubtui.app.messages`;
running work reports `JobUpdate`s, shown on the progress line above the footer and as a mark on the tab.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast, overload

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Header, Input, TabbedContent, TabPane

from hubtui.app import messages as msg
from hubtui.app.config import Settings, load_settings
from hubtui.app.footer import KeyFooter
from hubtui.app.help_screen import HelpScreen, Row
from hubtui.app.jobs import JobBar
from hubtui.app.local_pane import LocalPane
from hubtui.app.logs import ReportsWorkerErrors, debugging, start_debug_log, stop_debug_log
from hubtui.app.session import Session
from hubtui.app.target import CUSTOM, TargetChoice
from hubtui.hub import settings as hub_settings

if TYPE_CHECKING:
    from textual.widget import Widget

    from hubtui.app.browse_pane import BrowsePane
    from hubtui.app.chat_pane import ChatPane
    from hubtui.app.convert_pane import ConvertPane
    from hubtui.app.downloads_pane import DownloadsPane
    from hubtui.app.hardware_pane import HardwarePane
    from hubtui.app.smoke_pane import SmokePane

# (tab id, title, key, binding id)
SCREENS: tuple[tuple[str, str, str, str], ...] = (
    ("browse", "Browse", "f2", "screen.browse"),
    ("downloads", "Downloads", "f3", "screen.downloads"),
    ("local", "Local", "f4", "screen.local"),
    ("convert", "Convert", "f5", "screen.convert"),
    ("smoke", "Smoke", "f6", "screen.smoke"),
    ("chat", "Chat", "f7", "screen.chat"),
    ("hardware", "Hardware", "f8", "screen.hardware"),
)


class _Panes(Mapping[str, type["Widget"]]):
    """Tab id -> its screen's class, each screen's module imported when first asked for: only the first
    screen's is needed before the first frame (the others, with Markdown, Select and gguf-py's type list,
    are built right after it)."""

    @overload
    def __getitem__(self, tab: Literal["browse"]) -> type[BrowsePane]: ...
    @overload
    def __getitem__(self, tab: Literal["downloads"]) -> type[DownloadsPane]: ...
    @overload
    def __getitem__(self, tab: Literal["local"]) -> type[LocalPane]: ...
    @overload
    def __getitem__(self, tab: Literal["convert"]) -> type[ConvertPane]: ...
    @overload
    def __getitem__(self, tab: Literal["smoke"]) -> type[SmokePane]: ...
    @overload
    def __getitem__(self, tab: Literal["chat"]) -> type[ChatPane]: ...
    @overload
    def __getitem__(self, tab: Literal["hardware"]) -> type[HardwarePane]: ...
    @overload
    def __getitem__(self, tab: str) -> type[Widget]: ...
    def __getitem__(self, tab: str) -> type[Widget]:
        if tab == "browse":
            from hubtui.app.browse_pane import BrowsePane

            return BrowsePane
        if tab == "downloads":
            from hubtui.app.downloads_pane import DownloadsPane

            return DownloadsPane
        if tab == "local":
            return LocalPane
        if tab == "convert":
            from hubtui.app.convert_pane import ConvertPane

            return ConvertPane
        if tab == "smoke":
            from hubtui.app.smoke_pane import SmokePane

            return SmokePane
        if tab == "chat":
            from hubtui.app.chat_pane import ChatPane

            return ChatPane
        if tab == "hardware":
            from hubtui.app.hardware_pane import HardwarePane

            return HardwarePane
        raise KeyError(tab)

    def __iter__(self) -> Iterator[str]:
        return (tab for tab, *_ in SCREENS)

    def __len__(self) -> int:
        return len(SCREENS)


PANES = _Panes()
# Work that must end before the process does: a conversion removes its .part file, downloads close their
# partial files, llama.cpp stops generating or loading, the smoke test's child is killed.
CLEANUP_GROUPS = ("convert", "downloads", "chat", "chat-load", "smoke", "bundle")
QUIT_WAIT_S = 5.0


class DaemonThreads(concurrent.futures.ThreadPoolExecutor):
    """The event loop's executor for thread workers: one daemon thread per job, never joined at exit.

    A search, a fit table or a listing still running when the user quits must not hold the process (the
    default executor joins its threads); work that has to clean up is cancelled and awaited by `quit`."""

    def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

        threading.Thread(target=run, daemon=True, name="hubtui-worker").start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


def tab_label(title: str, key: str, busy: bool = False) -> str:
    return f"[dim]{key.upper()}[/] {title}" + (" [b $warning]●[/]" if busy else "")


class HubtuiApp(ReportsWorkerErrors, App[None]):
    """Keyboard-driven front end over the same library code the CLI uses."""

    TITLE = "hubtui"
    CSS_PATH = Path(__file__).with_name("hubtui.tcss")
    BINDINGS = [
        Binding("f1", "help", "Help", id="app.help", priority=True),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("slash", "search", "Search box (outside a text box)", id="app.search", show=False),
        *(
            Binding(key, f"show_tab('{tab}')", title, id=bid, priority=True, show=False)
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
        self._build_scheduled = False
        settings = settings if settings is not None else load_settings()
        offline = hub_settings.is_offline()
        self.session = Session(
            settings=settings,
            endpoint=endpoint,
            output_dir=str(Path(settings.output_dir or os.getcwd()).expanduser()),
            target=TargetChoice.from_settings(settings),
            offline=offline,
            offline_note="[b yellow]Offline[/] (HF_HUB_OFFLINE=1): browsing and downloads are off; local models work."
            if offline
            else "",
        )
        self.jobs: dict[str, msg.JobStatus] = {}
        self.exit_notes: list[str] = []  # printed by the CLI once the terminal is back
        self.debug_log: Path | None = None

    # -- start-up ---------------------------------------------------------------------------------
    def on_load(self) -> None:
        asyncio.get_running_loop().set_default_executor(DaemonThreads())
        if debugging():
            from hubtui.app.services import state_dir

            self.debug_log = start_debug_log(state_dir() / "debug.log")

    def on_mount(self) -> None:
        self._exit_on_termination()
        self.query_one("ContentTabs").can_focus = False  # F2-F8 switch screens; focus stays on the work
        self.sub_title = f"target: {self.session.target.label}"
        if self.session.offline and not self.chat_model:
            # the first screen is usable once Local lists the cache: the listing starts now, beside the first
            # frame, and building the other six screens (about 0.3 s on the event loop) waits for it, or for
            # a second at most
            self.query_one(LocalPane).prefetch()
            self.set_timer(1.0, self._build_soon)
        else:
            self._build_soon()
        if self.session.settings.keymap:
            self.set_keymap(self.session.settings.keymap)
        if self.session.settings.theme in self.available_themes:
            self.theme = self.session.settings.theme
        if self.chat_model:
            self.start_chat(self.chat_model)
        elif not self.session.offline:
            self.query_one("#search", Input).focus()
            self.call_after_refresh(self._probe_hub)  # its imports (urllib, ssl) wait for the first frame
        else:
            self.call_after_refresh(self._focus_default, "local")

    def on_unmount(self) -> None:
        stop_debug_log()

    def _exit_on_termination(self) -> None:
        """SIGTERM/SIGHUP close the app like ctrl+q (workers cancelled, partial outputs removed, terminal
        restored); `hubtui` then exits 143/129. On the event loop, since a Python-level handler's exception
        would escape from inside it."""
        from hubtui.signals import HANDLED

        loop = asyncio.get_running_loop()
        for sig in HANDLED:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.exit, None, 128 + int(sig))

    def compose(self) -> ComposeResult:
        yield Header()
        first = "local" if self.session.offline else "browse"
        with TabbedContent(id="tabs", initial=first):
            for tab, title, key, _bid in SCREENS:
                with TabPane(tab_label(title, key), id=tab):
                    if tab == first:  # the others are built once the first frame is on the terminal
                        yield PANES[tab]()
        yield JobBar()
        yield KeyFooter(compact=True, show_command_palette=False)

    def _build_soon(self) -> None:
        if not self._build_scheduled:
            self._build_scheduled = True
            self.call_after_refresh(self._build_other_screens)

    def on_local_pane_listed(self, _message: LocalPane.Listed) -> None:
        self._build_soon()

    async def _build_other_screens(self) -> None:
        for tab, *_ in SCREENS:
            pane = self.query_one(f"TabPane#{tab}", TabPane)
            if not pane.children and self.is_running:
                await pane.mount(PANES[tab]())
        self._built.set()
        if self.is_running:
            self.query_one(LocalPane).prefetch()  # the first visit to Local then shows its table at once

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
            if self.is_running and self.query(LocalPane):  # not when the app ended before its screens
                fn(*args)

        self.run_worker(later(), group="when-built")

    # -- reachability -----------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="probe")
    def _probe_hub(self) -> None:
        import urllib.request

        url = hub_settings.endpoint(self.session.endpoint)
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
        except urllib.error.HTTPError:
            return  # the hub answered
        except Exception as exc:
            self.post_message(self.Reachability(f"{url} is unreachable ({type(exc).__name__})"))

    def on_hubtui_app_reachability(self, message: Reachability) -> None:
        self.session.offline_note = f"[b yellow]Offline[/]: {message.error}; local models work."
        self.notify(message.error + ": showing local models.", title="Offline", severity="warning", timeout=8)
        self._when_built(self._offline_switch)
        for pane in self.query(LocalPane):  # not there yet if still waiting to be built: it lists when shown
            pane.reload()

    def _offline_switch(self) -> None:
        """To Local, unless the user has gone somewhere or typed a search in the meantime."""
        if self.query_one(TabbedContent).active == "browse" and not self.query_one("#search", Input).value:
            self._show_tab("local")

    # -- navigation -------------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        self._when_built(self._show_tab, tab)

    def _show_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = tab
        # shown now, not once the tab's message lands, so the focus can go there at once
        tabs.query_one(ContentSwitcher).current = tab
        self._focus_default(tab)

    def _focus_default(self, tab: str) -> None:
        """Browse's search box, Chat's message box, else the screen's first focusable widget.

        Only for the screen shown: focusing a widget of another one would switch back to it (TabbedContent
        follows the focus), e.g. a key pressed during start-up against the first screen's own focus."""
        if self.query_one(TabbedContent).active != tab:
            return
        pane = self.query_one(PANES[tab])
        if self.focused is not None and pane in self.focused.ancestors_with_self:
            return
        target: Widget
        if tab == "browse":
            target = self.query_one("#search", Input)
        elif tab == "chat":
            target = self.query_one("#chat-input")
        else:
            target = next((w for w in pane.query("*") if w.focusable), pane)
        # now (Widget.focus() would land later, perhaps after a switch), and on its own screen: a help or
        # other dialog opened meanwhile keeps its focus, the screen below gets its own for when it closes
        target.screen.set_focus(target)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Tabs switch by messages: the last one to land decides where the focus is."""
        tab = event.pane.id or ""
        if tab in PANES and tab == self.query_one(TabbedContent).active and self.screens_built:
            self._focus_default(tab)

    def action_search(self) -> None:
        """`/` (outside a text box): the search box on Browse."""
        self.action_show_tab("browse")

    # -- requests from the screens (messages) and the same as typed methods ------------------------
    def on_enqueue_download(self, message: msg.EnqueueDownload) -> None:
        self.enqueue_download(message.repo_id, message.gguf)

    def enqueue_download(self, repo_id: str, gguf: str | None = None) -> None:
        self._when_built(lambda: self.query_one(PANES["downloads"]).enqueue(repo_id, gguf))

    def on_open_convert(self, message: msg.OpenConvert) -> None:
        self.open_convert(message.src)

    def open_convert(self, src: str) -> None:
        self._when_built(self._open_convert, src)

    def _open_convert(self, src: str) -> None:
        self._show_tab("convert")
        self.query_one(PANES["convert"]).set_source(src)

    def on_convert_repo(self, message: msg.ConvertRepo) -> None:
        self._find_snapshot(message.repo_id)

    @work(thread=True, exit_on_error=False, group="snapshot")
    def _find_snapshot(self, repo_id: str) -> None:
        from hubtui.hub.snapshots import find_snapshot

        snap = find_snapshot(repo_id)
        if snap is None:
            self.call_from_thread(
                self.notify, f"{repo_id} is not downloaded yet: ctrl+d downloads it.", severity="warning"
            )
            return
        if snap.note:  # the same note `hubtui convert OWNER/NAME` prints
            self.call_from_thread(self.notify, snap.note, severity="warning")
        self.call_from_thread(self.open_convert, str(snap.path))

    def on_start_smoke(self, message: msg.StartSmoke) -> None:
        self.start_smoke(message.path)

    def start_smoke(self, path: str) -> None:
        self._when_built(self._start_smoke, path)

    def _start_smoke(self, path: str) -> None:
        self._show_tab("smoke")
        self.query_one(PANES["smoke"]).start(path)

    def on_start_chat(self, message: msg.StartChat) -> None:
        self.start_chat(message.path)

    def start_chat(self, path: str) -> None:
        self._when_built(self._start_chat, path)

    def _start_chat(self, path: str) -> None:
        self._show_tab("chat")
        self.query_one(PANES["chat"]).load(path)

    def on_attach_adapter(self, message: msg.AttachAdapter) -> None:
        self._when_built(self._attach_adapter, message.path)

    def _attach_adapter(self, path: str) -> None:
        self._show_tab("chat")
        self.query_one(PANES["chat"]).action_adapter(path)

    def on_local_changed(self, _message: msg.LocalChanged) -> None:
        for pane in self.query(LocalPane):
            pane.reload()
        for browse in self.query("BrowsePane"):  # by name: a screen not built yet needs no telling
            cast("BrowsePane", browse).local_changed()

    # -- the target -------------------------------------------------------------------------------
    def on_choose_target(self, message: msg.ChooseTarget) -> None:
        self.set_target(message.choice)

    def set_target(self, choice: TargetChoice, *, save: bool = True) -> None:
        """The machine every fit table, badge and recommendation sizes for; kept in config.toml."""
        if choice == self.session.target:
            return
        self.session.target = choice
        self.sub_title = f"target: {choice.label}"
        note = ""
        if save:
            from hubtui.app.config import ConfigError, config_path, save_target

            try:
                save_target(choice.name, choice.ram, choice.vram, choice.gpus)
                note = f" (saved in {config_path()})"
            except ConfigError as exc:
                note = f"; not saved: {exc}"
        self.notify(f"Sizing for {choice.label}{note}.", title="Target")
        for pane_cls in ("BrowsePane", "ConvertPane", "HardwarePane"):  # those built so far
            for pane in self.query(pane_cls):
                cast("BrowsePane | ConvertPane | HardwarePane", pane).target_changed()

    def on_imatrix_changed(self, _message: msg.ImatrixChanged) -> None:
        """Browse's fit table and badges follow the Convert screen's imatrix choice (Convert re-plans itself)."""
        for pane in self.query("BrowsePane"):
            cast("BrowsePane", pane).target_changed()

    def on_pick_custom_target(self, _message: msg.PickCustomTarget) -> None:
        self.pick_custom_target()

    def pick_custom_target(self) -> None:
        from hubtui.app.modals import TargetScreen

        def chosen(choice: TargetChoice | None) -> None:
            if choice is not None:
                self.set_target(choice)

        self.push_screen(TargetScreen(self.session.target), chosen)

    # -- running work -----------------------------------------------------------------------------
    def on_job_update(self, message: msg.JobUpdate) -> None:
        self.jobs[message.status.key] = message.status
        self._show_jobs()

    def on_job_done(self, message: msg.JobDone) -> None:
        if self.jobs.pop(message.key, None) is not None:
            self._show_jobs()

    def _show_jobs(self) -> None:
        try:
            bar, tabs = self.query_one(JobBar), self.query_one(TabbedContent)
        except NoMatches:
            # Only while the app is torn down (quit, or a test leaving run_test, which does not go through
            # exit()): a job's last message arrives after the main screen is gone. self.jobs stays right.
            return
        bar.show_jobs(list(self.jobs.values()))
        busy = {j.tab for j in self.jobs.values()}
        for tab, title, key, _bid in SCREENS:
            label = tab_label(title, key, tab in busy)
            tab_widget = tabs.get_tab(tab)
            if str(tab_widget.label.markup) != label:
                tab_widget.label = label

    async def action_quit(self) -> None:
        """Quit; with work running, say first what becomes of it."""
        running = [j for j in self.jobs.values() if j.on_quit]
        if not running:
            await self._quit([])
            return
        from hubtui.app.modals import ConfirmScreen

        lines = "\n".join(f"• {j.title}: {j.on_quit}" for j in running)

        async def answered(yes: bool | None) -> None:
            if yes:
                await self._quit(running)

        self.push_screen(ConfirmScreen(f"Quit hubtui?\n{lines}", yes="Quit", no="Keep working"), answered)

    async def _quit(self, running: list[msg.JobStatus]) -> None:
        self.exit_notes = [f"{j.title}: {j.on_quit}" for j in running]
        for pane_cls in ("DownloadsPane", "ConvertPane", "SmokePane", "ChatPane", "LocalPane"):
            for pane in self.query(pane_cls):
                cast("DownloadsPane | ConvertPane | SmokePane | ChatPane | LocalPane", pane).stop_for_quit()
        cleanup = [w for w in self.workers if w.group in CLEANUP_GROUPS and not w.is_finished]
        if cleanup:
            try:
                await asyncio.wait_for(self.workers.wait_for_complete(cleanup), QUIT_WAIT_S)
            except TimeoutError:
                self.exit_notes.append("some work had not stopped after 5 s and was left to the system")
        self.exit()

    # -- help and command palette -----------------------------------------------------------------
    def _key(self, binding: Binding) -> str:
        keymap = getattr(self, "_keymap", {}) or {}
        return keymap.get(binding.id, binding.key) if binding.id else binding.key

    def help_groups(self) -> list[tuple[str, list[Row]]]:
        """Every key, grouped: the app's first, then each screen's in tab order, then the chat's commands."""
        everywhere: list[Row] = [
            (self._key(b), b.description, b.id or "") for b in self.BINDINGS if isinstance(b, Binding)
        ]
        everywhere.append(
            ("ctrl+p", "Command palette: targets, screens, every action", "app.command_palette")
        )
        groups = [("Everywhere", everywhere)]
        for tab, title, *_ in SCREENS:
            rows = [
                (self._key(b), b.description, b.id or "")
                for b in PANES[tab].BINDINGS
                if isinstance(b, Binding) and b.id
            ]
            if rows:
                groups.append((title, rows))
        groups.append(("Chat commands (type them in the message box)", PANES["chat"].command_rows()))
        return groups

    def binding_rows(self) -> list[Row]:
        return [row for _, rows in self.help_groups() for row in rows]

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_groups()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab, title, _key, _bid in SCREENS:
            yield SystemCommand(
                f"Go to {title}", f"Show the {title} screen", lambda t=tab: self.action_show_tab(t)
            )
        yield SystemCommand("Help", "List every key binding, by screen", self.action_help)
        yield from self._target_commands()
        titles = {tab: title for tab, title, *_ in SCREENS}
        for tab, pane_cls in PANES.items():
            for binding in pane_cls.BINDINGS:
                if not isinstance(binding, Binding) or not binding.id or binding.show is False:
                    continue
                yield SystemCommand(
                    f"{titles[tab]}: {binding.description}",
                    f"{self._key(binding)} on the {titles[tab]} screen",
                    lambda t=tab, c=pane_cls, a=binding.action: self._run_pane_action(t, c, a),
                )

    def _target_commands(self) -> Iterable[SystemCommand]:
        from hubtui.app.target import profile_choices

        current = self.session.target
        yield SystemCommand(
            "Target: this machine" + (" (current)" if current.name == "" else ""),
            "Size for the RAM and GPUs free here now",
            lambda: self.set_target(TargetChoice()),
        )
        for name, description in profile_choices():
            yield SystemCommand(
                f"Target: {name}" + (" (current)" if current.name == name else ""),
                description,
                lambda n=name: self.set_target(TargetChoice(n)),
            )
        yield SystemCommand(
            "Target: custom RAM/VRAM…" + (f" (current: {current.label})" if current.name == CUSTOM else ""),
            "Size for a machine you describe: RAM, GPU memory, number of GPUs",
            self.pick_custom_target,
        )

    async def _run_pane_action(self, tab: str, pane_cls: type, action: str) -> None:
        """A palette command: the palette awaits it, so the pane's action has run when it returns."""
        self._show_tab(tab)
        await self.run_action(action, self.query_one(pane_cls))


def run_app(chat_model: str | None = None) -> tuple[list[str], int | None]:
    """Run the app on this terminal; return what the user should read once it is back (work stopped by
    quitting, where the debug log is), for the CLI to print, and the app's return code (128 + the signal
    number when a SIGTERM/SIGHUP closed it)."""
    app = HubtuiApp(chat_model=chat_model)
    app.run()
    notes = list(app.exit_notes)
    if app.debug_log is not None and app.debug_log.exists() and app.debug_log.stat().st_size:
        notes.append(f"debug log (tracebacks of background work): {app.debug_log}")
    return notes, app.return_code
