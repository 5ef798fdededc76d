"""IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: byte-identical to ggml_quantize_chunk with and without
importance weights, and to its to_float; the grid tables equal an independent construction.

The kernels are called through their own classes (quantize_rows / run_kernel / dequantize_rows), so these
tests do not depend on the front end's signature; a few go through quant.quantize as well. Where ggml aborts
the process (no importance matrix for a type that needs one, distances that overflow), a child process shows
it does, and ours refuses the same input.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quant import QUANT_TYPES, QuantError, dequantize, quantize
from quant.kernels import base, iq_grids
from quant.kernels.iquants import IQuant
from tests.support import ggml_ref
from tests.support.quant_cases import DISTRIBUTIONS, make_input, same_floats, thread_counts

IQ_TYPES = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"]
NEEDS_IMATRIX = {"IQ1_S", "IQ2_XXS", "IQ2_XS"}
SHAPE = (3, 512)


def _imatrix(rng: np.random.Generator, cols: int) -> np.ndarray:
    """Like llama-imatrix's mean squared activations: positive, spread over orders of magnitude."""
    return rng.lognormal(0.0, 1.5, cols).astype(np.float32)


def _with_zeros(rng: np.random.Generator, cols: int) -> np.ndarray:
    """A third of the columns never saw an activation: weight exactly 0 (sums of weights hit 0)."""
    w = rng.random(cols).astype(np.float32)
    w[rng.random(cols) < 0.35] = 0.0
    return w


def _ones(rng: np.random.Generator, cols: int) -> np.ndarray:
    return np.ones(cols, np.float32)


def _tiny(rng: np.random.Generator, cols: int) -> np.ndarray:
    """Weights whose products with x² underflow float32."""
    return (rng.random(cols) * 1e-33).astype(np.float32)


WEIGHTS = {"imatrix": _imatrix, "with_zeros": _with_zeros, "ones": _ones, "tiny": _tiny}


def make_weights(kind: str | None, cols: int, seed: int = 0) -> np.ndarray | None:
    if kind is None:
        return None
    return WEIGHTS[kind](np.random.default_rng([seed, *kind.encode()]), cols)


def _run(cls: type[IQuant], x: np.ndarray, qw: np.ndarray | None, threads: int) -> tuple[np.ndarray, int]:
    """Our bytes (into a buffer of stale bytes, so every byte must be written) and the row ggml would abort on."""
    out = np.full((x.shape[0], cls.row_bytes(x.shape[1])), 0xA5, dtype=np.uint8)
    saved = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        abort = cls.run_kernel(x, out, qw)
    finally:
        numba.set_num_threads(saved)
    return out, abort


def assert_iq_matches_ggml(
    x: np.ndarray, qtype: str, qw: np.ndarray | None, threads: list[int] | None = None
) -> None:
    """Ours equals ggml_quantize_chunk(type, x, imatrix=qw) byte for byte for every thread count, agrees on
    which rows ggml_validate_row_data rejects, and flags a row exactly where ggml aborts."""
    cls = QUANT_TYPES[qtype]
    x = np.ascontiguousarray(x, dtype=np.float32)
    results = [_run(cls, x, qw, n) for n in threads or thread_counts()]
    ours, abort = results[0]
    for other, other_abort in results[1:]:
        assert other_abort == abort and np.array_equal(other, ours), (
            f"{qtype}: bytes depend on the thread count"
        )
    if abort >= 0:
        assert ggml_ref.aborts(x[abort : abort + 1], qtype, qw), f"{qtype}: flagged row {abort}, ggml returns"
        if abort + 1 < len(x):
            assert_iq_matches_ggml(x[abort + 1 :], qtype, qw, threads)
        x, ours = x[:abort], ours[:abort]
        if not len(x):
            return
    ref = ggml_ref.quantize(x, qtype, qw)
    if not np.array_equal(ours, ref):
        row, col = np.argwhere(ours != ref)[0]
        raise AssertionError(
            f"{qtype}: row {row}, block {col // cls.type_size}, byte {col % cls.type_size}: "
            f"ours {ours[row, col]:#04x}, llama.cpp {ref[row, col]:#04x}"
        )
    valid = [ggml_ref.validate(ref[r : r + 1], qtype) for r in range(len(ref))]
    first_invalid = valid.index(False) if False in valid else -1
    assert cls.invalid_row(ours) == first_invalid


