"""A fake Hugging Face Hub: a real HTTP server on 127.0.0.1, in a thread, for the hub client's tests.

It serves the endpoints `huggingface_hub` 2.x calls (model search, model info with file metadata,
tree listing, auth check, whoami, `resolve` with HEAD/GET/Range) with the same headers the real Hub
sends (`X-Repo-Commit`, `ETag`, `X-Linked-Etag`, `X-Linked-Size`, `X-Error-Code`, `Location`), and
knobs that make it misbehave the way networks and hubs do: gated and private repos, 429 with
`Retry-After`, a connection dropped after N bytes, a stalled transfer, a corrupted byte range. It counts
the bytes it serves per file so tests can prove that a resumed download did not fetch the same bytes twice.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_THRESHOLD = 1024  # files at least this big are served as LFS (sha256 ETag, CDN redirect)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's content (what the Hub reports as `blobId`/`oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeFile:
    """One file of a repo: bytes in memory, or a path on disk (for large benchmark files)."""

    path: str
    data: bytes | None = None
    source: Path | None = None
    sha256: str = ""
    size: int = 0
    lfs: bool = False
    oid: str = ""

    def __post_init__(self) -> None:
        if self.data is not None:
            self.size = len(self.data)
            self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()
            self.oid = self.oid or git_blob_sha1(self.data)
        elif self.source is not None:
            self.size = self.source.stat().st_size
            h256, h1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % self.size)
            with open(self.source, "rb") as f:
                while chunk := f.read(1 << 22):
                    h256.update(chunk)
                    h1.update(chunk)
            self.sha256 = self.sha256 or h256.hexdigest()
            self.oid = self.oid or h1.hexdigest()
        self.lfs = self.lfs or self.size >= LFS_THRESHOLD

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end)."""
        if self.data is not None:
            return self.data[start:end]
        assert self.source is not None
        with open(self.source, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


@dataclass
class FakeRepo:
    """A model repo with one commit (plus optional extra revision names pointing at it)."""

    repo_id: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    sha: str = ""
    gated: str | bool = False  # False, "auto" or "manual"
    private: bool = False
    downloads: int = 0
    likes: int = 0
    trending: int = 0
    tags: list[str] = field(default_factory=list)
    library_name: str | None = "transformers"
    last_modified: str = "2025-01-01T00:00:00.000Z"
    license: str | None = "apache-2.0"
    parameters: int | None = None
    revisions: dict[str, str] = field(default_factory=dict)
    card_data: dict[str, Any] = field(default_factory=dict)  # model card front matter besides the licence

    def __post_init__(self) -> None:
        self.sha = self.sha or hashlib.sha1(self.repo_id.encode()).hexdigest()
        self.revisions.setdefault("main", self.sha)

    def add(self, path: str, data: bytes | None = None, source: Path | None = None) -> FakeFile:
        f = FakeFile(path=path, data=data, source=source)
        self.files[path] = f
        return f

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    def all_tags(self) -> list[str]:
        tags = list(self.tags)
        if any(p.endswith(".safetensors") for p in self.files) and "safetensors" not in tags:
            tags.append("safetensors")
        if any(p.endswith(".gguf") for p in self.files) and "gguf" not in tags:
            tags.append("gguf")
        if self.license and f"license:{self.license}" not in tags:
            tags.append(f"license:{self.license}")
        return tags


@dataclass
class Knobs:
    """Misbehaviour switches; each one-shot counter is decremented as it fires."""

    rate_limit: int = 0  # answer the next N requests (any endpoint) with 429
    retry_after: str = "1"
    rate_limit_match: str = ""  # only requests whose path contains this (e.g. "/resolve/") are rate limited
    server_error: int = 0  # answer the next N resolve requests with 500
    # file path -> close the socket at this file offset
    drop_after: dict[str, int] = field(default_factory=dict)
    drop_times: dict[str, int] = field(default_factory=dict)  # how many times to drop (default once)
    # file path -> stop sending at this file offset until stall_release is set
    stall_after: dict[str, int] = field(default_factory=dict)
    stall_release: threading.Event = field(default_factory=threading.Event)
    # file path -> byte range [a, b) whose bits are flipped on the way out
    corrupt: dict[str, tuple[int, int]] = field(default_factory=dict)
    redirect_lfs: bool = True  # LFS downloads redirect to a "CDN" on another origin (localhost vs 127.0.0.1)
    chunk_delay: float = 0.0  # seconds to sleep between 64 KiB body chunks (a slow link)
    ignore_range: bool = False  # answer 200 with the whole body even when a Range was asked for
    force_gzip: bool = False  # gzip whole-file responses whatever Accept-Encoding says
    no_blobs: bool = False  # model info ignores blobs=true (an old mirror): sizes only from the tree listing
    evil_names: list[str] = field(default_factory=list)  # extra sibling names to advertise (e.g. "../x")


class FakeHub:
    """The server plus its state. Use as a context manager or call start()/stop()."""

    def __init__(self, valid_tokens: dict[str, str] | None = None) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.valid_tokens = dict(valid_tokens or {})  # token -> user name
        self.grants: dict[str, set[str]] = defaultdict(set)  # repo_id -> user names with access
        self.knobs = Knobs()
        self.bytes_served: dict[str, int] = defaultdict(int)  # "repo_id/path" -> body bytes written
        self.requests: list[dict[str, Any]] = []
        self.auth_seen: list[tuple[str, str | None]] = []  # (path, authorization header) of every request
        self.page_size = 1000
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()  # open client connections, closed on stop()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- setup -------------------------------------------------------------------------------------
    def add_repo(self, repo: FakeRepo) -> FakeRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def grant(self, repo_id: str, user: str) -> None:
        self.grants[repo_id].add(user)

    def served(self, repo_id: str, path: str) -> int:
        return self.bytes_served.get(f"{repo_id}/{path}", 0)

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()
            self.auth_seen.clear()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakehub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.knobs.stall_release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # Kill keep-alive connections too: a later hub may get the same port, and a client's pooled
        # connection must not keep talking to this one's handler threads.
        with self._lock:
            for conn in self._conns:
                _hard_close(conn)
            self._conns.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- model JSON ----------------------------------------------------------------------------------
    def model_json(self, repo: FakeRepo, blobs: bool) -> dict[str, Any]:
        siblings = []
        for f in repo.files.values():
            entry: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                entry.update(size=f.size, blobId=f.oid)
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(entry)
        for name in self.knobs.evil_names:
            siblings.append(
                {"rfilename": name, "size": 5, "blobId": git_blob_sha1(b"evil!")}
                if blobs
                else {"rfilename": name}
            )
        out: dict[str, Any] = {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.author,
            "sha": repo.sha,
            "lastModified": repo.last_modified,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": repo.trending,
            "library_name": repo.library_name,
            "tags": repo.all_tags(),
            "pipeline_tag": "text-generation",
            "siblings": siblings,
            "createdAt": "2024-06-01T00:00:00.000Z",
        }
        if repo.license or repo.card_data:
            out["cardData"] = {**({"license": repo.license} if repo.license else {}), **repo.card_data}
        if repo.parameters:
            if any(p.endswith(".safetensors") for p in repo.files):
                out["safetensors"] = {"parameters": {"BF16": repo.parameters}, "total": repo.parameters}
            if any(p.endswith(".gguf") for p in repo.files):
                out["gguf"] = {"total": repo.parameters, "architecture": "llama", "context_length": 8192}
        return out


def _parse_token(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._conns.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass

    # ---- plumbing --------------------------------------------------------------------------------------
    def _user(self) -> str | None:
        token = _parse_token(self.headers.get("Authorization"))
        return self.fake.valid_tokens.get(token) if token else None

    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head)

    def _error(
        self, status: int, code: str | None, message: str, head: bool, extra: dict[str, str] | None = None
    ) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        headers.update(extra or {})
        self._json(status, {"error": message}, headers, head)

    def _record(self) -> None:
        with self.fake._lock:
            self.fake.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "range": self.headers.get("Range"),
                    "host": self.headers.get("Host"),
                }
            )
            self.fake.auth_seen.append((self.path, self.headers.get("Authorization")))

    def _rate_limited(self, head: bool) -> bool:
        with self.fake._lock:
            if self.fake.knobs.rate_limit <= 0 or self.fake.knobs.rate_limit_match not in self.path:
                return False
            self.fake.knobs.rate_limit -= 1
        self._error(
            429, None, "You have been rate-limited", head, {"Retry-After": self.fake.knobs.retry_after}
        )
        return True

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        self._record()
        try:
            if self._rate_limited(head):
                return
            token = _parse_token(self.headers.get("Authorization"))
            if token is not None and token not in self.fake.valid_tokens:
                self._error(401, None, "Invalid credentials in Authorization header", head)
                return
            split = urlsplit(self.path)
            path = unquote(split.path)
            query = parse_qs(split.query)
            if path == "/api/models":
                self._list_models(query, head)
            elif path == "/api/whoami-v2":
                user = self._user()
                if user is None:
                    self._error(401, None, "Invalid credentials in Authorization header", head)
                else:
                    self._json(
                        200, {"type": "user", "name": user, "auth": {"type": "access_token"}}, head=head
                    )
            elif path.startswith("/api/models/"):
                self._model_api(path[len("/api/models/") :], query, head)
            elif path.startswith("/cdn/"):
                self._cdn(split.path[len("/cdn/") :], query, head)
            elif "/resolve/" in path:
                self._resolve(path, head)
            else:
                self._error(404, None, "Not found", head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- search ----------------------------------------------------------------------------------------
    def _list_models(self, query: dict[str, list[str]], head: bool) -> None:
        repos = [r for r in self.fake.repos.values() if not r.private or self._user()]
        if "search" in query:
            needle = query["search"][0].lower()
            repos = [r for r in repos if needle in r.repo_id.lower()]
        if "author" in query:
            repos = [r for r in repos if r.author == query["author"][0]]
        for tag in query.get("filter", []):
            repos = [r for r in repos if tag in r.all_tags()]
        if "gated" in query:
            want = query["gated"][0].lower() == "true"
            repos = [r for r in repos if bool(r.gated) == want]
        if "num_parameters" in query:
            lo, hi = _parse_param_range(query["num_parameters"][0])
            repos = [r for r in repos if r.parameters is not None and lo <= r.parameters <= hi]
        sort = query.get("sort", ["downloads"])[0]
        key = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "trendingScore": lambda r: r.trending,
            "lastModified": lambda r: r.last_modified,
            "createdAt": lambda r: r.last_modified,
        }.get(sort, lambda r: r.downloads)
        repos.sort(key=key, reverse=True)
        limit = int(query.get("limit", ["1000"])[0])
        cursor = int(query.get("cursor", ["0"])[0])
        page = min(limit, self.fake.page_size)
        chunk = repos[cursor : cursor + page]
        headers = {}
        if cursor + page < len(repos):
            nxt = dict(query)
            nxt["cursor"] = [str(cursor + page)]
            qs = "&".join(f"{k}={quote(v)}" for k, vs in nxt.items() for v in vs)
            headers["Link"] = f'<{self.fake.url}/api/models?{qs}>; rel="next"'
        self._json(200, [self.fake.model_json(r, blobs=False) for r in chunk], headers, head)

    # ---- per-repo API -----------------------------------------------------------------------------------
    def _find_repo(self, rest: str) -> tuple[FakeRepo | None, str]:
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        return self.fake.repos.get(repo_id), "/".join(parts[2:])

    def _can_see(self, repo: FakeRepo) -> bool:
        return not repo.private or self._user() in self.fake.grants[repo.repo_id]

    def _can_read(self, repo: FakeRepo) -> bool:
        if not self._can_see(repo):
            return False
        return not repo.gated or self._user() in self.fake.grants[repo.repo_id]

    def _repo_not_found(self, head: bool) -> None:
        self._error(401 if not self._user() else 404, "RepoNotFound", "Repository not found", head)

    def _gated(self, repo: FakeRepo, head: bool, extra: dict[str, str] | None = None) -> None:
        if self._user() is None:
            msg = (
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in."
            )
            self._error(401, "GatedRepo", msg, head, extra)
        else:
            msg = (
                f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self.fake.url}/{repo.repo_id} to ask for access."
            )
            self._error(403, "GatedRepo", msg, head, extra)

    def _model_api(self, rest: str, query: dict[str, list[str]], head: bool) -> None:
        repo, tail = self._find_repo(rest)
        if repo is None or not self._can_see(repo):
            self._repo_not_found(head)
            return
        if tail == "auth-check":
            if not self._can_read(repo):
                self._gated(repo, head)
            else:
                self._json(200, {}, head=head)
            return
        blobs = query.get("blobs", ["false"])[0].lower() == "true" and not self.fake.knobs.no_blobs
        if tail == "" or tail.startswith("revision/"):
            rev = tail[len("revision/") :] if tail else "main"
            if self._commit(repo, rev) is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                return
            self._json(200, self.fake.model_json(repo, blobs=blobs), head=head)
            return
        if tail.startswith("tree/"):
            rev, _, sub = tail[len("tree/") :].partition("/")
            if self._commit(repo, rev) is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                return
            entries = []
            dirs: set[str] = set()
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            names = list(repo.files) + list(self.fake.knobs.evil_names)
            for name in sorted(names):
                if sub and not name.startswith(sub.rstrip("/") + "/"):
                    continue
                rel = name[len(sub.rstrip("/")) + 1 :] if sub else name
                if "/" in rel and not recursive:
                    dirs.add((sub.rstrip("/") + "/" if sub else "") + rel.split("/")[0])
                    continue
                f = repo.files.get(name)
                if f is None:
                    entries.append({"type": "file", "path": name, "size": 5, "oid": git_blob_sha1(b"evil!")})
                    continue
                entry: dict[str, Any] = {"type": "file", "path": f.path, "size": f.size, "oid": f.oid}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                entries.append(entry)
            entries += [
                {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()}
                for d in sorted(dirs)
            ]
            self._json(200, entries, head=head)
            return
        self._error(404, None, "Not found", head)

    def _commit(self, repo: FakeRepo, rev: str) -> str | None:
        if rev in repo.revisions:
            return repo.revisions[rev]
        if re.fullmatch(r"[0-9a-f]{40}", rev) and rev in repo.revisions.values():
            return rev
        return None

    # ---- file downloads ------------------------------------------------------------------------------------
    def _resolve(self, path: str, head: bool) -> None:
        before, _, after = path.partition("/resolve/")
        repo = self.fake.repos.get(before.strip("/"))
        if repo is None or not self._can_see(repo):
            self._repo_not_found(head)
            return
        rev, _, filename = after.partition("/")
        commit = self._commit(repo, rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return
        if not self._can_read(repo):
            self._gated(repo, head, {"X-Repo-Commit": commit})
            return
        with self.fake._lock:
            if self.fake.knobs.server_error > 0:
                self.fake.knobs.server_error -= 1
                fail = True
            else:
                fail = False
        if fail:
            self._error(500, None, "Internal Error", head)
            return
        f = repo.files.get(filename)
        if f is None:
            self._error(
                404, "EntryNotFound", f'{filename} does not exist on "{rev}"', head, {"X-Repo-Commit": commit}
            )
            return
        common = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if f.lfs and self.fake.knobs.redirect_lfs:
            location = (
                f"{self.fake.cdn_url}/cdn/{quote(repo.repo_id, safe='')}/{quote(f.path, safe='')}?sig=abc"
            )
            headers = {
                **common,
                "Location": location,
                "X-Linked-Etag": f'"{f.sha256}"',
                "X-Linked-Size": str(f.size),
                "ETag": f'"{f.oid}"',
            }
            self._send(302, b"", headers, head)
            return
        self._serve(repo, f, head, {**common, "ETag": f'"{f.etag}"'})

    def _cdn(self, rest: str, query: dict[str, list[str]], head: bool) -> None:
        repo_q, _, file_q = rest.partition("/")
        repo = self.fake.repos.get(unquote(repo_q))
        f = repo.files.get(unquote(file_q)) if repo else None
        if repo is None or f is None or query.get("sig") != ["abc"]:
            self._send(403, b"<Error>AccessDenied</Error>", {"Content-Type": "application/xml"}, head)
            return
        self._serve(repo, f, head, {"ETag": f'"{f.sha256}"'})

    def _serve(self, repo: FakeRepo, f: FakeFile, head: bool, headers: dict[str, str]) -> None:
        knobs = self.fake.knobs
        key = f"{repo.repo_id}/{f.path}"
        start, end = 0, f.size  # [start, end)
        status = 200
        rng = self.headers.get("Range")
        if rng and not knobs.ignore_range:
            m = _RANGE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._send(416, b"", {"Content-Range": f"bytes */{f.size}"}, head)
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)) + 1, f.size) if m.group(2) else f.size
            else:
                start, end = max(f.size - int(m.group(2)), 0), f.size
            if start >= f.size or start >= end:
                self._send(416, b"", {"Content-Range": f"bytes */{f.size}"}, head)
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{f.size}"}
        if knobs.force_gzip and status == 200 and f.data is not None:
            # Like the Hub's text files: gzip even though the client asked for identity.
            body = gzip.compress(f.data)
            self._send(200, body, {**headers, "Content-Type": "text/plain", "Content-Encoding": "gzip"}, head)
            if not head:
                self._count(key, len(body))
            return
        self.send_response(status)
        for k, v in {
            **headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(end - start),
        }.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return

        with self.fake._lock:
            # Drops and stalls are at absolute file offsets and only hit the response whose range holds them.
            drop = knobs.drop_after.get(f.path)
            if drop is not None and not start <= drop < end:
                drop = None
            if drop is not None:
                left = knobs.drop_times.get(f.path, 1) - 1
                if left <= 0:
                    knobs.drop_after.pop(f.path, None)
                    knobs.drop_times.pop(f.path, None)
                else:
                    knobs.drop_times[f.path] = left
            stall = knobs.stall_after.get(f.path)
            if stall is not None and not start <= stall < end:
                stall = None
            corrupt = knobs.corrupt.get(f.path)
        # The body: the fast path hands the file to the kernel; the knobs need a Python loop.
        if (
            drop is None
            and stall is None
            and corrupt is None
            and not knobs.chunk_delay
            and f.source is not None
        ):
            with open(f.source, "rb") as fh:
                self.wfile.flush()
                sent = self.connection.sendfile(fh, offset=start, count=end - start)
            self._count(key, sent)
            return
        pos = start
        chunk = 1 << 16
        while pos < end:
            stop = min(end, pos + chunk)
            limit = None
            if drop is not None:
                limit = drop
            if stall is not None:
                limit = stall if limit is None else min(limit, stall)
            if limit is not None and pos < limit < stop:
                stop = limit
            if limit is not None and pos >= limit:
                if stall is not None and pos >= stall:
                    knobs.stall_release.wait(60)
                    self.close_connection = True
                    _hard_close(self.connection)
                    return
                self.close_connection = True
                _hard_close(self.connection)
                return
            data = bytearray(f.read(pos, stop))
            if corrupt is not None:
                a, b = corrupt
                for i in range(max(a, pos), min(b, stop)):
                    data[i - pos] ^= 0xFF
            self.wfile.write(data)
            self.wfile.flush()
            self._count(key, len(data))
            pos = stop
            if knobs.chunk_delay:
                time.sleep(knobs.chunk_delay)

    def _count(self, key: str, n: int) -> None:
        with self.fake._lock:
            self.fake.bytes_served[key] += n


def _hard_close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _parse_param_range(spec: str) -> tuple[float, float]:
    lo, hi = 0.0, float("inf")
    for part in spec.split(","):
        k, _, v = part.partition(":")
        mult = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(v[-1:].upper(), 1)
        num = float(v[:-1]) * mult if v[-1:].upper() in "KMBT" else float(v)
        if k == "min":
            lo = num
        elif k == "max":
            hi = num
    return lo, hi


__all__ = ["FakeFile", "FakeHub", "FakeRepo", "Knobs", "git_blob_sha1"]
