"""`hubtui demo`: the offline pipeline (build SmolLM2, convert to Q4_K_M, smoke test) and its cache.

The default run seeds the demo cache with the session's SmolLM2 checkpoint and Q4_K_M conversion, so it
checks the command's wiring, reuse and smoke verdict in seconds; building and converting are covered by
the fixture and converter tests, and the full from-scratch run is the slow test below.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hubtui import __version__
from tests.support.runner_models import converted_gguf


def hubtui(*args: str) -> subprocess.CompletedProcess[str]:
    # a real `python -m hubtui demo`: the whole pipeline as a user runs it, stdin piped to the chat REPL, and
    # llama.cpp's native output on the process's own stderr (capsys would not see it)
    return subprocess.run(
        [sys.executable, "-m", "hubtui", *args], input="", capture_output=True, text=True, timeout=900
    )


def check_cached_run(cache: Path) -> None:
    res = hubtui("demo", "--cache-dir", str(cache), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [(s["step"], s["action"]) for s in data["steps"]] == [
        ("checkpoint", "reused"),
        ("convert", "reused"),
        ("smoke", "pass"),
    ]
    smoke = data["smoke"]
    assert smoke["verdict"] == "pass" and 5 < smoke["perplexity"] < 40
    assert "Paris" in smoke["measurements"]["generation"]["text"]
    assert data["gguf"] == str(cache / f"v{__version__}" / "SmolLM2-135M-Instruct-Q4_K_M.gguf")


def test_demo_reuses_its_cache_smoke_tests_and_chats(smollm2_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "demo" / f"v{__version__}"
    root.mkdir(parents=True)
    (root / "SmolLM2-135M-Instruct").symlink_to(smollm2_dir, target_is_directory=True)
    (root / "SmolLM2-135M-Instruct-Q4_K_M.gguf").symlink_to(converted_gguf(smollm2_dir, "Q4_K_M"))
    res = subprocess.run(
        [sys.executable, "-m", "hubtui", "demo", "--cache-dir", str(tmp_path / "demo"), "--temp", "0"],
        input="/system Answer in one short sentence.\nWhat is the capital of France?\n",
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr
    assert "SmolLM2-135M-Instruct-Q4_K_M.gguf: PASS" in res.stdout
    assert (
        "Paris" in res.stdout.split("PASS", 1)[1].split("GPU layers", 1)[1]
    )  # the chat reply, after the report
    assert "(system prompt set)" in res.stderr
    assert "checkpoint: reusing" in res.stderr and "convert: reusing" in res.stderr


@pytest.mark.slow
def test_demo_from_scratch_with_no_chat(tmp_path: Path) -> None:
    cache = tmp_path / "demo"
    first = hubtui("demo", "--no-chat", "--cache-dir", str(cache))
    assert first.returncode == 0, first.stderr
    assert "SmolLM2-135M-Instruct-Q4_K_M.gguf: PASS" in first.stdout
    assert "building SmolLM2-135M-Instruct" in first.stderr and "converting to Q4_K_M" in first.stderr
    assert "chat with it: hubtui chat" in first.stdout
    (version_dir,) = cache.iterdir()
    assert (version_dir / "SmolLM2-135M-Instruct" / "config.json").is_file()
    assert not list(version_dir.glob("*.part")) and not list(version_dir.glob(".*"))  # no debris
    check_cached_run(cache)