# --- the registry ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_registry_agrees_with_ggml(qtype: str) -> None:
    cls = QUANT_TYPES[qtype]
    assert issubclass(cls, IQuant)
    assert (cls.name, cls.ggml_type, cls.block_size) == (qtype, ggml_ref.GGML_TYPES[qtype], 256)
    for cols in (256, 4096, 11008):
        assert cls.row_bytes(cols) == ggml_ref.row_size(qtype, cols)
    assert cls.requires_quant_weights == ggml_ref.requires_imatrix(qtype) == (qtype in NEEDS_IMATRIX)


# --- with and without importance weights, every distribution -----------------------------------------------------
@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_quantize_matches_llama_cpp(qtype: str, distribution: str) -> None:
    x = make_input(distribution, SHAPE)
    kinds = ["imatrix", "with_zeros"] + (["ones"] if qtype in NEEDS_IMATRIX else [None])
    for kind in kinds:
        assert_iq_matches_ggml(x, qtype, make_weights(kind, SHAPE[1]))


@pytest.mark.parametrize("kind", ["ones", "tiny"])
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_weight_extremes_match_llama_cpp(qtype: str, kind: str) -> None:
    x = make_input("student_t", SHAPE, seed=5)
    assert_iq_matches_ggml(x, qtype, make_weights(kind, SHAPE[1]))


@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_all_zero_weights_match_llama_cpp(qtype: str) -> None:
    """Every weighted sum is 0: the scale searches accept nothing (IQ1 writes zero sub-blocks)."""
    assert_iq_matches_ggml(make_input("normal", (2, 256), seed=6), qtype, np.zeros(256, np.float32))


@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_wide_rows_match_llama_cpp(qtype: str) -> None:
    """A 4096-wide row (a real projection): the weights index by column across 16 super-blocks."""
    x = make_input("normal", (2, 4096), seed=7)
    assert_iq_matches_ggml(x, qtype, make_weights("imatrix", 4096, seed=7))


def _special_rows() -> np.ndarray:
    """256-value rows aimed at the quirks of the reference code."""
    rng = np.random.default_rng(11)
    rows = [np.zeros(256), np.full(256, -0.0), np.full(256, 3.25), np.full(256, -2.5)]
    one_zero_sub_block = rng.standard_normal(256)
    one_zero_sub_block[32:64] = (
        0.0  # IQ3_S then stores later sub-blocks one slot early (ggml's pointer quirk)
    )
    rows.append(one_zero_sub_block)
    first_zero = rng.standard_normal(256)
    first_zero[:16] = 0.0
    rows.append(first_zero)
    spike = np.zeros(256)
    spike[77] = 1000.0
    rows.append(spike)
    outlier = rng.standard_normal(256) * 1e-3
    outlier[5] = 60000.0  # most sub-block scales round to 0 in 4 (3) bits
    rows.append(outlier)
    rows.append(np.round(rng.standard_normal(256) * 8) / 2)  # exact ties for nearest_int and the IQ1 sort
    odd_negatives = np.abs(rng.standard_normal(256))
    odd_negatives[::8] *= -1  # one negative per group of 8: the sign-parity flip in every group
    rows.append(odd_negatives)
    tiny = rng.standard_normal(256) * 1e-9  # between the types' zero thresholds (1e-15 .. 1e-7)
    rows.append(tiny)
    rows.append(np.where(rng.random(256) < 0.5, 65504.0, -65504.0))
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_special_rows_match_llama_cpp(qtype: str) -> None:
    x = _special_rows()
    for kind in ("imatrix", None if qtype not in NEEDS_IMATRIX else "ones"):
        assert_iq_matches_ggml(x, qtype, make_weights(kind, 256, seed=3))


