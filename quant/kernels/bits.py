"""Scalar helpers for Numba kernels that must reproduce C float32 semantics bit for bit.

Numba has no scalar bit reinterpretation and no fp16 scalar type, and its float->int casts of NaN/inf are
undefined; these helpers give the exact behaviour of ggml's C code on x86-64 (ggml/src/ggml-impl.h and ggml-quants.c; docs/quant-types.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypedDict, cast

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

_INT_MIN = -2147483648


class JitOptions(TypedDict):
    """The keys of JIT, typed so that `njit(**JIT)` type-checks against numba's signature."""

    cache: bool
    fastmath: bool
    error_model: Literal["python", "numpy"]
    nogil: bool


JIT: JitOptions = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}
"""The options of every kernel: cached, no fastmath (no reassociation, no FMA), and C's float semantics for
division by zero (inf/NaN, not an exception)."""

FLT_MAX = np.float32(3.4028234663852886e38)
"""C's FLT_MAX, where ggml's searches start their best error."""


@intrinsic
def _f32_bits(typingctx, f):
    """The IEEE binary32 bits of a float32 as uint32 (C's memcpy/union pun)."""
    if f != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


# Kernels call an intrinsic without numba's typing context, which numba supplies: the stubs' signature would
# demand it, so the kernels see the intrinsics through the signature they are called with.
f32_bits = cast("Callable[[np.float32], np.uint32]", _f32_bits)


