"""Downloads: a queue of hub downloads that run in thread workers, survive leaving the screen and resume
after a restart (the queue, with how far each got, is saved on disk; the hub client resumes from the
partial files)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from hubtui.app.jobs import bar_text, eta_text
from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import JobDone, JobStatus, JobUpdate, LocalChanged
from hubtui.app.services import QueuedDownload, load_queue, save_queue, state_dir
from hubtui.app.session import UsesSession
from quant.units import format_bytes, plural

ACTIVE = ("queued", "running")
STOPPED = ("paused", "cancelled")
FINISHED_FILE = ("done", "cached")
ON_QUIT = "stops now and resumes from its partial files when hubtui starts again"


@dataclass
class Job:
    item: QueuedDownload
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_as: str = "paused"  # what a cancelled run becomes: paused or cancelled
    rate: float = 0.0
    eta: float | None = None
    note: str = ""
    result_path: str = ""
    per_file: dict[str, Any] = field(default_factory=dict)  # name -> the latest FileStatus

    @property
    def fraction(self) -> float | None:
        return self.item.done / self.item.total if self.item.total else None


class DownloadsPane(UsesSession, ReportsWorkerErrors, Vertical):
    BINDINGS = [
        Binding("space", "pause_resume", "Pause/resume", id="downloads.pause_resume"),
        Binding("ctrl+x", "cancel", "Cancel", id="downloads.cancel", priority=True),
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
        table.add_columns("Repo", "State", "Progress", "Size", "Rate", "ETA", "Files")
        yield table
        yield Static("", id="dl-total-label")
        with VerticalScroll(id="dl-detail-box"):
            yield Static("", id="dl-detail")

    def on_mount(self) -> None:
        for item in load_queue(self.queue_file):
            if item.state in ACTIVE:
                item.state = "queued"  # interrupted by a restart: resume from the partial files
            self.jobs[item.key] = Job(item)
            if item.state == "queued":
                self._start(self.jobs[item.key])
        self.refresh_table()

    def on_unmount(self) -> None:
        self.stop_for_quit()

    def stop_for_quit(self) -> None:
        """Running transfers stop but stay queued (saved as they are): the next start resumes them."""
        self._save()
        for job in self.jobs.values():
            if job.item.state == "running":
                job.stop_as = "queued"
                job.cancel.set()

    # -- queue ------------------------------------------------------------------------------------
    def enqueue(self, repo_id: str, gguf: str | None = None) -> None:
        item = QueuedDownload(repo_id, gguf)
        job = self.jobs.get(item.key)
        if job is not None and job.item.state in ACTIVE:
            self.app.notify(f"{item.key} is already downloading.")
            return
        if job is not None:  # a stopped or failed one: go on from its partial files
            item = job.item
        job = Job(item)
        self.jobs[item.key] = job
        self._start(job)
        self.app.notify(f"Downloading {item.key} (F3 shows progress).", title="Download queued")

    def _start(self, job: Job) -> None:
        job.cancel = threading.Event()
        job.stop_as = "paused"
        job.item.state = "running"
        job.item.error = ""
        job.note = ""
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
        from hubtui.hub.download import download
        from hubtui.hub.errors import DownloadCancelledError

        try:
            result = download(
                repo_id,
                gguf=gguf,
                local_dir=self.session.settings.download_dir or None,
                endpoint=self.session.endpoint,
                progress=lambda p: self.post_message(self.Progress(key, p)),
                cancel=cancel,
            )
        except DownloadCancelledError:
            self.post_message(self.Finished(key, "stopped"))
            return
        except Exception as exc:
            self.post_message(self.Finished(key, "failed", worker_failed(f"download of {key}", exc)))
            return
        resumed = [f for f in result.files if f.resumed_from]
        note = f"resumed {plural(len(resumed), 'file')} from partial downloads" if resumed else ""
        self.post_message(self.Finished(key, "done", path=str(result.root), note=note))

    def on_downloads_pane_progress(self, message: Progress) -> None:
        job = self.jobs.get(message.key)
        if job is None or job.item.state != "running":
            return
        p = message.progress
        job.item.done, job.item.total, job.rate, job.eta = p.done, p.total, p.rate, p.eta
        job.item.files = f"{p.files_done}/{p.files_total}"
        job.per_file[p.file.name] = p.file
        self.refresh_table()

    def on_downloads_pane_finished(self, message: Finished) -> None:
        job = self.jobs.get(message.key)
        if job is None:
            return
        state = job.stop_as if message.state == "stopped" else message.state
        job.item.state, job.item.error = state, message.error
        job.result_path = message.path
        job.note = message.note
        job.eta = None
        job.rate = 0.0
        if state == "done":
            job.item.done = job.item.total
        self._save()
        self.refresh_table()
        if state == "done":
            self.app.notify(f"{message.key} is ready ({message.path}).", title="Download finished")
            self.post_message(LocalChanged())
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

    def action_pause_resume(self) -> None:
        """Pause a running download; resume a paused, cancelled or failed one (a retry)."""
        job = self._selected()
        if job is None:
            return
        if job.item.state == "running":
            job.stop_as = "paused"
            job.cancel.set()
        elif job.item.state in (*STOPPED, "failed"):
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
            item, running = job.item, job.item.state == "running"
            fraction = job.fraction
            table.add_row(
                key,
                item.state,
                "-" if fraction is None else f"{bar_text(fraction, 8)} {fraction:5.1%}",
                f"{format_bytes(item.done)} of {format_bytes(item.total)}" if item.total else "-",
                f"{format_bytes(job.rate)}/s" if running and job.rate else "-",
                eta_text(job.eta) if running else "-",
                item.files or "-",
                key=key,
            )
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        active = [j for j in self.jobs.values() if j.item.state == "running"]
        total = sum(j.item.total for j in self.jobs.values())
        done = sum(j.item.done for j in self.jobs.values())
        self.query_one("#dl-total-label", Static).update(
            f"Total: {format_bytes(done)} of {format_bytes(total)}, {len(active)} running, "
            f"{plural(len(self.jobs), 'download')} in the list"
        )
        self._show_detail()
        self._report(active)

    def _report(self, running: list[Job]) -> None:
        """The progress line: every running download together."""
        if not running:
            self.post_message(JobDone("downloads"))
            return
        done = sum(j.item.done for j in running)
        total = sum(j.item.total for j in running)
        rate = sum(j.rate for j in running)
        what = running[0].item.key if len(running) == 1 else plural(len(running), "download")
        detail = f"{format_bytes(done)} of {format_bytes(total)}" if total else "starting"
        if rate:
            eta = (total - done) / rate if total else None
            detail += f" · {format_bytes(rate)}/s · ETA {eta_text(eta)}"
        self.post_message(
            JobUpdate(
                JobStatus(
                    "downloads",
                    "downloads",
                    f"Downloading {what}",
                    done / total if total else None,
                    detail,
                    ON_QUIT,
                )
            )
        )

    def _show_detail(self) -> None:
        """The highlighted download in full: its whole error message (the table has no room), its folder,
        each file."""
        job = self._selected()
        if job is None:
            text = "Nothing downloaded yet: ctrl+d on Browse (F2) downloads the highlighted repo."
        else:
            item = job.item
            text = f"[b]{escape(item.key)}[/b]: {item.state}"
            if item.state in STOPPED and item.done:
                text += f"; {format_bytes(item.done)} of {format_bytes(item.total)} kept on disk, resumes from there"
            if job.note:
                text += f"; {escape(job.note)}"
            if item.error:
                text += f"\n[red]{escape(item.error)}[/]"
            if job.result_path:
                text += f"\nin {escape(job.result_path)}"
            for f in job.per_file.values():
                state = f.state if f.state in FINISHED_FILE or item.state == "running" else item.state
                fraction = f.done / f.size if f.size else 1.0
                text += f"\n  {bar_text(fraction)} {fraction:4.0%} {escape(f.name)} {format_bytes(f.size)} {state}"
        self.query_one("#dl-detail", Static).update(text)
