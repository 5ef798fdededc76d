"""The working set: what must stay in RAM (anonymous memory plus the weights read in place), per load mode,
and the verdicts, `max ctx` and recommendations built on it, at real model sizes (headers only)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from quant.sizing.hardware import GIB, MIB
from quant.sizing.memory import FOLIO, ModelShape, RunSettings, estimate, margin
from quant.sizing.plan import fit, host_need, load_source, max_context, plan
from quant.sizing.profiles import Target, get_profile
from quant.sizing.repack import ARM_I8MM, X86_AVX2
from tests.support.cli_helpers import Cli

HP = {"n_layer": 2, "n_embd": 512, "n_head": 8, "n_head_kv": 2, "n_vocab": 1000, "n_ctx_train": 4096}


def _laid_out(tensors: list[tuple[str, int, str, tuple[int, ...]]], start: int = 1 << 20) -> list[tuple]:
    """Give (name, nbytes, type, ne) tuples consecutive offsets, as a GGUF data section would."""
    out, offset = [], start
    for name, nbytes, ggml_type, ne in tensors:
        out.append((name, nbytes, ggml_type, ne, offset))
        offset += -(-nbytes // 32) * 32
    return out


def _shape(tied: bool = False) -> ModelShape:
    """Two Q4_K_M-like layers of 16 MiB: Q4_K projections (repacked on x86) around Q6_K ones (in place)."""
    blocks = []
    for i in range(2):
        blocks += [
            (f"blk.{i}.attn_norm.weight", 2048, "F32", (512,)),
            (f"blk.{i}.attn_q.weight", 4 * MIB, "Q4_K", (512, 512)),
            (f"blk.{i}.attn_v.weight", 4 * MIB, "Q6_K", (512, 512)),
            (f"blk.{i}.ffn_down.weight", 4 * MIB, "Q6_K", (512, 512)),
            (f"blk.{i}.ffn_up.weight", 4 * MIB, "Q4_K", (512, 512)),
        ]
    head = [("token_embd.weight", 8 * MIB, "Q6_K", (512, 1000))]
    tail = [("output_norm.weight", 2048, "F32", (512,))]
    if not tied:
        tail.append(("output.weight", 8 * MIB, "Q6_K", (512, 1000)))
    tensors = _laid_out(head + blocks + tail)
    size = tensors[-1][4] + tensors[-1][1]
    return ModelShape.from_tensors(tensors, file_size=size, hparams=HP)


def test_mmap_working_set_counts_in_place_weights_not_repacked_file_pages() -> None:
    shape = _shape()
    est = estimate(shape, RunSettings(n_ctx=512, repack=X86_AVX2)).host
    assert est.repack == 4 * 4 * MIB  # the four Q4_K projections
    # in place on every token: the Q6_K projections, the norms and output.weight (not token_embd's rows),
    # rounded out to the 2 MiB folios the page cache keeps or drops whole
    exact = 4 * 4 * MIB + 8 * MIB + 3 * 2048
    assert exact <= est.in_place <= exact + 6 * 2 * FOLIO
    assert est.in_place % FOLIO == 0
    assert est.working_set == est.anonymous_resident + est.in_place
    # llama.cpp maps from the first to the last weight it uses in place: token_embd .. output.weight
    assert est.weights == shape.file_size - (1 << 20)
    # peak RSS also has the file pages read once to build the repacked copies, and token_embd's
    assert est.peak_rss - est.working_set >= est.repack + 8 * MIB - 6 * 2 * FOLIO
    assert est.reclaimable == est.peak_rss - est.working_set


def test_no_mmap_and_mlock_have_nothing_reclaimable() -> None:
    shape = _shape()
    s = RunSettings(n_ctx=512, repack=X86_AVX2)
    mmap = estimate(shape, s).host
    loaded = estimate(shape, replace(s, mmap=False)).host
    # every weight is loaded once: the repacked ones into CPU_REPACK, the rest into an anonymous CPU buffer
    assert loaded.weights + loaded.repack == sum(w.nbytes for w in shape.tensors)
    assert loaded.working_set == loaded.peak_rss == loaded.anonymous_resident and loaded.in_place == 0
    assert loaded.working_set < mmap.peak_rss
    locked = estimate(shape, replace(s, mlock=True)).host
    # mlock pins the whole mapped span, the file pages of the repacked weights inside it included
    assert locked.working_set == locked.anonymous_resident + locked.weights > mmap.working_set


def test_tied_output_reads_token_embd_unless_the_cpu_repacks_it() -> None:
    shape = _shape(tied=True)
    x86 = estimate(shape, RunSettings(n_ctx=512, repack=X86_AVX2)).host
    arm = estimate(shape, RunSettings(n_ctx=512, repack=ARM_I8MM)).host
    # x86 has no Q6_K kernel: the output matmul reads all of token_embd's file pages on every token
    assert x86.in_place >= 8 * MIB + 2 * 4 * MIB
    # ARM repacks Q6_K: the output gets its own anonymous copy and token_embd is only looked up by row
    assert arm.repack == 4 * 4 * MIB + 2 * 2 * 4 * MIB + 8 * MIB
    assert arm.in_place < FOLIO * 4


def test_verdicts_fits_tight_pages_none() -> None:
    shape = _shape()
    s = RunSettings(n_ctx=512, repack=X86_AVX2)
    host = estimate(shape, s).host
    need = host.working_set + margin(host.working_set)
    roomy = fit(shape, s, Target("roomy", int(need / 0.8)))
    assert roomy.verdict == "fits" and not roomy.tight
    tight = fit(shape, s, Target("tight", need))
    assert tight.verdict == "tight" and tight.fits
    assert fit(shape, s, Target("short", need - MIB)).verdict == "pages from disk"
    floor = host.anonymous_resident
    assert fit(shape, s, Target("floor", floor)).kind == "slow"
    assert fit(shape, s, Target("under", floor - MIB)).verdict == "does not fit"


def test_max_ctx_comes_from_the_working_set() -> None:
    shape = _shape()
    s = RunSettings(repack=X86_AVX2)
    edge = host_need(estimate(shape, replace(s, n_ctx=1024))) + host_need(
        estimate(shape, replace(s, n_ctx=2048))
    )
    target = Target("t", edge // 2)
    best = max_context(shape, s, target)
    assert best is not None and best % 256 == 0 and 1024 <= best < 2048
    assert host_need(estimate(shape, replace(s, n_ctx=best))) <= target.ram
    assert host_need(estimate(shape, replace(s, n_ctx=best + 256))) > target.ram


@pytest.fixture(scope="module")
def llama8b(tmp_path_factory) -> Path:
    """Llama 3.1 8B's real config, tokenizer and safetensors headers; no weights (a sparse file)."""
    from tests.fixtures.real_shapes import build

    return build("Llama-3.1-8B", tmp_path_factory.mktemp("real"), weights=False)


