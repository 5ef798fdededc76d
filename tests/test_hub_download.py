"""download() against the fake hub: verified, resumable (dropped connection, killed process), gated, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hubtui.hub import DownloadProgress, RetryPolicy, list_cache
from hubtui.hub.download import download
from hubtui.hub.errors import (
    ChecksumMismatchError,
    DiskSpaceError,
    DownloadCancelledError,
    GatedRepoError,
    HubConnectionError,
    HubOfflineError,
    HubServerError,
    NotConvertibleError,
    RateLimitedError,
    RemoteFileNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnsafeFileNameError,
)
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import BIG, TOKEN, USER, add_llama_repo

REPO_ROOT = Path(__file__).resolve().parents[1]
LLAMA = "meta-llama/Tiny-Llama"
CONVERSION_FILES = [
    "README.md",
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
]


class Waits:
    """A RetryPolicy sleep that records instead of sleeping."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, s: float) -> None:
        self.seconds.append(s)


def fast(max_retries: int = 5) -> tuple[RetryPolicy, Waits]:
    waits = Waits()
    return RetryPolicy(max_retries=max_retries, sleep=waits), waits


def blob(cache: Path, repo_id: str, digest: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--")) / "blobs" / digest


def test_full_download_lands_in_the_hf_cache_verified(fake_hub: FakeHub, hub_env: Path) -> None:
    from huggingface_hub import hf_hub_download, scan_cache_dir

    events: list[DownloadProgress] = []
    result = download(LLAMA, endpoint=fake_hub.url, progress=events.append)
    repo = fake_hub.repos[LLAMA]
    assert [f.name for f in result.files] == CONVERSION_FILES  # no consolidated copy, params.json or pickles
    assert result.root == hub_env / "models--meta-llama--Tiny-Llama" / "snapshots" / repo.sha
    for f in result.files:
        assert f.path.read_bytes() == repo.files[f.name].data, f.name
        assert f.path.is_symlink() and f.status == "downloaded"
    assert result.fetched_bytes == sum(repo.files[n].size for n in CONVERSION_FILES)
    assert (
        fake_hub.served(LLAMA, "consolidated.safetensors") == 0
        and fake_hub.served(LLAMA, "pytorch_model.bin") == 0
    )
    # progress: per-file states and a final aggregate that adds up
    assert events[-1].done == events[-1].total == result.total_bytes
    assert events[-1].files_done == events[-1].files_total == len(CONVERSION_FILES)
    assert {e.file.state for e in events} >= {"downloading", "done"}
    # huggingface_hub sees a normal cache: scan_cache_dir and an offline hf_hub_download resolve our files
    scan = scan_cache_dir(hub_env)
    (cached,) = scan.repos
    assert cached.repo_id == LLAMA and cached.nb_files == len(CONVERSION_FILES) and not scan.warnings
    assert {ref for rev in cached.revisions for ref in rev.refs} == {"main"}
    path = hf_hub_download(LLAMA, "config.json", cache_dir=hub_env, local_files_only=True)
    assert Path(path) == result.root / "config.json"
    fake_hub.reset_counters()  # online, huggingface_hub finds our blob by its ETag and fetches nothing
    shard = "model-00001-of-00002.safetensors"
    assert (
        Path(hf_hub_download(LLAMA, shard, cache_dir=hub_env, endpoint=fake_hub.url)) == result.root / shard
    )
    assert sum(fake_hub.bytes_served.values()) == 0
    # privacy: nothing but hub API and file requests (no telemetry, no agent-harness lookup)
    assert all(r["path"].startswith(("/api/models/", "/meta-llama/", "/cdn/")) for r in fake_hub.requests)
    # a second run is served from the cache without fetching anything
    fake_hub.reset_counters()
    again = download(LLAMA, endpoint=fake_hub.url)
    assert {f.status for f in again.files} == {"cached"} and again.fetched_bytes == 0
    assert sum(fake_hub.bytes_served.values()) == 0


def test_local_dir_download_and_gguf_choice(fake_hub: FakeHub, tmp_path: Path) -> None:
    from huggingface_hub._local_folder import read_download_metadata

    out = tmp_path / "ggufs"
    result = download("bartowski/Tiny-Llama-GGUF", gguf="iq4_xs", local_dir=out, endpoint=fake_hub.url)
    names = ["Tiny-Llama-IQ4_XS-00001-of-00002.gguf", "Tiny-Llama-IQ4_XS-00002-of-00002.gguf"]
    assert [f.name for f in result.files] == names and result.root == out
    repo = fake_hub.repos["bartowski/Tiny-Llama-GGUF"]
    for name in names:
        assert (out / name).read_bytes() == repo.files[name].data
        meta = read_download_metadata(out, name)
        assert meta is not None and meta.commit_hash == repo.sha and meta.etag == repo.files[name].sha256
    assert sorted(p.name for p in out.iterdir()) == [".cache", *names]
    assert {
        f.status
        for f in download(
            "bartowski/Tiny-Llama-GGUF", gguf="IQ4_XS", local_dir=out, endpoint=fake_hub.url
        ).files
    } == {"cached"}


def test_mistral_native_and_pickle_only_repos(fake_hub: FakeHub) -> None:
    result = download("mistralai/Tiny-Mistral", endpoint=fake_hub.url)
    assert [f.name for f in result.files] == [
        "README.md",
        "consolidated.safetensors",
        "params.json",
        "tokenizer.model.v3",
    ]
    with pytest.raises(NotConvertibleError, match="pickle weights only"):
        download("someone/pickled-llama", endpoint=fake_hub.url)
    with pytest.raises(NotConvertibleError, match="--gguf"):
        download("bartowski/Tiny-Llama-GGUF", endpoint=fake_hub.url)


def test_dropped_connection_is_resumed_in_process_without_refetching(
    fake_hub: FakeHub, hub_env: Path
) -> None:
    repo = fake_hub.repos["test/big"]
    fake_hub.knobs.drop_after[BIG] = 150_000
    retry, waits = fast()
    result = download("test/big", endpoint=fake_hub.url, retry=retry)
    assert (result.root / BIG).read_bytes() == repo.files[BIG].data
    assert fake_hub.served("test/big", BIG) == repo.files[BIG].size  # every byte exactly once
    assert [r["range"] for r in fake_hub.requests if r["path"].startswith("/cdn/")] == [None, "bytes=150000-"]
    assert waits.seconds == [1.0]


def test_dropped_connection_keeps_the_partial_and_the_next_run_resumes(
    fake_hub: FakeHub, hub_env: Path
) -> None:
    repo = fake_hub.repos["test/big"]
    big = repo.files[BIG]
    fake_hub.knobs.drop_after[BIG] = 150_000
    retry, _ = fast(max_retries=0)
    with pytest.raises(HubConnectionError, match="kept failing.*run the same command again to resume"):
        download("test/big", endpoint=fake_hub.url, retry=retry, max_workers=1)
    partial = blob(hub_env, "test/big", big.sha256).with_suffix(".incomplete")
    assert partial.stat().st_size == 150_000 and not blob(hub_env, "test/big", big.sha256).exists()
    assert not (hub_env / "models--test--big" / "snapshots" / repo.sha / BIG).exists()
    report = list_cache(hub_env)
    assert [(i.repo_id, i.size) for i in report.incomplete] == [("test/big", 150_000)], report.incomplete
    result = download("test/big", endpoint=fake_hub.url)
    (f,) = [f for f in result.files if f.name == BIG]
    assert (f.status, f.resumed_from) == ("resumed", 150_000)
    assert f.path.read_bytes() == big.data and not partial.exists()
    assert fake_hub.served("test/big", BIG) == big.size


def test_killed_client_process_resumes_from_disk(fake_hub: FakeHub, hub_env: Path) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.stall_after[BIG] = 200_000
    code = f"from hubtui.hub.download import download\ndownload('test/big', endpoint={fake_hub.url!r}, max_workers=1)\n"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    partial = blob(hub_env, "test/big", big.sha256).with_suffix(".incomplete")
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size == 200_000):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never wrote the first 200000 bytes"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        fake_hub.knobs.stall_after.pop(BIG)
        fake_hub.knobs.stall_release.set()
    assert child.returncode == -signal.SIGKILL
    assert fake_hub.served("test/big", BIG) == 200_000
    result = download("test/big", endpoint=fake_hub.url)
    (f,) = [f for f in result.files if f.name == BIG]
    assert (f.status, f.resumed_from) == ("resumed", 200_000)
    assert f.path.read_bytes() == big.data
    assert fake_hub.served("test/big", BIG) == big.size  # 200000 before the kill + the rest, nothing twice


