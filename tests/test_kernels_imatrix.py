"""Importance weights (`quant_weights`, llama.cpp's imatrix): every type equals
ggml_quantize_chunk(type, x, out, 0, rows, cols, weights) byte for byte, and bad weights are refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import quant.kernels.api as api
from quant import QUANT_TYPES, QuantError, quantize
from tests.support import ggml_ref
from tests.support.quant_cases import (
    DISTRIBUTIONS,
    SHAPES_32,
    SHAPES_256,
    WEIGHT_DISTRIBUTIONS,
    assert_matches_ggml,
    make_input,
    make_weights,
)

WEIGHTED_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"]
"""Types whose llama.cpp quantiser reads the weights (its `_impl` path; IQ4_NL/IQ4_XS always run it)."""
IGNORING_TYPES = ["F32", "F16", "BF16", "Q8_0"]


def test_the_registry_says_which_types_read_the_weights() -> None:
    iq = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"}  # tests/test_iquants.py
    assert {t for t, cls in QUANT_TYPES.items() if cls.uses_quant_weights} == set(WEIGHTED_TYPES) | iq
    needs = {t for t, cls in QUANT_TYPES.items() if cls.requires_quant_weights}
    assert needs == {t for t in QUANT_TYPES if ggml_ref.requires_imatrix(t)} == {"IQ1_S", "IQ2_XXS", "IQ2_XS"}


@pytest.mark.parametrize("qtype", WEIGHTED_TYPES)
def test_weighted_quantize_matches_llama_cpp(qtype: str) -> None:
    """Every weight distribution on two input distributions, 1 and every thread."""
    for inputs in ("student_t", "zero_and_constant_blocks"):
        x = make_input(inputs, (5, 512), seed=21)
        for name in WEIGHT_DISTRIBUTIONS:
            assert_matches_ggml(x, qtype, quant_weights=make_weights(name, 512))


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"])
def test_weighted_short_rows_match_llama_cpp(qtype: str) -> None:
    """Rows that are not multiples of 256 (where llama-quantize falls back to these types); sigma2 is taken
    over the whole row, so the row length matters."""
    x = make_input("normal", (9, 96), seed=22)
    for name in ("lognormal", "sparse"):
        assert_matches_ggml(x, qtype, quant_weights=make_weights(name, 96))


@pytest.mark.slow
@pytest.mark.parametrize("weights", list(WEIGHT_DISTRIBUTIONS))
@pytest.mark.parametrize("qtype", WEIGHTED_TYPES)
def test_weighted_matrix_matches_llama_cpp(request: pytest.FixtureRequest, qtype: str, weights: str) -> None:
    """Every input distribution and shape of the unweighted batteries, with each weight distribution."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the full weighted matrix runs with -m slow")
    shapes = SHAPES_32 if QUANT_TYPES[qtype].block_size == 32 else SHAPES_256
    for distribution in DISTRIBUTIONS:
        for shape in shapes:
            x = make_input(distribution, shape)
            assert_matches_ggml(x, qtype, quant_weights=make_weights(weights, shape[1]))


@pytest.mark.parametrize("qtype", IGNORING_TYPES)
def test_types_llama_cpp_quantises_without_weights_ignore_them(qtype: str) -> None:
    x = make_input("normal", (4, 256), seed=23)
    w = make_weights("lognormal", 256)
    ours = quantize(x, qtype, quant_weights=w)
    np.testing.assert_array_equal(ours, quantize(x, qtype))
    np.testing.assert_array_equal(ours, ggml_ref.quantize(x, qtype, w))


