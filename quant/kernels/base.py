"""The contract every quantisation type implements, and the registry the front end looks types up in.

One small class per ggml type, in the shape of gguf-py's quants.py: a class declares its
`gguf.GGMLQuantizationType`, and `register` fills in the name and the block and type sizes from
`gguf.GGML_QUANT_SIZES` (refusing a type registered twice, or sizes that disagree with ggml's). The front end
(quant/kernels/api.py) does all validation, dtype conversion, chunking and threading; a type only turns finite
float32 rows into blocks and back.

The contract of a type (what api.quantize relies on):

* `quantize_rows(x, out, quant_weights=None)`: `x` is C-contiguous float32 [rows, cols] with `cols` a multiple
  of `block_size` and only finite values (unless the type sets `nonfinite_shows_in_output`); `out` is uint8
  [rows, row_bytes(cols)], possibly a slice of a memmap, whose previous contents must not matter.
  `quant_weights` is None or C-contiguous float32 [cols], finite and >= 0: llama.cpp's importance weights
  (one imatrix row), the same vector for every row of the call, exactly as `ggml_quantize_chunk`'s last
  argument. A type whose llama.cpp quantiser ignores them (`uses_quant_weights = False`) accepts and ignores
  them. The bytes must equal `ggml_quantize_chunk(type, x, out, 0, rows, cols, quant_weights)` and must not
  depend on the numba thread count.
* `dequantize_rows(data, out)`: llama.cpp's `dequantize_row_*` (to_float) of every row.
* `invalid_row(data)`: the first row `ggml_validate_row_data` would reject (fp16 scales that are inf/NaN).
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from quant.kernels.bits import first_row_with_bad_f16

TASKS_PER_THREAD = 8


def prange_tasks() -> int:
    """prange tasks for the current numba thread count. Tasks are handed out one at a time (parallel chunk
    size 1), so a thread slowed by other load does not hold up the rest; the bytes never depend on it."""
    return TASKS_PER_THREAD * numba.get_num_threads()


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view, so read-only memmaps and ordinary arrays share one compiled (and cached) kernel."""
    v = np.asarray(a).view()
    v.flags.writeable = False
    return v


NO_WEIGHTS = readonly(np.zeros(0, np.float32))
"""What kernels get for "no importance weights": one array type for both paths keeps one compiled kernel."""


def weights_or_empty(quant_weights: np.ndarray | None) -> np.ndarray:
    """The kernel argument for `quant_weights`: the read-only float32 vector, or an empty one for None."""
    return NO_WEIGHTS if quant_weights is None else readonly(quant_weights)