def test_8b_q4_k_m_fits_an_8gb_laptop(llama8b: Path) -> None:
    laptop = get_profile("laptop-8g")
    source = load_source(llama8b, ("Q8_0", "Q5_K_M", "Q4_K_M"))
    p = plan(source, laptop, ctx=4096)
    rows = {r.qtype: r for r in p.rows}
    q4 = rows["Q4_K_M"].placement
    assert q4.verdict == "fits" and q4.kind == "cpu"
    assert p.recommendation is rows["Q4_K_M"]
    host = q4.estimate.host
    assert host.repack > 3 * GIB  # the Q4_K weights are copied into anonymous memory...
    assert host.working_set < 6 * GIB < host.peak_rss  # ...and their file pages are not counted
    # repacking makes Q4_K_M's working set smaller than Q5_K_M's (which is read in place), not bigger
    assert host.working_set < rows["Q5_K_M"].placement.estimate.host.working_set
    assert rows["Q8_0"].placement.verdict == "pages from disk"
    assert rows["Q4_K_M"].max_ctx >= 4096
    # without mmap everything is anonymous; with mlock the mapped span is pinned too and it no longer fits
    settings = RunSettings(repack=laptop.repack)
    loaded = plan(source, laptop, ctx=4096, settings=replace(settings, mmap=False))
    assert {r.qtype: r.placement.verdict for r in loaded.rows}["Q4_K_M"] in ("fits", "tight")
    pinned = plan(source, laptop, ctx=4096, settings=replace(settings, mlock=True))
    assert {r.qtype: r.placement.verdict for r in pinned.rows}["Q4_K_M"] == "does not fit"


def test_cli_plan_load_modes(llama8b: Path, cli: Cli) -> None:
    common = ("plan", str(llama8b), "--target", "laptop-8g", "--ctx", "4096", "--type", "Q4_K_M")
    pinned = cli(*common, "--mlock", "--json")
    assert pinned.code == 0, pinned.err
    data = pinned.json()
    (row,) = data["types"]
    assert data["settings"]["mmap"] and data["settings"]["mlock"]
    assert data["settings"]["repack"]["types"]["Q4_K"] == 8
    assert row["verdict"] == "does not fit" and data["recommendation"] is None
    assert row["working_set"] > row["repack_buffer"] + 4 * GIB  # the pinned span of the file counts
    text = cli(*common, "--no-mmap")
    assert text.code == 0, text.err
    line = next(ln for ln in text.out.splitlines() if ln.startswith("Q4_K_M"))
    assert "CPU only" in line and "weights loaded with no-mmap" in text.out
    assert "recommended: Q4_K_M" in text.out
