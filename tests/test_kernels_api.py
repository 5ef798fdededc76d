"""The kernel front end: input dtypes, errors, memmap row ranges, bounded memory, threads, start-up cache."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import quant.kernels.api as api
from quant import QUANT_TYPES, QuantError, dequantize, quantize
from tests.support import ggml_ref
from tests.support.quant_cases import make_input, same_floats

SIMPLE_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1"]


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """Truncate float32 to bfloat16 bits (how a safetensors BF16 tensor looks as a uint16 array)."""
    return (x.view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Make the front end work in chunks of 3 rows of 64, so chunk boundaries and the last partial chunk run."""
    monkeypatch.setattr(api, "CHUNK_ELEMENTS", 3 * 64)
    monkeypatch.setattr(api, "F32_CHUNK_ELEMENTS", 3 * 64)
    return 3


# --- input dtypes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
def test_float16_input_gives_the_bytes_of_its_float32_values(qtype: str, small_chunks: int) -> None:
    x16 = make_input("normal", (10, 64)).astype(np.float16)
    expected = ggml_ref.quantize(x16.astype(np.float32), qtype)
    assert np.array_equal(quantize(x16, qtype), expected)


@pytest.mark.parametrize("qtype", SIMPLE_TYPES)
def test_bfloat16_bits_input_gives_the_bytes_of_its_float32_values(qtype: str, small_chunks: int) -> None:
    bits = _bf16_bits(make_input("student_t", (10, 64)))
    expected = ggml_ref.quantize(_bf16_to_f32(bits), qtype)
    assert np.array_equal(quantize(bits, qtype), expected)


def test_chunked_equals_whole(small_chunks: int) -> None:
    x = make_input("normal", (11, 64))
    ref = ggml_ref.quantize(x, "Q8_0")
    assert np.array_equal(quantize(x, "Q8_0"), ref)


def test_stacked_experts_keep_their_leading_axes() -> None:
    x = make_input("normal", (2, 3, 64))  # [experts, rows, cols] as a Mixtral expert stack
    q = quantize(x, "Q5_0")
    assert q.shape == (2, 3, QUANT_TYPES["Q5_0"].row_bytes(64))
    assert np.array_equal(q.reshape(6, -1), ggml_ref.quantize(x.reshape(6, 64), "Q5_0"))
    assert dequantize(q, "Q5_0", x.shape).shape == x.shape


def test_type_names_are_case_insensitive() -> None:
    x = make_input("normal", (2, 64))
    assert np.array_equal(quantize(x, "q8_0"), quantize(x, "Q8_0"))


def test_thread_count_above_the_cores_gives_the_same_bytes() -> None:
    x = make_input("normal", (33, 128))
    assert np.array_equal(quantize(x, "Q8_0", threads=64), ggml_ref.quantize(x, "Q8_0"))


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_non_finite_values_name_the_row(bad: float, dtype: str, qtype: str, small_chunks: int) -> None:
    x = make_input("normal", (8, 64))
    x[5, 17] = bad
    data = {"float32": x, "float16": x.astype(np.float16), "bfloat16": _bf16_bits(x)}[dtype]
    with pytest.raises(QuantError, match=r"^blk\.0\.ffn_up\.weight: row 5 contains .* at column 17") as e:
        quantize(data, qtype, name="blk.0.ffn_up.weight")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0"])
def test_the_first_bad_row_decides_the_message(qtype: str, small_chunks: int) -> None:
    x = make_input("normal", (8, 64))
    x[4] *= 1e7  # too large for F16 values and for a Q8_0 scale
    x[6, 0] = np.nan
    with pytest.raises(QuantError, match=rf"^row 4 .*{qtype}"):
        quantize(x, qtype)
    x[2, 3] = np.inf
    with pytest.raises(QuantError, match=r"^row 2 contains inf at column 3"):
        quantize(x, qtype)


@pytest.mark.parametrize(
    ("qtype", "cols"),
    [
        ("Q8_0", 33),
        ("Q4_0", 48),
        ("Q4_1", 100),
        ("Q5_0", 48),
        ("Q5_1", 100),
        ("IQ4_NL", 16),
        ("Q2_K", 128),
        ("Q3_K", 4000),
        ("IQ4_XS", 320),
        ("F16", 0),
    ],
)
def test_row_length_the_type_cannot_hold(qtype: str, cols: int) -> None:
    with pytest.raises(QuantError, match=rf"{qtype} cannot hold rows of {cols} elements"):
        quantize(np.ones((2, cols), np.float32), qtype)


def test_unknown_type_and_unsupported_dtype() -> None:
    with pytest.raises(QuantError, match="unknown quantisation type 'Q9_9'"):
        quantize(np.ones((1, 32), np.float32), "Q9_9")
    with pytest.raises(QuantError, match="cannot quantise float64 data"):
        quantize(np.ones((1, 32)), "Q8_0")
    with pytest.raises(QuantError, match="threads must be a positive integer"):
        quantize(np.ones((1, 32), np.float32), "Q8_0", threads=0)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"])
