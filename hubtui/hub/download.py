"""`download()`: fetch what conversion needs (or a chosen GGUF) into the HF cache or a folder.

Resumable across process restarts, verified against the hub's hashes, disk space checked first, several
files at once with aggregate progress and cancel. Files land in the standard cache layout
(`blobs/<etag>`, `snapshots/<commit>/<name>` symlinks, `refs/<revision>`) so `hf cache ls`,
transformers and llama.cpp's `-hf` find them, or in `local_dir` with huggingface_hub's own metadata.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from hubtui.hub import settings
from hubtui.hub.client import HubContext, connect
from hubtui.hub.errors import (
    DiskSpaceError,
    DownloadCancelledError,
    HubError,
    NotConvertibleError,
)
from hubtui.hub.files import check_name, filter_names, safe_join, select_for_conversion, select_gguf
from hubtui.hub.progress import ProgressCallback, ProgressTracker
from hubtui.hub.retry import RetryPolicy
from hubtui.hub.segmented import RangeNotHonoured, bytes_done, fetch_ranges, sidecar_path
from hubtui.hub.snapshots import storage_folder
from hubtui.hub.transfer import Expected, Interrupter, fetch
from quant.outputs import fsync_dir, fsync_file, output_lock, write_bytes
from quant.units import format_bytes

DiskFree = Callable[[Path], int]


@dataclass(frozen=True)
class DownloadedFile:
    """One file of the result; `status` is downloaded, resumed (continued from partial bytes) or cached."""

    name: str
    path: Path
    size: int
    status: str
    resumed_from: int = 0


@dataclass(frozen=True)
class DownloadResult:
    repo_id: str
    revision: str
    commit: str
    root: Path  # the snapshot folder in the cache, or local_dir
    files: list[DownloadedFile]
    fetched_bytes: int  # bytes that came over the network in this run

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class _Item:
    name: str
    expected: Expected
    final: Path
    partial: Path
    pointer: Path | None  # snapshot symlink (cache mode)
    lock: Path
    have: int = 0
    cached: bool = False


def free_space(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    for p in (path, *path.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return shutil.disk_usage(Path.cwd()).free


def download(
    repo_id: str,
    revision: str | None = None,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    gguf: str | None = None,
    local_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    max_workers: int = 4,
    disk_free: DiskFree | None = None,
    retry: RetryPolicy | None = None,
    connections: int = 4,
    split_above: int = 256 << 20,
) -> DownloadResult:
    """Download a checkpoint; see the module docstring. Raises HubError subclasses on failure.

    Files larger than `split_above` bytes are fetched over `connections` parallel range requests.
    """
    ctx = connect(endpoint, token, retry, cancel, need_network="download")
    info = ctx.call(
        lambda: ctx.api.model_info(repo_id, revision=revision, files_metadata=True),
        repo_id=repo_id,
        revision=revision,
    )
    if info.gated:
        ctx.call(lambda: ctx.api.auth_check(repo_id), repo_id=repo_id, revision=revision)
    commit = info.sha or ""
    if not commit:
        raise HubError(f"{ctx.endpoint} gave no commit for {repo_id}; is HF_ENDPOINT a Hugging Face Hub?")
    siblings: dict[str, object] = {s.rfilename: s for s in info.siblings or []}
    names = _choose(list(siblings), repo_id, include, exclude, gguf)
    for name in names:
        check_name(name)
    if any(getattr(siblings[n], "size", None) is None for n in names):
        # Some mirrors ignore blobs=true: the tree listing carries the sizes and hashes too.
        tree = ctx.call(
            lambda: list(ctx.api.list_repo_tree(repo_id, revision=commit, recursive=True)), repo_id=repo_id
        )
        siblings.update({f.path: f for f in tree if hasattr(f, "size")})

    cache = settings.cache_dir(cache_dir)
    root = (
        Path(local_dir).expanduser()
        if local_dir is not None
        else storage_folder(cache, repo_id) / "snapshots" / commit
    )
    items = [_transfer(name, siblings[name], root, cache, repo_id, local_dir is not None) for name in names]

    need = sum(it.expected.size - it.have for it in items if not it.cached)
    target = root if local_dir is not None else storage_folder(cache, repo_id) / "blobs"
    free = (disk_free or free_space)(target)
    if need > free:
        raise DiskSpaceError(
            f"not enough disk space for {repo_id} in {target}: needs {format_bytes(need)} more, "
            f"{format_bytes(free)} free; free some space (`hubtui cache rm`) or use --local-dir elsewhere"
        )

    if local_dir is None:
        _prepare_cache(storage_folder(cache, repo_id), commit, revision)
    tracker = ProgressTracker({it.name: it.expected.size for it in items}, progress)
    for it in items:
        if it.cached:
            _finish_cached(it, local_dir, commit)
            tracker.state(it.name, "cached", it.expected.size)
        elif it.have:
            tracker.state(it.name, "queued", it.have)
    fetched = _run(
        ctx, items, repo_id, commit, local_dir, tracker, cancel, max_workers, connections, split_above
    )
    files = [
        DownloadedFile(
            it.name,
            it.pointer if it.pointer is not None else it.final,
            it.expected.size,
            "cached" if it.cached else "resumed" if it.have else "downloaded",
            it.have,
        )
        for it in items
    ]
    return DownloadResult(repo_id, revision or "main", commit, root, files, fetched)


def _choose(
    names: list[str], repo_id: str, include: list[str] | None, exclude: list[str] | None, gguf: str | None
) -> list[str]:
    if gguf:
        chosen = select_gguf(names, gguf, repo_id)
        return filter_names(chosen, include, exclude)
    if include:
        chosen = filter_names(names, include, exclude)
        if not chosen:
            raise NotConvertibleError(f"no file in {repo_id} matches --include {' '.join(include)}")
        return chosen
    return filter_names(select_for_conversion(names, repo_id), None, exclude)


def _transfer(name: str, sib: object, root: Path, cache: Path, repo_id: str, local: bool) -> _Item:
    """One file's transfer: its expected size and hash, where it lands, and what of it is already here."""
    size = getattr(sib, "size", None)
    lfs = getattr(sib, "lfs", None)
    blob_id = getattr(sib, "blob_id", None)
    if size is None or (lfs is None and not blob_id):
        raise HubError(
            f"the hub gave no size or hash for {repo_id}/{name}; cannot verify it, refusing to download"
        )
    expected = (
        Expected(size, lfs.sha256, "sha256")
        if lfs is not None
        else Expected(size, cast(str, blob_id), "git-sha1")
    )
    if local:
        from hubtui.hub.local_folder import get_local_download_paths, read_download_metadata

        final = safe_join(root, name)
        paths = get_local_download_paths(root, name)
        partial = paths.incomplete_path(expected.digest)
        meta = read_download_metadata(root, name)
        cached = (
            final.is_file()
            and meta is not None
            and meta.etag == expected.digest
            and final.stat().st_size == size
        )
        lock = paths.lock_path.with_name(paths.lock_path.name + ".hubtui")  # not huggingface_hub's own lock
        item = _Item(name, expected, final, partial, None, lock, cached=cached)
    else:
        storage = storage_folder(cache, repo_id)
        blob = storage / "blobs" / expected.digest
        pointer = safe_join(root, name)
        cached = blob.is_file() and blob.stat().st_size == size
        partial = blob.with_name(blob.name + ".incomplete")
        lock = cache / ".locks" / storage.name / f"{expected.digest}.hubtui.lock"
        item = _Item(name, expected, blob, partial, pointer, lock, cached=cached)
    if not item.cached and item.partial.is_file():
        split = bytes_done(item.partial, size)
        item.have = split if split is not None else min(item.partial.stat().st_size, size)
    return item