def test_iq3_s_zero_sub_block_shifts_the_later_bytes() -> None:
    """ggml's IQ3_S advances its grid-byte and sign pointers only past non-zero sub-blocks; we keep that."""
    x = _special_rows()[4:5]  # sub-block 1 of 8 is zero
    ref = ggml_ref.quantize(x, "IQ3_S")
    out, _ = _run(QUANT_TYPES["IQ3_S"], x, None, 1)
    assert np.array_equal(out, ref)
    qs, signs = ref[0, 2:66], ref[0, 74:106]
    assert not qs[56:].any() and not signs[28:].any(), "the last sub-block's slots stay empty"
    assert qs[8:16].any(), "sub-block 2 sits in sub-block 1's slot"


# --- threads, tasks, buffers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_bytes_do_not_depend_on_how_blocks_are_split_into_tasks(
    qtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = make_input("student_t", (7, 512), seed=10)  # 14 blocks
    qw = make_weights("imatrix", 512, seed=10)
    ref = ggml_ref.quantize(x, qtype, qw)
    cls = QUANT_TYPES[qtype]
    for tasks_per_thread in (1, 3, 1000):
        monkeypatch.setattr(base, "TASKS_PER_THREAD", tasks_per_thread)
        for threads in thread_counts():
            out, abort = _run(cls, x, qw, threads)
            assert abort == -1 and np.array_equal(out, ref)


@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_read_only_memmap_rows_and_weights(qtype: str, tmp_path) -> None:
    """The converter streams row ranges of read-only memory maps; the importance weights may be one too."""
    x = make_input("normal", (6, 512), seed=12)
    qw = make_weights("imatrix", 512, seed=12)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", qw)
    mx = np.load(tmp_path / "x.npy", mmap_mode="r")
    mw = np.load(tmp_path / "w.npy", mmap_mode="r")
    cls = QUANT_TYPES[qtype]
    out = np.zeros((4, cls.row_bytes(512)), np.uint8)
    assert cls.quantize_rows(mx[1:5], out, mw) == -1
    assert np.array_equal(out, ggml_ref.quantize(x[1:5], qtype, qw))


# --- without an importance matrix ------------------------------------------------------------------------------
@pytest.mark.parametrize("qtype", sorted(NEEDS_IMATRIX))
def test_types_that_need_an_imatrix_are_refused_without_one(qtype: str) -> None:
    """ggml_quantize_chunk aborts the process; we raise a usage error that says how to get one."""
    x = make_input("normal", (1, 256))
    assert ggml_ref.aborts(x, qtype)
    with pytest.raises(QuantError, match=rf"{qtype} needs an importance matrix.*llama-imatrix"):
        quantize(x, qtype)


@pytest.mark.parametrize("qtype", sorted(set(IQ_TYPES) - NEEDS_IMATRIX))
def test_other_types_quantise_without_one_through_the_front_end(qtype: str) -> None:
    x = make_input("normal", (5, 768), seed=13)
    assert np.array_equal(quantize(x, qtype, threads=2), ggml_ref.quantize(x, qtype))


# --- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_row_length_not_multiple_of_256_is_rejected(qtype: str) -> None:
    with pytest.raises(QuantError, match=rf"{qtype}.*\b576\b"):
        quantize(np.ones((2, 576), np.float32), qtype)


@pytest.mark.parametrize("qtype", ["IQ2_S", "IQ3_XXS", "IQ1_M"])
def test_nonfinite_input_names_the_row(qtype: str) -> None:
    x = make_input("normal", (3, 256), seed=6)
    x[1, 17] = np.inf
    with pytest.raises(QuantError, match=r"row 1\b.*inf"):
        quantize(x, qtype)


