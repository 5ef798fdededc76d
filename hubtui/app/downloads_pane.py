"""Downloads: a queue of hub downloads that run in thread workers, survive leaving the screen and resume
after a restart (the queue is saved on disk; the hub client resumes from the partial files)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, ProgressBar, Static

from hubtui.app.imports import load
from hubtui.app.services import QueuedDownload, human_bytes, load_queue, save_queue, state_dir

ACTIVE = ("queued", "running")


@dataclass
class Job:
    item: QueuedDownload
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_as: str = "paused"  # what a cancelled run becomes: paused or cancelled
    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float | None = None
    files: str = "-"
    current: str = ""
    result_path: str = ""
    per_file: dict[str, Any] = field(default_factory=dict)  # name -> the latest FileStatus


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def _bar(done: int, total: int, width: int = 12) -> str:
    filled = round(width * done / total) if total else width
    return "█" * filled + "░" * (width - filled) + f" {100 * done / total if total else 100:3.0f}%"


class DownloadsPane(Vertical):
    BINDINGS = [
        Binding("p", "pause", "Pause", id="downloads.pause"),
        Binding("r", "resume", "Resume/retry", id="downloads.resume"),
        Binding("x", "cancel", "Cancel", id="downloads.cancel"),
        Binding("delete", "forget", "Remove from list", id="downloads.forget"),
    ]

    class Progress(Message):
        def __init__(self, key: str, progress: Any) -> None:
            super().__init__()
            self.key = key
            self.progress = progress

    class Finished(Message):
        def __init__(self, key: str, state: str, error: str = "", path: str = "", note: str = "") -> None:
            super().__init__()
            self.note = note
            self.key = key
            self.state = state
            self.error = error
            self.path = path

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, Job] = {}
        self.queue_file = state_dir() / "downloads.json"

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(cursor_type="row", id="dl-table")
        table.add_columns("Repo", "State", "Progress", "Rate", "ETA", "Files", "Now")
        yield table
        yield Static("Total", id="dl-total-label")
        yield ProgressBar(total=100, show_eta=False, id="dl-total")
        yield Static("", id="dl-detail")
        yield Static("p pause · r resume/retry · x cancel · Del forget", id="dl-help")

    def on_mount(self) -> None:
        for item in load_queue(self.queue_file):
            if item.state in ("running", "queued"):
                item.state = "queued"  # interrupted by a restart: resume from the partial files
            self.jobs[item.key] = Job(item)
            if item.state == "queued":
                self._start(self.jobs[item.key])
        self.refresh_table()

    def on_unmount(self) -> None:
        """Quitting stops running transfers but keeps them queued: the next start resumes them."""
        self._save()
        for job in self.jobs.values():
            if job.item.state == "running":
                job.cancel.set()

    # -- queue ------------------------------------------------------------------------------------
    def enqueue(self, repo_id: str, gguf: str | None = None) -> None:
        item = QueuedDownload(repo_id, gguf)
        job = self.jobs.get(item.key)
        if job is not None and job.item.state in ACTIVE:
            self.app.notify(f"{item.key} is already downloading.")
            return
        job = Job(item)
        self.jobs[item.key] = job
        self._start(job)
        self.app.notify(f"Downloading {item.key} (F3 shows progress).", title="Download queued")

    def _start(self, job: Job) -> None:
        job.cancel = threading.Event()
        job.item.state = "running"
        job.item.error = ""
        self._save()
        self.refresh_table()
        self._run(job.item.key, job.item.repo_id, job.item.gguf, job.cancel)

    def _save(self) -> None:
        try:
            save_queue(self.queue_file, [j.item for j in self.jobs.values()])
        except OSError as exc:
            self.app.notify(f"cannot save the download queue: {exc}", severity="warning")

    @work(thread=True, exit_on_error=False, group="downloads")
    def _run(self, key: str, repo_id: str, gguf: str | None, cancel: threading.Event) -> None:
        load("hubtui.hub")
        from hubtui.hub import download

        load("hubtui.hub.errors")
        from hubtui.hub.errors import DownloadCancelledError

        settings = self.app.settings
        try:
            result = download(
                repo_id,
                gguf=gguf,
                local_dir=settings.download_dir or None,
                endpoint=self.app.endpoint,
                progress=lambda p: self.post_message(self.Progress(key, p)),
                cancel=cancel,
            )
        except DownloadCancelledError:
            self.post_message(self.Finished(key, "stopped"))
            return
        except Exception as exc:
            self.post_message(self.Finished(key, "failed", str(exc)))
            return
        resumed = [f for f in result.files if f.resumed_from]
        note = f"resumed {len(resumed)} file(s) from partial downloads" if resumed else ""
        self.post_message(self.Finished(key, "done", path=str(result.root), note=note))

    def on_downloads_pane_progress(self, message: Progress) -> None:
        job = self.jobs.get(message.key)
        if job is None or job.item.state != "running":
            return
        p = message.progress
        job.done, job.total, job.rate, job.eta = p.done, p.total, p.rate, p.eta
        job.files = f"{p.files_done}/{p.files_total}"
        job.current = f"{p.file.name} {p.file.state}"
        job.per_file[p.file.name] = p.file
        self.refresh_table()

    def on_downloads_pane_finished(self, message: Finished) -> None:
        job = self.jobs.get(message.key)
        if job is None:
            return
        state = job.stop_as if message.state == "stopped" else message.state
        job.item.state, job.item.error = state, message.error
        job.result_path = message.path
        job.current = message.note
        job.eta = None
        self._save()
        self.refresh_table()
        if state == "done":
            job.done = job.total
            self.app.notify(f"{message.key} is ready ({message.path}).", title="Download finished")
            self.app.local_changed()
        elif state == "failed":
            self.app.notify(
                message.error, title=f"Download of {message.key} failed", severity="error", timeout=10
            )

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    # -- actions ----------------------------------------------------------------------------------
    def _selected(self) -> Job | None:
        table = self.query_one("#dl-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.jobs.get(key or "")

    def action_pause(self) -> None:
        job = self._selected()
        if job and job.item.state == "running":
            job.stop_as = "paused"
            job.cancel.set()

    def action_resume(self) -> None:
        job = self._selected()
        if job and job.item.state in ("paused", "failed", "cancelled"):
            self._start(job)

    def action_cancel(self) -> None:
        job = self._selected()
        if job is None:
            return
        if job.item.state == "running":
            job.stop_as = "cancelled"
            job.cancel.set()
        elif job.item.state == "paused":
            job.item.state = "cancelled"
            self._save()
            self.refresh_table()

    def action_forget(self) -> None:
        job = self._selected()
        if job and job.item.state not in ACTIVE:
            del self.jobs[job.item.key]
            self._save()
            self.refresh_table()

    # -- view -------------------------------------------------------------------------------------
    def refresh_table(self) -> None:
        table = self.query_one("#dl-table", DataTable)
        row = table.cursor_row
        table.clear()
        for key, job in self.jobs.items():
            pct = f"{100 * job.done / job.total:5.1f}% of {human_bytes(job.total)}" if job.total else "-"
            state = job.item.state + (f": {job.item.error}" if job.item.error else "")
            table.add_row(
                key,
                state[:20],
                pct,
                f"{human_bytes(job.rate)}/s" if job.rate and job.item.state == "running" else "-",
                _eta(job.eta) if job.item.state == "running" else "-",
                job.files,
                job.current[:40],
                key=key,
            )
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        total = sum(j.total for j in self.jobs.values())
        done = sum(j.done for j in self.jobs.values())
        bar = self.query_one("#dl-total", ProgressBar)
        if total:
            bar.update(total=total, progress=done)
        self._show_detail()
        running = sum(j.item.state == "running" for j in self.jobs.values())
        self.query_one("#dl-total-label", Static).update(
            f"Total: {human_bytes(done)} of {human_bytes(total)}, {running} running, {len(self.jobs)} in the list"
        )

    def _show_detail(self) -> None:
        """The highlighted download in full: its whole error message (the table cuts it) or its folder."""
        job = self._selected()
        detail = ""
        if job is not None:
            detail = f"[b]{job.item.key}[/b]: {job.item.state}"
            if job.item.error:
                detail += f"\n[red]{job.item.error}[/]"
            if job.result_path:
                detail += f"\nin {job.result_path}"
            for f in job.per_file.values():
                detail += f"\n  {_bar(f.done, f.size)} {f.name} {human_bytes(f.size)} {f.state}"
        self.query_one("#dl-detail", Static).update(detail)
