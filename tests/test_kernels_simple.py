"""F32, F16, BF16, Q8_0, Q5_0, Q5_1: byte-identical to llama.cpp's ggml_quantize_chunk and to_float."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quant import QUANT_TYPES, quantize
from tests import ggml_ref
from tests.quant_cases import (
    DISTRIBUTIONS,
    SHAPES_32,
    assert_dequantize_matches_ggml,
    assert_matches_ggml,
    make_input,
)

SIMPLE_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1"]

# fp16 scale fields (byte offsets in a block) that random test bytes must keep finite
_SCALE_OFFSETS = {"Q8_0": (0,), "Q5_0": (0,), "Q5_1": (0, 2), "F16": (), "BF16": (), "F32": ()}


@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
def test_registry_agrees_with_ggml(qtype: str) -> None:
    cls = QUANT_TYPES[qtype]
    assert cls.name == qtype
    assert cls.ggml_type == ggml_ref.GGML_TYPES[qtype]
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
