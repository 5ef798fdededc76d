"""How to load a GGUF on this machine, from the project's sizing plan: `--gpu-layers auto` (how many layers
to offload) and the load mode when none was asked for (map the file, or read it into RAM where only that fits)."""

from __future__ import annotations

import os
from typing import Any


def load_mode(path: str | os.PathLike[str], n_ctx: int, *, mlock: bool = False) -> tuple[bool, str]:
    """(use mmap, why) when the user asked for neither --mmap nor --no-mmap: llama.cpp's default (map the
    file) unless the plan for this machine finds that only reading it into RAM fits."""
    if mlock:
        return True, "mlock pins the mapped file"
    try:
        from hubtui.runner.machine import detect_machine
        from quant.sizing.plan import NO_MMAP_REASON, load_source, plan
        from quant.sizing.profiles import machine_target
    except ImportError:  # the standalone chat app in a field bundle carries no sizing code
        return True, "no sizing code: llama.cpp's default"
    try:
        target = machine_target(detect_machine())
        row: Any = plan(load_source(os.fspath(path)), target, ctx=n_ctx).rows[0]
    except Exception as exc:  # sizing is advice: a failure must not stop the run
        return True, f"sizing failed ({exc}); llama.cpp's default"
    if row.placement.mode_switched:
        return False, NO_MMAP_REASON
    return True, "llama.cpp's default"


def auto_gpu_layers(
    path: str | os.PathLike[str], n_ctx: int, *, mmap: bool = True, mlock: bool = False
) -> tuple[int, str]:
    """(n_gpu_layers, why). 0 when this llama.cpp build cannot offload; else what quant.sizing.plan fits in
    free VRAM."""
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        return 0, "this llama-cpp-python build has no GPU support"
    try:
        from hubtui.runner.machine import detect_machine
        from quant.sizing.memory import RunSettings
        from quant.sizing.plan import load_source, plan
        from quant.sizing.profiles import machine_target
    except ImportError:  # the standalone chat app in a field bundle carries no sizing code
        return -1, "GPU build, no sizing code: offloading every layer"
    try:
        target = machine_target(detect_machine())
        settings = RunSettings(repack=target.repack, mmap=mmap, mlock=mlock)
        p = plan(load_source(os.fspath(path)), target, ctx=n_ctx, settings=settings)
    except Exception as exc:  # sizing is advice: a failure must not stop the run
        return 0, f"sizing failed ({exc}); running on the CPU"
    row: Any = p.rows[0]
    if not row.fits:
        return 0, "the plan finds no fit on this machine's GPUs; running on the CPU"
    return row.placement.n_gpu_layers, f"plan: {row.placement.kind} placement at context {n_ctx}"