def test_scale_overflow_is_rejected_exactly_when_llama_cpp_rejects_it(qtype: str) -> None:
    """Sweep magnitudes across the fp16 limit of each type's scale; we raise iff ggml_validate_row_data fails."""
    base = make_input("normal", (1, 64))
    base /= np.abs(base).max()
    rejected = []
    for magnitude in np.geomspace(3e4, 3e7, 40, dtype=np.float32):
        x = np.vstack([base, base * magnitude]).astype(np.float32)
        ref_ok = ggml_ref.validate(ggml_ref.quantize(x, qtype), qtype)
        try:
            ours = quantize(x, qtype)
        except QuantError as e:
            assert not ref_ok, f"{qtype}: raised on {magnitude} but llama.cpp accepts it"
            assert str(e).startswith("row 1 ") and qtype in str(e)
            rejected.append(magnitude)
        else:
            assert ref_ok, f"{qtype}: accepted {magnitude} but llama.cpp's validation rejects it"
            assert np.array_equal(ours, ggml_ref.quantize(x, qtype))
    assert 0 < len(rejected) < 40, "the sweep must cross the limit"


def test_bf16_rounding_into_inf_is_rejected_like_llama_cpp() -> None:
    largest = np.float32(3.3895314e38)  # bf16's largest finite value: stored as is
    x = np.array([[largest] * 32, [3.4028235e38] * 32], np.float32)  # row 1 rounds up into inf
    ref = ggml_ref.quantize(x, "BF16")
    assert ggml_ref.validate(ref[:1], "BF16") and not ggml_ref.validate(ref[1:], "BF16")
    assert np.array_equal(quantize(x[:1], "BF16"), ref[:1])
    with pytest.raises(QuantError, match=r"^row 1 has values beyond the BF16 range"):
        quantize(x, "BF16")


def test_dequantize_checks_the_byte_count() -> None:
    with pytest.raises(QuantError, match=r"Q8_0 data of 67 bytes does not match shape \(2, 32\)"):
        dequantize(np.zeros(67, np.uint8), "Q8_0", (2, 32))


def test_dequantize_accepts_raw_bytes_and_empty_tensors() -> None:
    x = make_input("normal", (3, 64))
    q = quantize(x, "Q5_1")
    assert same_floats(dequantize(q.tobytes(), "Q5_1", x.shape), dequantize(q, "Q5_1", x.shape))
    assert quantize(np.zeros((0, 64), np.float32), "Q8_0").shape == (0, 68)
    assert dequantize(b"", "Q8_0", (0, 64)).shape == (0, 64)


def test_out_must_fit() -> None:
    with pytest.raises(ValueError, match="out must be"):
        quantize(np.ones((2, 32), np.float32), "Q8_0", out=np.zeros((2, 33), np.uint8))


# --- memmaps and bounded memory ------------------------------------------------------------------------


def test_memmap_row_range_into_a_memmap_slice(tmp_path) -> None:
    src = np.memmap(tmp_path / "w.f32", dtype=np.float32, mode="w+", shape=(300, 128))
    src[:] = make_input("student_t", (300, 128))
    src.flush()
    x = np.memmap(tmp_path / "w.f32", dtype=np.float32, mode="r", shape=(300, 128))
    row_bytes = QUANT_TYPES["Q8_0"].row_bytes(128)
    dst = np.memmap(tmp_path / "w.q8", dtype=np.uint8, mode="w+", shape=(300, row_bytes))
    returned = quantize(x[100:200], "Q8_0", out=dst[100:200])
    assert returned is not None and returned.shape == (100, row_bytes)
    assert np.array_equal(dst[100:200], ggml_ref.quantize(np.array(x[100:200]), "Q8_0"))
    assert not dst[:100].any() and not dst[200:].any()
    assert np.array_equal(quantize(x[100:200], "Q8_0"), quantize(np.array(x[100:200]), "Q8_0"))


def _peak_numpy_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_peak_memory_is_one_chunk_not_the_tensor(tmp_path, monkeypatch: pytest.MonkeyPatch, dtype) -> None:
    rows, cols = 1024, 512
    path = tmp_path / "w.bin"
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, cols))[:] = make_input(
        "normal", (rows, cols)
    ).astype(dtype)
    x = np.load(path, mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "q.npy", mode="w+", dtype=np.uint8, shape=(rows, 544))
    quantize(x[:2], "Q8_0", out=out[:2])  # compile/load outside the measurement

    chunk_rows = 16
    monkeypatch.setattr(api, "CHUNK_ELEMENTS", chunk_rows * cols)
    peak_small = _peak_numpy_bytes(lambda: quantize(x, "Q8_0", out=out))
    chunk_f32 = chunk_rows * cols * 4
    assert peak_small <= 2 * chunk_f32 + 64 * 1024, f"peak {peak_small} B for chunks of {chunk_f32} B"
    assert np.array_equal(out, ggml_ref.quantize(np.asarray(x, dtype=np.float32), "Q8_0"))

    # guard the probe: with one chunk for the whole tensor the f16 path does allocate it all
    if dtype == np.float16:
        monkeypatch.setattr(api, "CHUNK_ELEMENTS", rows * cols)
        assert _peak_numpy_bytes(lambda: quantize(x, "Q8_0", out=out)) >= rows * cols * 4