def test_cancel_after_the_last_byte_is_not_an_error(fake_hub: FakeHub) -> None:
    cancel = threading.Event()
    result = download(
        "test/big",
        endpoint=fake_hub.url,
        cancel=cancel,
        progress=lambda p: cancel.set() if p.files_done == p.files_total else None,
    )
    assert cancel.is_set() and {f.status for f in result.files} == {"downloaded"}


def test_cancel_on_a_stalled_link_returns_at_once_and_keeps_the_partial(
    fake_hub: FakeHub, hub_env: Path
) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.stall_after[BIG] = 200_000  # the server sends 200000 bytes, then nothing
    partial = blob(hub_env, "test/big", big.sha256).with_suffix(".incomplete")
    cancel = threading.Event()

    def cancel_when_stalled() -> None:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size == 200_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        cancel.set()

    watcher = threading.Thread(target=cancel_when_stalled)
    watcher.start()
    # With an hour's read timeout, only the cancel waking the blocked read lets this return (the test's
    # own timeout would fail it otherwise).
    with pytest.raises(DownloadCancelledError, match="resume"):
        download(
            "test/big",
            endpoint=fake_hub.url,
            cancel=cancel,
            max_workers=1,
            retry=RetryPolicy(read_timeout=3600),
        )
    watcher.join()
    assert partial.stat().st_size == 200_000
    fake_hub.knobs.stall_after.clear()
    fake_hub.knobs.stall_release.set()
    result = download("test/big", endpoint=fake_hub.url)
    assert [f.resumed_from for f in result.files if f.name == BIG] == [200_000]
    assert (result.root / BIG).read_bytes() == big.data


