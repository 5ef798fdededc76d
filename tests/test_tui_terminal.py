"""`hubtui` in a real terminal (tmux), as a user over SSH sees it: keys in, screen text out."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.fakehub.fixtures import fake_hub_fixture, hub_env_fixture  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.fixture(params=["online", "offline", "nocolor"])
def session(request: pytest.FixtureRequest, fake_hub: FakeHub, tmp_path: Path) -> Iterator[str]:
    name = f"hubtui-test-{uuid.uuid4().hex[:8]}-{request.param}"
    env = {
        "PYTHONPATH": str(REPO_ROOT),
        "HF_ENDPOINT": fake_hub.url,
        "HF_HOME": os.environ["HF_HOME"],
        "HF_HUB_CACHE": os.environ["HF_HUB_CACHE"],
        "NO_PROXY": "127.0.0.1,localhost",
        "HUBTUI_STATE_DIR": str(tmp_path / "state"),
        "HUBTUI_CONFIG": str(tmp_path / "config.toml"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
    }
    if request.param == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    if request.param == "nocolor":  # a plain terminal with colour switched off
        env.update(NO_COLOR="1", TERM="xterm")
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = f"cd {shlex.quote(str(tmp_path))} && env {exports} {shlex.quote(sys.executable)} -m hubtui"
    _tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", command)
    try:
        yield name
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=30)


def _screen(name: str) -> str:
    return _tmux("capture-pane", "-p", "-t", name)


def _wait_for(name: str, text: str, limit: float = 60.0) -> str:
    t0 = time.monotonic()
    while True:
        screen = _screen(name)
        if text in screen:
            return screen
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")
        time.sleep(0.2)


def test_search_and_switch_screens_in_tmux(session: str) -> None:
    if session.endswith("offline"):  # a fresh process: the hub client is imported by workers only
        screen = _wait_for(session, "local models")
        assert "Offline" in screen and "HF_HUB_OFFLINE=1" in screen and "Traceback" not in screen
        _tmux("send-keys", "-t", session, "F2")
    _wait_for(session, "Search models")
    _tmux("send-keys", "-t", session, "tiny", "Enter")  # the search box has focus on start
    if session.endswith("offline"):
        screen = _wait_for(session, "Search failed: offline mode")
        assert "Traceback" not in screen
        _tmux("send-keys", "-t", session, "C-q")
        _wait_gone(session)
        return
    screen = _wait_for(session, "licence:")
    styled = _tmux("capture-pane", "-p", "-e", "-t", session)
    coloured = any(code in styled for code in ("\x1b[38;", "\x1b[48;", ";38;", ";48;"))
    assert coloured == (not session.endswith("nocolor"))
    assert "meta-llama/Tiny-Llama" in screen and "bartowski/Tiny-Llama-GGUF" in screen
    assert "Traceback" not in screen
    _tmux("send-keys", "-t", session, "F4")
    screen = _wait_for(session, "local models")
    assert "GGUFs are written to" in screen
    _tmux("send-keys", "-t", session, "C-q")
    _wait_gone(session)


def _wait_gone(session: str) -> None:
    t0 = time.monotonic()
    while subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
        assert time.monotonic() - t0 < 20, "ctrl+q did not quit"
        time.sleep(0.2)
