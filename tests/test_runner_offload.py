"""`--gpu-layers auto`: the runner asks the sizing plan how many layers fit this machine's GPUs."""

from __future__ import annotations

import llama_cpp
import pytest

from hubtui.demo.smollm2 import bundled_gguf
from hubtui.runner.offload import auto_gpu_layers
from quant.sizing.profiles import Target


def test_cpu_only_build_offloads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    assert auto_gpu_layers(bundled_gguf(), 1024) == (0, "this llama-cpp-python build has no GPU support")


@pytest.mark.parametrize(("vram", "expect_all"), [(8 << 30, True), (200 << 20, False)])
def test_gpu_build_follows_the_plan(monkeypatch: pytest.MonkeyPatch, vram: int, expect_all: bool) -> None:
    import quant.sizing.profiles

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    monkeypatch.setattr(
        quant.sizing.profiles, "machine_target", lambda hw: Target("this machine", 16 << 30, (vram,))
    )
    ngl, why = auto_gpu_layers(bundled_gguf(), 1024)
    n_layer = 30  # SmolLM2-135M
    if expect_all:
        assert (ngl, why) == (n_layer + 1, "plan: gpu placement at context 1024")
    else:  # 200 MiB holds only some of the layers: a partial offload, never more than fits
        assert 0 < ngl < n_layer + 1 and why == "plan: partial placement at context 1024"
