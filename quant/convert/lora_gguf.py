"""A PEFT adapter to a llama.cpp LoRA GGUF, the file `convert_lora_to_gguf.py` writes.

KVs, in that converter's order: general.architecture (the base's), general.type = "adapter", adapter.type =
"lora", the adapter folder's general.* metadata (model card, folder name), adapter.lora.alpha, general.quantization_version. Per adapted tensor T: `T.lora_a` (numpy
[r, in]; token_embd's transposed to [vocab, r]) then `T.lora_b` ([out, r]), in --type (F32, F16, BF16 or
Q8_0, which falls back to F16 for rows not a multiple of 32, as gguf-py's quantiser does); mergekit's 1-D
norms as F32. Adapter tensors are small (rank x width), so each is built whole in memory.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from quant.convert.archs.base import param_counts
from quant.convert.checkpoint import parse_hparams, read_config
from quant.convert.layout import TensorLayout, _header_bytes, _pad
from quant.convert.lora import Adapter, LoraPair, read_adapter
from quant.convert.type_rules import row_nbytes
from quant.errors import ConversionError
from quant.outputs import claim_output

ADAPTER_TYPES = ("F32", "F16", "BF16", "Q8_0")


@dataclass(frozen=True)
class AdapterResult:
    path: Path
    type: str
    bytes: int
    seconds: float
    n_tensors: int
    n_pairs: int
    alpha: float
    base: str  # general.architecture

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "type": self.type,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "n_tensors": self.n_tensors,
            "n_pairs": self.n_pairs,
            "alpha": self.alpha,
            "architecture": self.base,
        }


def load_adapter(adapter_dir: str | Path, base: str | Path) -> Adapter:
    """Read `adapter_dir` against the base checkpoint folder `base` (its config.json is enough)."""
    base = Path(base)
    if not base.is_dir():
        raise ConversionError(f"{base}: base model not found (a checkpoint folder with config.json)")
    config = read_config(base)
    return read_adapter(adapter_dir, parse_hparams(base, config))


def _tensor_type(qtype: str, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return "F32"
    if qtype == "Q8_0" and shape[-1] % 32:
        return "F16"
    return qtype


def _factors(adapter: Adapter) -> list[tuple[str, np.ndarray]]:
    """(name, float32 array) of every output tensor, in file order (matrices read from the adapter file)."""
    maps: dict[Path, np.ndarray] = {}

    def view(path: Path) -> np.ndarray:
        if path not in maps:
            maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        return maps[path]

    out: list[tuple[str, np.ndarray]] = []
    for p in adapter.pairs:
        a, b = p.matrices(view)
        if p.embedding:
            a = np.ascontiguousarray(a.T)  # llama.cpp's build_inp_embd reads rows of A^T
        out += [(p.gguf_name + ".lora_a", a), (p.gguf_name + ".lora_b", b)]
    from quant.convert.tensors import _to_f32

    for name, t in adapter.norms:
        out.append((name, _to_f32(t.array(view(t.shard)))))
    return out


def _param_shapes(tensors: list[tuple[str, np.ndarray]]) -> list[tuple[str, tuple[int, ...]]]:
    """What gguf-py's parameter count sees: a lora_b counts as [.., out, in] (its lora_a's last dim)."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    last_a: tuple[int, ...] = ()
    for name, arr in tensors:
        if name.endswith(".lora_a"):
            last_a = arr.shape
            continue
        shape = (*arr.shape[:-1], last_a[-1]) if name.endswith(".lora_b") else arr.shape
        shapes.append((name, shape))
    return shapes


def _general(adapter: Adapter, tensors: list[tuple[str, np.ndarray]]):
    """The adapter folder's general.* metadata as llama.cpp's converter gathers it: the parameter count is
    negated (it counts the adapted base weights), so no size label is derived from it."""
    from quant.convert.metadata import load_general

    total = param_counts(_param_shapes(tensors))[0]
    hf_params: dict[str, Any] = {}
    cfg = adapter.path / "config.json"
    with contextlib.suppress(OSError, UnicodeDecodeError, json.JSONDecodeError):
        loaded = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}
        hf_params = loaded if isinstance(loaded, dict) else {}
    return load_general(adapter.path, hf_params, n_params=-total)


def adapter_header(
    adapter: Adapter, qtype: str, tensors: list[tuple[str, np.ndarray]]
) -> tuple[bytes, list[TensorLayout]]:
    """Header bytes (padded to the data section) and the tensor layouts of the adapter GGUF."""
    w = gguf.GGUFWriter(None, adapter.arch_name)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    _general(adapter, tensors).write_to(w)
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    layouts: list[TensorLayout] = []
    offset = 0
    for name, arr in tensors:
        ttype = _tensor_type(qtype, arr.shape)
        rows = int(np.prod(arr.shape[:-1])) if arr.ndim > 1 else 1
        nbytes = rows * row_nbytes(ttype, arr.shape[-1])
        layouts.append(TensorLayout(name, arr.shape, tuple(reversed(arr.shape)), ttype, nbytes, offset))
        offset += _pad(nbytes)
    return _header_bytes(w, layouts), layouts


def convert_adapter(
    adapter_dir: str | Path,
    base: str | Path,
    out: str | Path | None = None,
    qtype: str = "F32",
    *,
    force: bool = False,
    threads: int | None = None,
) -> AdapterResult:
    """Write the llama.cpp LoRA GGUF of the PEFT adapter in `adapter_dir` for the base model `base`."""
    from quant.convert.writer import encode

    t0 = time.perf_counter()
    qtype = qtype.upper()
    if qtype not in ADAPTER_TYPES:
        raise ConversionError(
            f"adapter type {qtype} is not supported; choose one of {', '.join(ADAPTER_TYPES)}"
        )
    adapter = load_adapter(adapter_dir, base)
    tensors = _factors(adapter)
    header, layouts = adapter_header(adapter, qtype, tensors)
    if out is None or Path(out).is_dir():  # llama.cpp's default name, e.g. My-Adapter-F16-LoRA.gguf
        meta = _general(adapter, tensors).metadata
        stem = gguf.naming_convention(
            meta.name, meta.basename, meta.finetune, meta.version, meta.size_label, qtype, model_type="LoRA"
        )
        out = (Path(out) if out is not None else Path.cwd()) / f"{stem}.gguf"
    with claim_output(out, force=force, inputs=adapter.files) as claim:
        with claim.create_file() as f:
            f.write(header)
            for (name, arr), lay in zip(tensors, layouts, strict=True):
                if not np.isfinite(arr).all():
                    raise ConversionError(
                        f"{adapter.files[0]}: tensor {name} contains NaN or infinite values"
                    )
                rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(1, -1)
                data = encode(np.ascontiguousarray(rows, dtype=np.float32), lay.type, threads, name)
                raw = np.ascontiguousarray(data).tobytes()
                f.write(raw + b"\0" * (_pad(len(raw)) - len(raw)))
            size = f.tell()
        claim.commit()
    return AdapterResult(
        path=claim.final,
        type=qtype,
        bytes=size,
        seconds=time.perf_counter() - t0,
        n_tensors=len(layouts),
        n_pairs=len(adapter.pairs),
        alpha=adapter.alpha,
        base=adapter.arch_name,
    )


__all__ = ["ADAPTER_TYPES", "AdapterResult", "LoraPair", "adapter_header", "convert_adapter", "load_adapter"]
