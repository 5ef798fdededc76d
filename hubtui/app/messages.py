"""Requests screens post to the app (they bubble up the DOM to `HubtuiApp`), and the job reports behind the
progress line. A screen never calls app methods: it posts one of these."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from hubtui.app.target import TargetChoice


class OpenConvert(Message):
    """Show Convert with this checkpoint folder as the source."""

    def __init__(self, src: str) -> None:
        super().__init__()
        self.src = src


class ConvertRepo(Message):
    """Show Convert with a downloaded hub repo's snapshot as the source."""

    def __init__(self, repo_id: str) -> None:
        super().__init__()
        self.repo_id = repo_id


class StartSmoke(Message):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


class StartChat(Message):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


class AttachAdapter(Message):
    """Offer a LoRA adapter GGUF to Chat: its picker opens with this adapter chosen."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


class EnqueueDownload(Message):
    def __init__(self, repo_id: str, gguf: str | None = None) -> None:
        super().__init__()
        self.repo_id = repo_id
        self.gguf = gguf


class LocalChanged(Message):
    """Files appeared or went away (a download, a conversion, a deletion): listings and marks refresh."""


class ImatrixChanged(Message):
    """The Convert screen's importance matrix choice changed: fit tables and badges recommend anew."""


class ChooseTarget(Message):
    """Make this the machine the whole app sizes for (and save it in config.toml)."""

    def __init__(self, choice: TargetChoice) -> None:
        super().__init__()
        self.choice = choice


class PickCustomTarget(Message):
    """Ask for custom RAM/VRAM (a form), then make that the target."""


@dataclass(frozen=True)
class JobStatus:
    """One piece of running work, for the progress line and the tab of the screen that owns it."""

    key: str  # "convert", "downloads", "smoke", "bundle", "chat"
    tab: str  # the screen that shows it in full
    title: str  # "Converting Llama3-Tiny to Q4_K_M"
    fraction: float | None = None  # None: no measure of progress (a spinner-like elapsed time instead)
    detail: str = ""  # "1.20 of 2.90 GiB · 35.2 MiB/s · ETA 0:41"
    on_quit: str = ""  # what quitting now does to it, for the quit question


class JobUpdate(Message):
    def __init__(self, status: JobStatus) -> None:
        super().__init__()
        self.status = status


class JobDone(Message):
    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
