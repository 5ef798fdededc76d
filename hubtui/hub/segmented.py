"""Big files over several connections at once, still resumable after a kill and still verified.

A CDN often caps each connection, so one stream leaves bandwidth unused on large shards. Here the file
is cut into byte ranges fetched in parallel into the same partial file (`os.pwrite` at their offsets).
Progress lives in a small binary sidecar (`<partial>.ranges`): per range its start, end and bytes done,
rewritten in place right after each chunk is written, so after a kill, Ctrl-C or lost connection the
next run continues every range exactly where its bytes stop. The whole file is hashed once at the end.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huggingface_hub.utils import httpx

from hubtui.hub.errors import ChecksumMismatchError, DownloadCancelledError, HubError
from hubtui.hub.retry import RetryPolicy, wait_for
from hubtui.hub.transfer import Expected, Interrupter, hash_prefix, open_stream

MAGIC = b"HUBTUIR1"
_HEAD = struct.Struct("<8sQQ")  # magic, file size, number of ranges
_RANGE = struct.Struct("<QQQ")  # start, end (exclusive), done


class RangeNotHonoured(HubError):
    """The server answered a range request with the whole file; the caller falls back to one stream."""


class Ranges:
    """The sidecar: fixed-size records, each range's `done` updated in place."""

    def __init__(self, path: Path, size: int, parts: int, prefix: int) -> None:
        self.path = path
        self.size = size
        self.ranges = self._load(parts, prefix)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self._fd, _HEAD.pack(MAGIC, size, len(self.ranges)), 0)
        for i, r in enumerate(self.ranges):
            os.pwrite(self._fd, _RANGE.pack(*r), _HEAD.size + i * _RANGE.size)

    def _load(self, parts: int, prefix: int) -> list[list[int]]:
        try:
            raw = self.path.read_bytes()
            magic, size, n = _HEAD.unpack_from(raw, 0)
            if magic == MAGIC and size == self.size and len(raw) >= _HEAD.size + n * _RANGE.size:
                return [list(_RANGE.unpack_from(raw, _HEAD.size + i * _RANGE.size)) for i in range(n)]
        except (OSError, struct.error):
            pass
        # Fresh (or after a single-stream partial of `prefix` bytes): the prefix counts as one finished range.
        out = [[0, prefix, prefix]] if prefix else []
        step = max((self.size - prefix + parts - 1) // parts, 1)
        out += [[s, min(s + step, self.size), 0] for s in range(prefix, self.size, step)]
        return out

    def record(self, i: int, done: int) -> None:
        self.ranges[i][2] = done
        os.pwrite(self._fd, struct.pack("<Q", done), _HEAD.size + i * _RANGE.size + 16)

    @property
    def done(self) -> int:
        return sum(r[2] for r in self.ranges)

    def close(self) -> None:
        os.close(self._fd)


def sidecar_path(partial: Path) -> Path:
    """Where the range progress of `partial` is recorded."""
    return partial.with_name(partial.name + ".ranges")


def bytes_done(partial: Path, size: int) -> int | None:
    """Bytes already fetched of a split download (from its sidecar), None if it is not one."""
    try:
        raw = sidecar_path(partial).read_bytes()
        magic, stored, n = _HEAD.unpack_from(raw, 0)
        if magic != MAGIC or stored != size or not partial.exists():
            return None
        return sum(_RANGE.unpack_from(raw, _HEAD.size + i * _RANGE.size)[2] for i in range(n))
    except (OSError, struct.error):
        return None


def fetch_ranges(
    session: httpx.Client,
    url: str,
    headers: dict[str, str],
    partial: Path,
    expected: Expected,
    parts: int,
    *,
    on_bytes: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    retry: RetryPolicy | None = None,
    interrupter: Interrupter | None = None,
) -> None:
    """Bring `partial` to the expected content with `parts` parallel range requests, then verify it."""
    retry = retry or RetryPolicy()
    sidecar = sidecar_path(partial)
    if sidecar.exists() and not partial.exists():  # progress without its bytes means nothing
        sidecar.unlink()
    prefix = partial.stat().st_size if partial.exists() and not sidecar.exists() else 0
    if prefix > expected.size:
        partial.unlink()
        prefix = 0
    ranges = Ranges(sidecar, expected.size, parts, prefix)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        todo = [i for i, r in enumerate(ranges.ranges) if r[0] + r[2] < r[1]]
        if todo:
            with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="hubtui-range") as pool:
                futures = [
                    pool.submit(
                        _fetch_range,
                        session,
                        url,
                        headers,
                        fd,
                        ranges,
                        i,
                        on_bytes,
                        cancel,
                        retry,
                        interrupter,
                    )
                    for i in todo
                ]
                errors = [f.exception() for f in futures]
            real = [e for e in errors if e is not None and not isinstance(e, DownloadCancelledError)]
            if real:
                raise real[0]
            if any(errors):
                raise DownloadCancelledError(
                    "download cancelled; the partial file is kept and resumes next time"
                )
    finally:
        os.close(fd)
        ranges.close()
    h = expected.hasher()
    hash_prefix(partial, h, expected.size)
    size = partial.stat().st_size
    sidecar.unlink(missing_ok=True)
    if size != expected.size or h.hexdigest() != expected.digest:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{partial.name}: downloaded {expected.algo} does not match the hub's ({size} bytes, expected "
            f"{expected.size} bytes, {expected.digest[:16]}...); the bad bytes were deleted, run the download again"
        )


def _fetch_range(
    session: httpx.Client,
    url: str,
    headers: dict[str, str],
    fd: int,
    ranges: Ranges,
    i: int,
    on_bytes: Callable[[int], None] | None,
    cancel: threading.Event | None,
    retry: RetryPolicy,
    interrupter: Interrupter | None,
) -> None:
    attempt = 0
    while True:
        start, end, done = ranges.ranges[i]
        if start + done >= end:
            return
        if cancel is not None and cancel.is_set():
            raise DownloadCancelledError("download cancelled")
        try:
            _stream_range(
                session, url, headers, fd, ranges, i, on_bytes, cancel, interrupter, retry.read_timeout
            )
            attempt = 0
        except (DownloadCancelledError, RangeNotHonoured):
            raise
        except Exception as exc:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelledError("download cancelled") from None
            attempt += 1
            if not retry.should_retry(exc, attempt):
                raise
            retry.wait(wait_for(exc, attempt, retry), cancel)


def _stream_range(
    session: httpx.Client,
    url: str,
    headers: dict[str, str],
    fd: int,
    ranges: Ranges,
    i: int,
    on_bytes: Callable[[int], None] | None,
    cancel: threading.Event | None,
    interrupter: Interrupter | None,
    read_timeout: float,
) -> None:
    start, end, done = ranges.ranges[i]
    req = {**headers, "Range": f"bytes={start + done}-{end - 1}"}
    with open_stream(session, url, req, read_timeout) as response:
        if response.status_code != 206:
            raise RangeNotHonoured("the server ignored a Range request")
        sock = interrupter.register(response) if interrupter is not None else None
        try:
            for chunk in response.iter_raw():
                if not chunk:
                    continue
                pos = start + done
                chunk = chunk[: end - pos]
                view = memoryview(chunk)
                off = pos
                while view:
                    n = os.pwrite(fd, view, off)
                    view, off = view[n:], off + n
                done += len(chunk)
                ranges.record(i, done)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                if start + done >= end:
                    return
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelledError("download cancelled")
        finally:
            if interrupter is not None:
                interrupter.unregister(sock)
    if start + done < end:
        raise httpx.RemoteProtocolError(f"range {start}-{end - 1} closed after {done} bytes")
