"""What the `cli` fixture (tests/conftest.py) returns: `hubtui ARGS` run in this process."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple


class CliResult(NamedTuple):
    """Exit status, stdout and stderr of one `hubtui.cli.main([...])` call; unpacks as (code, out, err)."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON (for `--json`)."""
        return json.loads(self.out)


Cli = Callable[..., CliResult]
"""The `cli` fixture's type: `cli(*args, env=None) -> CliResult`."""
