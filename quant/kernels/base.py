"""The contract every quantisation type implements, and the registry the front end looks types up in.

One small class per ggml type (the shape of gguf-py's quants.py) so adding Q3_K or IQ4_NL later is a new
class, not a new branch in the front end. The front end (quant/kernels/api.py) does all validation,
dtype conversion, chunking and threading; a type only turns finite float32 rows into blocks and back.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

import numba
import numpy as np

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


class QuantType:
    """A ggml tensor type: fixed-size blocks of `block_size` elements stored in `type_size` bytes."""

    name: ClassVar[str]
    ggml_type: ClassVar[int]
    block_size: ClassVar[int]
    type_size: ClassVar[int]
    nonfinite_shows_in_output: ClassVar[bool] = False
    """True when NaN/inf input always yields a row `invalid_row` reports (element types: F32, F16, BF16), so
    the front end may skip its separate pass over the input and look for the culprit only in rows that fail."""

    @classmethod
    def row_bytes(cls, cols: int) -> int:
        return (cols // cls.block_size) * cls.type_size

    @classmethod
    def quantize_rows(cls, x: np.ndarray, out: np.ndarray) -> int | None:
        """Fill `out` (uint8 [rows, row_bytes], possibly a memmap slice) from finite float32 `x` [rows, cols].

        Must be deterministic for any numba thread count. May return what `invalid_row(out)` would (found
        while writing, which saves the front end a pass over `out`); None means "not checked".
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


QUANT_TYPES: dict[str, type[QuantType]] = {}

_T = TypeVar("_T", bound=type[QuantType])


def register(cls: _T) -> _T:
    """Class decorator: make `cls` available to the front end under `cls.name`."""
    QUANT_TYPES[cls.name] = cls
    return cls