@pytest.mark.parametrize("qtype", ["Q4_K", "Q4_0", "IQ4_NL"])
def test_weights_change_the_bytes(qtype: str) -> None:
    """A guard on the checks above: the weighted path really is another algorithm."""
    x = make_input("normal", (4, 512), seed=24)
    assert not np.array_equal(
        quantize(x, qtype, quant_weights=make_weights("lognormal", 512)), quantize(x, qtype)
    )


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_0", "IQ4_XS"])
def test_one_weight_vector_per_matrix_of_a_stack(qtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """[experts, rows, cols] with [experts, cols] weights: each expert quantised with its own vector, as
    llama-quantize slices the imatrix; chunks of 3 rows never straddle two experts."""
    monkeypatch.setattr(api, "F32_CHUNK_ELEMENTS", 3 * 256)
    x = make_input("student_t", (3, 5, 256), seed=25)
    w = np.stack([make_weights(n, 256, seed=i) for i, n in enumerate(("uniform", "lognormal", "sparse"))])
    ours = quantize(x, qtype, quant_weights=w)
    for e in range(3):
        np.testing.assert_array_equal(ours[e], ggml_ref.quantize(x[e], qtype, w[e]))
    shared = quantize(x, qtype, quant_weights=w[1])  # one vector for the whole stack
    np.testing.assert_array_equal(shared.reshape(15, -1), ggml_ref.quantize(x.reshape(15, 256), qtype, w[1]))


@pytest.mark.parametrize("qtype", ["Q4_1", "Q5_0", "Q4_K", "IQ4_NL"])
def test_weighted_path_names_the_row_with_nan(qtype: str) -> None:
    x = make_input("normal", (4, 256), seed=26)
    x[2, 100] = np.nan
    with pytest.raises(QuantError, match=r"^w: row 2 contains nan at column 100"):
        quantize(x, qtype, name="w", quant_weights=make_weights("uniform", 256))


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q3_K", "IQ4_XS"])
def test_weighted_scale_overflow_is_rejected_like_llama_cpp(qtype: str) -> None:
    x = make_input("normal", (4, 256), seed=27)
    x[1, 40] = 3e9
    w = make_weights("uniform", 256)
    assert not ggml_ref.validate(ggml_ref.quantize(x, qtype, w), qtype)
    with pytest.raises(QuantError, match=rf"^row 1 is too large for {qtype}"):
        quantize(x, qtype, quant_weights=w)


# --- bad weights -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (
            np.ones(128, np.float32),
            r"weights of shape \(128,\) do not fit rows of 256 elements: expected \(256,\)",
        ),
        (np.ones((2, 256), np.float32), r"shape \(2, 256\) do not fit"),
        (np.array(["a"] * 256), "importance weights must be numbers"),
    ],
)
def test_weights_of_the_wrong_shape_or_type(weights: np.ndarray, message: str) -> None:
    with pytest.raises(QuantError, match=message):
        quantize(np.ones((2, 256), np.float32), "Q4_K", quant_weights=weights, name="t")


@pytest.mark.parametrize(("bad", "shown"), [(np.nan, "nan"), (np.inf, "inf"), (-1.0, "-1.0")])
def test_non_finite_or_negative_weights_name_the_column(bad: float, shown: str) -> None:
    w = np.ones(256, np.float32)
    w[77] = bad
    with pytest.raises(
        QuantError, match=rf"^blk\.3\.attn_q\.weight: importance weight at column 77 is {shown}"
    ):
        quantize(np.ones((2, 256), np.float32), "Q3_K", quant_weights=w, name="blk.3.attn_q.weight")
    stack = np.ones((2, 256), np.float32)
    stack[1, 5] = bad
    with pytest.raises(QuantError, match=r"column 5 of matrix 1"):
        quantize(np.ones((2, 3, 256), np.float32), "Q3_K", quant_weights=stack)


def test_a_type_that_needs_weights_says_so() -> None:
    class NeedsWeights(QUANT_TYPES["IQ4_XS"]):  # not registered: only its flag matters here
        requires_quant_weights = True
        name = "IQ2_XXS"

    with pytest.raises(QuantError, match="^t: IQ2_XXS needs an importance matrix"):
        api._weight_vectors(None, NeedsWeights, (2, 256), "t: ")
    assert api._weight_vectors(np.ones(256), NeedsWeights, (2, 256), "").dtype == np.float32


# --- property-based ----------------------------------------------------------------------------------------

_WEIGHTS = st.one_of(
    st.floats(0.0, 1e6, width=32),
    st.floats(0.0, float(np.float32(1e-30)), width=32),
    st.sampled_from([0.0, 1.0, 1e30]),
)
_VALUES = st.one_of(
    st.floats(-70000.0, 70000.0, width=32),
    st.floats(-float(np.float32(1e-36)), float(np.float32(1e-36)), width=32),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 65504.0]),
)


@st.composite
def _weighted_rows(draw: st.DrawFn, cols: int) -> tuple[np.ndarray, np.ndarray]:
    if draw(st.booleans(), label="free-form"):
        x = draw(arrays(np.float32, (2, cols), elements=_VALUES), label="x")
    else:
        seed = draw(st.integers(0, 2**32 - 1), label="seed")
        scale = draw(st.sampled_from([1e-20, 1e-3, 1.0, 500.0]), label="scale")
        x = (np.random.default_rng(seed).standard_normal((2, cols)) * scale).astype(np.float32)
    w = draw(arrays(np.float32, cols, elements=_WEIGHTS), label="weights")
    return x, w


@pytest.mark.parametrize("qtype", WEIGHTED_TYPES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_weighted_blocks_match_llama_cpp(qtype: str, data: st.DataObject) -> None:
    x, w = data.draw(_weighted_rows(256))
    assert_matches_ggml(x, qtype, threads=[1], quant_weights=w)
