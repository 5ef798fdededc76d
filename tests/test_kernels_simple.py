"""The element types and the 32-element block types (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL):
byte-identical to llama.cpp's ggml_quantize_chunk (no importance weights) and to_float."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quant import QUANT_TYPES, quantize
from tests.support import ggml_ref
from tests.support.quant_cases import (
    DISTRIBUTIONS,
    SHAPES_32,
    assert_dequantize_matches_ggml,
    assert_matches_ggml,
    make_input,
)

SIMPLE_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"]

# fp16 scale fields (byte offsets in a block) that random test bytes must keep finite
_SCALE_OFFSETS = {
    "Q8_0": (0,),
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "IQ4_NL": (0,),
    "F16": (),
    "BF16": (),
    "F32": (),
}


@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
def test_registry_agrees_with_ggml(qtype: str) -> None:
    cls = QUANT_TYPES[qtype]
    assert cls.name == qtype
    assert cls.ggml_type == ggml_ref.GGML_TYPES[qtype]
    assert cls.block_size == (1 if qtype in ("F32", "F16", "BF16") else 32)
    for cols in (32, 576, 4096):
        assert cls.row_bytes(cols) == ggml_ref.row_size(qtype, cols)


@pytest.mark.parametrize("shape", SHAPES_32, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
def test_quantize_matches_llama_cpp(qtype: str, distribution: str, shape: tuple[int, int]) -> None:
    x = make_input(distribution, shape)
    ref = assert_matches_ggml(x, qtype)
    assert ggml_ref.validate(ref, qtype), "every shared distribution is storable by every type"


@pytest.mark.parametrize("distribution", ["normal", "zero_and_constant_blocks", "subnormal", "near_fp16_max"])
@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
def test_dequantize_matches_llama_cpp(qtype: str, distribution: str) -> None:
    shape = (5, 576)
    data = quantize(make_input(distribution, shape), qtype)
    assert_dequantize_matches_ggml(data, qtype, shape)


@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
def test_dequantize_any_bytes_matches_llama_cpp(qtype: str) -> None:
    """Every bit pattern of quants and high bits decodes like llama.cpp (scales kept finite)."""
    cls = QUANT_TYPES[qtype]
    shape = (8, 256)
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, (shape[0], cls.row_bytes(shape[1])), dtype=np.uint8)
    blocks = data.reshape(shape[0], -1, cls.type_size)
    for off in _SCALE_OFFSETS[qtype]:
        blocks[:, :, off + 1] &= 0x7B  # clear an exponent bit of each fp16 scale: never inf/NaN
    if qtype == "F32":
        data.view(np.uint32)[...] &= np.uint32(0xBFFFFFFF)
    assert_dequantize_matches_ggml(data, qtype, shape)


_FLOATS = st.one_of(
    st.floats(-70000.0, 70000.0, width=32),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(-float(np.float32(1e-36)), float(np.float32(1e-36)), width=32),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 65504.0, 65520.0]),
)


@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_blocks_match_llama_cpp(qtype: str, data: st.DataObject) -> None:
    rows = data.draw(st.integers(1, 3), label="rows")
    blocks = data.draw(st.integers(1, 3), label="blocks per row")
    x = data.draw(arrays(np.float32, (rows, 32 * blocks), elements=_FLOATS), label="x")
    assert_matches_ggml(x, qtype)


def _extremes_blocks() -> np.ndarray:
    """Blocks aimed at how the 32-element types pick their scale: the first element of largest |x| when +v
    and -v tie (Q4_0/Q5_0 keep the first), ±0 minima and maxima (Q4_1/Q5_1 keep the first zero's sign),
    all -0.0, and IQ4_NL's tie-breaking between two levels."""
    rng = np.random.default_rng(11)
    rows = []
    for first in (1.0, -1.0):
        b = rng.uniform(-0.5, 0.5, 32)
        b[3], b[20] = first * 2.0, -first * 2.0
        rows.append(b)
    b = np.abs(rng.standard_normal(32))
    b[[4, 9]] = [-0.0, 0.0]
    rows.append(b)
    b = -np.abs(rng.standard_normal(32))
    b[[2, 30]] = [0.0, -0.0]
    rows.append(b)
    rows.append(np.full(32, -0.0))
    rows.append(np.where(rng.random(32) < 0.5, 0.0, -0.0))
    b = np.zeros(32)
    b[7] = -3.0  # a lone negative spike: max is 0
    rows.append(b)
    # levels 1 and 13 of IQ4_NL at scale 1/127·8.5: exact midpoints between neighbouring levels
    b = np.array([-127, -115.5, -93.5, -74, -57, -42, -28.5, -16, -4.5, 7, 19, 31.5, 45.5, 61, 79, 101] * 2)
    rows.append(b)
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "Q8_0"])
def test_extreme_value_ties_match_llama_cpp(qtype: str) -> None:
    ref = assert_matches_ggml(_extremes_blocks(), qtype)
    if qtype in ("Q4_0", "Q5_0"):
        d = ref[:2, :2].copy().view(np.float16)[:, 0].astype(np.float32)
        assert d[0] < 0 < d[1], "the first of +2 and -2 decides the sign of d = max / -8"
    if qtype == "Q4_0":
        # C's max starts at +0.0 and stays there, so d = +0.0 / -8 = -0.0 (an element's -0.0 would give +0.0)
        assert ref[4, :2].tobytes() == b"\x00\x80"
