"""`hubtui search`, `hubtui download`, `hubtui cache ls|rm` end to end against the fake hub.\n\nIn process through `hubtui.cli.main` (fast), plus real subprocesses for --debug output and Ctrl-C.\n"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.fakehub.fixtures import TOKEN, USER, add_llama_repo

REPO_ROOT = Path(__file__).resolve().parents[1]


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def hubtui(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run `hubtui ARGS` in this process through `hubtui.cli.main` (exit codes and error lines included)."""
    from hubtui.cli import main

    def run(*args: str, **env: str) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as m:
            m.delenv("HUBTUI_DEBUG", raising=False)
            for k, v in env.items():
                m.setenv(k, v)
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def run_subprocess(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "hubtui", *args], capture_output=True, text=True, timeout=120, env=full_env
    )


def test_search_table_json_and_details(fake_hub: FakeHub, hubtui: Callable[..., Result]) -> None:
    out = hubtui("search", "--family", "llama", "--endpoint", fake_hub.url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "REPO",
        "PARAMS",
        "DOWNLOADS",
        "LIKES",
        "UPDATED",
        "ACCESS",
        "LICENSE",
        "FORMATS",
    ]
    assert lines[1].startswith("meta-llama/Tiny-Llama *") and "41.0K" in lines[1] and "llama3.2" in lines[1]
    assert "mistralai" not in out.stdout
    js = hubtui("search", "tiny", "--gguf", "--json", "--endpoint", fake_hub.url)
    assert [r["id"] for r in json.loads(js.stdout)["results"]] == ["bartowski/Tiny-Llama-GGUF"]
    det = hubtui("search", "meta-llama/Tiny-Llama", "--details", "--json", "--endpoint", fake_hub.url)
    info = json.loads(det.stdout)
    assert info["layout"] == "hf" and info["parameters"] == 64 * 256 + 256 + 96 * 256 and info["access"]


def test_download_then_cache_ls_and_rm(
    fake_hub: FakeHub, hub_env: Path, hubtui: Callable[..., Result]
) -> None:
    out = hubtui("download", "meta-llama/Tiny-Llama", "--json", "--endpoint", fake_hub.url)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    repo = fake_hub.repos["meta-llama/Tiny-Llama"]
    assert result["commit"] == repo.sha and len(result["files"]) == 8
    for f in result["files"]:
        assert Path(f["path"]).read_bytes() == repo.files[f["name"]].data
    # progress on stderr: not a terminal here, so one line per finished file
    done_lines = [line for line in out.stderr.splitlines() if line.endswith(" done")]
    assert len(done_lines) == 8 and "100.0%" in done_lines[-1]
    ls = hubtui("cache", "ls", "--json")
    (cached,) = json.loads(ls.stdout)["repos"]
    assert cached["repo_id"] == "meta-llama/Tiny-Llama" and cached["size"] == result["total_bytes"]
    table = hubtui("cache", "ls")
    assert "meta-llama/Tiny-Llama" in table.stdout and "main" in table.stdout
    rm = hubtui("cache", "rm", "meta-llama/Tiny-Llama")
    assert rm.returncode == 0 and "freed" in rm.stdout
    assert json.loads(hubtui("cache", "ls", "--json").stdout)["repos"] == []
    assert not (hub_env / "models--meta-llama--Tiny-Llama").exists()


def test_gated_error_is_one_line_and_never_shows_the_token(
    fake_hub: FakeHub, hubtui: Callable[..., Result]
) -> None:
    add_llama_repo(fake_hub, "meta-llama/Gated", gated="manual")
    for debug in ((), ("--debug",)):
        out = hubtui(*debug, "download", "meta-llama/Gated", "--endpoint", fake_hub.url, HF_TOKEN=TOKEN)
        assert out.returncode == 1
        assert TOKEN not in out.stdout + out.stderr
        assert f"request access at {fake_hub.url}/meta-llama/Gated" in out.stderr
    plain = hubtui("download", "meta-llama/Gated", "--endpoint", fake_hub.url, HF_TOKEN=TOKEN)
    assert (
        plain.stderr.startswith("hubtui: error: meta-llama/Gated is gated") and plain.stderr.count("\n") == 1
    )
    fake_hub.grant("meta-llama/Gated", USER)
    ok = hubtui("download", "meta-llama/Gated", "--endpoint", fake_hub.url, HF_TOKEN=TOKEN)
    assert ok.returncode == 0 and TOKEN not in ok.stdout + ok.stderr


def test_errors_and_offline(fake_hub: FakeHub, hubtui: Callable[..., Result]) -> None:
    missing = hubtui("download", "nobody/nothing", "--endpoint", fake_hub.url)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"hubtui: error: repo nobody/nothing not found on {fake_hub.url} "
        "(check the name; if it is private, set HF_TOKEN or run `hf auth login`)"
    )
    fake_hub.reset_counters()
    offline = hubtui("search", "llama", "--endpoint", fake_hub.url, HF_HUB_OFFLINE="1")
    assert offline.returncode == 1 and "offline mode" in offline.stderr
    listed = hubtui("cache", "ls", HF_HUB_OFFLINE="1")
    assert listed.returncode == 0 and "empty" in listed.stdout
    assert not fake_hub.requests


@pytest.mark.parametrize(
    ("sig", "code", "how"),
    [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "stopped by SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_on_a_stalled_link_stops_at_once_and_the_next_run_resumes(
    fake_hub: FakeHub, hub_env: Path, sig: str, code: int, how: str
) -> None:
    import signal
    import time

    from tests.fakehub.fixtures import BIG

    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.stall_after[BIG] = 200_000
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "hubtui", "download", "test/big", "--endpoint", fake_hub.url]
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = hub_env / "models--test--big" / "blobs" / f"{big.sha256}.incomplete"
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size == 200_000):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(getattr(signal, sig))
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        fake_hub.knobs.stall_after.clear()
        fake_hub.knobs.stall_release.set()
    assert child.returncode == code
    assert err.strip().splitlines()[-1] == f"hubtui: download {how}; run the same command again to resume"
    assert partial.stat().st_size == 200_000
    out = run_subprocess("download", "test/big", "--json", "--endpoint", fake_hub.url)
    (f,) = [f for f in json.loads(out.stdout)["files"] if f["name"] == BIG]
    assert (f["status"], f["resumed_from"]) == ("resumed", 200_000)
    assert fake_hub.served("test/big", BIG) == big.size
