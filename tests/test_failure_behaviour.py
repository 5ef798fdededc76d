"""Real processes: two writers of one output, SIGTERM/SIGHUP/SIGKILL in the middle of a command.

A child is frozen with SIGSTOP at the moment under test (its temporary exists and holds data), so what
happens next does not depend on timing: the second writer runs against a conversion that is still going,
and a signal is delivered at a known point once the child continues.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.support.runner_models import converted_gguf

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra}


# Real `python -m hubtui` processes throughout: signals, exit statuses and files left behind by a process
# that is killed or interrupted are what this file tests.
def spawn(*args: str, **kwargs) -> subprocess.Popen[str]:  # noqa: ANN003
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "hubtui", *args], text=True, env=_env(), **kwargs)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubtui", *args], capture_output=True, text=True, env=_env(), timeout=300
    )


def wait_for(what: str, ready: Callable[[], bool], child: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        if child is not None and child.poll() is not None:
            raise AssertionError(f"child exited ({child.returncode}) before {what}: {child.stderr.read()}")
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)


def temporaries(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.hubtui-tmp"))


def writing(directory: Path) -> Callable[[], bool]:
    """True once a temporary in `directory` holds data (a conversion is in the middle of writing)."""

    def ready() -> bool:
        try:
            return any(p.stat().st_size > 0 for p in temporaries(directory))
        except FileNotFoundError:
            return False

    return ready


def frozen_mid_write(
    args: list[str], meanwhile: Callable[[subprocess.Popen[str]], None], ready: Callable[[], bool]
) -> tuple[subprocess.Popen[str], str]:
    """Run `hubtui ARGS`, freeze it (SIGSTOP) once `ready()`, call `meanwhile(child)`, let it go on (SIGCONT)
    and wait; returns the child and its stderr."""
    child = spawn(*args)
    try:
        wait_for("the command to be writing", ready, child)
        child.send_signal(signal.SIGSTOP)
        meanwhile(child)
        child.send_signal(signal.SIGCONT)
        _, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
    return child, err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hubtui:")]


def convert_args(src: Path, out: Path, qtype: str = "Q8_0") -> list[str]:
    return ["convert", str(src), "--type", qtype, "-o", str(out)]


def test_a_second_conversion_to_the_same_output_fails_at_once_and_the_first_is_correct(
    smollm2_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.gguf"

    def second_writers(first: subprocess.Popen[str]) -> None:
        for extra in ([], ["--force"]):
            second = run(*convert_args(smollm2_dir, out, "Q4_K_M"), *extra)
            assert second.returncode == 1, second.stderr
            assert error_lines(second.stderr) == [
                f"hubtui: error: {out}: another hubtui process (pid {first.pid}) is writing this output "
                "right now; wait for it to finish or choose another output"
            ]

    first, err = frozen_mid_write(convert_args(smollm2_dir, out), second_writers, writing(tmp_path))
    assert first.returncode == 0, err
    assert out.read_bytes() == converted_gguf(smollm2_dir, "Q8_0").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["x.gguf"]


def test_a_file_that_appears_during_a_conversion_is_kept_without_force(
    smollm2_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.gguf"

    def someone_else(child: subprocess.Popen[str]) -> None:
        out.write_bytes(b"made by someone else meanwhile")

    child, err = frozen_mid_write(convert_args(smollm2_dir, out), someone_else, writing(tmp_path))
    assert child.returncode == 1
    assert error_lines(err) == [f"hubtui: error: {out}: already exists (use --force to overwrite)"]
    assert out.read_bytes() == b"made by someone else meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["x.gguf"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_conversion_like_ctrl_c(
    smollm2_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    args = convert_args(smollm2_dir, tmp_path / "x.gguf")
    child, err = frozen_mid_write(args, lambda c: c.send_signal(sig), writing(tmp_path))
    assert child.returncode == 128 + sig, err
    assert error_lines(err) == [f"hubtui: terminated by {sig.name}"]
    assert list(tmp_path.iterdir()) == []  # no temporary, no lock file


def test_sigkill_leaves_a_stale_temporary_that_cache_ls_lists_and_rm_stale_removes(
    smollm2_dir: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    child = spawn(*convert_args(smollm2_dir, out_dir / "x.gguf"))
    try:
        wait_for("the conversion to be writing", writing(out_dir), child)
    finally:
        child.kill()
        child.communicate(timeout=60)
    (left,) = temporaries(out_dir)
    cache = ["--cache-dir", str(tmp_path / "hub")]
    listed = run("cache", "ls", *cache, "--json")
    assert listed.returncode == 0, listed.stderr
    stale = {Path(s["path"]): s for s in json.loads(listed.stdout)["stale"]}
    assert stale[left]["output"] == str(out_dir / "x.gguf") and stale[left]["size"] > 0
    text = run("cache", "ls", *cache).stdout
    assert "stale" in text and str(left) in text and "cache rm --stale" in text
    removed = run("cache", "rm", "--stale")
    assert removed.returncode == 0, removed.stderr
    assert f"removed {left}" in removed.stdout
    assert list(out_dir.iterdir()) == []  # the temporary and the dead writer's lock file
    assert run("cache", "rm").returncode == 2  # neither a target nor --stale


def test_sigterm_stops_a_smoke_test_and_its_llama_cpp_process(smollm2_dir: Path) -> None:
    gguf = converted_gguf(smollm2_dir, "Q8_0")
    child = spawn("smoke", str(gguf))
    try:
        workers: list[psutil.Process] = []

        def worker_started() -> bool:
            workers[:] = psutil.Process(child.pid).children(recursive=True)
            return bool(workers)

        wait_for("the smoke worker", worker_started, child)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 143
    assert error_lines(err) == ["hubtui: terminated by SIGTERM"]
    for w in workers:
        assert not w.is_running() or w.status() == psutil.STATUS_ZOMBIE


def test_sigterm_ends_a_chat_session(smollm2_dir: Path) -> None:
    gguf = converted_gguf(smollm2_dir, "Q8_0")
    child = spawn(
        "chat",
        str(gguf),
        "--temp",
        "0",
        "--max-tokens",
        "4",
        "--no-stats",
        "--ctx",
        "256",
        stdin=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("Hello\n")
        child.stdin.flush()
        assert child.stdout.readline()  # the reply: the session now waits for the next line
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 143
    assert error_lines(err) == ["hubtui: terminated by SIGTERM"]


def test_sigterm_closes_the_tui_and_restores_the_terminal(tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: hubtui's TUI on a fresh pseudo-terminal
        env = _env(TERM="xterm-256color", HF_HUB_OFFLINE="1", HUBTUI_CONFIG=str(tmp_path / "c.toml"))
        os.execvpe(sys.executable, [sys.executable, "-m", "hubtui"], env)
    screen = b""

    def read(timeout: float) -> bytes:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return b""

    try:
        deadline = time.monotonic() + 120
        while b"Local" not in screen:  # the tab bar is drawn
            assert time.monotonic() < deadline, screen[-500:]
            screen += read(1.0)
        os.kill(pid, signal.SIGTERM)
        while chunk := read(30.0):
            screen += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
    assert os.waitstatus_to_exitcode(status) == 143
    tail = screen[screen.rfind(b"\x1b[?1049l") :]  # after leaving the alternate screen
    assert b"\x1b[?1049l" in screen and b"hubtui: terminated by SIGTERM" in tail


def test_sigterm_while_a_bundle_is_assembled_leaves_no_folder(smollm2_dir: Path, tmp_path: Path) -> None:
    args = ["bundle", str(converted_gguf(smollm2_dir, "Q8_0")), "-o", str(tmp_path / "field")]
    child, err = frozen_mid_write(
        args, lambda c: c.send_signal(signal.SIGTERM), lambda: bool(temporaries(tmp_path))
    )
    assert child.returncode == 143, err
    assert error_lines(err) == ["hubtui: terminated by SIGTERM"]
    assert list(tmp_path.iterdir()) == []
