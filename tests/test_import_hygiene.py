"""The headless core must stay importable without any UI or runner library (the Harlequin pattern)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

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


HEAVY = ("numba", "numpy", "huggingface_hub", "llama_cpp", "gguf")


def _modules_after(code: str, env: dict[str, str]) -> dict[str, list[str]]:
    """Run `code` in a fresh interpreter; which of HEAVY and which hubtui.app / hubtui.hub modules it loaded."""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        f"print(json.dumps({{'heavy': sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r})), "
        "'hubtui': sorted(m for m in sys.modules if m.startswith(('hubtui.app.', 'hubtui.hub.')))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, env={**os.environ, **env}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("offline", ["1", ""])
def test_app_import_is_light(offline: str, tmp_path: Path) -> None:
    """Everything imported before the first frame: the CLI, the app and its first screen only (Local offline,
    else Browse), none of the hub client, numba, numpy, llama.cpp or gguf-py."""
    env = {"HF_HUB_OFFLINE": offline, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hub")}
    found = _modules_after("import hubtui.cli, hubtui.app.app", env)
    assert found["heavy"] == []
    assert "hubtui.hub.client" not in found["hubtui"]
    screens = {m for m in found["hubtui"] if m.endswith("_pane")}
    assert screens == {"hubtui.app.local_pane"}  # the others when built, right after the first frame


def test_started_app_stays_light(tmp_path: Path) -> None:
    """The app started offline on an empty cache, every screen built and Local listed, still has imported
    none of the heavy modules: they load with the work that needs them."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HUBTUI_CONFIG": str(tmp_path / "config.toml"),
        "HUBTUI_STATE_DIR": str(tmp_path / "state"),
        "HUBTUI_DEMO_DIR": str(tmp_path / "demo"),
    }
    code = (
        "import asyncio, time\n"
        "from hubtui.app.app import HubtuiApp\n"
        "async def main():\n"
        "    app = HubtuiApp()\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        end = time.monotonic() + 120\n"
        "        while not (app.screens_built and app.query('#format')\n"  # Browse's filters, mounted last
        "                   and 'GGUFs are written to' in str(app.query_one('#local-note').render())):\n"
        "            assert time.monotonic() < end, 'the Local listing never appeared'\n"
        "            await pilot.pause(0.05)\n"
        "        await pilot.pause()\n"
        "asyncio.run(main())\n"
    )
    found = _modules_after(code, env)
    assert found["heavy"] == []
    assert {f"hubtui.app.{m}_pane" for m in ("browse", "chat", "convert")} <= set(found["hubtui"])


def test_cache_listing_without_a_cache_does_not_load_the_hub_client(tmp_path: Path) -> None:
    """Listing an absent hub cache (a first start, Local's listing offline) imports no huggingface_hub; asking
    for the search filters does, so the check can fail."""
    env = {"HF_HUB_CACHE": str(tmp_path / "none")}
    found = _modules_after("from hubtui.hub import list_cache\nassert list_cache().repos == []", env)
    assert found["heavy"] == []
    assert "hubtui.hub.client" not in found["hubtui"]
    found = _modules_after("from hubtui.hub import SearchFilters", env)
    assert found["heavy"] == ["huggingface_hub"]
    assert "hubtui.hub.client" in found["hubtui"]


def test_gguf_header_reader_loads_gguf_without_mistral_common() -> None:
    """Inspect and the Local listing read GGUF headers through quant.gguf_file: gguf-py comes in without its
    optional mistral_common import (0.3-0.5 s), which a plain `import gguf` does load."""
    found = _modules_after("from quant.gguf_file import read_gguf_general", {})
    assert "gguf" in found["heavy"]
    code = "import sys, quant.gguf_file; print('mistral_common' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
    code = "import sys, gguf; print('mistral_common' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"  # the check above can fail
    code = "import quant.gguf_file, mistral_common"  # and the block is lifted afterwards
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
