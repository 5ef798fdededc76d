"""The working set: what must stay in RAM (anonymous memory plus the weights read in place), per load mode,
and the verdicts, `max ctx` and recommendations built on it, at real model sizes (headers only)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from quant.sizing.hardware import GIB, MIB
from quant.sizing.memory import FOLIO, MARGIN_MIN, RECLAIM_ROOM, ModelShape, RunSettings, estimate, margin
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
    need = host.working_set + host.margin
    roomy = fit(shape, s, Target("roomy", int(need / 0.8)))
    assert roomy.verdict == "fits" and not roomy.tight
    tight = fit(shape, s, Target("tight", need))
    assert tight.verdict == "tight" and tight.fits
    assert fit(shape, s, Target("short", need - MIB)).verdict == "pages from disk"
    floor = host.anonymous_resident
    assert fit(shape, s, Target("floor", floor)).kind == "slow"
    assert fit(shape, s, Target("under", floor - MIB)).verdict == "does not fit"


def test_the_margin_keeps_room_for_mapped_pages_of_repacked_weights() -> None:
    shape = _shape()
    s = RunSettings(n_ctx=512, repack=X86_AVX2)
    mapped = estimate(shape, s).host
    # the four Q4_K projections lie inside the mapped span (token_embd .. output.weight): all stay mapped
    assert mapped.read_once == mapped.repack == 4 * 4 * MIB
    assert mapped.margin == margin(mapped.working_set) + int(RECLAIM_ROOM * 4 * 4 * MIB)
    # read into RAM, or pinned by mlock, those pages are not there to give back: the plain margin
    loaded = estimate(shape, replace(s, mmap=False)).host
    assert loaded.read_once == 0 and loaded.margin == margin(loaded.working_set) == MARGIN_MIN
    locked = estimate(shape, replace(s, mlock=True)).host
    assert locked.margin == margin(locked.working_set)
    # nothing repacked (ARM's rules cover Q6_K, so take a CPU without any): no room is added
    plain = estimate(shape, replace(s, repack=replace(X86_AVX2, rows=()))).host
    assert plain.read_once == 0 and plain.margin == margin(plain.working_set)


def test_the_plan_reads_the_file_into_ram_only_where_mapping_it_does_not_fit() -> None:
    shape = _shape()
    s = RunSettings(n_ctx=512, repack=X86_AVX2)
    mapped, loaded = estimate(shape, s).host, estimate(shape, replace(s, mmap=False)).host
    need_mapped = mapped.working_set + mapped.margin
    need_loaded = loaded.working_set + loaded.margin
    assert need_loaded < need_mapped  # the repacked weights' room is larger than token_embd's loaded rows
    # room for both: llama.cpp's default, the file mapped
    roomy = fit(shape, s, Target("roomy", need_mapped), choose_mode=True)
    assert roomy.fits and roomy.mmap and not roomy.mode_switched
    # room for the loaded file only: the plan switches, and says so; asked for mmap, it pages instead
    short = Target("short", need_mapped - MIB)
    switched = fit(shape, s, short, choose_mode=True)
    assert switched.fits and not switched.mmap and switched.mode_switched and switched.mode == "no-mmap"
    assert fit(shape, s, short).verdict == "pages from disk"
    # room for neither: the mapped verdict stands (it can still page; read into RAM it would be killed)
    neither = fit(shape, s, Target("neither", need_loaded - MIB), choose_mode=True)
    assert neither.mmap and neither.verdict == "pages from disk"
    # a mode asked for is kept: mlock and --no-mmap are never switched
    assert not fit(shape, replace(s, mlock=True), short, choose_mode=True).mode_switched
    # max ctx follows the same choice: never smaller than mapped-only
    budget = Target("t", need_mapped + 8 * MIB)
    best_mapped = max_context(shape, replace(s, n_ctx=4096), budget)
    best_either = max_context(shape, replace(s, n_ctx=4096), budget, choose_mode=True)
    assert best_mapped is not None and best_either is not None and best_either > best_mapped


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
    # it fits (within 10 % of the 6.40 GiB: "tight") with the weights read into RAM, which the plan chose:
    # mapped, the repacked weights' file pages would need 1.5 GiB more room (docs/sizing.md)
    assert q4.fits and q4.kind == "cpu" and q4.verdict in ("fits", "tight") and q4.usage < 0.92
    assert not q4.mmap and q4.mode_switched
    host = q4.estimate.host
    assert host.repack > 3 * GIB  # the Q4_K weights are copied into anonymous memory...
    assert host.working_set < 6 * GIB  # ...and nothing is counted twice
    # repacking makes Q4_K_M's need smaller than Q5_K_M's (which is read in place), not bigger
    q5 = rows["Q5_K_M"].placement
    assert q5.mmap and q5.fits and q4.usage < q5.usage
    assert p.recommendation is not None and p.recommendation.qtype in ("Q4_K_M", "Q5_K_M")
    assert rows["Q8_0"].placement.verdict == "pages from disk"
    assert rows["Q4_K_M"].max_ctx >= 4096
    settings = RunSettings(repack=laptop.repack)
    # mapped (asked for), there is no room for the repacked weights' file pages: it would page
    mapped = plan(source, laptop, ctx=4096, settings=settings, choose_mode=False)
    assert {r.qtype: r.placement.verdict for r in mapped.rows}["Q4_K_M"] == "pages from disk"
    # --no-mmap asked for: the same fit as the plan's choice; with mlock the mapped span is pinned too
    loaded = plan(source, laptop, ctx=4096, settings=replace(settings, mmap=False))
    assert {r.qtype: r.placement.usage for r in loaded.rows}["Q4_K_M"] == q4.usage
    pinned = plan(source, laptop, ctx=4096, settings=replace(settings, mlock=True))
    assert {r.qtype: r.placement.verdict for r in pinned.rows}["Q4_K_M"] == "does not fit"
    # a 16 GB laptop has the room: mapped, as llama.cpp does by default
    roomy = plan(source, get_profile("laptop-16g"), ctx=4096)
    assert all(r.placement.mmap and r.fits for r in roomy.rows)


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
    assert "CPU only" in line and "with --no-mmap" not in line and "weights loaded with no-mmap" in text.out
    assert "recommended: Q4_K_M" in text.out
    # no flag: the plan chooses --no-mmap, and says so in the table, the recommendation and the JSON
    chosen = cli(*common)
    assert chosen.code == 0, chosen.err
    line = next(ln for ln in chosen.out.splitlines() if ln.startswith("Q4_K_M"))
    assert "CPU only with --no-mmap" in line
    assert "recommended: Q4_K_M at context 4096, on CPU, loaded with --no-mmap" in chosen.out
    assert "room for 50% of the repacked weights' file pages" in chosen.out
    (row,) = cli(*common, "--json").json()["types"]
    assert row["mode"] == "no-mmap" and row["mode_switched"] and not row["mmap"]
    # --mmap: sized mapped, as asked: it would page
    forced = cli(*common, "--mmap", "--json").json()
    (row,) = forced["types"]
    assert row["verdict"] == "pages from disk" and row["read_once"] > 3 * GIB and not row["mode_switched"]
    assert row["margin"] > row["read_once"] // 2 and forced["recommendation"] is None