@pytest.mark.parametrize("qtype", ["IQ2_XXS", "IQ3_S"])
@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(255, np.float32), r"shape \(255,\) do not fit rows of 256 elements"),
        (np.ones((2, 256), np.float32), r"shape \(2, 256\) do not fit"),
        (np.where(np.arange(256) == 9, np.nan, 1.0), r"at column 9 is nan"),
        (np.where(np.arange(256) == 4, -1.0, 1.0), r"at column 4 is -1.0"),
    ],
)
def test_bad_importance_weights_are_refused(qtype: str, weights: np.ndarray, message: str) -> None:
    with pytest.raises(QuantError, match=message):
        quantize(make_input("normal", (1, 256)), qtype, quant_weights=weights)


@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_scale_overflowing_fp16_is_rejected_like_llama_cpp(qtype: str) -> None:
    x = make_input("normal", (4, 512), seed=4)
    x[2, 300] = 3e9  # the block scale exceeds fp16's 65504
    qw = make_weights("imatrix", 512, seed=4)
    ref = ggml_ref.quantize(x, qtype, qw)
    assert not ggml_ref.validate(ref[2:3], qtype) and ggml_ref.validate(ref[:2], qtype)
    cls = QUANT_TYPES[qtype]
    out = np.zeros_like(ref)
    assert cls.quantize_rows(x, out, qw) == 2
    assert np.array_equal(out, ref)


# (a ggml child builds its type's tables first: these types' are the quick ones)
@pytest.mark.parametrize("qtype", ["IQ1_M", "IQ3_XXS", "IQ3_S"])
def test_rows_ggml_aborts_on_are_reported(qtype: str) -> None:
    """Values so large that sums overflow: the IQ2/IQ3 searches find no grid point, ggml asserts and dies, and
    we report the row; IQ1's searches accept nothing and it writes a block with an inf scale, which
    ggml_validate_row_data rejects: the same row either way."""
    x = make_input("normal", (3, 256), seed=8)
    x[1] *= np.float32(3e16)
    qw = make_weights("ones", 256)
    assert_iq_matches_ggml(x, qtype, qw, threads=[1])
    cls = QUANT_TYPES[qtype]
    out = np.zeros((3, cls.row_bytes(256)), np.uint8)
    aborts = not qtype.startswith("IQ1")
    assert cls.run_kernel(x, out, qw) == (1 if aborts else -1)
    assert cls.quantize_rows(x, out, qw) == 1


def test_iq1_m_invalid_row_reads_the_hidden_super_scale() -> None:
    """IQ1_M has no fp16 field: its scale is spread over the top nibbles of the four scale words."""
    cls = QUANT_TYPES["IQ1_M"]
    data = ggml_ref.quantize(make_input("normal", (3, 512), seed=5), "IQ1_M")
    assert cls.invalid_row(data) == -1
    for nibbles in ((0x0, 0x0, 0xC, 0x7), (0x0, 0x2, 0xC, 0xF)):  # +inf, a NaN
        bad = data.copy()
        for j, n in enumerate(nibbles):
            byte = cls.type_size + 48 + 2 * j + 1  # second block of the row
            bad[2, byte] = (bad[2, byte] & 0x0F) | (n << 4)
        assert not ggml_ref.validate(bad[2:], "IQ1_M")
        assert cls.invalid_row(bad) == 2


# --- dequantisation --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_dequantize_matches_llama_cpp(qtype: str) -> None:
    shape = (4, 768)
    x = make_input("student_t", shape, seed=14)
    data = ggml_ref.quantize(x, qtype, make_weights("imatrix", shape[1], seed=14))
    ours = dequantize(data, qtype, shape)
    assert same_floats(ours, ggml_ref.dequantize(data, qtype, shape))
    out = np.empty(shape, np.float32)
    QUANT_TYPES[qtype].dequantize_rows(data, out)
    assert same_floats(out, ours)


