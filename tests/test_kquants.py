"""The 256-element types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS: byte-identical to llama.cpp's
ggml_quantize_chunk (no importance weights) and its to_float."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quant import QUANT_TYPES, QuantError, dequantize, quantize
from quant.kernels import base
from tests.support import ggml_ref
from tests.support.quant_cases import (
    DISTRIBUTIONS,
    SHAPES_256,
    assert_dequantize_matches_ggml,
    assert_matches_ggml,
    make_input,
)

K_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"]

# byte offsets of the fp16 scales in a block (llama.cpp validates exactly these)
_SCALE_OFFSETS = {
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
    "IQ4_XS": (0,),
}


@pytest.mark.parametrize("qtype", K_TYPES)
def test_registry_agrees_with_ggml(qtype: str) -> None:
    cls = QUANT_TYPES[qtype]
    assert (cls.name, cls.ggml_type, cls.block_size) == (qtype, ggml_ref.GGML_TYPES[qtype], 256)
    for cols in (256, 4096, 11008):
        assert cls.row_bytes(cols) == ggml_ref.row_size(qtype, cols)


@pytest.mark.parametrize("shape", SHAPES_256, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
@pytest.mark.parametrize("qtype", K_TYPES)
def test_quantize_matches_llama_cpp(qtype: str, distribution: str, shape: tuple[int, int]) -> None:
    x = make_input(distribution, shape)
    ref = assert_matches_ggml(x, qtype)
    assert ggml_ref.validate(ref, qtype), "every shared distribution is storable by every type"


@pytest.mark.parametrize("qtype", K_TYPES)
def test_wide_rows_and_odd_row_count_match_llama_cpp(qtype: str) -> None:
    """4096-wide rows (a real projection) and an odd number of blocks, so lane groups end part-filled."""
    assert_matches_ggml(make_input("student_t", (3, 4096), seed=1), qtype)
    assert_matches_ggml(make_input("normal", (5, 768), seed=2), qtype)


def _special_blocks() -> np.ndarray:
    """One 256-block per row, each aimed at a quirk of the reference code."""
    rng = np.random.default_rng(7)
    rows = []
    rows.append(np.zeros(256))  # all zero: Q6_K writes an all-zero block
    rows.append(np.full(256, -0.0))
    rows.append(np.full(256, 3.25))  # constant positive: min clamps to 0
    rows.append(np.full(256, -2.5))  # constant negative: max == min in every sub-block
    spike = np.zeros(256)
    spike[77] = 1000.0  # one sub-block dominates: the others get scale 0 and keep their first L
    rows.append(spike)
    tiny = rng.standard_normal(256) * 1e-3
    tiny[5] = 60000.0  # a huge outlier: small sub-blocks' scales round to 0 in 6 bits / int8
    rows.append(tiny)
    mixed = rng.standard_normal(256)
    mixed[:16] = 1e-20  # below make_qx_quants' 1e-15 group threshold in one Q6_K sub-block
    mixed[32:64] = 0.0
    rows.append(mixed)
    halves = np.round(rng.standard_normal(256) * 8) / 2  # exact .5 ties for nearest_int
    rows.append(halves)
    rows.append(rng.standard_normal(256) * 1e-38)  # f32 subnormal territory: fp16 scales underflow to 0
    rows.append(np.where(rng.random(256) < 0.5, 65504.0, -65504.0))
    rows.append(np.abs(rng.standard_normal(256)) + 100.0)  # all positive, far from 0
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_special_blocks_match_llama_cpp(qtype: str) -> None:
    x = _special_blocks()
    ref = assert_matches_ggml(x, qtype)
    outlier = ref[5]  # the block with one huge value: most sub-block scales quantise to 0
    if qtype == "Q6_K":
        assert not ref[0].any(), "llama.cpp's all-zero Q6_K block"
        zero_scale = outlier[192:208].view(np.int8) == 0
        assert zero_scale.any() and outlier[:128].any(), "sub-blocks with scale 0 keep make_qx_quants' L"
    elif qtype in ("Q4_K", "Q5_K"):
        assert (outlier[5:8] & 63 == 0).all(), "scales of sub-blocks 1..3 quantise to 0"
        qs = outlier[{"Q4_K": 16, "Q5_K": 48}[qtype] :][:32]  # high nibbles: sub-block 1
        assert (qs >> 4).any(), "and those sub-blocks keep make_qkx2_quants' non-zero L"
    elif qtype == "Q2_K":
        assert (outlier[1:16] & 0xF == 0).any(), "sub-blocks far from the outlier get scale 0"
    elif qtype == "Q3_K":
        assert not ref[0][:108].any() and ref[0][108:].tobytes() == b"\x00\x00", "all-zero: every byte 0"
    else:  # IQ4_XS: an all-zero block stores d = -max/32 = -0.0, every 6-bit scale 0 + 32, levels index 8
        zero = ref[0]
        assert zero[:8].tobytes() == b"\x00\x80\xaa\xaa\x00\x00\x00\x00" and (zero[8:] == 0x88).all()


@pytest.mark.parametrize("qtype", K_TYPES)
def test_every_output_byte_is_written(qtype: str) -> None:
    """The kernel must not depend on the buffer's previous contents (memmaps are not zeroed)."""
    x = _special_blocks()
    cls = QUANT_TYPES[qtype]
    out = np.full((x.shape[0], cls.row_bytes(x.shape[1])), 0xA5, dtype=np.uint8)
    cls.quantize_rows(x, out)
    np.testing.assert_array_equal(out, ggml_ref.quantize(x, qtype))


