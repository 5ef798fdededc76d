"""Snapshots of every screen at 80x24 and 120x40 (pytest-textual-snapshot; `--snapshot-update` rewrites them).

Everything time- or machine-dependent is pinned: the hardware probe, file times, the output folder's path,
the fake hub's dates; the chat streams from a scripted engine through the real streaming path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from hubtui.app.chat_pane import ChatPane
from hubtui.app.smoke_pane import SmokePane
from hubtui.runner.smoke import SmokeReport
from tests.fakehub import FakeHub
from tests.support.tui_helpers import ScriptedEngine, isolate, make_app, text_of, wait_until

SIZES = [(80, 24), (120, 40)]
FIXED_TIME = 1_767_225_600  # 2026-01-01 00:00 UTC


@pytest.fixture
def pinned(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_hub: FakeHub,
    llama3_tiny_dir: Path,
) -> FakeHub:
    out = isolate(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"  # "last used" is shown in local time
    time.tzset()

    def restore_tz() -> None:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()

    request.addfinalizer(restore_tz)
    (tmp_path / "llama3-tiny").symlink_to(llama3_tiny_dir)
    gguf = out / "Llama3-Tiny-Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF" + bytes(4096))
    os.utime(gguf, (FIXED_TIME, FIXED_TIME))
    import quant.sizing.hardware as hw

    fixed = hw.Hardware(
        "Linux", "x86_64", 16 << 30, 12 << 30, 16 << 30, 12 << 30, 2 << 30, 2 << 30, None,
        [hw.GPU(0, "nvidia", "RTX 4090", 24 << 30, 23 << 30, source="NVML")], True,
    )  # fmt: skip
    monkeypatch.setattr(hw, "detect_hardware", lambda probes=None: fixed)
    return fake_hub


def smoke_report() -> SmokeReport:
    r = SmokeReport(path="gguf/Llama3-Tiny-Q4_K_M.gguf", n_ctx=1024)
    r.add("gguf", "ok", "GGUF with 39 tensors, 78.3 M parameters")
    r.add("generation", "ok", "generated 32 tokens of text")
    r.add("perplexity", "warn", "perplexity 1234.5 is high for a chat model")
    r.measurements = {
        "load_seconds": 0.42,
        "peak_rss_bytes": 300 << 20,
        "perplexity": {"perplexity": 1234.5, "prompt_tokens_per_s": 900.0},
        "generation": {"tokens_per_s": 120.0},
        "gpu_layers": 0,
    }
    r.decide()
    return r


async def _settle(pilot: Pilot) -> None:
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    pilot.app.clear_notifications()
    await pilot.pause()


def _app(hub: FakeHub) -> Any:
    return make_app(Path("gguf"), hub.url, target="laptop-8g")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_browse(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press(*"tiny", "enter")
        await wait_until(pilot, lambda: pilot.app.query_one("#results", DataTable).row_count > 0, "results")
        await wait_until(pilot, lambda: "access" in text_of(pilot.app, "#detail-head"), "details")
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_downloads(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    from hubtui.app.services import QueuedDownload, save_queue, state_dir

    save_queue(
        state_dir() / "downloads.json",
        [
            QueuedDownload("meta-llama/Tiny-Llama", state="paused"),
            QueuedDownload(
                "meta-llama/Gated", state="failed", error="meta-llama/Gated is gated: request access"
            ),
            QueuedDownload("bartowski/Tiny-Llama-GGUF", "Q4_K_M", state="cancelled"),
        ],
    )

    async def run_before(pilot: Pilot) -> None:
        await pilot.press("f3")
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_local(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("f4")
        await wait_until(
            pilot, lambda: pilot.app.query_one("#local-table", DataTable).row_count == 1, "local"
        )
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_convert(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()  # let on_mount's focus land first
        pilot.app.open_convert("llama3-tiny")
        await wait_until(pilot, lambda: "★" in text_of(pilot.app, "#cv-fit"), "fit table")
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_smoke(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("f6")
        pane = pilot.app.query_one(SmokePane)
        pane.path = "gguf/Llama3-Tiny-Q4_K_M.gguf"
        pane.post_message(SmokePane.Reported(pane.path, smoke_report()))
        await wait_until(pilot, lambda: pane.report is not None, "report")
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("f7")
        chat = pilot.app.query_one(ChatPane)
        chat.busy = True
        chat.post_message(ChatPane.Loaded("gguf/Llama3-Tiny-Q4_K_M.gguf", ScriptedEngine()))
        await wait_until(pilot, lambda: chat.engine is not None, "engine")
        await pilot.press(*"Capital of France?", "enter")
        await wait_until(pilot, lambda: "tokens" in text_of(pilot.app, "#chat-stats"), "reply")
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_hardware(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("f8")
        await wait_until(pilot, lambda: "RTX 4090" in text_of(pilot.app, "#hw-text"), "hardware")
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare: Any, pinned: FakeHub, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("f4", "f1")
        await _settle(pilot)

    assert snap_compare(_app(pinned), terminal_size=size, run_before=run_before)