@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_dequantize_any_bytes_matches_llama_cpp(qtype: str) -> None:
    """Every bit pattern of grid indices, signs, scales and shifts decodes like llama.cpp (scales kept finite)."""
    cls = QUANT_TYPES[qtype]
    shape = (6, 512)
    data = np.random.default_rng(15).integers(0, 256, (shape[0], cls.row_bytes(shape[1])), dtype=np.uint8)
    blocks = data.reshape(shape[0], -1, cls.type_size)
    if qtype == "IQ1_M":
        blocks[:, :, 55] &= 0xBF  # bit 14 of the hidden fp16 scale (an exponent bit): keep it finite
    else:
        blocks[:, :, 1] &= 0x7B  # clear an exponent bit of d: never inf/NaN
    assert ggml_ref.validate(data, qtype)
    assert same_floats(dequantize(data, qtype, shape), ggml_ref.dequantize(data, qtype, shape))


@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_round_trip_error_is_small(qtype: str) -> None:
    """A sanity bound on top of bit-exactness: more bits, less error, and the weights matter."""
    x = make_input("normal", (8, 1024), seed=9)
    qw = make_weights("imatrix", 1024, seed=9)
    y = dequantize(quantize_with(x, qtype, qw), qtype, x.shape)
    err = float(np.sqrt(np.mean((y - x) ** 2)))
    bound = {"IQ1_S": 0.62, "IQ1_M": 0.56, "IQ2_XXS": 0.45, "IQ2_XS": 0.40, "IQ2_S": 0.36, "IQ3_XXS": 0.27}
    assert err < bound.get(qtype, 0.22)


def quantize_with(x: np.ndarray, qtype: str, qw: np.ndarray | None) -> np.ndarray:
    cls = QUANT_TYPES[qtype]
    out = np.empty((x.shape[0], cls.row_bytes(x.shape[1])), np.uint8)
    assert cls.quantize_rows(x, out, qw) == -1
    return out


