"""Read a GGUF file's header into a `GGUFSummary` (what `hubtui inspect`, sizing and the runner need).

The header is walked here, with bounds checks, so every problem in a truncated or corrupt file becomes a
one-line `GGUFError` naming the file and what is wrong. gguf-py's `GGUFReader` is not used: it makes numpy
views of every vocabulary string, which for a Llama 3 file (128k tokens, 280k merges) costs about 700 MiB
and tens of seconds (Llama 4's 202k tokens and 440k merges, longer still); here numeric arrays are one
`frombuffer` and strings one decode each, a fraction of a second and little memory.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from quant.errors import GGUFError
from quant.gguf_import import gguf
from quant.inputs import not_regular

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 8
_T = TypeVar("_T")

# Fixed byte sizes of the scalar GGUF value types (STRING and ARRAY are variable).
_SCALAR_SIZES = {
    gguf.GGUFValueType.UINT8: 1,
    gguf.GGUFValueType.INT8: 1,
    gguf.GGUFValueType.UINT16: 2,
    gguf.GGUFValueType.INT16: 2,
    gguf.GGUFValueType.UINT32: 4,
    gguf.GGUFValueType.INT32: 4,
    gguf.GGUFValueType.FLOAT32: 4,
    gguf.GGUFValueType.BOOL: 1,
    gguf.GGUFValueType.UINT64: 8,
    gguf.GGUFValueType.INT64: 8,
    gguf.GGUFValueType.FLOAT64: 8,
}

# numpy dtypes of the scalar GGUF value types (little-endian, as GGUF stores them)
GGUF_NUMPY_DTYPES = {
    gguf.GGUFValueType.UINT8: "<u1",
    gguf.GGUFValueType.INT8: "<i1",
    gguf.GGUFValueType.UINT16: "<u2",
    gguf.GGUFValueType.INT16: "<i2",
    gguf.GGUFValueType.UINT32: "<u4",
    gguf.GGUFValueType.INT32: "<i4",
    gguf.GGUFValueType.FLOAT32: "<f4",
    gguf.GGUFValueType.BOOL: "?",
    gguf.GGUFValueType.UINT64: "<u8",
    gguf.GGUFValueType.INT64: "<i8",
    gguf.GGUFValueType.FLOAT64: "<f8",
}

_SPECIAL_ID_KEY = re.compile(r"^tokenizer\.ggml\.(\w+)_token_id$")
_LAYER_NAME = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class TensorSummary:
    """One tensor as stored: `shape` in ggml order (fastest-varying dimension first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: str
    n_elements: int
    n_bytes: int
    offset: int  # absolute offset of the tensor's data in the file

    @property
    def layer(self) -> int | None:
        """The `blk.N` index, or None for input/output tensors (token_embd, output, output_norm, ...)."""
        m = _LAYER_NAME.match(self.name)
        return int(m.group(1)) if m else None


@dataclass
class GGUFSummary:
    """Everything about a GGUF that can be known without touching its tensor data."""

    path: Path
    file_size: int
    version: int
    architecture: str
    name: str | None
    file_type: str | None  # e.g. "Q4_K_M", from general.file_type
    tensors: list[TensorSummary]
    kv: dict[str, Any] = field(repr=False)
    data_offset: int = 0

    # -- header-derived facts -------------------------------------------------------------------

    @property
    def is_adapter(self) -> bool:
        """A LoRA adapter (general.type = adapter), not a model: it runs on top of a base model."""
        return self.kv.get("general.type") == "adapter"

    @property
    def adapter_base(self) -> str | None:
        """The base model an adapter names (general.base_model.0.*, from its model card), if any."""
        return base_model_of(self.kv)

    @property
    def rope(self) -> dict[str, Any]:
        """RoPE as llama.cpp will apply it: base, scaling (yarn/linear) and llama 4 attention temperature."""
        out: dict[str, Any] = {"freq_base": self.arch_value("rope.freq_base")}
        if (kind := self.arch_value("rope.scaling.type")) is not None:
            out["scaling"] = kind
            out["factor"] = self.arch_value("rope.scaling.factor")
            out["original_context"] = _opt_int(self.arch_value("rope.scaling.original_context_length"))
        if (temperature := self.arch_value("attention.temperature_scale")) is not None:
            out["attn_temperature_scale"] = temperature
        return out

    @property
    def vision(self) -> dict[str, Any] | None:
        """A vision projector's (mmproj, architecture "clip") tower and projector type; None otherwise."""
        if self.kv.get("clip.has_vision_encoder") is None:
            return None
        return {
            "projector_type": self.kv.get("clip.projector_type"),
            "block_count": _opt_int(self.kv.get("clip.vision.block_count")),
            "embedding_length": _opt_int(self.kv.get("clip.vision.embedding_length")),
            "head_count": _opt_int(self.kv.get("clip.vision.attention.head_count")),
            "image_size": _opt_int(self.kv.get("clip.vision.image_size")),
            "patch_size": _opt_int(self.kv.get("clip.vision.patch_size")),
            "projection_dim": _opt_int(self.kv.get("clip.vision.projection_dim")),
        }

    def arch_value(self, key: str, default: Any = None) -> Any:
        """`<arch>.<key>` from the KVs (e.g. "block_count")."""
        return self.kv.get(f"{self.architecture}.{key}", default)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def n_active_params(self) -> int:
        """Parameters one token runs through (a mixture of experts uses expert_used_count experts)."""
        from quant.convert.archs import active_params

        shapes = ((t.name, tuple(reversed(t.shape))) for t in self.tensors)
        return active_params(shapes, int(self.hparams["n_expert_used"] or 0))

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def type_counts(self) -> dict[str, int]:
        """Tensor count per ggml type, most frequent first."""
        return dict(Counter(t.ggml_type for t in self.tensors).most_common())

    @property
    def context_length(self) -> int | None:
        return _opt_int(self.arch_value("context_length"))

    @property
    def n_layer(self) -> int | None:
        return _opt_int(self.arch_value("block_count"))

    @property
    def n_vocab(self) -> int | None:
        value = self.arch_value("vocab_size")
        if value is not None:
            return int(value)
        tokens = self.kv.get(gguf.Keys.Tokenizer.LIST)
        return len(tokens) if tokens is not None else None

    @property
    def hparams(self) -> dict[str, int | float | None]:
        """The hyperparameters llama.cpp sizes buffers with, under the names the planner uses."""
        n_embd = _opt_int(self.arch_value("embedding_length"))
        n_head = _opt_int(self.arch_value("attention.head_count"))
        n_head_kv = _opt_int(self.arch_value("attention.head_count_kv", n_head))
        head_dim = _opt_int(self.arch_value("attention.key_length"))
        if head_dim is None and n_embd and n_head:
            head_dim = n_embd // n_head
        head_dim_v = _opt_int(self.arch_value("attention.value_length", head_dim))
        return {
            "n_layer": self.n_layer,
            "n_ctx_train": self.context_length,
            "n_embd": n_embd,
            "n_ff": _opt_int(self.arch_value("feed_forward_length")),
            "n_head": n_head,
            "n_head_kv": n_head_kv,
            "head_dim": head_dim,
            "head_dim_v": head_dim_v,
            "n_vocab": self.n_vocab,
            "n_expert": _opt_int(self.arch_value("expert_count")),
            "n_expert_used": _opt_int(self.arch_value("expert_used_count")),
            "rope_freq_base": self.arch_value("rope.freq_base"),
        }

    @property
    def tokenizer_model(self) -> str | None:
        return self.kv.get(gguf.Keys.Tokenizer.MODEL)

    @property
    def tokenizer_pre(self) -> str | None:
        return self.kv.get(gguf.Keys.Tokenizer.PRE)

    @property
    def special_tokens(self) -> dict[str, dict[str, Any]]:
        """`{"bos": {"id": 1, "text": "<|im_start|>"}, ...}` for every `tokenizer.ggml.*_token_id`."""
        tokens = self.kv.get(gguf.Keys.Tokenizer.LIST) or []
        out: dict[str, dict[str, Any]] = {}
        for key, value in self.kv.items():
            m = _SPECIAL_ID_KEY.match(key)
            if m is None:
                continue
            token_id = int(value)
            text = tokens[token_id] if 0 <= token_id < len(tokens) else None
            out[m.group(1)] = {"id": token_id, "text": text}
        return out

    @property
    def chat_template(self) -> str | None:
        return self.kv.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (large arrays such as the vocabulary are summarised by length)."""
        return {
            "path": str(self.path),
            "file_size": self.file_size,
            "gguf_version": self.version,
            "architecture": self.architecture,
            "name": self.name,
            "file_type": self.file_type,
            "n_params": self.n_params,
            "n_active_params": self.n_active_params,
            "n_tensors": len(self.tensors),
            "tensor_bytes": self.tensor_bytes,
            "adapter": (
                {
                    "type": self.kv.get("adapter.type"),
                    "alpha": self.kv.get("adapter.lora.alpha"),
                    "base": self.adapter_base,
                }
                if self.is_adapter
                else None
            ),
            "type_counts": self.type_counts,
            "context_length": self.context_length,
            "hparams": self.hparams,
            "rope": self.rope,
            "vision": self.vision,
            "tokenizer": {
                "model": self.tokenizer_model,
                "pre": self.tokenizer_pre,
                "n_tokens": len(self.kv.get(gguf.Keys.Tokenizer.LIST) or []),
                "special_tokens": self.special_tokens,
                "chat_template": self.chat_template is not None,
            },
        }


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def file_type_name(value: int | None) -> str | None:
    """`general.file_type` as the type name users know ("Q4_K_M", "F16", "F32")."""
    if value is None:
        return None
    try:
        member = gguf.LlamaFileType(int(value))
    except ValueError:
        return f"unknown({value})"
    return "F32" if member is gguf.LlamaFileType.ALL_F32 else member.name.removeprefix("MOSTLY_")


class _HeaderWalker:
    """Walks the GGUF header with bounds checks and decodes every KV and tensor info on the way.

    Values come out as gguf-py's `ReaderField.contents()` gives them (str, int, float, bool, lists of
    those), without building its per-item numpy views (tests/test_inspect.py compares the two readers).
    """

    def __init__(self, path: Path, buf: mmap.mmap | bytes) -> None:
        self.path = path
        self.buf = buf
        self.size = len(buf)
        self.pos = 0

    def fail(self, what: str) -> GGUFError:
        return GGUFError(f"{self.path}: {what}")

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > self.size:
            raise self.fail(f"truncated GGUF header: {what} at byte {start} runs past the end of the file")
        self.pos = start + n
        return start

    def u32(self, what: str) -> int:
        return struct.unpack_from("<I", self.buf, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack_from("<Q", self.buf, self.take(8, what))[0]

    def string(self, what: str) -> bytes:
        n = self.u64(f"{what} length")
        start = self.take(n, what)
        return bytes(self.buf[start : start + n])

    def value(self, vtype: int, what: str) -> Any:
        """Decode one value: a Python scalar, a str, or a list of them for an array. Strings that are not
        valid UTF-8 are decoded with replacement characters: llama.cpp loads such files, so they are read."""
        try:
            kind = gguf.GGUFValueType(vtype)
        except ValueError:
            raise self.fail(f"{what}: unknown GGUF value type {vtype}") from None
        if kind is gguf.GGUFValueType.STRING:
            return self.string(what).decode("utf-8", errors="replace")
        if kind is gguf.GGUFValueType.ARRAY:
            item_type = self.u32(f"{what} item type")
            count = self.u64(f"{what} item count")
            try:
                item = gguf.GGUFValueType(item_type)
            except ValueError:
                raise self.fail(f"{what}: unknown GGUF value type {item_type}") from None
            if item in _SCALAR_SIZES:
                start = self.take(count * _SCALAR_SIZES[item], what)
                return np.frombuffer(self.buf, GGUF_NUMPY_DTYPES[item], count, start).tolist()
            if count > self.size - self.pos:  # every item needs at least one byte
                raise self.fail(
                    f"truncated GGUF header: {what} claims {count} items, more than the file holds"
                )
            return [self.value(item_type, what) for _ in range(count)]
        start = self.take(_SCALAR_SIZES[kind], what)
        return np.frombuffer(self.buf, GGUF_NUMPY_DTYPES[kind], 1, start).tolist()[0]

    def preamble(self) -> tuple[int, int, int]:
        """(version, tensor count, KV count), checked against the file's size."""
        if self.size < 4 or bytes(self.buf[:4]) != _MAGIC:
            raise self.fail("not a GGUF file (no GGUF magic at byte 0)")
        self.pos = 4
        version = self.u32("version")
        if version not in _SUPPORTED_VERSIONS:
            raise self.fail(f"unsupported GGUF version {version} (supported: 2, 3)")
        n_tensors = self.u64("tensor count")
        n_kv = self.u64("KV count")
        if n_tensors > self.size or n_kv > self.size:
            raise self.fail(
                f"truncated or corrupt GGUF header: {n_tensors} tensors, {n_kv} KVs in a {self.size}-byte file"
            )
        return version, n_tensors, n_kv

    def leading_kvs(self, stop_prefix: str) -> dict[str, Any]:
        """The KVs before the first key starting with `stop_prefix` (all of them if none does)."""
        _version, _n_tensors, n_kv = self.preamble()
        kv: dict[str, Any] = {}
        for i in range(n_kv):
            key = self.string(f"key of KV #{i}").decode("utf-8", "replace")
            if key.startswith(stop_prefix):
                break
            kv[key] = self.value(self.u32(f"type of KV {key!r}"), f"KV {key!r}")
        return kv

    def walk(self) -> tuple[int, dict[str, Any], list[TensorSummary], int]:
        """(version, KVs, tensors, data offset), every offset checked against the file's size."""
        version, n_tensors, n_kv = self.preamble()
        kv: dict[str, Any] = {}
        for i in range(n_kv):
            key = self.string(f"key of KV #{i}").decode("utf-8", "replace")
            kv[key] = self.value(self.u32(f"type of KV {key!r}"), f"KV {key!r}")
        alignment = kv.get(gguf.Keys.General.ALIGNMENT, _DEFAULT_ALIGNMENT)
        if (
            not isinstance(alignment, int)
            or isinstance(alignment, bool)
            or alignment <= 0
            or alignment & (alignment - 1)
        ):
            raise self.fail(f"general.alignment = {alignment} is not a power of two")
        infos = []
        for i in range(n_tensors):
            name = self.string(f"name of tensor #{i}").decode("utf-8", "replace")
            n_dims = self.u32(f"tensor {name!r} dimension count")
            if not 0 < n_dims <= _MAX_DIMS:
                raise self.fail(f"tensor {name!r} has {n_dims} dimensions")
            dims = tuple(self.u64(f"tensor {name!r} shape") for _ in range(n_dims))
            raw_type = self.u32(f"tensor {name!r} type")
            offset = self.u64(f"tensor {name!r} offset")
            try:
                qtype = gguf.GGMLQuantizationType(raw_type)
            except ValueError:
                raise self.fail(f"tensor {name!r} has unknown ggml type {raw_type}") from None
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
            n_elements = 1
            for d in dims:
                n_elements *= d
            if dims[0] % block:
                raise self.fail(
                    f"tensor {name!r}: row length {dims[0]} is not a multiple of {qtype.name}'s block {block}"
                )
            infos.append((name, dims, qtype.name, n_elements, n_elements // block * type_size, offset))
        data_start = -(-self.pos // alignment) * alignment
        tensors = []
        for name, dims, type_name, n_elements, nbytes, offset in infos:
            end = data_start + offset + nbytes
            if end > self.size:
                raise self.fail(
                    f"truncated GGUF: tensor {name!r} ends at byte {end} but the file has {self.size} bytes"
                )
            tensors.append(TensorSummary(name, dims, type_name, n_elements, nbytes, data_start + offset))
        return version, kv, tensors, data_start


def _walk(path: Path) -> tuple[int, dict[str, Any], list[TensorSummary], int]:
    return _with_walker(path, _HeaderWalker.walk)


def _with_walker(path: Path, read: Callable[[_HeaderWalker], _T]) -> _T:
    why = not_regular(path)
    if why is not None:
        raise GGUFError(f"{path}: {why}")
    try:
        with path.open("rb") as fh:
            if path.stat().st_size == 0:
                raise GGUFError(f"{path}: empty file, not a GGUF")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return read(_HeaderWalker(path, buf))
    except IsADirectoryError:
        raise GGUFError(f"{path}: is a directory, not a GGUF file") from None
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file") from None
    except PermissionError:
        raise GGUFError(f"{path}: permission denied") from None


def base_model_of(kv: dict[str, Any]) -> str | None:
    """The first base model a GGUF names (general.base_model.0.*, from the model card) as a repo id, if any."""
    for key in ("general.base_model.0.repo_url", "general.base_model.0.name"):
        value = kv.get(key)
        if isinstance(value, str) and value:
            if key.endswith("repo_url"):
                parts = value.rstrip("/").split("/")
                return "/".join(parts[-2:]) if len(parts) >= 2 else value
            org = kv.get("general.base_model.0.organization")
            return f"{org}/{value}" if isinstance(org, str) and org else value
    return None


def read_gguf_general(path: str | Path) -> dict[str, Any]:
    """The header's KVs up to the vocabulary: `general.*`, `adapter.*` and the hparams, without decoding the
    tokenizer's arrays (what a listing of many files needs: is it an adapter, what base, what type)."""
    return _with_walker(Path(path), lambda walker: walker.leading_kvs("tokenizer."))


def read_gguf_summary(path: str | Path) -> GGUFSummary:
    """Read `path`'s header. Raises `GGUFError` naming the file if it is not a complete GGUF."""
    path = Path(path)
    version, kv, tensors, data_offset = _walk(path)
    arch = kv.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str):
        raise GGUFError(f"{path}: GGUF has no general.architecture")
    return GGUFSummary(
        path=path,
        file_size=path.stat().st_size,
        version=version,
        architecture=arch,
        name=kv.get(gguf.Keys.General.NAME),
        file_type=file_type_name(kv.get(gguf.Keys.General.FILE_TYPE)),
        tensors=tensors,
        kv=kv,
        data_offset=data_offset,
    )
