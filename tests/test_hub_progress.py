"""Progress aggregation (rate, ETA, throttling), the CLI progress bar, and token scrubbing in hub errors."""

from __future__ import annotations

import io

from hubtui.commands.download import ProgressBar
from hubtui.hub.client import HubContext, translate
from hubtui.hub.errors import HubConnectionError, scrub
from hubtui.hub.progress import DownloadProgress, FileStatus, ProgressTracker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_tracker_aggregates_rates_and_throttles() -> None:
    clock = Clock()
    events: list[DownloadProgress] = []
    tracker = ProgressTracker({"a": 1000, "b": 3000}, events.append, hz=10, clock=clock)
    tracker.state("b", "downloading", 1000)  # resumed: 1000 bytes already on disk
    tracker.state("a", "downloading")
    clock.t += 1.0
    tracker.advance("a", 500)
    tracker.advance("a", 100)  # same instant: throttled away
    assert len(events) == 3
    last = events[-1]
    assert (last.done, last.total, last.files_done, last.files_total) == (1500, 4000, 0, 2)
    assert last.rate == 500.0 and last.eta == (4000 - 1500) / 500.0
    assert last.file.rate == 500.0 and last.file.eta == (1000 - 500) / 500.0
    clock.t += 0.5
    tracker.advance("a", 400)
    tracker.state("a", "done", 1000)
    done = events[-1]
    assert done.file == FileStatus("a", 1000, 1000, "done") and done.files_done == 1 and done.file.eta is None
    assert done.rate == 1000 / 1.5 and round(done.fraction, 3) == 0.5


def test_progress_bar_redraws_one_line_on_a_terminal_and_logs_lines_otherwise() -> None:
    p = DownloadProgress(
        FileStatus("model.safetensors", 2000, 1000, "downloading"), 1000, 4000, 0, 2, 2e6, 1.5
    )
    tty = io.StringIO()
    bar = ProgressBar(tty, tty=True, width=8)
    bar(p)
    bar.close()
    assert tty.getvalue() == (
        "\r\x1b[2K[##------]  25.0% 1000 B/3.91 KiB 1.91 MiB/s ETA 0:01 [0/2] model.safetensors downloading\n"
    )
    log = io.StringIO()
    bar = ProgressBar(log, tty=False)
    bar(p)  # first line
    bar(p)  # within 10 s, not a state change: skipped
    bar(DownloadProgress(FileStatus("model.safetensors", 2000, 2000, "done"), 2000, 4000, 1, 2, 2e6, 1.0))
    lines = log.getvalue().splitlines()
    assert (
        len(lines) == 2 and lines[1].endswith("[1/2] model.safetensors done") and "\r" not in log.getvalue()
    )


def test_errors_never_carry_the_token() -> None:
    token = "hf_secretSecretSecret123"
    assert scrub(f"bad {token} here", token) == "bad *** here"
    from huggingface_hub.utils import httpx

    ctx = HubContext(endpoint="http://127.0.0.1:1", token=token)
    err = translate(httpx.ConnectError(f"refused while sending Bearer {token}"), ctx, repo_id="a/b")
    assert (
        isinstance(err, HubConnectionError)
        and token not in str(err)
        and "cannot reach http://127.0.0.1:1" in str(err)
    )
