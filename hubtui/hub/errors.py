"""Hub failures as one-line, actionable messages that never contain the token."""

from __future__ import annotations

from hubtui.errors import HubtuiError


class HubError(HubtuiError):
    """A user-facing failure of the hub client."""


class HubOfflineError(HubError):
    """HF_HUB_OFFLINE is set and the operation needs the network."""


class HubConnectionError(HubError):
    """The hub could not be reached (DNS, refused, timeout, dropped connection) after retries."""


class RepoNotFoundError(HubError):
    """The repo does not exist, or it is private and the token cannot see it."""


class GatedRepoError(HubError):
    """The repo is gated and this user (or anonymous access) is not on its authorised list."""


class InvalidTokenError(HubError):
    """The hub rejected the token itself."""


class RevisionNotFoundError(HubError):
    """The branch, tag or commit does not exist in the repo."""


class RemoteFileNotFoundError(HubError):
    """A file named in the request is not in the repo at that revision."""


class RateLimitedError(HubError):
    """HTTP 429 persisted through every retry."""


class HubServerError(HubError):
    """HTTP 5xx (or another unexpected status) persisted through every retry."""


class ChecksumMismatchError(HubError):
    """A downloaded file's hash differs from the hub's; the bad bytes have been deleted."""


class DiskSpaceError(HubError):
    """The target filesystem lacks room for the download."""


class UnsafeFileNameError(HubError):
    """A file name from the hub would escape the target directory."""


class DownloadCancelledError(HubError):
    """The caller cancelled; partial files stay on disk and resume next time."""


class NotConvertibleError(HubError):
    """The repo holds nothing the converter reads (pickle-only weights, or no weights at all)."""


def scrub(text: str, secret: str | None) -> str:
    """Remove a secret from text that is about to be shown or raised."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text