@pytest.mark.parametrize("qtype", K_TYPES)
def test_quantize_into_a_slice_of_a_larger_buffer(qtype: str) -> None:
    """out= a row range of a preallocated file-like buffer: only that range is written."""
    x = make_input("normal", (9, 512), seed=3)
    cls = QUANT_TYPES[qtype]
    whole = np.zeros((12, cls.row_bytes(512)), dtype=np.uint8)
    quantize(x[2:7], qtype, out=whole[4:9], threads=1)
    np.testing.assert_array_equal(whole[4:9], ggml_ref.quantize(x[2:7], qtype))
    assert not whole[:4].any() and not whole[9:].any()


@pytest.mark.parametrize("qtype", K_TYPES)
def test_bytes_do_not_depend_on_how_blocks_are_split_into_tasks(
    qtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lane groups and prange tasks cut the block list at different places; every cut gives the same bytes."""
    x = make_input(
        "student_t", (37, 512), seed=10
    )  # 74 blocks: groups of 8 (Q4_K/Q5_K) or 4 (Q6_K) end part-filled
    ref = ggml_ref.quantize(x, qtype)
    for tasks_per_thread in (1, 3, 1000):
        monkeypatch.setattr(base, "TASKS_PER_THREAD", tasks_per_thread)  # prange_tasks reads it
        for threads in (1, 2):
            np.testing.assert_array_equal(quantize(x, qtype, threads=threads), ref)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_read_only_memmap_row_range(qtype: str, tmp_path) -> None:
    """A row range of a read-only memory-mapped tensor, as the converter streams safetensors."""
    x = make_input("normal", (12, 768), seed=11)
    np.save(tmp_path / "w.npy", x)
    mm = np.load(tmp_path / "w.npy", mmap_mode="r")
    assert not mm.flags.writeable
    np.testing.assert_array_equal(quantize(mm[3:10], qtype), ggml_ref.quantize(x[3:10], qtype))


@pytest.mark.parametrize("qtype", K_TYPES)
def test_scale_overflowing_fp16_is_rejected_like_llama_cpp(qtype: str) -> None:
    x = make_input("normal", (4, 512), seed=4)
    x[2, 300] = 3e9  # row 2's block scale exceeds fp16's 65504: llama.cpp's row validation fails
    ref = ggml_ref.quantize(x, qtype)
    assert not ggml_ref.validate(ref, qtype)
    assert QUANT_TYPES[qtype].invalid_row(ref) == 2
    with pytest.raises(QuantError, match=r"row 2\b.*fp16"):
        quantize(x, qtype)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_invalid_row_flags_inf_and_nan_scales(qtype: str) -> None:
    cls = QUANT_TYPES[qtype]
    data = quantize(make_input("normal", (4, 512), seed=5), qtype)
    assert cls.invalid_row(data) == -1
    for off in _SCALE_OFFSETS[qtype]:
        for bits in (0x7C00, 0xFE00):  # +inf, negative NaN
            bad = data.copy()
            bad[3, cls.type_size + off : cls.type_size + off + 2] = np.frombuffer(
                np.uint16(bits).tobytes(), np.uint8
            )
            assert not ggml_ref.validate(bad, qtype)
            assert cls.invalid_row(bad) == 3


@pytest.mark.parametrize("qtype", K_TYPES)
def test_nonfinite_input_names_the_row(qtype: str) -> None:
    x = make_input("normal", (3, 256), seed=6)
    x[1, 17] = np.nan
    with pytest.raises(QuantError, match=r"row 1\b"):
        quantize(x, qtype)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_row_length_not_multiple_of_256_is_rejected(qtype: str) -> None:
    with pytest.raises(QuantError, match=rf"{qtype}.*\b576\b"):
        quantize(np.ones((2, 576), np.float32), qtype)


@pytest.mark.parametrize("distribution", ["normal", "zero_and_constant_blocks", "subnormal", "near_fp16_max"])
@pytest.mark.parametrize("qtype", K_TYPES)
def test_dequantize_matches_llama_cpp(qtype: str, distribution: str) -> None:
    shape = (5, 768)
    data = quantize(make_input(distribution, shape), qtype)
    assert_dequantize_matches_ggml(data, qtype, shape)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_dequantize_any_bytes_matches_llama_cpp(qtype: str) -> None:
    """Every bit pattern of scales, mins and quants decodes like llama.cpp (fp16 scales kept finite)."""
    cls = QUANT_TYPES[qtype]
    shape = (6, 512)
    data = np.random.default_rng(8).integers(0, 256, (shape[0], cls.row_bytes(shape[1])), dtype=np.uint8)
    blocks = data.reshape(shape[0], -1, cls.type_size)
    for off in _SCALE_OFFSETS[qtype]:
        blocks[:, :, off + 1] &= 0x7B  # clear an exponent bit: never inf/NaN
    assert_dequantize_matches_ggml(data, qtype, shape)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_round_trip_error_is_small(qtype: str) -> None:
    """A sanity bound on top of bit-exactness: more bits, less error."""
    x = make_input("normal", (8, 1024), seed=9)
    err = np.sqrt(np.mean((dequantize(quantize(x, qtype), qtype, x.shape) - x) ** 2))
    assert err < {"Q2_K": 0.4, "Q3_K": 0.22, "Q4_K": 0.12, "Q5_K": 0.06, "Q6_K": 0.03, "IQ4_XS": 0.12}[qtype]


_FLOATS = st.one_of(
    st.floats(-70000.0, 70000.0, width=32),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(-float(np.float32(1e-36)), float(np.float32(1e-36)), width=32),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 65504.0, 65520.0]),
)


@st.composite
def _blocks(draw: st.DrawFn) -> np.ndarray:
    """One or two 256-blocks: free-form floats, or a random block with sub-blocks overwritten by patterns."""
    nblocks = draw(st.integers(1, 2), label="blocks")
    if draw(st.booleans(), label="free-form"):
        return draw(arrays(np.float32, (1, 256 * nblocks), elements=_FLOATS), label="x")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    scale = draw(st.sampled_from([1e-30, 1e-6, 1.0, 300.0, 2000.0]), label="scale")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(256 * nblocks) * scale).astype(np.float32)
    for _ in range(draw(st.integers(0, 6), label="patches")):
        start = 16 * draw(st.integers(0, 16 * nblocks - 1))
        value = draw(_FLOATS)
        kind = draw(st.sampled_from(["const", "spike", "zero", "grid"]))
        seg = x[start : start + 16]
        if kind == "const":
            seg[:] = value
        elif kind == "spike":
            seg[draw(st.integers(0, 15))] = value
        elif kind == "zero":
            seg[:] = 0.0
        else:
            # in float64: a huge patched value over a tiny scale overflows float32 to inf here
            seg[:] = np.round(seg.astype(np.float64) / scale * 4) * (scale / 8)
    return x[None, :]


@pytest.mark.parametrize("qtype", K_TYPES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=_blocks())
def test_hypothesis_blocks_match_llama_cpp(qtype: str, x: np.ndarray) -> None:
    assert_matches_ggml(x, qtype, threads=[1])
