"""Shared inputs and checks for the kernel tests (32-element types in test_kernels_simple.py, 256-element
types in test_kquants.py, importance weights in test_kernels_imatrix.py).

Every kernel is checked on the same distributions, shapes and thread counts against llama.cpp's own
quantiser (tests/support/ggml_ref.py), so a new type gets the whole battery by parametrising over these.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quant import QuantError, dequantize, quantize
from quant.kernels.api import default_threads
from tests.support import ggml_ref

Distribution = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


def _normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _student_t(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.standard_t(2.0, shape).astype(np.float32)  # heavy tails: a few outliers dominate each block


def _all_positive(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.lognormal(0.0, 1.0, shape).astype(np.float32)


def _sparse(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.9] = 0.0
    return x


def _fp16_grid(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return (
        (rng.standard_normal(shape) * 4).astype(np.float16).astype(np.float32)
    )  # exact ties and grid values


def _zero_and_constant_blocks(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Blocks of 32 that are all zero, constant (positive or negative), or a lone spike in zeros."""
    rows, cols = shape
    x = rng.standard_normal(shape).astype(np.float32)
    blocks = x.reshape(rows, cols // 32, 32)
    kind = rng.integers(0, 5, (rows, cols // 32))
    blocks[kind == 0] = 0.0
    blocks[kind == 1] = rng.standard_normal((int((kind == 1).sum()), 1)).astype(np.float32)
    blocks[kind == 2] = -0.0
    spikes = blocks[kind == 3]
    spikes[:, 1:] = 0.0
    blocks[kind == 3] = spikes
    return x


def _subnormal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """f32 subnormals and tiny normals: scales underflow fp16 and 1/d overflows to inf."""
    scale = np.where(rng.random(shape) < 0.5, 1e-40, 1e-36)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _near_fp16_max(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Magnitudes up to fp16's largest finite value (65504), which every type can still store."""
    x = rng.uniform(-65504.0, 65504.0, shape).astype(np.float32)
    x.flat[:: max(1, x.size // 7)] = np.float32(65504.0)
    x.flat[3 :: max(1, x.size // 5)] = np.float32(-65519.99)  # still rounds to -65504 in fp16
    return x


DISTRIBUTIONS: dict[str, Distribution] = {
    "normal": _normal,
    "student_t": _student_t,
    "all_positive": _all_positive,
    "sparse": _sparse,
    "fp16_grid": _fp16_grid,
    "zero_and_constant_blocks": _zero_and_constant_blocks,
    "subnormal": _subnormal,
    "near_fp16_max": _near_fp16_max,
}


def _w_uniform(rng: np.random.Generator, cols: int) -> np.ndarray:
    return rng.random(cols).astype(np.float32)


def _w_lognormal(rng: np.random.Generator, cols: int) -> np.ndarray:
    """Like real imatrix entries (mean squared activations): positive, a few columns far above the rest."""
    return rng.lognormal(0.0, 2.0, cols).astype(np.float32)


def _w_sparse(rng: np.random.Generator, cols: int) -> np.ndarray:
    """Half the columns never activated (weight 0), whole blocks of zeros included."""
    w = rng.lognormal(0.0, 1.0, cols).astype(np.float32)
    w[rng.random(cols) < 0.5] = 0.0
    w[: min(cols, 64)] = 0.0
    return w


def _w_constant(rng: np.random.Generator, cols: int) -> np.ndarray:
    return np.ones(cols, np.float32)


def _w_zero(rng: np.random.Generator, cols: int) -> np.ndarray:
    """Every weight 0: every weighted sum vanishes, the searches' degenerate paths."""
    return np.zeros(cols, np.float32)


def _w_wide_range(rng: np.random.Generator, cols: int) -> np.ndarray:
    return (10.0 ** rng.uniform(-12, 12, cols)).astype(np.float32)


WEIGHT_DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "uniform": _w_uniform,
    "lognormal": _w_lognormal,
    "sparse": _w_sparse,
    "constant": _w_constant,
    "zero": _w_zero,
    "wide_range": _w_wide_range,
}
"""Importance weights (one non-negative float32 per column), as llama.cpp's imatrix supplies them."""


def make_weights(distribution: str, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, 7, *distribution.encode()])
    return WEIGHT_DISTRIBUTIONS[distribution](rng, cols)


SHAPES_256 = [(1, 256), (6, 512), (17, 1024)]
"""Row counts that do not divide evenly among threads; row lengths every type can hold."""

SHAPES_32 = [*SHAPES_256, (9, 96), (5, 576)]
"""Plus the row lengths (not multiples of 256) that make llama.cpp fall back to Q5_0/Q5_1/Q8_0/F16."""


def thread_counts() -> list[int]:
    """1 and every core (plus an odd count when there are enough cores)."""
    n = default_threads()
    return sorted({1, n, max(1, n - 1)} if n > 2 else {1, n})


def make_input(distribution: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A deterministic float32 matrix for a case: the seed mixes in the case name so cases differ."""
    rng = np.random.default_rng([seed, *distribution.encode()])
    return DISTRIBUTIONS[distribution](rng, shape)


def reference_dequantize(data: np.ndarray, qtype: str, shape: tuple[int, int]) -> np.ndarray:
    """llama.cpp's to_float for the type (F32 has none: its bytes are the values)."""
    if qtype == "F32":
        return np.ascontiguousarray(data).view(np.float32).reshape(shape)
    return ggml_ref.dequantize(data, qtype, shape)


def same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit float32 equality (so -0.0 != 0.0 and NaN payloads count)."""
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def assert_matches_ggml(
    x: np.ndarray, qtype: str, threads: list[int] | None = None, quant_weights: np.ndarray | None = None
) -> np.ndarray:
    """Ours equals ggml_quantize_chunk (with `quant_weights` as its importance weights) byte for byte for every
    thread count, or both reject the input.

    Returns llama.cpp's bytes (when valid) so callers can check more.
    """
    ref = ggml_ref.quantize(x, qtype, quant_weights)
    valid = ggml_ref.validate(ref, qtype)
    with_w = "" if quant_weights is None else " with importance weights"
    for n in threads or thread_counts():
        if valid:
            ours = quantize(x, qtype, threads=n, quant_weights=quant_weights)
            assert ours.dtype == np.uint8 and ours.shape == ref.shape
            if not np.array_equal(ours, ref):
                row, col = np.argwhere(ours != ref)[0]
                raise AssertionError(
                    f"{qtype}{with_w} threads={n}: first differing byte at row {row}, byte {col}"
                )
        else:
            try:
                quantize(x, qtype, threads=n, quant_weights=quant_weights)
            except QuantError:
                pass
            else:
                raise AssertionError(
                    f"{qtype}{with_w}: llama.cpp's validation rejects this input but quantize accepted it"
                )
    return ref


def assert_dequantize_matches_ggml(data: np.ndarray, qtype: str, shape: tuple[int, int]) -> None:
    ours = dequantize(data, qtype, shape)
    ref = reference_dequantize(data, qtype, shape)
    assert ours.dtype == np.float32
    assert same_floats(ours, ref), f"{qtype}: dequantize differs from llama.cpp's to_float"
