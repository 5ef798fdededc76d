"""The command-line skeleton: help, version, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hubtui import __version__
from hubtui.cli import SUBCOMMANDS, cli


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # a real `python -m hubtui`: what is tested is the process (its entry point, help, exit statuses)
    return subprocess.run(
        [sys.executable, "-m", "hubtui", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_subcommand() -> None:
    out = run("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert f"  {name} " in out.stdout, name


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert __version__ in out.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str) -> None:
    out = run(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout


def test_unknown_subcommand_is_usage_error() -> None:
    out = run("frobnicate")
    assert out.returncode == 2
    assert "No such command" in out.stderr


def test_data_commands_take_json() -> None:
    for name, cmd in cli.commands.items():
        subs = getattr(cmd, "commands", None)
        targets = list(subs.values()) if subs else [cmd]
        for target in targets:
            if target.name in {"rm", "chat", "demo"}:
                continue
            opts = {o for p in target.params for o in getattr(p, "opts", [])}
            assert "--json" in opts, f"{name} {target.name} lacks --json"


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_console_entry_makes_openmp_workers_sleep_unless_the_user_chose(
    given: str | None, expected: str
) -> None:
    code = (
        "import os, sys\n"
        "from hubtui.cli import entry\n"
        "sys.argv = ['hubtui', '--version']\n"
        "entry()\n"
        "print('policy', os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.split()[-2:] == ["policy", expected]
