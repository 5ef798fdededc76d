"""The TUI opens and ctrl+q quits it."""

from __future__ import annotations

from hubtui.app.app import HubtuiApp


async def test_app_opens_and_ctrl_q_quits() -> None:
    app = HubtuiApp()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.query_one("Header") is not None
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0
