"""Hardware: RAM, each GPU and the cgroup limit as `hubtui hw` shows them, and the target the whole app sizes
for (this machine, a profile or custom RAM/VRAM), explained as `hubtui plan` explains it."""

from __future__ import annotations

import contextlib

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Label, Static

from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import ChooseTarget, PickCustomTarget
from hubtui.app.select import Select
from hubtui.app.session import UsesSession
from hubtui.app.target import CUSTOM, TargetChoice, explain

MACHINE_OPTION = ("this machine: the RAM and GPUs free here now", "")
CUSTOM_OPTION = ("custom RAM/VRAM…", CUSTOM)


class HardwarePane(UsesSession, ReportsWorkerErrors, VerticalScroll):
    """Detection runs in a thread worker (NVML and sysfs reads can be slow) and reports by message."""

    class Detected(Message):
        def __init__(self, text: str, profiles: list[tuple[str, str]]) -> None:
            super().__init__()
            self.text = text
            self.profiles = profiles

    class Explained(Message):
        def __init__(self, choice: TargetChoice, text: str) -> None:
            super().__init__()
            self.choice = choice
            self.text = text

    detected = False

    def compose(self) -> ComposeResult:
        yield Static("Detecting hardware…", id="hw-text")
        yield Static(
            "\n[b]Target[/b]: the machine every fit table, badge and recommendation sizes for", id="hw-head"
        )
        with Horizontal(classes="field"):
            yield Label("Size for ", classes="label")
            yield Select(
                self._options([]), value=self._value(), allow_blank=False, id="hw-target", compact=True
            )
        yield Static("", id="hw-target-text")

    def _value(self) -> str:
        return self.session.target.name

    def _options(self, profiles: list[tuple[str, str]]) -> list[tuple[str, str]]:
        current = self.session.target
        options = [MACHINE_OPTION, *((f"{n}: {d}", n) for n, d in profiles)]
        if current.profile and current.profile not in {n for n, _ in profiles}:
            options.append((current.profile, current.profile))
        label = (
            f"custom: {current.label.removeprefix('custom ')}…"
            if current.name == CUSTOM
            else CUSTOM_OPTION[0]
        )
        return [*options, (label, CUSTOM)]

    def on_show(self) -> None:
        if not self.detected:  # first shown: probing (llama.cpp's library, NVML) would slow start-up
            self.detected = True
            self.detect()

    @work(thread=True, exclusive=True, exit_on_error=False, group="hardware")
    def detect(self) -> None:
        from hubtui.app.target import profile_choices
        from hubtui.formatting import hardware_rows

        with contextlib.suppress(Exception):  # detect_machine reports offload as unknown then
            import llama_cpp  # noqa: F401  # a missing or broken llama.cpp is not fatal here
        from hubtui.runner.machine import detect_machine

        try:
            hw = detect_machine()
            text = "\n".join(f"[b]{escape(k):<9}[/b]{escape(v)}" for k, v in hardware_rows(hw))
        except Exception as exc:  # shown, never raised into the UI
            text = f"Hardware detection failed: {escape(worker_failed('hardware detection', exc))}"
        self.post_message(self.Detected(text, profile_choices()))
        self._explain(self.session.target)

    def on_hardware_pane_detected(self, message: Detected) -> None:
        self.query_one("#hw-text", Static).update(message.text)
        self.profiles = message.profiles
        self._sync_select()

    def _sync_select(self) -> None:
        select = self.query_one("#hw-target", Select)
        with select.prevent(Select.Changed):
            select.set_options(self._options(getattr(self, "profiles", [])))
            select.value = self._value()

    @work(thread=True, exclusive=True, exit_on_error=False, group="hardware-target")
    def _explain(self, choice: TargetChoice) -> None:
        try:
            text = "\n".join(escape(line) for line in explain(choice.resolve()))
        except Exception as exc:
            text = f"[red]{escape(worker_failed('resolving the target', exc))}[/]"
        self.post_message(self.Explained(choice, text))

    def on_hardware_pane_explained(self, message: Explained) -> None:
        if message.choice == self.session.target:
            self.query_one("#hw-target-text", Static).update(message.text)

    @on(Select.Changed, "#hw-target")
    def _chosen(self, event: Select.Changed) -> None:
        value = str(event.value)
        if value == CUSTOM:
            self.post_message(PickCustomTarget())
            self._sync_select()  # shows the current target until the form is applied
        elif value != self.session.target.name:
            self.post_message(ChooseTarget(TargetChoice(value)))

    def target_changed(self) -> None:
        self._sync_select()
        self.query_one("#hw-target-text", Static).update("Sizing the target…")
        self._explain(self.session.target)
