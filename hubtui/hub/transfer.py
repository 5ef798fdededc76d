"""The resumable, verified transfer of one file, on top of huggingface_hub's session, URL and auth helpers.

huggingface_hub deletes its partial files when a download fails, so a killed process starts over. Here
the partial file has a stable name derived from the content hash (`<etag>.incomplete`), bytes go to disk
as they arrive, and the next attempt (in this process or a later one) asks for `Range: bytes=<size>-`.
The finished file is hashed (sha256 for LFS files, the git blob id for small ones) before it is renamed
into place; a mismatch deletes the bad bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.utils import hf_raise_for_status, httpx

from hubtui.hub import settings
from hubtui.hub.errors import ChecksumMismatchError, DownloadCancelledError, HubError
from hubtui.hub.http import OWN_TIMEOUT
from hubtui.hub.retry import RetryPolicy, wait_for

_HASH_CHUNK = 8 << 20


@dataclass(frozen=True)
class Expected:
    """What the hub says the file is: its size and hash (sha256 for LFS, git blob sha1 otherwise)."""

    size: int
    digest: str
    algo: str  # "sha256" or "git-sha1"

    def hasher(self) -> hashlib._Hash:
        if self.algo == "sha256":
            return hashlib.sha256()
        h = hashlib.sha1()
        h.update(b"blob %d\0" % self.size)
        return h


class _BackgroundHasher:
    """Hashes chunks on a helper thread (hashlib releases the GIL), so hashing overlaps the network."""

    def __init__(self, h: hashlib._Hash) -> None:
        self._h = h
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._t = threading.Thread(target=self._run, name="hubtui-hash", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (chunk := self._q.get()) is not None:
            self._h.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._q.put(chunk)

    def hexdigest(self) -> str:
        self._q.put(None)
        self._t.join()
        return self._h.hexdigest()

    def abandon(self) -> None:
        self._q.put(None)


class Interrupter:
    """The sockets of one download's in-flight transfers, so a cancel can wake reads blocked on a stalled link."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.fired = False

    def register(self, response: httpx.Response) -> socket.socket | None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with self._lock:
                self._socks.add(sock)
                if self.fired:
                    _shutdown(sock)
        return sock

    def unregister(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with self._lock:
                self._socks.discard(sock)

    def interrupt(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def hash_prefix(path: Path, h: hashlib._Hash, size: int) -> None:
    """Feed the first `size` bytes already on disk into the hash (a resumed download's head)."""
    with open(path, "rb") as f:
        left = size
        while left > 0:
            chunk = f.read(min(_HASH_CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)


@contextlib.contextmanager
def open_stream(
    session: httpx.Client, url: str, headers: dict[str, str], read_timeout: float
) -> Iterator[httpx.Response]:
    """A streamed GET whose HTTP errors are raised as the hub's errors (gated, missing, rate-limited, ...)."""
    with session.stream(
        "GET",
        url,
        headers=headers,
        follow_redirects=True,
        extensions={"timeout": settings.timeouts(read=read_timeout).as_dict(), OWN_TIMEOUT: True},
    ) as response:
        if response.status_code >= 400:
            response.read()
            hf_raise_for_status(response)
        yield response


def _resume_point(partial: Path, expected: Expected) -> tuple[int, hashlib._Hash]:
    """(bytes to keep, hasher fed with them): the partial file's size, or 0 for one too large to be ours."""
    have = partial.stat().st_size if partial.exists() else 0
    if have > expected.size:  # not ours, or a different file: start over
        partial.unlink()
        have = 0
    h = expected.hasher()
    if have:
        hash_prefix(partial, h, have)
    return have, h


def fetch(
    session: httpx.Client,
    url: str,
    headers: dict[str, str],
    partial: Path,
    expected: Expected,
    *,
    on_bytes: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    retry: RetryPolicy | None = None,
    on_restart: Callable[[int], None] | None = None,
    interrupter: Interrupter | None = None,
) -> None:
    """Bring `partial` to the expected size with Range requests, then verify its hash.

    On success the partial file holds exactly the expected bytes (the caller renames it). Transient
    failures retry with backoff, each time resuming from the bytes on disk. Cancellation leaves the
    partial file for the next run. A hash mismatch deletes it and raises ChecksumMismatchError.
    """
    retry = retry or RetryPolicy()
    partial.parent.mkdir(parents=True, exist_ok=True)
    have, h = _resume_point(partial, expected)
    attempt = 0
    digest = h.hexdigest() if have == expected.size else ""
    while not digest:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelledError("download cancelled; the partial file is kept and resumes next time")
        try:
            digest = _stream(
                session,
                url,
                headers,
                partial,
                have,
                expected,
                h,
                on_bytes,
                cancel,
                on_restart,
                interrupter,
                retry.read_timeout,
            )
        except DownloadCancelledError:
            _drop_if_empty(partial)
            raise
        except Exception as exc:
            if cancel is not None and cancel.is_set():
                _drop_if_empty(partial)
                raise DownloadCancelledError(
                    "download cancelled; the partial file is kept and resumes next time"
                ) from None
            attempt += 1
            if not retry.should_retry(exc, attempt):
                raise
            have, h = _resume_point(partial, expected)
            retry.wait(wait_for(exc, attempt, retry), cancel)
    size = partial.stat().st_size
    if size != expected.size or digest != expected.digest:
        partial.unlink(missing_ok=True)
        what = "size" if size != expected.size else expected.algo
        raise ChecksumMismatchError(
            f"{partial.name}: downloaded {what} does not match the hub's "
            f"({size} bytes, {expected.algo} {digest[:16]}... expected {expected.size} bytes, "
            f"{expected.digest[:16]}...); the bad bytes were deleted, run the download again"
        )


def _stream(
    session: httpx.Client,
    url: str,
    headers: dict[str, str],
    partial: Path,
    have: int,
    expected: Expected,
    h: hashlib._Hash,
    on_bytes: Callable[[int], None] | None,
    cancel: threading.Event | None,
    on_restart: Callable[[int], None] | None,
    interrupter: Interrupter | None,
    read_timeout: float,
) -> str:
    """One GET from `have` to the end of the file; returns the hex digest of the whole file.

    `h` holds the hash of the first `have` bytes. A connection that ends early raises (after the bytes
    received are on disk), and the caller resumes from the file's size.
    """
    req = dict(headers)
    if have:
        req["Range"] = f"bytes={have}-"
    with open_stream(session, url, req, read_timeout) as response:
        if have and response.status_code != 206:
            # The server ignored the Range: what we have is not continued, so rewrite from byte 0.
            if on_restart is not None:
                on_restart(have)
            have = 0
            h = expected.hasher()
        elif have and not _range_starts_at(response.headers.get("Content-Range"), have):
            raise HubError(f"{partial.name}: the server answered a different byte range than asked ({have}-)")
        sock = interrupter.register(response) if interrupter is not None else None
        hasher = _BackgroundHasher(h)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if have else os.O_TRUNC), 0o644)
        try:
            # Raw bytes as they arrive; decoded only if a server compressed despite `Accept-Encoding: identity`
            # (then a Range resume is impossible anyway, and the hash is over the decoded content).
            encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("identity", "")
            for chunk in response.iter_bytes() if encoded else response.iter_raw():
                if not chunk:
                    continue
                if have + len(chunk) > expected.size:
                    chunk = chunk[: expected.size - have]
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                hasher.update(chunk)
                have += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                if have >= expected.size:
                    break
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelledError(
                        "download cancelled; the partial file is kept and resumes next time"
                    )
        except BaseException:
            hasher.abandon()
            raise
        finally:
            os.close(fd)
            if interrupter is not None:
                interrupter.unregister(sock)
    if have < expected.size:
        hasher.abandon()
        raise httpx.RemoteProtocolError(f"connection closed after {have} of {expected.size} bytes")
    return hasher.hexdigest()


def _drop_if_empty(partial: Path) -> None:
    """An empty partial file holds nothing to resume: do not leave it behind."""
    with contextlib.suppress(OSError):
        if partial.stat().st_size == 0:
            partial.unlink()


def _range_starts_at(content_range: str | None, start: int) -> bool:
    if not content_range:
        return False
    try:
        unit, _, rest = content_range.partition(" ")
        return unit == "bytes" and int(rest.split("-", 1)[0]) == start
    except ValueError:
        return False
