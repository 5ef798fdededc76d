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
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 → bfloat16, returned as the uint16 bit patterns (inputs are finite)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + rounding) >> 16).astype(np.uint16)


def encode_tensor(x: np.ndarray, dtype: str) -> np.ndarray:
    """The array as stored on disk for a safetensors dtype ("F32", "F16" or "BF16")."""
    if dtype == "BF16":
        return f32_to_bf16_bits(x)
    return np.ascontiguousarray(x, dtype=SAFETENSORS_DTYPES[dtype])


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], dtype: str) -> int:
    """Write float tensors as one safetensors file in `dtype`; returns the payload size in bytes."""
    itemsize = np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        nbytes = tensors[name].size * itemsize
        header[name] = {
            "dtype": dtype,
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
                f.write(encode_tensor(flat[start : start + _SLICE], dtype).data)
    return offset


def write_weights(
    out_dir: Path, tensors: Mapping[str, np.ndarray], dtype: str, shards: int = 1
) -> list[Path]:
    """Write `model.safetensors`, or `model-0000i-of-0000n.safetensors` plus the index when `shards` > 1.

    Tensors are split into shards in name order by cumulative size, as transformers' `save_pretrained` does.
    """
    if shards == 1:
        path = out_dir / "model.safetensors"
        write_safetensors(path, tensors, dtype)
        return [path]
    itemsize = np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
    names = sorted(tensors)
    sizes = [tensors[n].size * itemsize for n in names]
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