def test_server_ignoring_range_restarts_the_file_cleanly(fake_hub: FakeHub, hub_env: Path) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.drop_after[BIG] = 100_000
    with pytest.raises(HubConnectionError):
        download("test/big", endpoint=fake_hub.url, retry=fast(max_retries=0)[0])
    fake_hub.knobs.ignore_range = True
    result = download("test/big", endpoint=fake_hub.url)
    assert (result.root / BIG).read_bytes() == big.data


def test_corrupted_range_is_caught_and_deleted(fake_hub: FakeHub, hub_env: Path) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    fake_hub.knobs.corrupt[BIG] = (300_000, 300_010)
    with pytest.raises(
        ChecksumMismatchError, match=f"{big.sha256}.incomplete: downloaded sha256 does not match"
    ):
        download("test/big", endpoint=fake_hub.url)
    blobs = hub_env / "models--test--big" / "blobs"
    assert not blob(hub_env, "test/big", big.sha256).exists()
    assert not (blobs / f"{big.sha256}.incomplete").exists()
    assert not (hub_env / "models--test--big" / "snapshots" / fake_hub.repos["test/big"].sha / BIG).exists()
    del fake_hub.knobs.corrupt[BIG]
    result = download("test/big", endpoint=fake_hub.url)
    assert (result.root / BIG).read_bytes() == big.data


def test_corrupted_small_file_is_caught_by_its_git_blob_id(fake_hub: FakeHub, hub_env: Path) -> None:
    fake_hub.knobs.corrupt["config.json"] = (0, 1)
    with pytest.raises(ChecksumMismatchError, match="git-sha1"):
        download("test/big", endpoint=fake_hub.url, include=["config.json"])


