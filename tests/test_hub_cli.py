"""`hubtui search`, `hubtui download`, `hubtui cache ls|rm` end to end against the fake hub.

In process through the `cli` fixture (fast), plus real subprocesses where the process is what is tested:
--debug output and Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.fakehub.fixtures import TOKEN, USER, add_llama_repo
from tests.support.cli_helpers import Cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_search_table_json_and_details(fake_hub: FakeHub, cli: Cli) -> None:
    res = cli("search", "--family", "llama", "--endpoint", fake_hub.url)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
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
    assert "mistralai" not in res.out
    js = cli("search", "tiny", "--gguf", "--json", "--endpoint", fake_hub.url)
    assert [r["id"] for r in js.json()["results"]] == ["bartowski/Tiny-Llama-GGUF"]
    det = cli("search", "meta-llama/Tiny-Llama", "--details", "--json", "--endpoint", fake_hub.url)
    info = det.json()
    assert info["layout"] == "hf" and info["parameters"] == 64 * 256 + 256 + 96 * 256 and info["access"]


def test_download_then_cache_ls_and_rm(fake_hub: FakeHub, hub_env: Path, cli: Cli) -> None:
    res = cli("download", "meta-llama/Tiny-Llama", "--json", "--endpoint", fake_hub.url)
    assert res.code == 0, res.err
    result = res.json()
    repo = fake_hub.repos["meta-llama/Tiny-Llama"]
    assert result["commit"] == repo.sha and len(result["files"]) == 8
    for f in result["files"]:
        assert Path(f["path"]).read_bytes() == repo.files[f["name"]].data
    # progress on stderr: not a terminal here, so one line per finished file
    done_lines = [line for line in res.err.splitlines() if line.endswith(" done")]
    assert len(done_lines) == 8 and "100.0%" in done_lines[-1]
    ls = cli("cache", "ls", "--json")
    (cached,) = ls.json()["repos"]
    assert cached["repo_id"] == "meta-llama/Tiny-Llama" and cached["size"] == result["total_bytes"]
    table = cli("cache", "ls")
    assert "meta-llama/Tiny-Llama" in table.out and "main" in table.out
    rm = cli("cache", "rm", "meta-llama/Tiny-Llama")
    assert rm.code == 0 and "freed" in rm.out
    assert cli("cache", "ls", "--json").json()["repos"] == []
    assert not (hub_env / "models--meta-llama--Tiny-Llama").exists()


def test_gated_error_is_one_line_and_never_shows_the_token(fake_hub: FakeHub, cli: Cli) -> None:
    add_llama_repo(fake_hub, "meta-llama/Gated", gated="manual")
    for debug in ((), ("--debug",)):
        res = cli(*debug, "download", "meta-llama/Gated", "--endpoint", fake_hub.url, env={"HF_TOKEN": TOKEN})
        assert res.code == 1
        assert TOKEN not in res.out + res.err
        assert f"request access at {fake_hub.url}/meta-llama/Gated" in res.err
    plain = cli("download", "meta-llama/Gated", "--endpoint", fake_hub.url, env={"HF_TOKEN": TOKEN})
    assert plain.err.startswith("hubtui: error: meta-llama/Gated is gated") and plain.err.count("\n") == 1
    fake_hub.grant("meta-llama/Gated", USER)
    ok = cli("download", "meta-llama/Gated", "--endpoint", fake_hub.url, env={"HF_TOKEN": TOKEN})
    assert ok.code == 0 and TOKEN not in ok.out + ok.err


def test_errors_and_offline(fake_hub: FakeHub, cli: Cli) -> None:
    missing = cli("download", "nobody/nothing", "--endpoint", fake_hub.url)
    assert missing.code == 1
    assert missing.err.strip() == (
        f"hubtui: error: repo nobody/nothing not found on {fake_hub.url} "
        "(check the name; if it is private, set HF_TOKEN or run `hf auth login`)"
    )
    fake_hub.reset_counters()
    offline = cli("search", "llama", "--endpoint", fake_hub.url, env={"HF_HUB_OFFLINE": "1"})
    assert offline.code == 1 and "offline mode" in offline.err
    listed = cli("cache", "ls", env={"HF_HUB_OFFLINE": "1"})
    assert listed.code == 0 and "empty" in listed.out
    assert not fake_hub.requests


@pytest.mark.parametrize(
    ("sig", "code", "how"),
    [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "stopped by SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_on_a_stalled_link_stops_at_once_and_the_next_run_resumes(
    fake_hub: FakeHub, hub_env: Path, sig: str, code: int, how: str, cli: Cli
) -> None:
    import signal
    import time

    from tests.fakehub.fixtures import BIG

    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.stall_after[BIG] = 200_000
    # a real process: the signal, its exit status and the partial file it leaves are what is tested
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
    res = cli("download", "test/big", "--json", "--endpoint", fake_hub.url)
    (f,) = [f for f in res.json()["files"] if f["name"] == BIG]
    assert (f["status"], f["resumed_from"]) == ("resumed", 200_000)
    assert fake_hub.served("test/big", BIG) == big.size