@intrinsic
def _bits_f32(typingctx, u):
    """The float32 whose IEEE binary32 bits are the low 32 bits of the integer `u`."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if u.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif u.bitwidth < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(u), codegen


bits_f32 = cast("Callable[[int | np.integer], np.float32]", _bits_f32)


@njit(cache=True, inline="always")
def f32_to_f16(f: np.float32) -> np.uint16:
    """fp32 -> fp16 bits, round to nearest even, overflow to inf, NaN to 0x7E00 with sign (ggml's rule)."""
    u = f32_bits(np.float32(f))
    sign = np.uint32((u >> np.uint32(16)) & np.uint32(0x8000))
    a = u & np.uint32(0x7FFFFFFF)
    if a > np.uint32(0x7F800000):
        return np.uint16(sign | np.uint32(0x7E00))
    if a >= np.uint32(0x477FF000):  # >= 65520: rounds to inf (and inf itself)
        return np.uint16(sign | np.uint32(0x7C00))
    if a >= np.uint32(0x38800000):  # normal fp16 range: rebias exponent, round away 13 mantissa bits
        q = (a - np.uint32(0x38000000)) >> np.uint32(13)
        rem = a & np.uint32(0x1FFF)
        if rem > np.uint32(0x1000) or (rem == np.uint32(0x1000) and (q & np.uint32(1)) != 0):
            q += np.uint32(1)
        return np.uint16(sign | q)
    e = a >> np.uint32(23)
    if e < np.uint32(102):  # below half the smallest fp16 subnormal: zero
        return np.uint16(sign)
    mant = (a & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
    shift = np.uint32(126) - e  # 14..24
    q = mant >> shift
    rem = mant & ((np.uint32(1) << shift) - np.uint32(1))
    half = np.uint32(1) << (shift - np.uint32(1))
    if rem > half or (rem == half and (q & np.uint32(1)) != 0):
        q += np.uint32(1)
    return np.uint16(sign | q)


@njit(cache=True, inline="always")
def f16_to_f32(h) -> np.float32:
    """fp16 bits -> float32, exact for numbers (ggml_compute_fp16_to_fp32)."""
    h32 = np.uint32(h)
    sign = (h32 & np.uint32(0x8000)) << np.uint32(16)
    exp = (h32 >> np.uint32(10)) & np.uint32(0x1F)
    mant = h32 & np.uint32(0x3FF)
    if exp == np.uint32(0):
        v = np.float32(mant) * np.float32(5.9604644775390625e-08)  # mant * 2^-24, exact
        return -v if sign != np.uint32(0) else v
    if exp == np.uint32(31):  # inf, or NaN made quiet as ggml's float arithmetic conversion does
        quiet = np.uint32(0x400000) if mant != np.uint32(0) else np.uint32(0)
        return bits_f32(sign | np.uint32(0x7F800000) | quiet | (mant << np.uint32(13)))
    return bits_f32(sign | ((exp + np.uint32(112)) << np.uint32(23)) | (mant << np.uint32(13)))


@njit(cache=True, inline="always")
def f32_to_bf16(f: np.float32) -> np.uint16:
    """ggml_compute_fp32_to_bf16: round to nearest even (may carry into inf); NaN forced quiet."""
    u = f32_bits(np.float32(f))
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.uint16((u >> np.uint32(16)) | np.uint32(0x40))
    return np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@njit(inline="always", **JIT)
def nearest_int(f: np.float32) -> np.int32:
    """ggml's nearest_int: round half to even through the 1.5*2^23 trick, garbage-in garbage-out like C."""
    v = f + np.float32(12582912.0)
    return np.int32(f32_bits(v) & np.uint32(0x007FFFFF)) - np.int32(0x00400000)


@njit(inline="always", **JIT)
def as_i8(u) -> np.int32:
    """The low byte of an integer read as C's int8_t."""
    v = np.int32(u) & np.int32(0xFF)
    return v - 256 if v > 127 else v


@njit(cache=True, inline="always")
def cvt_i32(v: np.float32) -> np.int64:
    """C's float->int conversion as x86 cvttss2si does it: truncate; NaN or out of int32 range gives INT_MIN.

    C code that casts to int8_t/uint8_t keeps the low byte of this value.
    """
    if v > np.float32(-2147483904.0) and v < np.float32(2147483648.0):
        return np.int64(v)
    return np.int64(_INT_MIN)


@njit(cache=True, inline="always")
def roundf(v: np.float32) -> np.float32:
    """C roundf: half away from zero, exact for every float32 (no `floor(x + 0.5)` double rounding)."""
    a = np.float32(abs(v))
    r = np.float32(np.floor(a))
    if a - r >= np.float32(0.5):
        r += np.float32(1.0)
    return -r if v < np.float32(0.0) else r


@njit(cache=True)
def first_row_with_bad_f16(h: np.ndarray, stride: int, offsets: tuple) -> int:
    """First row of `h` (uint16 view [rows, row_bytes // 2]) with an inf/NaN fp16 at one of `offsets` in any block.

    `stride` is the block size in uint16 units; this is the scale check of ggml_validate_row_data.
    """
    rows, n = h.shape
    for r in range(rows):
        for b in range(0, n, stride):
            for o in offsets:
                if (h[r, b + o] & np.uint16(0x7C00)) == np.uint16(0x7C00):
                    return r
    return -1


@njit(cache=True, parallel=True)
def first_row_with_all_ones(h: np.ndarray, mask) -> int:
    """First row of `h` [rows, cols] with an element whose `mask` bits are all set, or -1.

    With the exponent mask of a float format this finds inf/NaN elements (fp16 0x7C00, bf16 0x7F80, f32
    0x7F800000): ggml_validate_row_data's check for F16, BF16 and F32 rows, in one vectorised parallel pass.
    """
    rows, cols = h.shape
    bad = np.zeros(rows, np.bool_)
    for r in prange(rows):
        flag = False
        for j in range(cols):
            flag |= (h[r, j] & mask) == mask
        bad[r] = flag
    for r in range(rows):
        if bad[r]:
            return r
    return -1


# ------------------------------------------------------------------------- little-endian fields of a block row
@njit(inline="always", **JIT)
def store_f16(o, off, h) -> None:
    """Store fp16 bits `h` (or any uint16, such as a packed grid index) at o[off:off+2] (o: a uint8 row)."""
    o[off] = np.uint8(h & 0xFF)
    o[off + 1] = np.uint8((h >> 8) & 0xFF)


@njit(inline="always", **JIT)
def load_f16(o, off) -> np.float32:
    """The fp16 at o[off:off+2] as float32."""
    return f16_to_f32(np.int64(o[off]) | (np.int64(o[off + 1]) << 8))


@njit(inline="always", **JIT)
def store_u32(o, off, v) -> None:
    for k in range(4):
        o[off + k] = np.uint8((v >> (8 * k)) & 0xFF)


@njit(inline="always", **JIT)
def load_u32(o, off) -> np.uint32:
    return (
        np.uint32(o[off])
        | (np.uint32(o[off + 1]) << np.uint32(8))
        | (np.uint32(o[off + 2]) << np.uint32(16))
        | (np.uint32(o[off + 3]) << np.uint32(24))
    )
