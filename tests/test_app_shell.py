"""The TUI shell: opens, switches screens by key, remaps keys from config, shows help, quits."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubtui.app.app import HubtuiApp
from hubtui.app.config import ConfigError, Settings, load_settings
from hubtui.app.help_screen import HelpScreen
from tests.fakehub import FakeHub


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.tui_helpers import isolate

    isolate(tmp_path, monkeypatch)


async def test_app_opens_and_ctrl_q_quits(fake_hub: FakeHub) -> None:
    app = HubtuiApp(Settings(), endpoint=fake_hub.url)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.query_one("#tabs").active == "browse"
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app._exit  # quit was requested by the key, not by leaving the test context
    assert app.return_code == 0


async def test_function_keys_switch_screens_and_help_lists_binding_ids(fake_hub: FakeHub) -> None:
    app = HubtuiApp(Settings(), endpoint=fake_hub.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f8")
        assert app.query_one("#tabs").active == "hardware"
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        ids = {row[2] for row in app.screen.rows}
        assert {"app.quit", "screen.browse", "screen.hardware"} <= ids
        # every screen's keys are listed, not only those of the focused one
        assert {
            "browse.download",
            "downloads.pause_resume",
            "local.delete",
            "convert.cancel",
            "chat.stop",
        } <= ids
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_keymap_from_config_remaps_a_binding(fake_hub: FakeHub) -> None:
    app = HubtuiApp(Settings(keymap={"screen.hardware": "f9"}), endpoint=fake_hub.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f8")
        assert app.query_one("#tabs").active == "browse"
        await pilot.press("f9")
        assert app.query_one("#tabs").active == "hardware"


def test_config_file_is_read_and_bad_values_are_named(tmp_path: Path) -> None:
    good = tmp_path / "config.toml"
    good.write_text('target = "laptop-8g"\n[keymap]\n"app.quit" = "ctrl+x"\n')
    settings = load_settings(good)
    assert settings.target == "laptop-8g"
    assert settings.keymap == {"app.quit": "ctrl+x"}
    assert load_settings(tmp_path / "missing.toml") == Settings()
    bad = tmp_path / "bad.toml"
    bad.write_text("target = 8\n")
    with pytest.raises(ConfigError, match="'target' must be a string"):
        load_settings(bad)
    bad.write_text('target = "laptop-9g"\n')
    with pytest.raises(ConfigError, match="unknown target profile 'laptop-9g'; valid: laptop-8g"):
        load_settings(bad)


async def test_palette_runs_a_pane_action_on_its_screen(fake_hub: FakeHub) -> None:
    from textual.widgets import Select

    app = HubtuiApp(Settings(), endpoint=fake_hub.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f8")
        sort = app.query_one("#sort", Select)
        before = sort.value
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        app.call_later(commands["Browse: Sort"].callback)  # as the command palette runs a chosen command
        await pilot.pause()
        assert app.query_one("#tabs").active == "browse"
        assert sort.value != before  # the action ran, not only the screen switch