def test_gated_repo_without_and_with_token(
    fake_hub: FakeHub, hub_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    add_llama_repo(fake_hub, "meta-llama/Gated", gated="manual")
    url = f"{fake_hub.url}/meta-llama/Gated"
    with pytest.raises(GatedRepoError) as anon:
        download("meta-llama/Gated", endpoint=fake_hub.url)
    assert url in str(anon.value) and "HF_TOKEN" in str(anon.value) and "hf auth login" in str(anon.value)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(GatedRepoError) as denied:
        download("meta-llama/Gated", endpoint=fake_hub.url)
    assert "request access at " + url in str(denied.value)
    assert not any("/resolve/" in r["path"] for r in fake_hub.requests)  # refused before any file request
    fake_hub.grant("meta-llama/Gated", USER)
    fake_hub.reset_counters()
    result = download("meta-llama/Gated", endpoint=fake_hub.url)
    assert [f.name for f in result.files] == CONVERSION_FILES
    # the token goes to the hub, never to the CDN host the LFS files redirect to
    assert all(auth == f"Bearer {TOKEN}" for path, auth in fake_hub.auth_seen if not path.startswith("/cdn/"))
    assert all(auth is None for path, auth in fake_hub.auth_seen if path.startswith("/cdn/"))
    for message in (str(anon.value), str(denied.value)):
        assert TOKEN not in message
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_not_found_errors(fake_hub: FakeHub) -> None:
    with pytest.raises(RepoNotFoundError, match="repo nobody/nothing not found on http://127.0.0.1"):
        download("nobody/nothing", endpoint=fake_hub.url)
    with pytest.raises(
        RevisionNotFoundError, match="revision 'no-such-branch' not found in meta-llama/Tiny-Llama"
    ):
        download(LLAMA, "no-such-branch", endpoint=fake_hub.url)
    fake_hub.knobs.evil_names = ["ghost.safetensors"]  # listed by the API but 404 on resolve
    with pytest.raises(
        RemoteFileNotFoundError, match="file 'ghost.safetensors' not found in meta-llama/Tiny-Llama"
    ):
        download(LLAMA, include=["ghost*"], endpoint=fake_hub.url)
    with pytest.raises(NotConvertibleError, match="no file in meta-llama/Tiny-Llama matches --include"):
        download(LLAMA, include=["*.nothing"], endpoint=fake_hub.url)


def test_rate_limited_then_success_honours_retry_after(fake_hub: FakeHub, hub_env: Path) -> None:
    fake_hub.knobs.rate_limit, fake_hub.knobs.retry_after = 2, "3"
    retry, waits = fast()
    download("test/big", endpoint=fake_hub.url, retry=retry)  # the API call is limited
    fake_hub.knobs.rate_limit, fake_hub.knobs.rate_limit_match = 1, "/resolve/"
    download(LLAMA, endpoint=fake_hub.url, retry=retry, max_workers=1)  # and then a file transfer
    assert waits.seconds == [3.0, 3.0, 3.0]
    assert fake_hub.knobs.rate_limit == 0


def test_rate_limit_and_server_errors_that_persist(fake_hub: FakeHub) -> None:
    fake_hub.knobs.rate_limit, fake_hub.knobs.retry_after = 100, "7"
    retry, waits = fast(max_retries=2)
    with pytest.raises(RateLimitedError, match=r"HTTP 429.*after 2 retries; the hub asks to wait 7s"):
        download(LLAMA, endpoint=fake_hub.url, retry=retry)
    assert waits.seconds == [7.0, 7.0]
    fake_hub.knobs.rate_limit = 0
    fake_hub.knobs.server_error = 1
    retry, waits = fast()
    download("test/big", endpoint=fake_hub.url, retry=retry)  # one 500, then fine
    assert waits.seconds == [1.0]
    fake_hub.knobs.server_error = 100
    retry, waits = fast(max_retries=3)
    with pytest.raises(
        HubServerError, match=r"HTTP 500 from http://127\.0\.0\.1:\d+ for meta-llama/Tiny-Llama/"
    ):
        download(LLAMA, endpoint=fake_hub.url, retry=retry, max_workers=1)
    assert waits.seconds == [1.0, 2.0, 4.0]  # exponential backoff


def test_not_enough_disk_space_is_refused_up_front(fake_hub: FakeHub, hub_env: Path) -> None:
    probed: list[Path] = []

    def free(path: Path) -> int:
        probed.append(path)
        return 100_000

    with pytest.raises(DiskSpaceError, match=r"needs 39\d\.\d\d KiB more, 97\.66 KiB free"):
        download("test/big", endpoint=fake_hub.url, disk_free=free)
    assert probed == [hub_env / "models--test--big" / "blobs"]
    assert not any("/resolve/" in r["path"] for r in fake_hub.requests)
    assert not (hub_env / "models--test--big").exists()


def test_malicious_file_names_write_nothing_outside(fake_hub: FakeHub, hub_env: Path, tmp_path: Path) -> None:
    fake_hub.knobs.evil_names = ["../../../escaped.txt", "/tmp/absolute-escape.txt"]
    for kwargs in ({}, {"local_dir": tmp_path / "out"}):
        with pytest.raises(UnsafeFileNameError, match="refusing unsafe file name"):
            download(LLAMA, include=["*"], endpoint=fake_hub.url, **kwargs)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/absolute-escape.txt").exists()
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))
    assert not any("/resolve/" in r["path"] for r in fake_hub.requests)


