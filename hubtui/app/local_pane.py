"""Local: cached checkpoints, GGUF files (the output folder's and `hubtui demo`'s too) and LoRA adapter GGUFs;
inspect, delete (after confirmation), convert, smoke-test, chat (an adapter: attach it in Chat), bundle."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import (
    AttachAdapter,
    JobDone,
    JobStatus,
    JobUpdate,
    LocalChanged,
    OpenConvert,
    StartChat,
    StartSmoke,
)
from hubtui.app.modals import ConfirmScreen, TextScreen
from hubtui.app.services import LocalModel
from hubtui.app.session import UsesSession
from quant.units import format_bytes, plural

BUNDLE_STAGES = {
    "smoke": "smoke test",
    "header": "smoke test: reading the header",
    "load": "smoke test: loading the model in llama.cpp",
    "tokenizer": "smoke test: tokenizer round trip",
    "generate": "smoke test: a greedy reply",
    "perplexity": "smoke test: perplexity",
    "copy": "copying the GGUF",
    "chat": "writing the chat app",
    "checksums": "checksums",
}


class LocalPane(UsesSession, ReportsWorkerErrors, Vertical):
    BINDINGS = [
        Binding("ctrl+e", "inspect", "Inspect", id="local.inspect", priority=True),
        Binding("ctrl+r", "convert", "Convert", id="local.convert", priority=True),
        Binding("ctrl+t", "smoke", "Smoke test", id="local.smoke", priority=True),
        Binding("ctrl+y", "chat", "Chat", id="local.chat", priority=True),
        Binding("ctrl+b", "bundle", "Bundle", id="local.bundle", priority=True),
        Binding("delete", "delete", "Delete", id="local.delete"),
    ]

    class Listed(Message):
        def __init__(self, rows: list[LocalModel] | None, notes: list[str], error: str = "") -> None:
            super().__init__()
            self.rows = rows
            self.notes = notes
            self.error = error

    class Done(Message):
        """A background action finished: show `text` as a notification."""

        def __init__(self, title: str, text: str, *, error: bool = False, changed: bool = False) -> None:
            super().__init__()
            self.title = title
            self.text = text
            self.error = error
            self.changed = changed  # files appeared or went away

    class Inspected(Message):
        def __init__(self, screen: TextScreen, text: str) -> None:
            super().__init__()
            self.screen = screen
            self.text = text

    class BundleStage(Message):
        def __init__(self, stage: str, text: str) -> None:
            super().__init__()
            self.stage = stage
            self.text = text

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[LocalModel] = []
        self.listed = False
        self._listing = False
        self._prefetched: LocalPane.Listed | None = None
        self.bundle_cancel: threading.Event | None = None
        self.bundle_name = ""
        self.bundle_started = 0.0

    def compose(self) -> ComposeResult:
        yield Static("", id="local-note")
        table: DataTable[str] = DataTable(cursor_type="row", id="local-table")
        table.add_columns("Kind", "Name", "Size", "Type/ref", "Last used")
        yield table

    # -- listing ----------------------------------------------------------------------------------
    def prefetch(self) -> None:
        """List in the background right after start-up, so the first visit shows the table at once."""
        if not self.listed and not self._listing:
            self._listing = True
            self._list(Path(self.session.output_dir))

    def on_show(self) -> None:
        if not self.listed:  # first shown; later, downloads and conversions post LocalChanged
            self.listed = True
            if self._prefetched is not None:
                self._show_listing(self._prefetched)
            elif not self._listing:
                self.reload()
            else:
                self._loading()

    def _loading(self) -> None:
        """Said in the note: a loading overlay on the table would take the keyboard focus away from it."""
        if not self.rows:
            note = self.session.offline_note + "\n" if self.session.offline_note else ""
            self.query_one("#local-note", Static).update(note + "Listing local models…")

    def reload(self) -> None:
        self.listed = True
        self._loading()
        self._listing = True
        self._list(Path(self.session.output_dir))

    @work(thread=True, exclusive=True, exit_on_error=False, group="local")
    def _list(self, output_dir: Path) -> None:
        from hubtui.app.services import list_local

        try:
            rows, notes = list_local(output_dir)
        except Exception as exc:
            self.post_message(self.Listed(None, [], worker_failed("listing local models", exc)))
            return
        self.post_message(self.Listed(rows, notes))

    def on_local_pane_listed(self, message: Listed) -> None:
        self._listing = False
        if not self.listed:  # prefetched before the first visit: shown then
            self._prefetched = message
            return
        self._show_listing(message)

    def _show_listing(self, message: Listed) -> None:
        table = self.query_one("#local-table", DataTable)
        table.clear()
        if message.rows is None:
            self.query_one("#local-note", Static).update(
                f"[red]Cannot list local models: {escape(message.error)}[/]"
            )
            return
        self.rows = message.rows
        for i, m in enumerate(self.rows):
            used = dt.datetime.fromtimestamp(m.last_used).strftime("%Y-%m-%d %H:%M") if m.last_used else "-"
            table.add_row(m.kind, m.name, format_bytes(m.size), m.detail, used, key=str(i))
        note = self.session.offline_note + "\n" if self.session.offline_note else ""
        total = sum(m.size for m in self.rows)
        note += (
            f"{plural(len(self.rows), 'local model')}, {format_bytes(total)}; "
            f"GGUFs are written to {escape(self.session.output_dir)}"
        )
        if not self.rows:
            note += "\nNothing here yet: download a checkpoint on Browse (F2), or run `hubtui demo`."
        note += "".join(f"\n[yellow]{escape(n)}[/]" for n in message.notes)
        self.query_one("#local-note", Static).update(note)

    def selected(self) -> LocalModel | None:
        table = self.query_one("#local-table", DataTable)
        if not table.row_count:
            self.app.notify("No local model selected.", severity="warning")
            return None
        return self.rows[table.cursor_row]

    def _gguf(self, adapter_ok: bool = False) -> LocalModel | None:
        """The selected GGUF model (or adapter, where `adapter_ok`); a warning saying why not otherwise."""
        m = self.selected()
        if m is not None and m.kind == "checkpoint":
            self.app.notify(f"{m.name} is a checkpoint: convert it first (ctrl+r).", severity="warning")
            return None
        if m is not None and m.kind == "adapter" and not adapter_ok:
            self._adapter_warning(m)
            return None
        return m

    def _adapter_warning(self, m: LocalModel) -> None:
        self.app.notify(
            f"{m.name} is a LoRA adapter ({m.detail}), not a model: it runs on top of its base. "
            "Attach it in Chat (ctrl+y here, or ctrl+f on Chat).",
            severity="warning",
        )

    # -- actions ----------------------------------------------------------------------------------
    def action_inspect(self) -> None:
        """The panel opens at once; the header walk fills it (remembered while the file is unchanged)."""
        m = self._gguf(adapter_ok=True)
        if m is not None:
            screen = TextScreen(f"inspect {Path(m.path).name}")
            self.app.push_screen(screen)
            self._inspect(screen, m.path)

    @work(thread=True, exit_on_error=False, group="local-inspect")
    def _inspect(self, screen: TextScreen, path: str) -> None:
        from hubtui.app.services import inspect_text

        try:
            text = inspect_text(path)
        except Exception as exc:
            text = f"Inspect failed: {worker_failed(f'inspecting {path}', exc)}"
        self.post_message(self.Inspected(screen, text))

    async def on_local_pane_inspected(self, message: Inspected) -> None:
        if message.screen.is_attached:
            await message.screen.show_text(message.text)

    def action_delete(self) -> None:
        m = self.selected()
        if m is None:
            return
        what = (
            "the cached repo"
            if m.remove_target == m.repo_id
            else ("the folder" if m.kind == "checkpoint" else "the file")
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(m)

        self.app.push_screen(
            ConfirmScreen(f"Delete {what} {m.name} ({format_bytes(m.size)})?\nThis cannot be undone."),
            answered,
        )

    @work(thread=True, exit_on_error=False, group="local-delete")
    def _delete(self, m: LocalModel) -> None:
        from hubtui.app.services import remove_local

        try:
            freed = remove_local(m)
        except Exception as exc:
            self.post_message(
                self.Done("Delete failed", worker_failed(f"deleting {m.name}", exc), error=True)
            )
            return
        self.post_message(
            self.Done("Deleted", f"removed {m.name}: freed {format_bytes(freed)}", changed=True)
        )

    def action_convert(self) -> None:
        m = self.selected()
        if m is not None and m.kind == "checkpoint":
            self.post_message(OpenConvert(m.path))
        elif m is not None and m.kind == "adapter":
            self._adapter_warning(m)
        elif m is not None:
            self.app.notify("Pick a checkpoint to convert; this is already a GGUF.", severity="warning")

    def action_smoke(self) -> None:
        m = self._gguf()
        if m is not None:
            self.post_message(StartSmoke(m.path))

    def action_chat(self) -> None:
        """A model opens in Chat; an adapter is offered to Chat's adapter picker, for the model there."""
        m = self._gguf(adapter_ok=True)
        if m is not None and m.kind == "adapter":
            self.post_message(AttachAdapter(m.path))
        elif m is not None:
            self.post_message(StartChat(m.path))

    def action_bundle(self) -> None:
        m = self._gguf()
        if m is None:
            return
        if self.bundle_cancel is not None:
            self.app.notify(f"A bundle of {self.bundle_name} is being built.", severity="warning")
            return
        out = Path(self.session.output_dir) / (Path(m.path).stem + "-bundle")
        self.bundle_cancel = threading.Event()
        self.bundle_name = Path(m.path).name
        self.bundle_started = time.monotonic()
        self._bundle_stage("start", f"building in {out}")
        self._bundle(m.path, out, self.bundle_cancel)

    @work(thread=True, exit_on_error=False, group="bundle")
    def _bundle(self, path: str, out: Path, cancel: threading.Event) -> None:
        from hubtui.runner.bundle import build_bundle

        try:
            target: Any = self.session.target
            summary: dict[str, Any] = build_bundle(
                path,
                out,
                target=target.profile or (target.resolve() if target.name else None),
                progress=lambda stage, text: self.post_message(self.BundleStage(stage, text)),
                cancel=cancel,
            )
        except Exception as exc:
            cancelled = cancel.is_set()
            text = "cancelled; nothing left behind" if cancelled else worker_failed("bundle", exc)
            self.post_message(
                self.Done("Bundle cancelled" if cancelled else "Bundle failed", text, error=not cancelled)
            )
            return
        self.post_message(
            self.Done(
                "Bundle ready", f"{out}: smoke test verdict {summary.get('verdict', '?')}", changed=True
            )
        )

    def on_local_pane_bundle_stage(self, message: BundleStage) -> None:
        self._bundle_stage(message.stage, message.text)

    def _bundle_stage(self, stage: str, text: str) -> None:
        if self.bundle_cancel is None:
            return
        doing = BUNDLE_STAGES.get(stage, text)
        elapsed = time.monotonic() - self.bundle_started
        self.post_message(
            JobUpdate(
                JobStatus(
                    "bundle",
                    "local",
                    f"Bundling {self.bundle_name}",
                    None,
                    f"{doing} · {elapsed:.0f} s",
                    "is cancelled; its unfinished folder is removed",
                )
            )
        )

    def on_local_pane_done(self, message: Done) -> None:
        if message.title.startswith("Bundle"):
            self.bundle_cancel = None
            self.post_message(JobDone("bundle"))
        self.app.notify(
            message.text, title=message.title, severity="error" if message.error else "information"
        )
        if message.changed:
            self.post_message(LocalChanged())

    def stop_for_quit(self) -> None:
        if self.bundle_cancel is not None:
            self.bundle_cancel.set()
