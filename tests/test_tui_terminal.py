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

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def _env(fake_hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    return {
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


def _launch(name: str, env: dict[str, str], cwd: Path, then: str = "") -> None:
    """`python -m hubtui` in a detached 80x24 tmux session; `then` runs in the same shell after it exits."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = f"cd {shlex.quote(str(cwd))} && env {exports} {shlex.quote(sys.executable)} -m hubtui{then}"
    _tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", command)


@pytest.fixture(params=["online", "offline", "nocolor"])
def session(request: pytest.FixtureRequest, fake_hub: FakeHub, tmp_path: Path) -> Iterator[str]:
    name = f"hubtui-test-{uuid.uuid4().hex[:8]}-{request.param}"
    env = _env(fake_hub, tmp_path)
    if request.param == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    if request.param == "nocolor":  # a plain terminal with colour switched off
        env.update(NO_COLOR="1", TERM="xterm")
    _launch(name, env, tmp_path)
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
        screen = _wait_for(session, "GGUFs are written to")  # the listing is on screen
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
    _wait_for(session, "GGUFs are written to")  # the listing, not "Listing local models…" before it
    _tmux("send-keys", "-t", session, "C-q")
    _wait_gone(session)


def _wait_gone(session: str) -> None:
    t0 = time.monotonic()
    while subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
        assert time.monotonic() - t0 < 20, "ctrl+q did not quit"
        time.sleep(0.2)


@pytest.fixture
def plain_session(fake_hub: FakeHub, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A name and environment for one hubtui run; the session is killed afterwards whatever happened."""
    name = f"hubtui-test-{uuid.uuid4().hex[:8]}-jobs"
    yield name, _env(fake_hub, tmp_path)
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=30)


def _bottom(screen: str, n: int = 3) -> str:
    return "\n".join(screen.splitlines()[-n:])


def test_conversion_progress_is_in_sight_at_80x24(
    plain_session: tuple[str, dict[str, str]], smollm2_dir: Path, tmp_path: Path
) -> None:
    """A real conversion: the progress line above the footer moves, whatever the Convert screen shows."""
    name, env = plain_session
    _launch(name, env, tmp_path)
    _wait_for(name, "Search models")
    _tmux("send-keys", "-t", name, "F5")
    _wait_for(name, "Source")
    _tmux("send-keys", "-t", name, "-l", str(smollm2_dir))
    _tmux("send-keys", "-t", name, "Enter")
    _wait_for(name, "Fit for this machine", 120)  # sized: ctrl+r converts the recommended type
    _tmux("send-keys", "-t", name, "C-r")
    seen, t0 = [], time.monotonic()
    while time.monotonic() - t0 < 180:
        screen = _screen(name)
        bottom = _bottom(screen)
        if "Converting" in bottom and "%" in bottom:
            seen.append(bottom)
        if "written" in screen or "Wrote" in screen:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the conversion did not finish; the screen was:\n{screen}")
    assert seen, f"no progress line above the footer; the last screen was:\n{screen}"
    assert "SmolLM2-135M-Instruct" in seen[-1] and "Quit" in screen.splitlines()[-1]
    assert list(tmp_path.glob("SmolLM2-135M-Instruct*.gguf")) and not list(tmp_path.glob("*.part"))


def test_ctrl_q_while_a_download_runs_asks_and_says_it_resumes(
    plain_session: tuple[str, dict[str, str]], fake_hub: FakeHub, tmp_path: Path
) -> None:
    from hubtui.app.services import QueuedDownload, save_queue

    name, env = plain_session
    fake_hub.knobs.chunk_delay = 1.0  # a slow link: the download is running when the keys arrive
    save_queue(tmp_path / "state" / "downloads.json", [QueuedDownload("test/big")])  # restarts by itself
    _launch(name, env, tmp_path, then="; echo EXITED; sleep 60")
    _wait_for(name, "Downloading test/big")  # the progress line, on Browse
    _tmux("send-keys", "-t", name, "C-q")
    screen = _wait_for(name, "Quit hubtui?")
    assert "resumes" in screen
    _tmux("send-keys", "-t", name, "n")
    time.sleep(1)
    assert "Downloading test/big" in _bottom(_screen(name)) and "EXITED" not in _screen(name)
    _tmux("send-keys", "-t", name, "C-q")
    _wait_for(name, "Quit hubtui?")
    _tmux("send-keys", "-t", name, "y")
    screen = _wait_for(name, "EXITED", 30)
    assert "hubtui: Downloading test/big: stops now and resumes" in screen.replace("\n", " ") or (
        "resumes from its partial files" in screen
    )
    saved = (tmp_path / "state" / "downloads.json").read_text()
    assert '"test/big"' in saved and '"done": 0' not in saved  # how far it got is kept for the next start
    fake_hub.knobs.chunk_delay = 0.0
