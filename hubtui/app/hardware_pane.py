"""Hardware screen: RAM, each GPU, the cgroup limit and the active target profile."""

from __future__ import annotations

import contextlib

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from hubtui.app.imports import load


class HardwarePane(VerticalScroll):
    """Detection runs in a thread worker (NVML and sysfs reads can be slow) and reports by message."""

    class Detected(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    detected = False

    def compose(self) -> ComposeResult:
        yield Static("Detecting hardware…", id="hw-text")

    def on_show(self) -> None:
        if not self.detected:  # first shown: probing (llama.cpp's library, NVML) would slow start-up
            self.detected = True
            self.detect()

    @work(thread=True, exclusive=True, exit_on_error=False, group="hardware")
    def detect(self) -> None:
        load("quant.hardware")
        load("hubtui.commands.hw")
        from hubtui.commands.hw import detect_machine
        from hubtui.commands.hw import gib as _gib

        with contextlib.suppress(Exception):  # detect_machine reports offload as unknown then
            load("llama_cpp")  # under the app's import lock, before detect_machine asks it
        try:
            hw = detect_machine()
        except Exception as exc:  # shown, never raised into the UI
            self.post_message(self.Detected(f"Hardware detection failed: {exc}"))
            return
        lines = [
            f"[b]System[/b]   {hw.system} {hw.machine}",
            f"[b]RAM[/b]      {_gib(hw.ram_available)} available of {_gib(hw.ram_total)}",
            f"[b]Swap[/b]     {_gib(hw.swap_total)} (not counted)",
        ]
        if hw.cgroup is not None:
            lines.append(
                f"[b]cgroup[/b]   v{hw.cgroup.version} limit {_gib(hw.cgroup.limit)} ({hw.cgroup.path})"
            )
        if not hw.gpus:
            lines.append("[b]GPUs[/b]     none")
        for gpu in hw.gpus:
            lines.append(
                f"[b]GPU {gpu.index}[/b]    {gpu.vendor} {gpu.name}: {_gib(gpu.free)} free of {_gib(gpu.total)}"
            )
        offload_text = {True: "yes", False: "no (CPU-only build)", None: "unknown"}[hw.gpu_offload]
        lines.append(f"[b]Offload[/b]  llama.cpp GPU offload: {offload_text}")
        target = getattr(self.app, "settings", None)
        lines.append(f"[b]Target[/b]   {(target.target if target and target.target else 'this machine')}")
        lines.extend(f"[dim]note: {n}[/dim]" for n in hw.notes)
        self.post_message(self.Detected("\n".join(lines)))

    def on_hardware_pane_detected(self, message: Detected) -> None:
        self.query_one("#hw-text", Static).update(message.text)
