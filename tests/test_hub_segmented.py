"""Big files over several connections (`hubtui.hub.segmented`): exact, resumable after drops and kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubtui.hub import RetryPolicy
from hubtui.hub.download import download
from hubtui.hub.errors import ChecksumMismatchError
from hubtui.hub.segmented import bytes_done
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import BIG

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLIT = {"connections": 4, "split_above": 100_000}  # the 400000-byte test file in four 100000-byte ranges


def partial_of(hub_env: Path, fake_hub: FakeHub) -> Path:
    return (
        hub_env
        / "models--test--big"
        / "blobs"
        / (fake_hub.repos["test/big"].files[BIG].sha256 + ".incomplete")
    )


def cdn_ranges(fake_hub: FakeHub) -> list[str | None]:
    return sorted(r["range"] or "" for r in fake_hub.requests if r["path"].startswith("/cdn/"))


def test_split_download_is_exact_and_fetches_each_byte_once(fake_hub: FakeHub, hub_env: Path) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    result = download("test/big", endpoint=fake_hub.url, **SPLIT)
    assert (result.root / BIG).read_bytes() == big.data
    assert cdn_ranges(fake_hub) == [
        "bytes=0-99999",
        "bytes=100000-199999",
        "bytes=200000-299999",
        "bytes=300000-399999",
    ]
    assert fake_hub.served("test/big", BIG) == big.size
    assert not list((hub_env / "models--test--big" / "blobs").glob("*.ranges"))


def test_a_dropped_range_resumes_alone(fake_hub: FakeHub) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.drop_after[BIG] = 150_000  # inside the second range
    waits: list[float] = []
    result = download("test/big", endpoint=fake_hub.url, retry=RetryPolicy(sleep=waits.append), **SPLIT)
    assert (result.root / BIG).read_bytes() == big.data
    assert fake_hub.served("test/big", BIG) == big.size and waits == [1.0]
    assert "bytes=150000-199999" in cdn_ranges(fake_hub)


def test_killed_split_download_resumes_every_range_where_it_stopped(fake_hub: FakeHub, hub_env: Path) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.stall_after[BIG] = 250_000  # the third range stalls half way, the others finish
    code = f"from hubtui.hub.download import download\ndownload('test/big', endpoint={fake_hub.url!r}, **{SPLIT!r})\n"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    partial = partial_of(hub_env, fake_hub)
    try:
        deadline = time.monotonic() + 60
        while bytes_done(partial, big.size) != 350_000:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never reached 350000 bytes"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        fake_hub.knobs.stall_after.clear()
        fake_hub.knobs.stall_release.set()
    fake_hub.reset_counters()
    result = download("test/big", endpoint=fake_hub.url, **SPLIT)
    (f,) = [f for f in result.files if f.name == BIG]
    assert (f.status, f.resumed_from) == ("resumed", 350_000)
    assert f.path.read_bytes() == big.data
    assert cdn_ranges(fake_hub) == ["bytes=250000-299999"]
    assert fake_hub.served("test/big", BIG) == 50_000


def test_a_single_stream_partial_becomes_the_first_range(fake_hub: FakeHub, hub_env: Path) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.drop_after[BIG] = 120_000
    with pytest.raises(Exception, match="kept failing"):
        download("test/big", endpoint=fake_hub.url, retry=RetryPolicy(max_retries=0))
    fake_hub.reset_counters()
    result = download("test/big", endpoint=fake_hub.url, **SPLIT)
    assert (result.root / BIG).read_bytes() == big.data
    assert fake_hub.served("test/big", BIG) == big.size - 120_000


def test_server_ignoring_ranges_falls_back_to_one_stream(fake_hub: FakeHub) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.ignore_range = True
    result = download("test/big", endpoint=fake_hub.url, **SPLIT)
    assert (result.root / BIG).read_bytes() == big.data


def test_a_corrupted_range_is_caught_and_everything_deleted(fake_hub: FakeHub, hub_env: Path) -> None:
    fake_hub.knobs.corrupt[BIG] = (333_000, 333_004)
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        download("test/big", endpoint=fake_hub.url, **SPLIT)
    partial = partial_of(hub_env, fake_hub)
    assert not partial.exists() and not partial.with_name(partial.name + ".ranges").exists()
