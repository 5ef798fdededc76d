"""`details()`: everything needed to decide on a repo before downloading a byte of weights.

The parameter count and dtypes come from the safetensors headers, read with HTTP Range requests
(huggingface_hub's `parse_safetensors_file_metadata`), so nothing big is downloaded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from hubtui.hub.client import HubContext, connect
from hubtui.hub.errors import GatedRepoError, HubError, RepoNotFoundError
from hubtui.hub.files import Layout, detect_layout, gguf_quant
from hubtui.hub.retry import RetryPolicy


@dataclass(frozen=True)
class RepoFileInfo:
    name: str
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # git object id (small files)


@dataclass(frozen=True)
class GGUFFile:
    name: str
    size: int | None
    quant: str | None


@dataclass
class RepoDetails:
    repo_id: str
    commit: str
    revision: str
    card: str | None
    license: str | None
    gated: str | bool
    access: bool  # whether this user (token or anonymous) may download the files
    access_note: str
    files: list[RepoFileInfo]
    layout: Layout
    parameters: int | None
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> parameter count
    gguf_files: list[GGUFFile] = field(default_factory=list)
    downloads: int = 0
    likes: int = 0
    last_modified: datetime | None = None
    tags: list[str] = field(default_factory=list)
    library: str | None = None

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def to_json(self) -> dict[str, object]:
        return {
            "repo_id": self.repo_id,
            "commit": self.commit,
            "revision": self.revision,
            "license": self.license,
            "gated": self.gated,
            "access": self.access,
            "access_note": self.access_note,
            "layout": self.layout.kind,
            "layout_note": self.layout.note,
            "convertible": self.layout.convertible,
            "parameters": self.parameters,
            "dtypes": self.dtypes,
            "files": [f.__dict__ for f in self.files],
            "gguf_files": [g.__dict__ for g in self.gguf_files],
            "total_size": self.total_size,
            "downloads": self.downloads,
            "likes": self.likes,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
            "tags": self.tags,
            "library": self.library,
            "card": self.card,
        }


def details(
    repo_id: str,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    retry: RetryPolicy | None = None,
    read_headers: bool = True,
) -> RepoDetails:
    """Card, licence, gating and access, files with sizes and hashes, layout, parameters, published GGUFs."""
    ctx = connect(endpoint, token, retry, need_network="details")
    info = ctx.call(
        lambda: ctx.api.model_info(repo_id, revision=revision, files_metadata=True),
        repo_id=repo_id,
        revision=revision,
    )
    commit = info.sha or ""
    files = [
        RepoFileInfo(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None, s.blob_id)
        for s in info.siblings or []
    ]
    layout = detect_layout(f.name for f in files)
    access, note = True, "public"
    if info.gated:
        try:
            ctx.call(lambda: ctx.api.auth_check(repo_id), repo_id=repo_id, revision=revision)
            note = "gated; your token has access"
        except (GatedRepoError, RepoNotFoundError) as exc:
            access, note = False, str(exc)
    elif info.private:
        note = "private; your token has access"

    tags = list(info.tags or [])
    card_license = getattr(info.card_data, "license", None) if info.card_data is not None else None
    license_ = card_license or next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)

    card = None
    if access and any(f.name == "README.md" for f in files):
        card = _read_text(ctx, repo_id, commit, "README.md")

    dtypes: dict[str, int] = {}
    if access and read_headers:
        shards = [n for n in layout.weights if n.endswith(".safetensors")]

        def header(name: str) -> dict[str, int]:
            meta = ctx.call(
                lambda: ctx.api.parse_safetensors_file_metadata(repo_id, name, revision=commit),
                repo_id=repo_id,
                revision=commit,
                filename=name,
            )
            return meta.parameter_count

        # One or two small Range reads per shard; in parallel, since big repos have dozens of shards.
        with ThreadPoolExecutor(
            max_workers=min(8, max(1, len(shards))), thread_name_prefix="hubtui-hdr"
        ) as pool:
            for counts in pool.map(header, shards):
                for dtype, n in counts.items():
                    dtypes[dtype] = dtypes.get(dtype, 0) + n
    parameters = sum(dtypes.values()) if dtypes else None
    if parameters is None and info.safetensors is not None:
        parameters = info.safetensors.total

    sizes = {f.name: f.size for f in files}
    ggufs = [GGUFFile(n, sizes.get(n), gguf_quant(n)) for n in layout.gguf_files]
    return RepoDetails(
        repo_id=repo_id,
        commit=commit,
        revision=revision or "main",
        card=card,
        license=license_,
        gated=info.gated or False,
        access=access,
        access_note=note,
        files=files,
        layout=layout,
        parameters=parameters,
        dtypes=dtypes,
        gguf_files=ggufs,
        downloads=info.downloads or 0,
        likes=info.likes or 0,
        last_modified=info.last_modified,
        tags=tags,
        library=info.library_name,
    )


def fetch_small(ctx: HubContext, repo_id: str, commit: str, name: str) -> bytes:
    """A small file of a repo (card, config, tokenizer), read into memory, not into the cache."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import hf_raise_for_status

    url = hf_hub_url(repo_id, name, revision=commit, endpoint=ctx.endpoint)

    def get() -> bytes:
        r = ctx.session.get(url, headers=ctx.headers(), follow_redirects=True)
        hf_raise_for_status(r)
        return r.content

    return ctx.call(get, repo_id=repo_id, revision=commit, filename=name)


def _read_text(ctx: HubContext, repo_id: str, commit: str, name: str, limit: int = 1 << 20) -> str | None:
    """A small text file (the model card), or None when it cannot be read."""
    try:
        return fetch_small(ctx, repo_id, commit, name)[:limit].decode("utf-8", errors="replace")
    except HubError:
        return None
