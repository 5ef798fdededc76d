"""Local: cached checkpoints and GGUF files; inspect, delete (after confirmation), convert, smoke, chat, bundle."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from hubtui.app.imports import load
from hubtui.app.modals import ConfirmScreen, TextScreen
from hubtui.app.services import LocalModel, human_bytes


class LocalPane(Vertical):
    BINDINGS = [
        Binding("i", "inspect", "Inspect", id="local.inspect"),
        Binding("d", "delete", "Delete", id="local.delete"),
        Binding("c", "convert", "Convert", id="local.convert"),
        Binding("s", "smoke", "Smoke test", id="local.smoke"),
        Binding("t", "chat", "Chat", id="local.chat"),
        Binding("b", "bundle", "Bundle", id="local.bundle"),
        Binding("g", "reload", "Refresh", id="local.refresh"),
    ]

    class Listed(Message):
        def __init__(self, rows: list[LocalModel] | None, notes: list[str], error: str = "") -> None:
            super().__init__()
            self.rows = rows
            self.notes = notes
            self.error = error

    class Done(Message):
        """A background action finished: show `text` as a panel or a notification."""

        def __init__(self, title: str, text: str, *, panel: bool = False, error: bool = False) -> None:
            super().__init__()
            self.title = title
            self.text = text
            self.panel = panel
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[LocalModel] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="local-note")
        table: DataTable[str] = DataTable(cursor_type="row", id="local-table")
        table.add_columns("Kind", "Name", "Size", "Type/ref", "Last used")
        yield table
        yield Static(
            "i inspect · c convert · s smoke · t chat · b bundle · d delete · g refresh", id="local-help"
        )

    listed = False

    def on_show(self) -> None:
        if not self.listed:  # first shown; later, downloads and conversions call reload()
            self.reload()

    def reload(self) -> None:
        self.listed = True
        self._list(Path(self.app.output_dir))

    def action_reload(self) -> None:
        self.reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="local")
    def _list(self, output_dir: Path) -> None:
        from hubtui.app.services import list_local

        try:
            rows, notes = list_local(output_dir)
        except Exception as exc:
            self.post_message(self.Listed(None, [], str(exc)))
            return
        self.post_message(self.Listed(rows, notes))

    def on_local_pane_listed(self, message: Listed) -> None:
        table = self.query_one("#local-table", DataTable)
        table.clear()
        if message.rows is None:
            self.query_one("#local-note", Static).update(f"[red]Cannot list local models: {message.error}[/]")
            return
        self.rows = message.rows
        for i, m in enumerate(self.rows):
            used = dt.datetime.fromtimestamp(m.last_used).strftime("%Y-%m-%d %H:%M") if m.last_used else "-"
            table.add_row(m.kind, m.name, human_bytes(m.size), m.detail, used, key=str(i))
        note = self.app.offline_note + "\n" if self.app.offline_note else ""
        total = sum(m.size for m in self.rows)
        note += (
            f"{len(self.rows)} local models, {human_bytes(total)}; GGUFs are written to {self.app.output_dir}"
        )
        note += "".join(f"\n[yellow]{n}[/]" for n in message.notes)
        self.query_one("#local-note", Static).update(note)

    def selected(self) -> LocalModel | None:
        table = self.query_one("#local-table", DataTable)
        if not table.row_count:
            self.app.notify("No local model selected.", severity="warning")
            return None
        return self.rows[table.cursor_row]

    def _gguf(self) -> LocalModel | None:
        m = self.selected()
        if m is not None and m.kind != "gguf":
            self.app.notify(f"{m.name} is a checkpoint: convert it first (c).", severity="warning")
            return None
        return m

    # -- actions ----------------------------------------------------------------------------------
    def action_inspect(self) -> None:
        m = self._gguf()
        if m is not None:
            self._inspect(m.path)

    @work(thread=True, exit_on_error=False, group="local-action")
    def _inspect(self, path: str) -> None:
        from hubtui.app.services import inspect_text

        try:
            self.post_message(self.Done(f"inspect {Path(path).name}", inspect_text(path), panel=True))
        except Exception as exc:
            self.post_message(self.Done("Inspect failed", str(exc), error=True))

    def action_delete(self) -> None:
        m = self.selected()
        if m is None:
            return
        what = "the cached repo" if m.kind == "checkpoint" else "the file"

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(m)

        self.app.push_screen(
            ConfirmScreen(f"Delete {what} {m.name} ({human_bytes(m.size)})?\nThis cannot be undone."),
            answered,
        )

    @work(thread=True, exit_on_error=False, group="local-action")
    def _delete(self, m: LocalModel) -> None:
        from hubtui.app.services import remove_local

        try:
            freed = remove_local(m)
        except Exception as exc:
            self.post_message(self.Done("Delete failed", str(exc), error=True))
            return
        self.post_message(self.Done("Deleted", f"removed {m.name}: freed {human_bytes(freed)}"))

    def action_convert(self) -> None:
        m = self.selected()
        if m is not None and m.kind == "checkpoint":
            self.app.open_convert(m.path)
        elif m is not None:
            self.app.notify("Pick a checkpoint to convert; this is already a GGUF.", severity="warning")

    def action_smoke(self) -> None:
        m = self._gguf()
        if m is not None:
            self.app.start_smoke(m.path)

    def action_chat(self) -> None:
        m = self._gguf()
        if m is not None:
            self.app.start_chat(m.path)

    def action_bundle(self) -> None:
        m = self._gguf()
        if m is None:
            return
        out = Path(self.app.output_dir) / (Path(m.path).stem + "-bundle")
        self.app.notify(f"Building the field bundle in {out} (smoke test included)…", title="Bundle")
        self._bundle(m.path, out, self.app.target_name)

    @work(thread=True, exit_on_error=False, group="bundle")
    def _bundle(self, path: str, out: Path, target: str) -> None:
        from hubtui.app.services import MACHINE

        load("hubtui.runner.bundle")
        from hubtui.runner.bundle import build_bundle

        try:
            summary: dict[str, Any] = build_bundle(path, out, target=None if target == MACHINE else target)
        except Exception as exc:
            self.post_message(self.Done("Bundle failed", str(exc), error=True))
            return
        self.post_message(self.Done("Bundle ready", f"{out}: verdict {summary.get('verdict', '?')}"))

    def on_local_pane_done(self, message: Done) -> None:
        if message.panel:
            self.app.push_screen(TextScreen(message.title, message.text))
            return
        self.app.notify(
            message.text, title=message.title, severity="error" if message.error else "information"
        )
        if not message.error:
            self.reload()