def test_offline_mode(fake_hub: FakeHub, hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    download("test/big", endpoint=fake_hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.reset_counters()
    with pytest.raises(HubOfflineError, match="offline mode"):
        download("test/big", endpoint=fake_hub.url)
    assert [r.repo_id for r in list_cache().repos] == ["test/big"]
    assert fake_hub.requests == []


def test_telemetry_is_off_by_default() -> None:
    import huggingface_hub.constants as hf_constants

    import hubtui.hub  # noqa: F401

    assert os.environ.get("HF_HUB_DISABLE_TELEMETRY") == "1" or os.environ.get("HUBTUI_TELEMETRY")
    assert hf_constants.HF_HUB_DISABLE_TELEMETRY


def test_realistic_checkpoint_from_the_fixtures(hub_env: Path, mistral_tiny_dir: Path) -> None:
    """A real sharded HF-layout checkpoint (the mistral-tiny fixture) served from disk: details and download."""
    import math

    from safetensors import safe_open

    from hubtui.hub.details import details
    from tests.fakehub import FakeRepo

    hub = FakeHub()
    repo = hub.add_repo(FakeRepo("mistralai/Mistral-Tiny-Fixture", tags=["mistral"]))
    for path in sorted(mistral_tiny_dir.iterdir()):
        if path.is_file():
            repo.add(path.name, source=path)
    expected_params = 0
    for shard in mistral_tiny_dir.glob("model-*.safetensors"):
        with safe_open(shard, "np") as f:
            expected_params += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    with hub:
        d = details(repo.repo_id, endpoint=hub.url)
        assert d.layout.kind == "hf" and d.parameters == expected_params
        result = download(repo.repo_id, endpoint=hub.url)
    assert sorted(f.name for f in result.files) == sorted(
        p.name for p in mistral_tiny_dir.iterdir() if p.is_file()
    )
    for f in result.files:
        assert f.path.read_bytes() == (mistral_tiny_dir / f.name).read_bytes(), f.name


def test_sizes_come_from_the_tree_listing_when_model_info_has_none(fake_hub: FakeHub) -> None:
    fake_hub.knobs.no_blobs = True
    result = download("test/big", endpoint=fake_hub.url)
    assert (result.root / BIG).read_bytes() == fake_hub.repos["test/big"].files[BIG].data
    assert any("/tree/" in r["path"] and "recursive=true" in r["path"] for r in fake_hub.requests)


def test_cache_rm_by_repo_file_and_gguf_path(fake_hub: FakeHub, hub_env: Path, tmp_path: Path) -> None:
    from hubtui.hub import remove
    from hubtui.hub.errors import HubError

    result = download(LLAMA, endpoint=fake_hub.url)
    config = result.root / "config.json"
    gone = remove(str(config))
    assert gone.freed == fake_hub.repos[LLAMA].files["config.json"].size and not config.exists()
    (repo,) = list_cache().repos
    assert repo.nb_files == len(CONVERSION_FILES) - 1
    gguf = tmp_path / "model-Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF" + bytes(96))
    assert remove(str(gguf)).freed == 100 and not gguf.exists()
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    with pytest.raises(HubError, match="refusing to delete"):
        remove(str(other))
    assert other.exists()
    rest = remove(LLAMA)
    assert rest.freed == result.total_bytes - fake_hub.repos[LLAMA].files["config.json"].size
    assert list_cache().repos == []


def test_a_rejected_token_says_so_without_showing_it(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubtui.hub.errors import InvalidTokenError

    bad = "hf_expiredExpiredExpired000"
    monkeypatch.setenv("HF_TOKEN", bad)
    with pytest.raises(InvalidTokenError, match="rejected your token") as err:
        download(LLAMA, endpoint=fake_hub.url)
    assert bad not in str(err.value)


def test_a_compressed_response_is_decoded_before_hashing(fake_hub: FakeHub) -> None:
    fake_hub.knobs.force_gzip = True
    result = download(LLAMA, include=["*.json"], endpoint=fake_hub.url)
    repo = fake_hub.repos[LLAMA]
    assert len(result.files) == 6
    for f in result.files:
        assert f.path.read_bytes() == repo.files[f.name].data
    assert fake_hub.served(LLAMA, "tokenizer.json") < repo.files["tokenizer.json"].size  # it was gzipped


def test_a_complete_partial_left_by_a_kill_before_the_rename_is_verified_not_refetched(
    fake_hub: FakeHub, hub_env: Path
) -> None:
    big = fake_hub.repos["test/big"].files[BIG]
    partial = blob(hub_env, "test/big", big.sha256).with_suffix(".incomplete")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(big.data)
    result = download("test/big", endpoint=fake_hub.url)
    (f,) = [f for f in result.files if f.name == BIG]
    assert (f.status, f.resumed_from) == ("resumed", big.size) and f.path.read_bytes() == big.data
    assert fake_hub.served("test/big", BIG) == 0
