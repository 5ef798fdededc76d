"""Writes Hugging Face-layout checkpoint files (safetensors shards, index, JSON configs).

numpy has no bfloat16, so safetensors' numpy API cannot save BF16; the format is simple enough to write
the header ourselves, which also keeps the output byte-for-byte deterministic.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_SLICE = 1 << 22  # elements encoded at a time
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F8_E4M3": np.uint8}
# one dtype for every tensor, or one per tensor name
Dtypes = str | Mapping[str, str]


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 → bfloat16, returned as the uint16 bit patterns (inputs are finite)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + rounding) >> 16).astype(np.uint16)


def f32_to_e4m3_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 → float8 E4M3 ("fn": bias 7, 3 mantissa bits, max 448), as bytes.

    |x| must not exceed 448. Normal values keep 4 significant bits (np.rint rounds half to even); below
    2^-6 the subnormal step is 2^-9, and rounding up to 8 steps lands on code 0x08, the smallest normal.
    """
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    if a.size and not a.max() <= 448.0:
        raise ValueError("value out of the E4M3 range (|x| <= 448)")
    frac, exp = np.frexp(a)  # a = frac * 2**exp, frac in [0.5, 1); every step below is exact in float32
    sig = np.rint(frac * np.float32(16))  # 8..16
    exp = exp + (sig == 16)
    sig = np.where(sig == 16, 8, sig)
    normal = ((exp + 6).astype(np.int64) << 3) | (sig.astype(np.int64) - 8)
    code = np.where(a < np.float32(2.0**-6), np.rint(a * np.float32(512)).astype(np.int64), normal)
    return (code | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def encode_tensor(x: np.ndarray, dtype: str) -> np.ndarray:
    """The array as stored on disk for a safetensors dtype ("F32", "F16", "BF16" or "F8_E4M3")."""
    if dtype == "BF16":
        return f32_to_bf16_bits(x)
    if dtype == "F8_E4M3":
        return f32_to_e4m3_bits(x)
    return np.ascontiguousarray(x, dtype=SAFETENSORS_DTYPES[dtype])


def _dtype_of(dtype: Dtypes, name: str) -> str:
    return dtype if isinstance(dtype, str) else dtype[name]


def _nbytes(tensors: Mapping[str, np.ndarray], dtype: Dtypes, name: str) -> int:
    return tensors[name].size * np.dtype(SAFETENSORS_DTYPES[_dtype_of(dtype, name)]).itemsize


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], dtype: Dtypes) -> int:
    """Write float tensors as one safetensors file in `dtype` (one for all, or per name); returns the
    payload size in bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        nbytes = _nbytes(tensors, dtype, name)
        header[name] = {
            "dtype": _dtype_of(dtype, name),
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in sorted(tensors):  # encode in slices to keep peak memory down
            flat = tensors[name].reshape(-1)
            for start in range(0, flat.size, _SLICE):
                f.write(encode_tensor(flat[start : start + _SLICE], _dtype_of(dtype, name)).data)
    return offset


def write_weights(
    out_dir: Path, tensors: Mapping[str, np.ndarray], dtype: Dtypes, shards: int = 1
) -> list[Path]:
    """Write `model.safetensors`, or `model-0000i-of-0000n.safetensors` plus the index when `shards` > 1.

    Tensors are split into shards in name order by cumulative size, as transformers' `save_pretrained` does.
    """
    if shards == 1:
        path = out_dir / "model.safetensors"
        write_safetensors(path, tensors, dtype)
        return [path]
    names = sorted(tensors)
    sizes = [_nbytes(tensors, dtype, n) for n in names]
    budget = sum(sizes) / shards
    groups: list[list[str]] = [[]]
    filled = 0
    for name, size in zip(names, sizes, strict=True):
        if groups[-1] and filled + size > budget * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(name)
        filled += size
    if len(groups) != shards:
        raise ValueError(f"cannot split {len(names)} tensors into {shards} shards")
    paths, weight_map, total = [], {}, 0
    for i, group in enumerate(groups, start=1):
        path = out_dir / f"model-{i:05d}-of-{shards:05d}.safetensors"
        total += write_safetensors(path, {n: tensors[n] for n in group}, dtype)
        weight_map.update({n: path.name for n in group})
        paths.append(path)
    write_json(
        out_dir / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )
    return paths


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def added_tokens_decoder(tok: Any) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json's `added_tokens_decoder` for a `tokenizers.Tokenizer` whose added tokens are special."""
    return {
        str(tok.token_to_id(t.content)): {
            "content": t.content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in tok.get_added_tokens_decoder().values()
    }