# --- start-up --------------------------------------------------------------------------------------------


def test_import_quant_does_not_load_numba() -> None:
    code = "import sys, quant; print(json.dumps('numba' in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], check=True, capture_output=True, text=True
    )
    assert json.loads(out.stdout) is False


_EXERCISE_KERNELS = """
import numpy as np
from quant import QUANT_TYPES, quantize, dequantize
x = np.ones((2, 64), np.float32)
for t in ("F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1"):
    dequantize(quantize(x, t), t, x.shape)
    quantize(x.astype(np.float16), t)
    quantize((x.view(np.uint32) >> 16).astype(np.uint16), t)
x = np.linspace(-1, 1, 512, dtype=np.float32).reshape(2, 256)
for t in QUANT_TYPES:
    w = np.ones(256, np.float32)
    dequantize(quantize(x, t, quant_weights=w if QUANT_TYPES[t].requires_quant_weights else None), t, x.shape)
    quantize(x, t, quant_weights=w)
"""


def test_second_process_loads_kernels_from_the_cache() -> None:
    """Once kernels ran (and so were cached), a new process runs them with no JIT: numba cache hits only."""
    exec(_EXERCISE_KERNELS, {})
    code = (
        _EXERCISE_KERNELS
        + """
import json
from quant.kernels import api, bits, iq1, iq4, iquants, kquants, kquants_q2_q3, legacy, search, simple
mods = (api, bits, iq1, iq4, iquants, kquants, kquants_q2_q3, legacy, search, simple)
fns = [getattr(m, n) for m in mods for n in dir(m) if hasattr(getattr(m, n), "stats")]
print(json.dumps({f.__name__: sum(f.stats.cache_misses.values()) for f in fns if f.signatures}))
"""
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    misses = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"_q8_0_quant", "_first_nonfinite_row", "bf16_to_f32", "first_row_with_bad_f16"} <= set(misses)
    assert {"_ref_quantize", "_impl_quantize", "_kx_quantize", "_q6_quantize", "_quantize"} <= set(misses)
    assert {"quantize_family", "dequantize_family", "quantize_iq1", "dequantize_iq1"} <= set(misses)
    assert all(v == 0 for v in misses.values()), misses


def test_registry_has_the_simple_types() -> None:
    assert set(SIMPLE_TYPES) <= set(QUANT_TYPES)
    data = quantize(make_input("normal", (3, 64)), "F32")
    assert same_floats(dequantize(data, "F32", (3, 64)), make_input("normal", (3, 64)))


# --- the registry ----------------------------------------------------------------------------------------


def test_register_takes_name_and_sizes_from_gguf_and_refuses_a_second_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as GT

    from quant.kernels import base

    monkeypatch.setattr(base, "QUANT_TYPES", dict(base.QUANT_TYPES))

    class TQ(base.QuantType):
        ggml_type = GT.TQ1_0

    assert base.register(TQ) is TQ
    assert (TQ.name, TQ.block_size, TQ.type_size) == ("TQ1_0", *GGML_QUANT_SIZES[GT.TQ1_0])
    assert base.QUANT_TYPES["TQ1_0"] is TQ

    class ById(base.QuantType):  # ggml's integer id is accepted too
        ggml_type = 35  # TQ2_0

    base.register(ById)
    assert ById.name == "TQ2_0" and ById.ggml_type is GT.TQ2_0 and ById.type_size == 66

    class Again(base.QuantType):
        ggml_type = GT.Q4_K

    with pytest.raises(
        TypeError, match="Q4_K is already registered by Q4_K; .*Again cannot register it again"
    ):
        base.register(Again)

    class WrongSize(base.QuantType):
        ggml_type = GT.MXFP4
        type_size = 16

    with pytest.raises(TypeError, match="WrongSize.type_size is 16 but ggml's MXFP4 has 17"):
        base.register(WrongSize)

    class NoType(base.QuantType):
        pass

    with pytest.raises(TypeError, match="NoType must declare ggml_type"):
        base.register(NoType)
    assert set(base.QUANT_TYPES) == set(QUANT_TYPES) | {"TQ1_0", "TQ2_0"}


def test_every_registered_type_agrees_with_ggml() -> None:
    for name, cls in QUANT_TYPES.items():
        assert cls.name == name == cls.ggml_type.name
        assert cls.ggml_type == ggml_ref.GGML_TYPES[name]
        for cols in (256, 4096):
            assert cls.row_bytes(cols) == ggml_ref.row_size(name, cols)
