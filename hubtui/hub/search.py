"""`search()`: find Llama and Mistral checkpoints, official orgs first, through `HfApi.list_models`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from hubtui.hub.client import HubContext, connect
from hubtui.hub.files import base_model_of_card
from hubtui.hub.retry import RetryPolicy

# family -> (official orgs, architecture tags community repos carry)
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "llama": (("meta-llama",), ("llama",)),
    "mistral": (("mistralai",), ("mistral", "mixtral")),
}
SORTS = {"downloads": "downloads", "likes": "likes", "trending": "trending_score", "updated": "last_modified"}
EXPAND = [
    "author",
    "downloads",
    "likes",
    "lastModified",
    "gated",
    "library_name",
    "tags",
    "safetensors",
    "gguf",
    "trendingScore",
    "cardData",  # base_model: what an adapter or fine-tune was trained on
]


@dataclass(frozen=True)
class SearchFilters:
    """Parameter range (in parameters, e.g. 1e9), gated or not, and which formats a repo must publish."""

    min_params: float | None = None
    max_params: float | None = None
    gated: bool | None = None
    has_safetensors: bool = False
    has_gguf: bool = False


@dataclass(frozen=True)
class SearchResult:
    id: str
    author: str | None
    parameters: int | None
    downloads: int
    likes: int
    last_modified: datetime | None
    gated: str | bool
    license: str | None
    library: str | None
    tags: list[str] = field(default_factory=list)
    official: bool = False
    base_model: str | None = None  # the card's base_model (else the hub's base_model:* tag)

    @property
    def is_adapter(self) -> bool:
        """A PEFT adapter repo: the hub tags those `base_model:adapter:<base>` (library peft)."""
        return self.library == "peft" or any(t.startswith("base_model:adapter:") for t in self.tags)

    @property
    def has_safetensors(self) -> bool:
        return "safetensors" in self.tags

    @property
    def has_gguf(self) -> bool:
        return "gguf" in self.tags

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "author": self.author,
            "parameters": self.parameters,
            "downloads": self.downloads,
            "likes": self.likes,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
            "gated": self.gated,
            "license": self.license,
            "library": self.library,
            "tags": self.tags,
            "official": self.official,
            "adapter": self.is_adapter,
            "base_model": self.base_model,
        }


def _param_spec(f: SearchFilters) -> str | None:
    parts = []
    if f.min_params is not None:
        parts.append(f"min:{int(f.min_params)}")
    if f.max_params is not None:
        parts.append(f"max:{int(f.max_params)}")
    return ",".join(parts) or None


def _result(info: object, official: bool) -> SearchResult:
    tags = list(getattr(info, "tags", None) or [])
    license_ = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    params = None
    st = getattr(info, "safetensors", None)
    if st is not None:
        params = st.total
    gg = getattr(info, "gguf", None)
    if params is None and isinstance(gg, dict):
        params = gg.get("total")
    return SearchResult(
        base_model=base_model_of_info(info, tags),
        id=info.id,  # type: ignore[attr-defined]
        author=getattr(info, "author", None) or info.id.split("/")[0],  # type: ignore[attr-defined]
        parameters=params,
        downloads=getattr(info, "downloads", None) or 0,
        likes=getattr(info, "likes", None) or 0,
        last_modified=getattr(info, "last_modified", None),
        gated=getattr(info, "gated", None) or False,
        license=license_,
        library=getattr(info, "library_name", None),
        tags=tags,
        official=official,
    )


def base_model_of_info(info: object, tags: list[str]) -> str | None:
    """The base model a repo names: its card's `base_model`, else the hub's `base_model:[relation:]<id>` tag."""
    card = getattr(info, "card_data", None)
    base = base_model_of_card(card.get("base_model") if card is not None else None)
    if base is None:
        for tag in tags:
            if tag.startswith("base_model:"):
                base = tag.split(":")[-1] or None
                break
    return base


def _keep(r: SearchResult, f: SearchFilters) -> bool:
    """The same filters, applied again locally: mirrors may ignore some query parameters."""
    if f.has_safetensors and not r.has_safetensors:
        return False
    if f.has_gguf and not r.has_gguf:
        return False
    if f.gated is not None and bool(r.gated) != f.gated:
        return False
    if (f.min_params is not None or f.max_params is not None) and r.parameters is None:
        return False
    if f.min_params is not None and r.parameters is not None and r.parameters < f.min_params:
        return False
    return not (f.max_params is not None and r.parameters is not None and r.parameters > f.max_params)


def _query(
    ctx: HubContext,
    *,
    query: str | None,
    author: str | None,
    tags: Iterable[str],
    sort: str,
    limit: int,
    f: SearchFilters,
) -> list[object]:
    filt = list(tags)
    if f.has_safetensors:
        filt.append("safetensors")
    if f.has_gguf:
        filt.append("gguf")
    return ctx.call(
        lambda: list(
            ctx.api.list_models(
                search=query or None,
                author=author,
                filter=filt or None,
                gated=f.gated,
                num_parameters=_param_spec(f),
                sort=SORTS[sort],  # type: ignore[arg-type]
                limit=limit,
                expand=EXPAND,  # type: ignore[arg-type]
            )
        ),
        repo_id=f"search {query or ''}".strip(),
    )


def search(
    query: str | None = None,
    *,
    family: str | None = None,
    sort: str = "downloads",
    limit: int = 20,
    filters: SearchFilters | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    retry: RetryPolicy | None = None,
) -> list[SearchResult]:
    """Search the hub. With a family preset the official org's repos come first, then the community's."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    f = filters or SearchFilters()
    ctx = connect(endpoint, token, retry, need_network="search")
    results: list[SearchResult] = []
    seen: set[str] = set()

    def add(infos: list[object], official: bool) -> None:
        for info in infos:
            r = _result(info, official)
            if r.id not in seen and _keep(r, f) and len(results) < limit:
                seen.add(r.id)
                results.append(r)

    if family is None:
        add(_query(ctx, query=query, author=None, tags=(), sort=sort, limit=limit, f=f), False)
        return results
    orgs, arch_tags = FAMILIES[family]
    for org in orgs:
        add(_query(ctx, query=query, author=org, tags=(), sort=sort, limit=limit, f=f), True)
    for tag in arch_tags:
        if len(results) >= limit:
            break
        add(_query(ctx, query=query, author=None, tags=(tag,), sort=sort, limit=limit, f=f), False)
    return results