# --- the grid tables -------------------------------------------------------------------------------------------
def _reference_lists(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml's neighbour lists rebuilt with numpy, for every reachable level vector that is not a grid point:
    the distances to every grid point sorted by (distance, index), cut after the nwant-th distinct distance.
    Returns those vectors' lookup keys in increasing order, the list lengths and the lists concatenated."""
    spec = iq_grids.GRIDS[name]
    levels = iq_grids.grid_levels(name).astype(np.int64)
    powers = spec.kmax ** np.arange(spec.ncoord)
    keys = np.arange(spec.kmax**spec.ncoord)
    digits = (keys[:, None] // powers) % spec.kmax
    off = ~np.isin(keys, levels @ powers)
    d2 = np.zeros((int(off.sum()), len(levels)), np.int32)
    for i in range(spec.ncoord):  # one coordinate at a time: [vectors, grid points] int32, not a 3-D array
        d2 += ((2 * digits[off, i, None] + 1) - (2 * levels[None, :, i] + 1)).astype(np.int32) ** 2
    order = np.argsort(d2, axis=1, kind="stable")  # ties in index order
    ranked = np.take_along_axis(d2, order, axis=1)
    distinct = np.cumsum(np.diff(ranked, axis=1, prepend=ranked[:, :1] - 1) > 0, axis=1)  # 1 for the nearest
    keep = distinct <= spec.nwant
    return keys[off], keep.sum(axis=1), order[keep]


@pytest.mark.parametrize("name", list(iq_grids.GRIDS))
def test_neighbour_lists_equal_an_independent_construction(name: str) -> None:
    tables = iq_grids.grid_tables(name)
    spec = iq_grids.GRIDS[name]
    levels = iq_grids.grid_levels(name).astype(np.int64)
    assert np.array_equal(
        tables.lookup[levels @ (spec.kmax ** np.arange(spec.ncoord))], np.arange(len(levels))
    )
    assert int((tables.lookup >= 0).sum()) == len(levels)
    off_grid, counts, lists = _reference_lists(name)
    code = -1 - tables.lookup[off_grid].astype(np.int64)
    assert (tables.lookup[off_grid] < 0).all()
    assert np.array_equal(code & ((1 << iq_grids.LIST_SHIFT) - 1), counts)
    assert np.array_equal(code >> iq_grids.LIST_SHIFT, np.concatenate([[0], np.cumsum(counts)[:-1]]))
    assert np.array_equal(tables.nb_packed >> iq_grids.INDEX_SHIFT, lists)
    packed = (levels << (spec.bits * np.arange(spec.ncoord))).sum(axis=1)
    assert np.array_equal(tables.nb_packed & ((1 << iq_grids.INDEX_SHIFT) - 1), packed[lists])


def test_grid_tables_are_cached_on_disk_and_rebuilt_when_damaged(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    built = iq_grids._load_or_build("iq3xxs")
    (path,) = tmp_path.glob("iq_tables.iq3xxs.*.npz")
    loaded = iq_grids._load_or_build("iq3xxs")
    assert all(np.array_equal(built[k], loaded[k]) for k in built)
    path.write_bytes(b"not an npz")
    again = iq_grids._load_or_build("iq3xxs")
    assert all(np.array_equal(built[k], again[k]) for k in built)
    assert np.load(path)["lookup"].shape == built["lookup"].shape  # rewritten


# --- hypothesis -------------------------------------------------------------------------------------------------
_FLOATS = st.one_of(
    st.floats(-70000.0, 70000.0, width=32),
    st.floats(-float(np.float32(1e-6)), float(np.float32(1e-6)), width=32),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 65504.0, -65504.0, 1e-9, -1e-13]),
)


@st.composite
def _blocks(draw: st.DrawFn) -> np.ndarray:
    """One 256-block: free-form floats, or a random block with stretches overwritten by patterns."""
    if draw(st.booleans(), label="free-form"):
        return draw(arrays(np.float32, (1, 256), elements=_FLOATS), label="x")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    scale = draw(st.sampled_from([1e-10, 1e-6, 1.0, 300.0, 2000.0]), label="scale")
    x = (rng.standard_normal(256) * scale).astype(np.float32)
    for _ in range(draw(st.integers(0, 6), label="patches")):
        start = 8 * draw(st.integers(0, 31))
        value = draw(_FLOATS)
        kind = draw(st.sampled_from(["const", "spike", "zero", "flip"]))
        seg = x[start : start + 8 * draw(st.integers(1, 4))]
        if kind == "const":
            seg[:] = value
        elif kind == "spike":
            seg[draw(st.integers(0, len(seg) - 1))] = value
        elif kind == "zero":
            seg[:] = 0.0
        else:
            seg[::3] *= -1
    return x[None, :]


_WEIGHT_KINDS = st.sampled_from(["imatrix", "with_zeros", "ones", None])


@pytest.mark.parametrize("qtype", IQ_TYPES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=_blocks(), kind=_WEIGHT_KINDS, seed=st.integers(0, 1000))
def test_hypothesis_blocks_match_llama_cpp(qtype: str, x: np.ndarray, kind: str | None, seed: int) -> None:
    if kind is None and qtype in NEEDS_IMATRIX:
        kind = "ones"
    assert_iq_matches_ggml(x, qtype, make_weights(kind, 256, seed), threads=[1])


# --- larger shapes ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("distribution", ["normal", "student_t", "sparse"])
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_large_matrix_matches_llama_cpp(
    request: pytest.FixtureRequest, qtype: str, distribution: str
) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip(
            "the 64x4096 matrix runs with -m slow; the default run covers every case on smaller shapes"
        )
    x = make_input(distribution, (64, 4096), seed=21)
    for kind in ("imatrix", "with_zeros", None if qtype not in NEEDS_IMATRIX else "ones"):
        assert_iq_matches_ggml(x, qtype, make_weights(kind, 4096, seed=21))
