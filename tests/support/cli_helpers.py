"""Running `hubtui` in this process, as the CLI tests do."""

from __future__ import annotations

import pytest


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`hubtui ARGS` through `hubtui.cli.main`: (exit status, stdout, stderr)."""
    from hubtui.cli import main

    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
