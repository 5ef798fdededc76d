"""This machine as llama.cpp sees it: quant's hardware probes plus the installed library's own answers.

llama-cpp-python knows two things /proc cannot tell: whether its build can offload to a GPU, and which CPU
features it was compiled with (they decide which weights its CPU backend repacks, see
`quant.sizing.repack`).
One function for `hubtui hw`, `hubtui plan`'s default target, the runner and the TUI's Hardware screen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quant.sizing.hardware import Hardware


def _llama_offload_probe() -> Callable[[], bool] | None:
    """llama-cpp-python's own answer, or None when it cannot be imported."""
    try:
        import llama_cpp
    except Exception:  # a broken install must not stop detection
        return None
    return llama_cpp.llama_supports_gpu_offload


def _llama_system_info_probe() -> Callable[[], str] | None:
    """llama.cpp's build features ("CPU : ... AVX2 = 1 | ... | REPACK = 1 |"), or None without llama_cpp."""
    try:
        import llama_cpp
    except Exception:
        return None
    return lambda: llama_cpp.llama_print_system_info().decode("utf-8", "replace")


def detect_machine() -> Hardware:
    """quant's probes plus llama-cpp-python's answers on GPU offload and on its CPU features."""
    from quant.sizing.hardware import Probes, detect_hardware

    return detect_hardware(
        Probes(gpu_offload=_llama_offload_probe(), llama_system_info=_llama_system_info_probe())
    )
