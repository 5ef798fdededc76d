"""The import rules of docs/architecture.md hold for the real code, and the checker does catch breaches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.import_contracts import ROOT, check


def test_the_code_keeps_every_import_rule_and_has_no_cycle() -> None:
    assert check() == []


def test_the_check_runs_as_a_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.import_contracts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.startswith("import contracts kept: 4 rules, no import cycles")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_reports_each_breach_and_a_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "quant/__init__.py": "",
            "quant/a.py": "from quant import b\n",
            "quant/b.py": "import quant.c\n",
            "quant/c.py": "from . import a\n\ndef show():\n    import rich.console\n",
            "quant/lazy.py": "_LAZY = {'x': 'hubtui.hub'}\n",
            "hubtui/__init__.py": "",
            "hubtui/cli.py": "from hubtui.commands import convert\n",  # allowed
            "hubtui/commands/__init__.py": "",
            "hubtui/commands/convert.py": "from hubtui.app import app\n",  # allowed
            "hubtui/app/__init__.py": "",
            "hubtui/app/app.py": "def go():\n    from hubtui.commands.convert import x\n",
            "hubtui/hub/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import textual\n",
            "hubtui/runner/__init__.py": "",
            "hubtui/runner/x.py": "from ..app import app\n",
            "hubtui/units.py": "import hubtui.commands\n",
        },
    )
    problems = check(tmp_path)
    assert problems == [
        "hubtui/app/app.py:2: hubtui.app.app imports hubtui.commands.convert "
        "(hubtui.app never imports hubtui.commands)",
        "hubtui/app/app.py:2: hubtui.app.app imports hubtui.commands.convert "
        "(only hubtui.commands and hubtui.cli import hubtui.commands)",
        "hubtui/hub/__init__.py:3: hubtui.hub imports textual "
        "(hubtui.hub, hubtui.runner and hubtui.demo never import textual, hubtui.app or hubtui.commands)",
        "hubtui/runner/x.py:1: hubtui.runner.x imports hubtui.app.app "
        "(hubtui.hub, hubtui.runner and hubtui.demo never import textual, hubtui.app or hubtui.commands)",
        "hubtui/units.py:1: hubtui.units imports hubtui.commands "
        "(only hubtui.commands and hubtui.cli import hubtui.commands)",
        "quant/c.py:4: quant.c imports rich.console (quant never imports textual, rich, hubtui or llama_cpp)",
        "quant/lazy.py:1: quant.lazy imports hubtui.hub (quant never imports textual, rich, hubtui or llama_cpp)",
        "import cycle at import time: quant.a -> quant.b -> quant.c -> quant.a",
    ]


def test_imports_inside_functions_or_for_type_checking_make_no_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "quant/__init__.py": "",
            "quant/a.py": "from typing import TYPE_CHECKING\nimport quant.b\nif TYPE_CHECKING:\n    import quant.a\n",
            "quant/b.py": "def f():\n    from quant import a\n",
        },
    )
    assert check(tmp_path) == []
