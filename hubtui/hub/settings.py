"""Where the hub client talks to and writes, resolved at call time (not at import like huggingface_hub).

huggingface_hub reads `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and `HF_HUB_DISABLE_TELEMETRY` once,
when it is imported. The CLI and the tests change them later, so every public function here re-reads the
environment and passes the values explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def apply_privacy_defaults() -> None:
    """No telemetry unless the user opts in with HUBTUI_TELEMETRY=1.

    Called before huggingface_hub is imported (so its constants see it) and again after, in case
    something else imported it first.
    """
    if _flag("HUBTUI_TELEMETRY"):
        return
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and _flag("HF_HUB_DISABLE_TELEMETRY"):
        constants.HF_HUB_DISABLE_TELEMETRY = True


def endpoint(explicit: str | None = None) -> str:
    """The hub (or internal mirror) URL: explicit argument, then HF_ENDPOINT, then huggingface.co."""
    value = explicit or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return value.rstrip("/")


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The Hugging Face hub cache: explicit, HF_HUB_CACHE, HF_HOME/hub, then ~/.cache/huggingface/hub."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def is_offline() -> bool:
    """HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1): no network, the cache still lists."""
    return _flag("HF_HUB_OFFLINE") or _flag("TRANSFORMERS_OFFLINE")


def token(explicit: str | None = None) -> str | None:
    """The user's token (explicit, HF_TOKEN, or the one `hf auth login` saved); never logged or shown."""
    if explicit:
        return explicit
    from huggingface_hub import get_token

    return get_token()
