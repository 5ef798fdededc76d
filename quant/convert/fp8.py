"""FP8 checkpoints (`quantization_config.quant_method == "fp8"`), dequantised inside the streaming pass.

Such a checkpoint stores each linear weight as F8_E4M3 bytes plus a `<name>_scale_inv` tensor (F32, BF16 or
F16) holding one multiplier per `weight_block_size` block (per tensor or per row when there is no block
size). llama.cpp's converter (`conversion/base.py`, `dequant_model`) turns every such pair into float32
`fp8_value * scale` before anything else sees the tensor, and drops the activation scales (`activation_scale`,
used only by FP8 inference kernels); so does this module, one row chunk at a time: the writer hands it the
weight rows and the scale rows they need, straight from the memory map.

Other quantisation methods (gptq, awq, bitsandbytes, compressed-tensors, mxfp4, ...) are refused by name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quant.convert.checkpoint import SourceTensor
from quant.errors import ConversionError

FP8_DTYPE = "F8_E4M3"
SCALE_SUFFIX = "_scale_inv"
SCALE_DTYPES = ("F32", "BF16", "F16")
# activation scales of static FP8 schemes: inference-only, llama.cpp drops them
ACTIVATION_SUFFIXES = (".activation_scale", "_activation_scale")
MODELOPT_CONFIG = "hf_quant_config.json"


def e4m3_table() -> np.ndarray:
    """float32 value of each of the 256 E4M3 ("fn": no infinities) bit patterns; 0x7F and 0xFF are NaN.

    Layout: 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal (m/8 * 2^-6).
    Every value is exact in float32, so this is torch's float8_e4m3fn -> float32 conversion.
    """
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    man = codes & 0x7
    mag = np.where(exp == 0, man / 8.0 * 2.0**-6, (1.0 + man / 8.0) * 2.0 ** (exp - 7.0))
    mag = np.where((exp == 0xF) & (man == 0x7), np.nan, mag)
    return (sign * mag).astype(np.float32)


E4M3_TO_F32 = e4m3_table()


@dataclass(frozen=True)
class Fp8Config:
    """The parts of an "fp8" quantization_config the conversion uses."""

    block: tuple[int, int] | None  # weight_block_size (rows, columns); None: one scale per tensor or row


def read_quantization(src: Path, config: dict[str, Any]) -> Fp8Config | None:
    """The checkpoint's FP8 scheme, None for an unquantised checkpoint; other methods are refused by name."""
    path = src / "config.json"
    qc = config.get("quantization_config")
    if qc is None:
        modelopt = src / MODELOPT_CONFIG
        if modelopt.is_file():  # NVIDIA ModelOpt exports put their scheme here instead
            raise ConversionError(
                f"{modelopt}: ModelOpt-quantised checkpoints are not supported (only 'fp8' quantization_config)"
            )
        return None
    if not isinstance(qc, dict):
        raise ConversionError(f"{path}: key 'quantization_config' must be an object, got {qc!r}")
    method = qc.get("quant_method")
    if method != "fp8":
        raise ConversionError(
            f"{path}: quantization_config.quant_method {method!r} is not supported "
            "(hubtui converts unquantised and 'fp8' checkpoints)"
        )
    block = qc.get("weight_block_size")
    if block is None:
        return Fp8Config(None)
    if (
        not isinstance(block, list | tuple)
        or len(block) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)
    ):
        raise ConversionError(
            f"{path}: key 'quantization_config.weight_block_size' must be two positive integers, got {block!r}"
        )
    return Fp8Config((block[0], block[1]))


