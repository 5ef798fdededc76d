"""The headless core must stay importable without any UI or runner library (the Harlequin pattern)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import quant

FORBIDDEN = ("textual", "rich", "hubtui", "llama_cpp")


def _quant_modules() -> list[str]:
    names = ["quant"]
    for info in pkgutil.walk_packages(quant.__path__, prefix="quant."):
        names.append(info.name)
    return names


def test_quant_imports_no_ui_or_runner() -> None:
    modules = _quant_modules()
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(FORBIDDEN)!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    leaked = json.loads(out.stdout.strip().splitlines()[-1])
    assert leaked == [], f"quant imported {leaked}"


def test_hygiene_check_can_fail() -> None:
    """Guard the guard: the same probe does see a forbidden import when one happens."""
    code = "import sys, textual; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"


def test_convert_entry_point_is_light() -> None:
    """`from quant.convert import convert` must not load numba: `convert` starts its tokenizer helper process
    first and the heavy imports overlap it. gguf comes in without its optional mistral_common import."""
    code = (
        "import json, sys\n"
        "from quant.convert import convert\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'mistral_common', 'gguf'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["gguf"]
    code = "import sys, quant.convert.layout; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"  # the check above can fail: the layout does load the kernels
