"""Everything that talks to the Hugging Face Hub: search, details, resumable verified downloads, the cache.

No terminal output here: progress goes to callbacks, results are returned, failures raise `HubError`
subclasses with one-line messages. Telemetry is off unless HUBTUI_TELEMETRY=1.

Names are loaded on first use (the project's lazy-import convention, docs/architecture.md): importing the
package costs only `settings` (standard library), so the CLI and the app start without huggingface_hub.
The functions `download`, `search` and `details` share their names with their modules, so they are
imported from those modules (`from hubtui.hub.download import download`): a package attribute named like
a submodule is replaced by the module as soon as the submodule is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hubtui.hub import settings

settings.apply_privacy_defaults()

_LAZY = {
    "CacheReport": "hubtui.hub.cache",
    "list_cache": "hubtui.hub.cache",
    "remove": "hubtui.hub.cache",
    "Snapshot": "hubtui.hub.snapshots",
    "find_snapshot": "hubtui.hub.snapshots",
    "resolve_checkpoint": "hubtui.hub.snapshots",
    "snapshot_dir": "hubtui.hub.snapshots",
    "whoami": "hubtui.hub.client",
    "RepoDetails": "hubtui.hub.details",
    "DownloadedFile": "hubtui.hub.download",
    "DownloadResult": "hubtui.hub.download",
    "HubError": "hubtui.hub.errors",
    "DownloadProgress": "hubtui.hub.progress",
    "FileStatus": "hubtui.hub.progress",
    "RetryPolicy": "hubtui.hub.retry",
    "SearchFilters": "hubtui.hub.search",
    "SearchResult": "hubtui.hub.search",
}

if TYPE_CHECKING:
    from hubtui.hub.cache import CacheReport, list_cache, remove
    from hubtui.hub.client import whoami
    from hubtui.hub.details import RepoDetails
    from hubtui.hub.download import DownloadedFile, DownloadResult
    from hubtui.hub.errors import HubError
    from hubtui.hub.progress import DownloadProgress, FileStatus
    from hubtui.hub.retry import RetryPolicy
    from hubtui.hub.search import SearchFilters, SearchResult
    from hubtui.hub.snapshots import Snapshot, find_snapshot, resolve_checkpoint, snapshot_dir


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubtui.hub' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "CacheReport",
    "DownloadProgress",
    "DownloadResult",
    "DownloadedFile",
    "FileStatus",
    "HubError",
    "RepoDetails",
    "RetryPolicy",
    "SearchFilters",
    "SearchResult",
    "Snapshot",
    "find_snapshot",
    "list_cache",
    "remove",
    "resolve_checkpoint",
    "settings",
    "snapshot_dir",
    "whoami",
]
