"""Connect and read timeouts on every hub request, huggingface_hub's own included.

huggingface_hub 2.x sends everything through one shared `httpx2.Client` (`get_session()`), built by a
factory that `set_client_factory` replaces. Its default client has `timeout=None`, and its API calls
(`model_info`, `list_models`, `auth_check`, ...) pass `timeout=None` explicitly, which switches off any
client default: against a mirror that accepts the connection and never answers, they wait forever. The
client installed here gives every request that did not choose its own (our transfers do, with
`OWN_TIMEOUT`) the configured connect and read timeouts (`settings.timeouts()`), and turns two failures
into exceptions that huggingface_hub's own retry loop (`http_backoff`, five tries with 1-16 s sleeps) does
not retry, so `hubtui.hub.retry` alone decides: `NoAnswer` (a timeout; retried once) and
`ConnectionRefused` (nothing listens there; not retried, so it is reported at once).
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.utils import httpx

from hubtui.hub import settings

OWN_TIMEOUT = "hubtui.own_timeout"  # a request extension: this request set its timeout itself


class NoAnswer(httpx.TransportError):
    """The server did not connect or answer within the configured timeout."""

    def __init__(
        self, message: str, *, request: httpx.Request | None = None, seconds: float = 0.0, phase: str = "read"
    ) -> None:
        super().__init__(message, request=request)
        self.seconds = seconds
        self.phase = phase  # "connect" or "read"


class ConnectionRefused(httpx.TransportError):
    """The connection was refused: nothing listens at that address."""


def _origin(request: httpx.Request) -> str:
    url = request.url
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # the OSError sits a few causes down (httpcore, then the socket)
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError) or "connection refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class TimedClient(httpx.Client):
    """A Client whose requests always have connect/read timeouts (see the module docstring)."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        own = request.extensions.get(OWN_TIMEOUT)
        if not own:
            request.extensions = {**request.extensions, "timeout": settings.timeouts().as_dict()}
        limits = request.extensions.get("timeout") or {}
        try:
            return super().send(request, **kwargs)
        except httpx.TimeoutException as exc:
            phase = "connect" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "read"
            seconds = float(limits.get(phase) or 0.0)
            raise NoAnswer(
                f"{_origin(request)} did not {'accept the connection' if phase == 'connect' else 'answer'} "
                f"within {seconds:g} s",
                request=request,
                seconds=seconds,
                phase=phase,
            ) from exc
        except httpx.ConnectError as exc:
            if _refused(exc):
                raise ConnectionRefused(
                    f"{_origin(request)} refused the connection", request=request
                ) from exc
            raise


def client_factory() -> httpx.Client:
    """huggingface_hub's default client (its request hook, redirects) as a TimedClient."""
    hooks: dict[str, list[Any]] = {}
    try:
        from huggingface_hub.utils._http import hf_request_event_hook

        hooks = {"request": [hf_request_event_hook]}
    except ImportError:  # a later huggingface_hub moved it: only its offline guard and request ids are lost
        pass
    return TimedClient(event_hooks=hooks, follow_redirects=True, timeout=None)


_installed = False


def install() -> None:
    """Make huggingface_hub's shared session a TimedClient (once per process)."""
    global _installed
    if not _installed:
        from huggingface_hub.utils import set_client_factory

        set_client_factory(client_factory)
        _installed = True
