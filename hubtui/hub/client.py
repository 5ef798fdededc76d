"""One connection context (endpoint, token, retry policy) shared by search, details and download.

It turns huggingface_hub's exceptions (multi-line, sometimes with URLs and request ids) into this project's
one-line `HubError`s that say what to do, and never contain the token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hubtui import __version__
from hubtui.hub import settings

settings.apply_privacy_defaults()

from huggingface_hub import HfApi  # noqa: E402  (after the privacy defaults on purpose)
from huggingface_hub import errors as hf_errors  # noqa: E402
from huggingface_hub.utils import build_hf_headers, get_session, httpx  # noqa: E402

from hubtui.hub.errors import (  # noqa: E402
    GatedRepoError,
    HubConnectionError,
    HubError,
    HubOfflineError,
    HubServerError,
    InvalidTokenError,
    RateLimitedError,
    RemoteFileNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    scrub,
)
from hubtui.hub.http import ConnectionRefused, NoAnswer, install  # noqa: E402
from hubtui.hub.retry import RetryPolicy, retry_after, status_of, with_retries  # noqa: E402

settings.apply_privacy_defaults()
install()  # timeouts on huggingface_hub's shared session too

T = TypeVar("T")


@dataclass
class HubContext:
    """Endpoint, token and retry policy for one operation."""

    endpoint: str
    token: str | None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cancel: threading.Event | None = None

    @property
    def api(self) -> HfApi:
        return HfApi(
            endpoint=self.endpoint,
            token=self.token or False,
            library_name="hubtui",
            library_version=__version__,
        )

    def headers(self) -> dict[str, str]:
        """Request headers with auth (if any) and no compression, so sizes and Ranges are byte-exact."""
        h = build_hf_headers(token=self.token or False, library_name="hubtui", library_version=__version__)
        h["Accept-Encoding"] = "identity"
        return h

    @property
    def session(self) -> httpx.Client:
        return get_session()

    def repo_url(self, repo_id: str) -> str:
        return f"{self.endpoint}/{repo_id}"

    def call(
        self, fn: Callable[[], T], *, repo_id: str, revision: str | None = None, filename: str | None = None
    ) -> T:
        """Run fn with retries and translate whatever it raises into a HubError."""
        try:
            return with_retries(fn, self.retry, self.cancel)
        except HubError:
            raise
        except Exception as exc:
            raise self.translate(exc, repo_id=repo_id, revision=revision, filename=filename) from exc

    def translate(
        self, exc: BaseException, *, repo_id: str, revision: str | None = None, filename: str | None = None
    ) -> HubError:
        return translate(exc, self, repo_id=repo_id, revision=revision, filename=filename)


def connect(
    endpoint: str | None = None,
    token: str | None = None,
    retry: RetryPolicy | None = None,
    cancel: threading.Event | None = None,
    *,
    need_network: str = "this",
) -> HubContext:
    """Build the context, refusing up front in offline mode."""
    if settings.is_offline():
        raise HubOfflineError(
            f"offline mode (HF_HUB_OFFLINE=1): {need_network} needs the hub; `hubtui cache ls` still lists "
            "what is downloaded"
        )
    return HubContext(
        endpoint=settings.endpoint(endpoint),
        token=settings.token(token),
        retry=retry or RetryPolicy(),
        cancel=cancel,
    )


def translate(
    exc: BaseException,
    ctx: HubContext,
    *,
    repo_id: str,
    revision: str | None = None,
    filename: str | None = None,
) -> HubError:
    """Map a huggingface_hub/httpx2 failure onto a one-line HubError naming the repo, revision or file."""
    url = ctx.repo_url(repo_id)
    rev = revision or "main"
    status = status_of(exc)
    msg: str
    kind: type[HubError]
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        kind, msg = HubOfflineError, "offline mode (HF_HUB_OFFLINE=1): the hub cannot be reached"
    elif isinstance(exc, hf_errors.GatedRepoError):
        kind = GatedRepoError
        if ctx.token:
            msg = (
                f"{repo_id} is gated and your token has no access yet: request access at {url} "
                "(approval can take a while), then retry"
            )
        else:
            msg = (
                f"{repo_id} is gated: accept its licence at {url} while signed in, then set HF_TOKEN "
                "or run `hf auth login`"
            )
    elif isinstance(exc, hf_errors.RevisionNotFoundError):
        kind, msg = RevisionNotFoundError, f"revision {rev!r} not found in {repo_id} (see {url}/tree/main)"
    elif isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        kind, msg = RemoteFileNotFoundError, f"file {filename!r} not found in {repo_id} at revision {rev!r}"
    elif isinstance(exc, hf_errors.RepositoryNotFoundError):
        kind = RepoNotFoundError
        hint = (
            "check the name"
            if ctx.token
            else "check the name; if it is private, set HF_TOKEN or run `hf auth login`"
        )
        msg = f"repo {repo_id} not found on {ctx.endpoint} ({hint})"
    elif isinstance(exc, hf_errors.DisabledRepoError):
        kind, msg = RepoNotFoundError, f"repo {repo_id} has been disabled on {ctx.endpoint}"
    elif status == 401:
        kind = InvalidTokenError
        msg = "the hub rejected your token (HTTP 401): it is invalid or expired; set a new HF_TOKEN or run `hf auth login`"
    elif status == 429:
        after = retry_after(exc)
        wait = f"; the hub asks to wait {after:.0f}s" if after is not None else ""
        kind = RateLimitedError
        msg = f"rate limited by {ctx.endpoint} (HTTP 429) for {repo_id} after {ctx.retry.max_retries} retries{wait}"
    elif status is not None:
        what = f"{repo_id}/{filename}" if filename else repo_id
        kind = HubServerError
        msg = f"HTTP {status} from {ctx.endpoint} for {what} after {ctx.retry.max_retries} retries; try again later"
    elif isinstance(exc, ConnectionRefused):
        kind = HubConnectionError
        msg = (
            f"{ctx.endpoint} refused the connection (nothing is listening there); check HF_ENDPOINT or "
            "--endpoint, or whether the mirror is running"
        )
    elif isinstance(exc, NoAnswer):
        kind = HubConnectionError
        tries = min(ctx.retry.timeout_retries, ctx.retry.max_retries) + 1
        what = f" for {repo_id}/{filename}" if filename else ""
        how = (
            "did not accept a connection"
            if exc.phase == "connect"
            else "accepted the connection but did not answer"
        )
        msg = (
            f"{ctx.endpoint} {how} within {exc.seconds:g} s ({tries} tries){what}; the hub or mirror is down "
            "or very slow: check HF_ENDPOINT, or allow more time with HUBTUI_HUB_READ_TIMEOUT / "
            "HUBTUI_HUB_CONNECT_TIMEOUT"
        )
    elif isinstance(exc, httpx.TransportError):
        kind = HubConnectionError
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"
        if filename:
            msg = (
                f"download of {repo_id}/{filename} from {ctx.endpoint} kept failing ({detail}) after "
                f"{ctx.retry.max_retries} retries; the bytes received are kept: run the same command again to resume"
            )
        else:
            msg = f"cannot reach {ctx.endpoint} ({detail}); check the network, HF_ENDPOINT and proxy settings"
    elif isinstance(exc, HubError):
        return exc
    else:
        kind, msg = (
            HubError,
            f"{repo_id}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )
    return kind(scrub(msg, ctx.token))


def whoami(endpoint: str | None = None, token: str | None = None) -> str | None:
    """The hub user name the token belongs to, None without a token (so the UI can say who is signed in)."""
    ctx = connect(endpoint, token, need_network="whoami")
    if not ctx.token:
        return None
    info = ctx.call(lambda: ctx.api.whoami(), repo_id="whoami")
    return info.get("name")
