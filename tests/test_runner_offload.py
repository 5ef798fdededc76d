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


# -- the load mode: mapped unless the plan for this machine finds that only reading the file into RAM fits --


@pytest.fixture(scope="module")
def repacked_gguf(smollm2_dir) -> tuple[object, int, int]:
    """SmolLM2 at Q4_K_M (its ffn_down weights are Q4_K: repacked on x86), with its needs at ctx 1024 in
    both load modes."""
    from dataclasses import replace

    from quant.sizing.memory import RunSettings, estimate
    from quant.sizing.plan import gguf_shape
    from quant.sizing.repack import X86_AVX2
    from tests.support.runner_models import converted_gguf

    path = converted_gguf(smollm2_dir, "Q4_K_M")
    _, _, shape = gguf_shape(path)
    s = RunSettings(n_ctx=1024, repack=X86_AVX2)
    mapped, loaded = estimate(shape, s).host, estimate(shape, replace(s, mmap=False)).host
    assert mapped.read_once > 0
    need_mapped, need_loaded = mapped.working_set + mapped.margin, loaded.working_set + loaded.margin
    assert need_loaded < need_mapped
    return path, need_mapped, need_loaded


def _machine(monkeypatch: pytest.MonkeyPatch, ram: int) -> None:
    import quant.sizing.profiles
    from quant.sizing.repack import X86_AVX2

    monkeypatch.setattr(
        quant.sizing.profiles, "machine_target", lambda hw: Target("this machine", ram, repack=X86_AVX2)
    )


def test_load_mode_reads_into_ram_only_where_mapping_does_not_fit(
    monkeypatch: pytest.MonkeyPatch, repacked_gguf: tuple
) -> None:
    from hubtui.runner.offload import load_mode

    path, need_mapped, need_loaded = repacked_gguf
    _machine(monkeypatch, need_mapped + (1 << 20))
    assert load_mode(path, 1024) == (True, "llama.cpp's default")
    _machine(monkeypatch, (need_mapped + need_loaded) // 2)
    mmap, why = load_mode(path, 1024)
    assert mmap is False and "repacked weights" in why
    assert load_mode(path, 1024, mlock=True)[0] is True  # a mode asked for is kept
    _machine(monkeypatch, need_loaded // 2)  # neither fits: llama.cpp's default (it pages rather than dies)
    assert load_mode(path, 1024)[0] is True


def test_chat_loads_in_the_plans_mode_unless_one_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, repacked_gguf: tuple
) -> None:
    import llama_cpp

    from hubtui.runner.chat import load_model

    path, need_mapped, need_loaded = repacked_gguf
    _machine(monkeypatch, (need_mapped + need_loaded) // 2)
    seen: list[dict] = []
    monkeypatch.setattr(llama_cpp, "Llama", lambda **kw: seen.append(kw) or object())
    load_model(path, n_ctx=1024, gpu_layers=0)
    load_model(path, n_ctx=1024, gpu_layers=0, mmap=True)
    _machine(monkeypatch, 2 * need_mapped)
    load_model(path, n_ctx=1024, gpu_layers=0)
    assert [kw["use_mmap"] for kw in seen] == [False, True, True]


def _smoke_logits(path) -> int:
    from hubtui.runner.gguf_check import read_facts
    from hubtui.runner.smoke import SMOKE_LOGITS_COPIES

    return SMOKE_LOGITS_COPIES * 512 * read_facts(path).n_vocab_tokens * 4


def test_smoke_sizes_and_loads_in_the_plans_mode(
    monkeypatch: pytest.MonkeyPatch, repacked_gguf: tuple
) -> None:
    from hubtui.runner.smoke import run_smoke

    path, need_mapped, need_loaded = repacked_gguf
    # the perplexity pass's logits come on top of the plan: room for them and the loaded file, not the mapped
    _machine(monkeypatch, (need_mapped + need_loaded) // 2 + _smoke_logits(path))
    report = run_smoke(path, n_ctx=1024, gpu_layers=0).to_dict()
    memory = next(c for c in report["checks"] if c["check"] == "memory")
    assert report["mmap"] is False and report["memory_plan"]["mode_switched"], memory
    assert "no-mmap (mapping the file leaves too little room" in memory["message"]
    assert report["verdict"] != "fail", report["reasons"]
    assert report["measurements"]["load_mode"] == {"mmap": False, "mlock": False}
    # asked for mmap, it is sized and loaded mapped
    forced = run_smoke(path, n_ctx=1024, gpu_layers=0, mmap=True).to_dict()
    assert forced["mmap"] is True and not forced["memory_plan"]["mode_switched"]


def test_a_bundle_planned_with_no_mmap_says_so_in_every_command(repacked_gguf: tuple) -> None:
    from hubtui.runner.bundle import _modelfile, _readme, plan_for_target
    from hubtui.runner.gguf_check import read_facts
    from quant.sizing.repack import X86_AVX2

    path, need_mapped, need_loaded = repacked_gguf  # sized at ctx 1024
    facts = read_facts(path)
    # room for the loaded file at ctx 1024 but not for the mapped one: the largest context needs --no-mmap
    target = Target("small", (need_mapped + need_loaded) // 2, repack=X86_AVX2)
    bp = plan_for_target(path, facts, target)
    assert bp.fits and bp.n_ctx is not None and bp.n_ctx >= 1024 and bp.mmap is False
    readme = _readme(path.name, "m", bp, "pass")
    commands = [ln for ln in readme.splitlines() if path.name in ln and ("chat" in ln or "llama-" in ln)]
    assert len(commands) == 4 and all("--no-mmap" in ln for ln in commands), commands
    assert "PARAMETER use_mmap false" in _modelfile(path.name, bp, None, None)
    assert any("--no-mmap" in ln for ln in bp.markdown())
    # with room to spare it is mapped, and nothing says otherwise
    roomy = plan_for_target(path, facts, Target("roomy", 64 << 30, repack=X86_AVX2))
    assert roomy.mmap and "--no-mmap" not in _readme(path.name, "m", roomy, "pass")
    assert "use_mmap" not in _modelfile(path.name, roomy, None, None)
