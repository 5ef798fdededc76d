"""The progress line: running work of every screen, one line each, always on screen above the footer
(at 80x24 too), so a long conversion or download is never out of sight."""

from __future__ import annotations

from rich.markup import escape
from textual.widgets import Static

from hubtui.app.messages import JobStatus


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def bar_text(fraction: float, width: int = 12) -> str:
    filled = max(0, min(width, round(width * fraction)))
    return "█" * filled + "░" * (width - filled)


class JobBar(Static):
    """Hidden while nothing runs; else one line per job (at most two, then a count)."""

    MAX_LINES = 2

    def __init__(self) -> None:
        super().__init__("", id="jobbar", markup=True)
        self.display = False

    def show_jobs(self, jobs: list[JobStatus]) -> None:
        self.display = bool(jobs)
        lines = [self._line(j) for j in jobs[: self.MAX_LINES]]
        if len(jobs) > self.MAX_LINES:
            lines[-1] += f"  [dim](+{len(jobs) - self.MAX_LINES} more)[/]"
        self.update("\n".join(lines))

    @staticmethod
    def _line(job: JobStatus) -> str:
        progress = "" if job.fraction is None else f" {bar_text(job.fraction)} {job.fraction:4.0%}"
        detail = f"  [dim]{escape(job.detail)}[/]" if job.detail else ""
        return f"[b]{escape(job.title)}[/b]{progress}{detail}"
