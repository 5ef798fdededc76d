"""Retries with backoff for transient hub failures (network errors, 429 with Retry-After, 5xx).

All hub requests are idempotent reads (GETs, HEADs), so retrying them is safe. A server that does not
answer within the timeout is tried once more (`timeout_retries`), not five times: each try costs a whole
timeout, and a mirror that is down should be reported in about two minutes, with a notice on the way
(logger "hubtui.hub", which the CLI shows on stderr). A refused connection is not retried at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import httpx

from hubtui.hub import settings
from hubtui.hub.errors import DownloadCancelledError
from hubtui.hub.http import ConnectionRefused, NoAnswer

T = TypeVar("T")

RETRY_STATUS = (408, 429, 500, 502, 503, 504)
TRANSIENT_EXCEPTIONS = (httpx.TransportError,)
log = logging.getLogger("hubtui.hub")
log.addHandler(logging.NullHandler())  # library code: silent unless the application shows notices


@dataclass
class RetryPolicy:
    """How often and how long to wait; `sleep` is injectable so tests assert on waits without waiting."""

    max_retries: int = 5
    base_wait: float = 1.0
    max_wait: float = 30.0
    max_retry_after: float = 300.0
    # seconds without a byte before a transfer counts as a dropped connection (HUBTUI_HUB_READ_TIMEOUT)
    read_timeout: float = field(default_factory=settings.read_timeout)
    timeout_retries: int = 1  # extra tries after the server did not answer at all
    sleep: Callable[[float], None] | None = None

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether failure number `attempt` (1-based) of the same request deserves another try."""
        if not is_transient(exc):
            return False
        limit = min(self.timeout_retries, self.max_retries) if isinstance(exc, NoAnswer) else self.max_retries
        if attempt > limit:
            return False
        if isinstance(exc, NoAnswer):
            log.warning("%s; trying again (%d of %d)", exc, attempt, limit)
        return True

    def backoff(self, attempt: int) -> float:
        return min(self.max_wait, self.base_wait * (2 ** max(attempt - 1, 0)))

    def wait(self, seconds: float, cancel: threading.Event | None) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif cancel is not None:
            if cancel.wait(seconds):
                raise DownloadCancelledError("cancelled while waiting to retry")
        else:
            time.sleep(seconds)
        if cancel is not None and cancel.is_set():
            raise DownloadCancelledError("cancelled while waiting to retry")


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header (delay-seconds form), if the error carries one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionRefused):
        return False
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        return True
    if isinstance(exc, HfHubHTTPError):
        return status_of(exc) in RETRY_STATUS
    return False


def wait_for(exc: BaseException, attempt: int, policy: RetryPolicy) -> float:
    after = retry_after(exc)
    if after is not None:
        return min(after, policy.max_retry_after)
    return policy.backoff(attempt)


def with_retries(fn: Callable[[], T], policy: RetryPolicy, cancel: threading.Event | None = None) -> T:
    """Call fn, retrying transient failures; the last failure propagates unchanged."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            attempt += 1
            if not policy.should_retry(exc, attempt):
                raise
            policy.wait(wait_for(exc, attempt, policy), cancel)
