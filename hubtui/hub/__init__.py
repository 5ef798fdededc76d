"""Everything that talks to the Hugging Face Hub: search, details, resumable verified downloads, the cache.

No terminal output here: progress goes to callbacks, results are returned, failures raise `HubError`
subclasses with one-line messages. Telemetry is off unless HUBTUI_TELEMETRY=1.
"""

from hubtui.hub import settings

settings.apply_privacy_defaults()

from hubtui.hub.cache import CacheReport, list_cache, remove  # noqa: E402
from hubtui.hub.client import whoami  # noqa: E402
from hubtui.hub.details import RepoDetails, details  # noqa: E402
from hubtui.hub.download import DownloadedFile, DownloadResult, download  # noqa: E402
from hubtui.hub.errors import HubError  # noqa: E402
from hubtui.hub.progress import DownloadProgress, FileStatus  # noqa: E402
from hubtui.hub.retry import RetryPolicy  # noqa: E402
from hubtui.hub.search import SearchFilters, SearchResult, search  # noqa: E402

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
    "details",
    "download",
    "list_cache",
    "remove",
    "search",
    "whoami",
]