class QuantType:
    """A ggml tensor type: fixed-size blocks of `block_size` elements stored in `type_size` bytes."""

    ggml_type: ClassVar[GGMLQuantizationType]
    name: ClassVar[str]  # ggml's name of ggml_type, set by register
    block_size: ClassVar[int]  # from gguf.GGML_QUANT_SIZES, set by register
    type_size: ClassVar[int]
    nonfinite_shows_in_output: ClassVar[bool] = False
    """True when NaN/inf input always yields a row the kernel's return value or `invalid_row` reports, so the
    front end may skip its separate pass over the input and look for the culprit only in rows that fail."""
    uses_quant_weights: ClassVar[bool] = False
    """True when llama.cpp's quantiser for this type reads the importance weights (otherwise they are ignored)."""
    requires_quant_weights: ClassVar[bool] = False
    """True when llama.cpp refuses to quantise this type without importance weights."""

    @classmethod
    def row_bytes(cls, cols: int) -> int:
        return (cols // cls.block_size) * cls.type_size

    @classmethod
    def quantize_rows(
        cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None
    ) -> int | None:
        """Fill `out` from `x` (see the module docstring for the exact contract).

        May return what `invalid_row(out)` would (found while writing, which saves the front end a pass over
        `out`); None means "not checked".
        """
        raise NotImplementedError

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        """Fill float32 `out` [rows, cols] from uint8 `data` [rows, row_bytes]."""
        raise NotImplementedError

    # Where each block keeps its fp16 scales (d, dmin), in uint16 units from the block start; blocks with
    # such scales declare them and inherit the check below.
    scale_offsets: ClassVar[tuple[int, ...]] = ()

    @classmethod
    def invalid_row(cls, data: np.ndarray) -> int:
        """First row whose stored scales llama.cpp's ggml_validate_row_data would reject (inf/NaN), or -1."""
        data = np.asarray(data)
        if not cls.scale_offsets or data.size == 0:
            return -1
        halves = np.ascontiguousarray(data).reshape(data.shape[0], -1).view(np.uint16)
        return int(first_row_with_bad_f16(halves, cls.type_size // 2, cls.scale_offsets))


class KernelType(QuantType):
    """A type served by a pair of Numba kernels in one argument order:
    `quantize_kernel(x, out, weights, *kernel_params, type_size, tasks)` (weights: `weights_or_empty`; returns
    None or the first bad row, as `quantize_rows`) and `dequantize_kernel(data, out, *dequantize_params,
    type_size)`. A type whose parameters are loaded on first use (the IQ grid tables) overrides
    `kernel_args` / `dequantize_args` instead, so importing the registry builds nothing."""

    quantize_kernel: ClassVar[Any]  # staticmethod(njit function)
    dequantize_kernel: ClassVar[Any]
    kernel_params: ClassVar[tuple] = ()
    dequantize_params: ClassVar[tuple] = ()

    @classmethod
    def kernel_args(cls) -> tuple:
        """The quantiser's arguments between the weights and type_size."""
        return cls.kernel_params

    @classmethod
    def dequantize_args(cls) -> tuple:
        """The dequantiser's arguments between `out` and type_size."""
        return cls.dequantize_params

    @classmethod
    def quantize_rows(
        cls, x: np.ndarray, out: np.ndarray, quant_weights: np.ndarray | None = None
    ) -> int | None:
        if x.shape[0] == 0:
            return None
        with numba.parallel_chunksize(1):
            bad = cls.quantize_kernel(
                readonly(x),
                np.asarray(out),
                weights_or_empty(quant_weights),
                *cls.kernel_args(),
                cls.type_size,
                prange_tasks(),
            )
        return None if bad is None else int(bad)

    @classmethod
    def dequantize_rows(cls, data: np.ndarray, out: np.ndarray) -> None:
        if out.shape[0] == 0:
            return
        cls.dequantize_kernel(readonly(data), np.asarray(out), *cls.dequantize_args(), cls.type_size)


QUANT_TYPES: dict[str, type[QuantType]] = {}
"""Every registered type by ggml name ("Q4_K", "IQ4_XS"), in registration order."""

_T = TypeVar("_T", bound=type[QuantType])


def register(cls: _T) -> _T:
    """Class decorator: make `cls` the front end's type for its `ggml_type`.

    Fills in `name`, `block_size` and `type_size` from gguf (a class may state them, but they must agree) and
    refuses a second class for a ggml type that already has one.
    """
    try:
        gtype = GGMLQuantizationType(cls.__dict__["ggml_type"])
    except (KeyError, ValueError) as exc:
        raise TypeError(f"{cls.__qualname__} must declare ggml_type as a gguf.GGMLQuantizationType") from exc
    block_size, type_size = GGML_QUANT_SIZES[gtype]
    expected = {"name": gtype.name, "block_size": block_size, "type_size": type_size}
    for attr, value in expected.items():
        declared = cls.__dict__.get(attr, value)
        if declared != value:
            raise TypeError(
                f"{cls.__qualname__}.{attr} is {declared!r} but ggml's {gtype.name} has {value!r}"
            )
    if gtype.name in QUANT_TYPES:
        raise TypeError(
            f"ggml type {gtype.name} is already registered by {QUANT_TYPES[gtype.name].__qualname__}; "
            f"{cls.__qualname__} cannot register it again"
        )
    cls.ggml_type = gtype
    cls.name = gtype.name
    cls.block_size = block_size
    cls.type_size = type_size
    QUANT_TYPES[gtype.name] = cls
    return cls
