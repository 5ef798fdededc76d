"""Retries with backoff for transient hub failures (network errors, 429 with Retry-After, 5xx)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import httpx

from hubtui.hub.errors import DownloadCancelledError

T = TypeVar("T")

RETRY_STATUS = (408, 429, 500, 502, 503, 504)
TRANSIENT_EXCEPTIONS = (httpx.TransportError,)


@dataclass
class RetryPolicy:
    """How often and how long to wait; `sleep` is injectable so tests assert on waits without waiting."""

    max_retries: int = 5
    base_wait: float = 1.0
    max_wait: float = 30.0
    max_retry_after: float = 300.0
    read_timeout: float = 30.0  # seconds without a byte before a transfer counts as a dropped connection
    sleep: Callable[[float], None] | None = None

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
            if not is_transient(exc) or attempt > policy.max_retries:
                raise
            policy.wait(wait_for(exc, attempt, policy), cancel)
