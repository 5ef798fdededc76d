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
from hubtui.hub.files import ADAPTER_CONFIG, Layout, base_model_of_card, detect_layout, gguf_quant
from hubtui.hub.retry import RetryPolicy
from hubtui.hub.search import base_model_of_info


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
    # a mixture of experts (from config.json): experts, experts per token, parameters one token runs through
    experts: int | None = None
    experts_used: int | None = None
    active_parameters: int | None = None
    gguf_files: list[GGUFFile] = field(default_factory=list)
    downloads: int = 0
    likes: int = 0
    last_modified: datetime | None = None
    tags: list[str] = field(default_factory=list)
    library: str | None = None
    base_model: str | None = None  # from the card's base_model (else the hub's base_model:* tag)
    adapter: dict[str, object] | None = None  # a PEFT adapter's adapter_config.json facts (r, alpha, targets)

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
            "experts": self.experts,
            "experts_used": self.experts_used,
            "active_parameters": self.active_parameters,
            "files": [f.__dict__ for f in self.files],
            "gguf_files": [g.__dict__ for g in self.gguf_files],
            "total_size": self.total_size,
            "downloads": self.downloads,
            "likes": self.likes,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
            "tags": self.tags,
            "library": self.library,
            "base_model": self.base_model,
            "adapter": self.adapter,
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
    expert_params = 0
    if access and read_headers:
        shards = [n for n in layout.weights if n.endswith(".safetensors")]

        def header(name: str) -> tuple[dict[str, int], int]:
            from quant.convert.fp8 import is_scale_tensor

            meta = ctx.call(
                lambda: ctx.api.parse_safetensors_file_metadata(repo_id, name, revision=commit),
                repo_id=repo_id,
                revision=commit,
                filename=name,
            )
            counts: dict[str, int] = {}
            experts = 0
            for tname, t in meta.tensors.items():
                if not is_scale_tensor(tname):  # an FP8 checkpoint's scales are not parameters
                    counts[t.dtype] = counts.get(t.dtype, 0) + t.parameter_count
                    if ".experts." in tname:  # routed experts (Mixtral, Llama 4, ...), not shared ones
                        experts += t.parameter_count
            return counts, experts

        # One or two small Range reads per shard; in parallel, since big repos have dozens of shards.
        with ThreadPoolExecutor(
            max_workers=min(8, max(1, len(shards))), thread_name_prefix="hubtui-hdr"
        ) as pool:
            for counts, experts in pool.map(header, shards):
                expert_params += experts
                for dtype, n in counts.items():
                    dtypes[dtype] = dtypes.get(dtype, 0) + n
    parameters = sum(dtypes.values()) if dtypes else None
    if parameters is None and info.safetensors is not None:
        parameters = info.safetensors.total
    moe = (
        _experts(ctx, repo_id, commit)
        if expert_params and any(f.name == "config.json" for f in files)
        else None
    )
    active = None
    if moe is not None and parameters is not None:
        active = parameters - expert_params + expert_params * moe[1] // moe[0]

    adapter = _adapter_facts(ctx, repo_id, commit) if access and layout.kind == "adapter" else None
    base = base_model_of_info(info, tags)
    if base is None and adapter is not None:
        base = base_model_of_card(adapter.get("base_model_name_or_path"))
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
        experts=moe[0] if moe else None,
        experts_used=moe[1] if moe else None,
        active_parameters=active,
        gguf_files=ggufs,
        downloads=info.downloads or 0,
        likes=info.likes or 0,
        last_modified=info.last_modified,
        tags=tags,
        library=info.library_name,
        base_model=base,
        adapter=adapter,
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


def _adapter_facts(ctx: HubContext, repo_id: str, commit: str) -> dict[str, object] | None:
    """Rank, alpha, rsLoRA, target modules and base of a PEFT adapter (its small adapter_config.json)."""
    import json

    try:
        config = json.loads(fetch_small(ctx, repo_id, commit, ADAPTER_CONFIG))
    except (HubError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    keys = (
        "peft_type",
        "r",
        "lora_alpha",
        "use_rslora",
        "use_dora",
        "target_modules",
        "base_model_name_or_path",
    )
    return {k: config[k] for k in keys if k in config}


def _experts(ctx: HubContext, repo_id: str, commit: str) -> tuple[int, int] | None:
    """(experts, experts per token) from config.json (its text_config for multimodal models), or None."""
    import json

    try:
        config = json.loads(fetch_small(ctx, repo_id, commit, "config.json"))
    except (HubError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    if isinstance(config.get("text_config"), dict):
        config = {**config, **config["text_config"]}
    n = next(
        (config[k] for k in ("num_local_experts", "num_experts", "n_routed_experts") if k in config), None
    )
    used = next((config[k] for k in ("num_experts_per_tok", "num_experts_per_token") if k in config), None)
    if isinstance(n, int) and isinstance(used, int) and 0 < used <= n:
        return n, used
    return None


def _read_text(ctx: HubContext, repo_id: str, commit: str, name: str, limit: int = 1 << 20) -> str | None:
    """A small text file (the model card), or None when it cannot be read."""
    try:
        return fetch_small(ctx, repo_id, commit, name)[:limit].decode("utf-8", errors="replace")
    except HubError:
        return None
