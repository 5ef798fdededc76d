"""`hubtui demo`: the offline pipeline end to end (build SmolLM2, convert to Q4_K_M, smoke test), then reuse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def hubtui(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubtui", *args], input=stdin, capture_output=True, text=True, timeout=900
    )


def test_demo_end_to_end_then_reuses_its_cache(tmp_path: Path) -> None:
    cache = tmp_path / "demo"
    first = hubtui("demo", "--no-chat", "--cache-dir", str(cache))
    assert first.returncode == 0, first.stderr
    assert "SmolLM2-135M-Instruct-Q4_K_M.gguf: PASS" in first.stdout
    assert "building SmolLM2-135M-Instruct" in first.stderr and "converting to Q4_K_M" in first.stderr
    assert "chat with it: hubtui chat" in first.stdout
    (version_dir,) = cache.iterdir()
    gguf = version_dir / "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert gguf.is_file() and (version_dir / "SmolLM2-135M-Instruct" / "config.json").is_file()
    assert not list(version_dir.glob("*.part")) and not list(version_dir.glob(".*"))  # no debris

    second = hubtui("demo", "--cache-dir", str(cache), "--json")
    assert second.returncode == 0, second.stderr
    data = json.loads(second.stdout)
    assert [(s["step"], s["action"]) for s in data["steps"]] == [
        ("checkpoint", "reused"),
        ("convert", "reused"),
        ("smoke", "pass"),
    ]
    smoke = data["smoke"]
    assert smoke["verdict"] == "pass" and 5 < smoke["perplexity"] < 40
    assert "Paris" in smoke["measurements"]["generation"]["text"]