@dataclass(frozen=True)
class ScaleGrid:
    """Which scale multiplies element (r, j) of a weight viewed as rows of `cols` (leading dims folded in):
    scale2d[(r // rows) * scale_rows + (r % rows) // block_rows, j // block_cols]."""

    rows: int  # rows of one matrix (the weight's second-to-last dim; all rows for a per-tensor scale)
    scale_rows: int  # scale rows per matrix
    block_rows: int
    block_cols: int
    scale_cols: int

    def scale_row(self, r: int) -> int:
        return (r // self.rows) * self.scale_rows + (r % self.rows) // self.block_rows


def _grid(t: SourceTensor, scale: SourceTensor, block: tuple[int, int] | None) -> ScaleGrid:
    shape = t.shape if len(t.shape) >= 2 else (1, *t.shape)
    rows, cols = shape[-2], shape[-1]
    all_rows = math.prod(shape[:-1])
    if block is not None:
        want = (*shape[:-2], -(-rows // block[0]), -(-cols // block[1]))
        if scale.shape == want:
            return ScaleGrid(rows, want[-2], block[0], block[1], want[-1])
        how = f"with weight_block_size {list(block)} needs {list(want)}"
    elif math.prod(scale.shape) == 1:  # one scale for the whole tensor
        return ScaleGrid(all_rows, 1, all_rows, cols, 1)
    elif len(t.shape) == 2 and scale.shape in ((rows,), (rows, 1)):  # one per row
        return ScaleGrid(rows, rows, 1, cols, 1)
    else:
        how = f"without weight_block_size needs one scale or one per row ([{rows}])"
    raise ConversionError(
        f"{scale.shard}: tensor {scale.name!r} has shape {list(scale.shape)} but {t.name!r} "
        f"{list(t.shape)} {how}"
    )


def is_scale_tensor(name: str) -> bool:
    """Whether a tensor of an "fp8" checkpoint is a weight or activation scale rather than a parameter."""
    return name.endswith((SCALE_SUFFIX, *ACTIVATION_SUFFIXES))


def attach_scales(sources: list[SourceTensor], fp8: Fp8Config | None) -> list[SourceTensor]:
    """The tensors the conversion sees: FP8 weights carry their scale, scales and activation scales are gone.

    Raises ConversionError for an FP8 weight without its scale (or without an fp8 quantization_config), a
    scale without its weight, a scale of the wrong shape or dtype, and a scale on a weight that is not FP8.
    """
    by_name = {t.name: t for t in sources}
    out: list[SourceTensor] = []
    for t in sources:
        if fp8 is not None and t.name.endswith(ACTIVATION_SUFFIXES):
            continue
        if fp8 is not None and t.name.endswith(SCALE_SUFFIX):
            if t.name.removesuffix(SCALE_SUFFIX) not in by_name:
                raise ConversionError(
                    f"{t.shard}: tensor {t.name!r} scales {t.name.removesuffix(SCALE_SUFFIX)!r}, "
                    "which the checkpoint does not have"
                )
            continue
        scale = by_name.get(t.name + SCALE_SUFFIX) if fp8 is not None else None
        if scale is None:
            if t.dtype == FP8_DTYPE:
                why = (
                    f"its scale {t.name + SCALE_SUFFIX!r} is missing"
                    if fp8 is not None
                    else "config.json has no quantization_config with quant_method 'fp8'"
                )
                raise ConversionError(f"{t.shard}: tensor {t.name!r} is {FP8_DTYPE} but {why}")
            out.append(t)
            continue
        if t.dtype != FP8_DTYPE:
            raise ConversionError(
                f"{scale.shard}: tensor {scale.name!r} scales {t.name!r}, which is {t.dtype}, not {FP8_DTYPE}"
            )
        if scale.dtype not in SCALE_DTYPES:
            raise ConversionError(
                f"{scale.shard}: tensor {scale.name!r} has dtype {scale.dtype}; FP8 scales must be "
                f"{', '.join(SCALE_DTYPES)}"
            )
        assert fp8 is not None  # there is a scale only with an fp8 config
        out.append(dataclasses.replace(t, scale=scale, scale_grid=_grid(t, scale, fp8.block)))
    return out


def scale_matrix(part: SourceTensor, scale_view: np.ndarray) -> np.ndarray:
    """The scale tensor's memory-mapped view as a 2-D [scale row, block column] array (source dtype)."""
    grid = part.scale_grid
    assert grid is not None
    return scale_view.reshape(-1, grid.scale_cols)


def dequantize_rows(
    part: SourceTensor, src: np.ndarray, scale_view: np.ndarray, idx: np.ndarray, out: np.ndarray
) -> int:
    """Fill float32 `out` with rows `idx` of the FP8 weight `src` ([rows, cols] uint8 view) times their scales.

    Only the scale rows these weight rows use are converted to float32, so memory stays one chunk.
    Returns the first row of `out` holding NaN/inf, or -1.
    """
    from quant.convert.tensors import _to_f32
    from quant.kernels.fused import fp8_rows_to_f32

    grid = part.scale_grid
    assert grid is not None
    if len(idx) == 0:
        return -1
    lo = grid.scale_row(int(idx.min()))
    hi = grid.scale_row(int(idx.max())) + 1
    scale = _to_f32(scale_matrix(part, scale_view)[lo:hi])
    return fp8_rows_to_f32(
        src, idx, E4M3_TO_F32, scale, lo, grid.rows, grid.scale_rows, grid.block_rows, grid.block_cols, out
    )
