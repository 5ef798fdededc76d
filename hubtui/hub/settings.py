"""Where the hub client talks to and writes, resolved at call time (not at import like huggingface_hub).

huggingface_hub reads `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and `HF_HUB_DISABLE_TELEMETRY` once,
when it is imported. The CLI and the tests change them later, so every public function here re-reads the
environment and passes the values explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub.utils import httpx

_TRUE = {"1", "true", "yes", "on"}

# Seconds. A live host connects in milliseconds; 10 s leaves room for a slow VPN or satellite link. A read
# timeout counts seconds without a byte, not the whole transfer: 60 s lets a slow mirror assemble a large
# repo listing, and a dead one is still reported within about two minutes (one retry).
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0


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

    if sys.modules.get("huggingface_hub.constants") is not None and _flag("HF_HUB_DISABLE_TELEMETRY"):
        from huggingface_hub import constants  # already imported: this only looks it up

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


def _seconds(name: str, fallback: str | None, default: float) -> float:
    from hubtui.hub.errors import HubError

    raw = os.environ.get(name) or (os.environ.get(fallback) if fallback else None)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise HubError(
            f"{name if os.environ.get(name) else fallback} must be a positive number of seconds, got {raw!r}"
        )
    return value


def connect_timeout() -> float:
    """Seconds to wait for a hub connection: HUBTUI_HUB_CONNECT_TIMEOUT (default 10)."""
    return _seconds("HUBTUI_HUB_CONNECT_TIMEOUT", None, DEFAULT_CONNECT_TIMEOUT)


def read_timeout() -> float:
    """Seconds without a byte before a hub request counts as unanswered: HUBTUI_HUB_READ_TIMEOUT, else
    huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT if set (the usual advice for slow mirrors), else 60."""
    return _seconds("HUBTUI_HUB_READ_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT", DEFAULT_READ_TIMEOUT)


def timeouts(read: float | None = None) -> httpx.Timeout:
    """The connect/read/write/pool timeouts of one hub request (`read` overrides the configured one)."""
    from huggingface_hub.utils import httpx

    connect = connect_timeout()
    read = read if read is not None else read_timeout()
    return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


def is_offline() -> bool:
    """HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1): no network, the cache still lists."""
    return _flag("HF_HUB_OFFLINE") or _flag("TRANSFORMERS_OFFLINE")


def token(explicit: str | None = None) -> str | None:
    """The user's token (explicit, HF_TOKEN, or the one `hf auth login` saved); never logged or shown."""
    if explicit:
        return explicit
    from huggingface_hub import get_token

    return get_token()
