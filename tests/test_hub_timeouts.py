"""An unresponsive or absent hub: every request times out (huggingface_hub's own too), is tried once more
with a notice, and fails with one line naming the endpoint; a refused connection is reported at once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.cli_helpers import Cli


class Blackhole:
    """A TCP server that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def blackhole(hub_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Blackhole]:  # noqa: ANN001
    server = Blackhole()
    monkeypatch.setenv("HUBTUI_HUB_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("HUBTUI_HUB_CONNECT_TIMEOUT", "0.3")
    monkeypatch.delenv("HUBTUI_DEBUG", raising=False)
    yield server
    server.close()


@pytest.mark.parametrize(
    "args",
    [
        ["search", "llama"],
        ["download", "meta-llama/Tiny-Llama"],
        ["plan", "meta-llama/Tiny-Llama", "--target", "laptop-8g"],
    ],
    ids=["search", "download", "plan"],
)
def test_a_hub_that_never_answers_is_named_after_one_retry(
    blackhole: Blackhole, cli: Cli, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", blackhole.url)
    code, out, err = cli(*args)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"hubtui: warning: {blackhole.url} did not answer within 0.3 s; trying again (1 of 1)",
        f"hubtui: error: {blackhole.url} accepted the connection but did not answer within 0.3 s (2 tries); "
        "the hub or mirror is down or very slow: check HF_ENDPOINT, or allow more time with "
        "HUBTUI_HUB_READ_TIMEOUT / HUBTUI_HUB_CONNECT_TIMEOUT",
    ]
    assert len(blackhole.accepted) == 2  # one try and one retry, no more (huggingface_hub's loop adds none)


def test_huggingface_hubs_own_session_has_the_timeouts(blackhole: Blackhole) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import get_session

    import hubtui.hub.client  # noqa: F401  (installs the client factory)
    from hubtui.hub.http import NoAnswer, TimedClient

    assert isinstance(get_session(), TimedClient)
    with pytest.raises(NoAnswer, match="did not answer within 0.3 s"):
        HfApi(endpoint=blackhole.url).model_info("a/b", timeout=None)  # explicitly "no timeout"


def test_a_refused_connection_is_reported_at_once(
    hub_env,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.delenv("HUBTUI_DEBUG", raising=False)
    code, _, err = cli("search", "llama", "--endpoint", url)
    assert code == 1
    assert err.splitlines() == [
        f"hubtui: error: {url} refused the connection (nothing is listening there); check HF_ENDPOINT or "
        "--endpoint, or whether the mirror is running"
    ]


@pytest.mark.parametrize("value", ["soon", "0", "-3", "inf"])
def test_a_bad_timeout_setting_is_a_one_line_error(
    hub_env,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    value: str,  # noqa: ANN001
) -> None:
    monkeypatch.setenv("HUBTUI_HUB_READ_TIMEOUT", value)
    monkeypatch.delenv("HUBTUI_DEBUG", raising=False)
    code, _, err = cli("search", "llama", "--endpoint", "http://127.0.0.1:9")
    assert code == 1
    assert err.splitlines() == [
        f"hubtui: error: HUBTUI_HUB_READ_TIMEOUT must be a positive number of seconds, got {value!r}"
    ]


def test_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hubtui.hub import settings

    for name in ("HUBTUI_HUB_READ_TIMEOUT", "HUBTUI_HUB_CONNECT_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    t = settings.timeouts()
    assert (t.connect, t.read, t.write, t.pool) == (10.0, 60.0, 60.0, 10.0)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "120")  # huggingface_hub's knob for slow mirrors counts
    assert settings.timeouts().read == 120.0
    monkeypatch.setenv("HUBTUI_HUB_READ_TIMEOUT", "90")  # ours wins
    monkeypatch.setenv("HUBTUI_HUB_CONNECT_TIMEOUT", "5")
    t = settings.timeouts()
    assert (t.connect, t.read) == (5.0, 90.0)
    assert settings.timeouts(read=3).read == 3.0
