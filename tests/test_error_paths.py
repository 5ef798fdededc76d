"""Every command's error paths: a user-caused problem is one `hubtui: error:` line (or a usage error, exit 2),
never an `internal error` or a traceback, and it leaves nothing behind."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quant.outputs import claim_output
from tests.support.cli_helpers import Cli
from tests.support.runner_models import write_tiny_gguf


@pytest.fixture
def files(tmp_path: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:  # noqa: ARG001
    """Bad inputs of every kind, and a port nothing listens on."""
    monkeypatch.delenv("HUBTUI_DEBUG", raising=False)
    d = tmp_path / "in"
    d.mkdir()
    os.mkfifo(d / "fifo.gguf")
    (d / "empty.gguf").write_bytes(b"")
    (d / "corrupt.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    (d / "notes.txt").write_text("hello")
    (d / "ckpt").mkdir()
    (d / "ckpt" / "config.json").write_text("{ not json")
    (d / "full").mkdir()
    (d / "full" / "keep.txt").write_text("mine")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"dir": d, "out": tmp_path / "out", "refused": f"http://127.0.0.1:{port}"}


def _cases(f: dict[str, Any]) -> list[tuple[str, list[str], str]]:
    d, out, refused = f["dir"], f["out"], f["refused"]
    gguf = lambda name: str(d / name)  # noqa: E731
    return [
        # (what, argv, a fragment the one error line must contain)
        ("convert: no such source", ["convert", str(d / "nope")], "not a checkpoint directory"),
        ("convert: a file as source", ["convert", gguf("notes.txt")], "not a checkpoint directory"),
        ("convert: corrupt config", ["convert", str(d / "ckpt"), "-o", str(d / "o.gguf")], "not valid JSON"),
        (
            "convert: output folder missing",
            ["convert", str(d / "ckpt"), "-o", str(out / "x/y.gguf")],
            "does not exist",
        ),
        (
            "convert: onto a FIFO",
            ["convert", str(d / "ckpt"), "-o", gguf("fifo.gguf"), "--force"],
            "not a regular file",
        ),
        ("convert: onto a file", ["convert", str(d / "ckpt"), "-o", gguf("notes.txt")], "use --force"),
        ("plan: corrupt GGUF", ["plan", gguf("corrupt.gguf")], "truncated GGUF header"),
        ("plan: offline hub repo", ["plan", "someone/model"], "offline mode"),
        ("search: refused", ["search", "llama", "--endpoint", refused], "refused the connection"),
        ("download: refused", ["download", "a/b", "--endpoint", refused], "refused the connection"),
        ("cache rm: nothing there", ["cache", "rm", "nobody/nothing"], "nothing to remove"),
        ("cache rm: not ours", ["cache", "rm", gguf("notes.txt")], "refusing to delete"),
        ("chat: missing", ["chat", gguf("nope.gguf")], "no such file"),
        ("chat: FIFO", ["chat", gguf("fifo.gguf")], "is a FIFO"),
        ("chat: corrupt", ["chat", gguf("corrupt.gguf")], "truncated GGUF header"),
        ("inspect: missing", ["inspect", gguf("nope.gguf")], "no such file"),
        ("inspect: FIFO", ["inspect", gguf("fifo.gguf")], "is a FIFO"),
        ("inspect: empty", ["inspect", gguf("empty.gguf")], "empty file"),
        ("inspect: corrupt", ["inspect", gguf("corrupt.gguf")], "truncated GGUF header"),
        ("bundle: missing", ["bundle", gguf("nope.gguf"), "-o", str(out / "b")], "no such file"),
        ("bundle: FIFO", ["bundle", gguf("fifo.gguf"), "-o", str(out / "b")], "is a FIFO"),
        (
            "bundle: corrupt",
            ["bundle", gguf("corrupt.gguf"), "-o", str(out / "b")],
            "truncated GGUF header",
        ),
        ("bundle --verify: no bundle", ["bundle", "--verify", str(d)], "no SHA256SUMS file"),
    ]


CASE_IDS = [c[0] for c in _cases({"dir": Path("d"), "out": Path("o"), "refused": "r"})]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_user_errors_are_one_line(
    files: dict[str, Any], cli: Cli, monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1") if "offline" in CASE_IDS[index] else None
    _, argv, fragment = _cases(files)[index]
    before = sorted(p.name for p in files["dir"].iterdir())
    code, _, err = cli(*argv)
    lines = [line for line in err.splitlines() if line.startswith("hubtui:")]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("hubtui: error: ") and fragment in lines[0], err
    assert "Traceback" not in err and "internal error" not in err
    assert sorted(p.name for p in files["dir"].iterdir()) == before  # nothing added, nothing removed
    assert not files["out"].exists() or not any(files["out"].rglob("*"))


@pytest.mark.parametrize(
    "argv",
    [["smoke", "--ctx", "1", "x.gguf"], ["hw", "--bogus"], ["cache", "rm"], ["demo", "--temp", "-1"]],
    ids=["smoke", "hw", "cache", "demo"],
)
def test_usage_errors_exit_2_without_a_traceback(files: dict[str, Any], cli: Cli, argv: list[str]) -> None:
    code, _, err = cli(*argv)
    assert code == 2 and "Error:" in err and "Traceback" not in err


def test_smoke_on_a_bad_file_is_a_fail_verdict(files: dict[str, Any], cli: Cli) -> None:
    code, out, err = cli("smoke", str(files["dir"] / "fifo.gguf"))
    assert code == 1 and "FAIL" in out and "is a FIFO" in out and "Traceback" not in err + out


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/x.gguf"),
            "/data/x.gguf: No space left on device",
        ),
        (MemoryError(), "out of memory (the input needs more memory than this process may use)"),
    ],
    ids=["OSError", "MemoryError"],
)
def test_system_failures_are_one_line_too(
    files: dict[str, Any],
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
    line: str,
) -> None:
    import hubtui.commands.inspect as inspect_command

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise exc

    monkeypatch.setattr("quant.gguf_file.read_gguf_summary", fail)
    assert inspect_command  # the command imports read_gguf_summary at call time
    code, _, err = cli("inspect", str(files["dir"] / "notes.txt"))
    assert code == 1 and err.splitlines() == [f"hubtui: error: {line}"]


# -- bundle: the destination is checked before the (slow) smoke test -----------------------------------


@pytest.fixture
def no_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "hubtui.runner.smoke.run_smoke", lambda *a, **k: pytest.fail("the smoke test ran before the checks")
    )


def _bundle_case(
    name: str, files: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], str, Callable[[], None]]:
    d = files["dir"]
    gguf = str(write_tiny_gguf(d.parent / "tiny.gguf", n_tokens=100, embed_rows=100))
    if name == "non-empty":
        return (
            ["bundle", gguf, "-o", str(d / "full")],
            "already exists and is not an empty directory",
            lambda: None,
        )
    if name == "parent-is-a-file":
        return (
            ["bundle", gguf, "-o", str(d / "notes.txt" / "b")],
            "cannot create the bundle's parent folder",
            lambda: None,
        )
    if name == "no-space":
        monkeypatch.setattr("quant.outputs.free_disk_bytes", lambda directory: 1000)
        return ["bundle", gguf, "-o", str(d / "b")], "not enough free disk space for the bundle", lambda: None
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["non-empty", "parent-is-a-file", "no-space"])
def test_bundle_checks_its_destination_before_the_smoke_test(
    name: str,
    files: dict[str, Any],
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    no_smoke: None,
) -> None:
    argv, fragment, _ = _bundle_case(name, files, monkeypatch)
    before = sorted(p.name for p in files["dir"].iterdir())
    code, _, err = cli(*argv)
    lines = [line for line in err.splitlines() if line.startswith("hubtui:")]
    assert code == 1 and len(lines) == 1 and fragment in lines[0], err
    assert sorted(p.name for p in files["dir"].iterdir()) == before
    assert (files["dir"] / "full" / "keep.txt").read_text() == "mine"


def test_a_second_bundle_to_the_same_folder_fails_at_once(
    files: dict[str, Any], cli: Cli, no_smoke: None
) -> None:
    dest = files["dir"] / "b"
    gguf = write_tiny_gguf(files["dir"].parent / "tiny.gguf", n_tokens=100, embed_rows=100)
    with claim_output(dest, directory=True):  # another bundle is being assembled there
        code, _, err = cli("bundle", str(gguf), "-o", str(dest))
    assert code == 1 and "another hubtui process" in err and "is writing this output" in err