def _prepare_cache(storage: Path, commit: str, revision: str | None) -> None:
    """Snapshot folder first, then the ref, so the cache is never inconsistent for `hf cache ls`."""
    (storage / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    ref = revision or "main"
    if ref != commit:
        check_name(ref)
        ref_path = storage / "refs" / ref
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        if not ref_path.is_file() or ref_path.read_text() != commit:
            write_bytes(ref_path, commit.encode())


def _place(it: _Item) -> None:
    """Rename a verified partial file into place, durably. In a --local-dir (the user's folder) the final
    name is claimed too, so two downloads writing the same file there cannot interleave."""
    it.final.parent.mkdir(parents=True, exist_ok=True)
    fsync_file(it.partial)
    if it.pointer is None:
        with output_lock(it.final):
            os.replace(it.partial, it.final)
    else:
        os.replace(it.partial, it.final)
    fsync_dir(it.final.parent)


def _link(blob: Path, pointer: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        if pointer.resolve() == blob.resolve():
            return
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:  # no symlinks here (some Windows/FAT setups): a copy keeps the layout usable
        shutil.copyfile(blob, pointer)


def _finish_cached(it: _Item, local_dir: str | Path | None, commit: str) -> None:
    if it.pointer is not None:
        _link(it.final, it.pointer)
    elif local_dir is not None:
        from hubtui.hub.local_folder import write_download_metadata

        write_download_metadata(Path(local_dir).expanduser(), it.name, commit, it.expected.digest)


def _run(
    ctx: HubContext,
    items: list[_Item],
    repo_id: str,
    commit: str,
    local_dir: str | Path | None,
    tracker: ProgressTracker,
    cancel: threading.Event | None,
    max_workers: int,
    connections: int,
    split_above: int,
) -> int:
    """Fetch the missing files on a thread pool; the first failure stops the others (their partials stay)."""
    from filelock import FileLock, Timeout
    from huggingface_hub import hf_hub_url

    todo = sorted((it for it in items if not it.cached), key=lambda it: it.expected.size)
    if not todo:
        return 0
    abort = threading.Event()
    stop = cast(threading.Event, _Either(abort, cancel))  # has the Event methods fetch and fetch_ranges use
    interrupter = Interrupter()
    fetched = [0]
    count_lock = threading.Lock()
    headers = ctx.headers()

    def work(it: _Item) -> None:
        if stop.is_set():
            raise DownloadCancelledError("download cancelled")
        it.lock.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(it.lock))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise HubError(
                f"{repo_id}/{it.name} is being downloaded by another process; wait for it"
            ) from None
        try:
            tracker.state(it.name, "downloading", it.have)

            def on_bytes(n: int) -> None:
                with count_lock:
                    fetched[0] += n
                tracker.advance(it.name, n)

            url = hf_hub_url(repo_id, it.name, revision=commit, endpoint=ctx.endpoint)
            sidecar = sidecar_path(it.partial)
            split = connections > 1 and (it.expected.size > split_above or sidecar.exists())
            try:
                if split:
                    try:
                        fetch_ranges(
                            ctx.session,
                            url,
                            headers,
                            it.partial,
                            it.expected,
                            connections,
                            on_bytes=on_bytes,
                            cancel=stop,
                            retry=ctx.retry,
                            interrupter=interrupter,
                        )
                    except RangeNotHonoured:  # one stream from byte 0 then
                        tracker.rewind(it.name, it.expected.size)
                        it.partial.unlink(missing_ok=True)
                        sidecar.unlink(missing_ok=True)
                        split = False
                if not split:
                    fetch(
                        ctx.session,
                        url,
                        headers,
                        it.partial,
                        it.expected,
                        on_bytes=on_bytes,
                        cancel=stop,
                        retry=ctx.retry,
                        on_restart=lambda n: tracker.rewind(it.name, n),
                        interrupter=interrupter,
                    )
            except HubError:
                raise
            except Exception as exc:
                raise ctx.translate(exc, repo_id=repo_id, revision=commit, filename=it.name) from exc
            tracker.state(it.name, "verifying")
            _place(it)
            _finish_cached(it, local_dir, commit)
            tracker.state(it.name, "done", it.expected.size)
        except BaseException:
            tracker.state(it.name, "failed")
            raise
        finally:
            lock.release()

    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="hubtui-dl")
    futures: list[Future[None]] = [pool.submit(work, it) for it in todo]
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            cancelled = cancel is not None and cancel.is_set()
            if not abort.is_set() and (cancelled or any(f.exception() is not None for f in done)):
                abort.set()
                interrupter.interrupt()
    except BaseException:  # KeyboardInterrupt in the caller's thread: stop the workers, keep the partials
        abort.set()
        interrupter.interrupt()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    errors = [e for f in futures if f.done() and not f.cancelled() and (e := f.exception()) is not None]
    real = [e for e in errors if not isinstance(e, DownloadCancelledError)]
    if real:
        raise real[0]
    if errors:
        raise DownloadCancelledError(
            f"download of {repo_id} cancelled; partial files are kept and the next run resumes them"
        )
    return fetched[0]


class _Either:
    """Set when the caller cancels or another worker failed; quacks like the Event `fetch` expects."""

    def __init__(self, a: threading.Event, b: threading.Event | None) -> None:
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or (self._b is not None and self._b.is_set())

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._a.wait(min(left, 0.1))
        return True
