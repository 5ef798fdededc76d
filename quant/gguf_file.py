"""Read a GGUF file's header into a `GGUFSummary` (what `hubtui inspect`, sizing and the tests need).

gguf-py's `GGUFReader` does the decoding, but on a truncated or corrupt file it fails deep inside
numpy (reshape/view errors). So the header is first walked here with bounds checks, and every problem
becomes a one-line `GGUFError` naming the file and what is wrong.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from quant.errors import GGUFError

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 8

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

    def arch_value(self, key: str, default: Any = None) -> Any:
        """`<arch>.<key>` from the KVs (e.g. "block_count")."""
        return self.kv.get(f"{self.architecture}.{key}", default)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

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
            "n_tensors": len(self.tensors),
            "tensor_bytes": self.tensor_bytes,
            "type_counts": self.type_counts,
            "context_length": self.context_length,
            "hparams": self.hparams,
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
    """Walks the GGUF header with bounds checks; only collects what validation needs."""

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

    def skip_value(self, vtype: int, what: str) -> Any:
        """Skip one value; return it when it is a scalar or a string (arrays: None)."""
        try:
            kind = gguf.GGUFValueType(vtype)
        except ValueError:
            raise self.fail(f"{what}: unknown GGUF value type {vtype}") from None
        if kind is gguf.GGUFValueType.STRING:
            return self.string(what)
        if kind is gguf.GGUFValueType.ARRAY:
            item_type = self.u32(f"{what} item type")
            count = self.u64(f"{what} item count")
            if item_type in _SCALAR_SIZES:
                self.take(count * _SCALAR_SIZES[gguf.GGUFValueType(item_type)], what)
            else:
                if count > self.size - self.pos:  # every item needs at least one byte
                    raise self.fail(
                        f"truncated GGUF header: {what} claims {count} items, more than the file holds"
                    )
                for _ in range(count):
                    self.skip_value(item_type, what)
            return None
        start = self.take(_SCALAR_SIZES[kind], what)
        if kind is gguf.GGUFValueType.UINT32:
            return struct.unpack_from("<I", self.buf, start)[0]
        return None

    def walk(self) -> None:
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
        alignment = _DEFAULT_ALIGNMENT
        for i in range(n_kv):
            key = self.string(f"key of KV #{i}").decode("utf-8", "replace")
            value = self.skip_value(self.u32(f"type of KV {key!r}"), f"KV {key!r}")
            if key == gguf.Keys.General.ALIGNMENT and isinstance(value, int):
                if value == 0 or value & (value - 1):
                    raise self.fail(f"general.alignment = {value} is not a power of two")
                alignment = value
        infos = []
        for i in range(n_tensors):
            name = self.string(f"name of tensor #{i}").decode("utf-8", "replace")
            n_dims = self.u32(f"tensor {name!r} dimension count")
            if not 0 < n_dims <= _MAX_DIMS:
                raise self.fail(f"tensor {name!r} has {n_dims} dimensions")
            dims = [self.u64(f"tensor {name!r} shape") for _ in range(n_dims)]
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
            infos.append((name, offset, n_elements // block * type_size))
        data_start = -(-self.pos // alignment) * alignment
        for name, offset, nbytes in infos:
            end = data_start + offset + nbytes
            if end > self.size:
                raise self.fail(
                    f"truncated GGUF: tensor {name!r} ends at byte {end} but the file has {self.size} bytes"
                )


def _validate(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            if path.stat().st_size == 0:
                raise GGUFError(f"{path}: empty file, not a GGUF")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                _HeaderWalker(path, buf).walk()
    except IsADirectoryError:
        raise GGUFError(f"{path}: is a directory, not a GGUF file") from None
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file") from None
    except PermissionError:
        raise GGUFError(f"{path}: permission denied") from None


def read_gguf_summary(path: str | Path) -> GGUFSummary:
    """Read `path`'s header. Raises `GGUFError` naming the file if it is not a complete GGUF."""
    path = Path(path)
    _validate(path)
    try:
        reader = gguf.GGUFReader(path, "r")
    except (ValueError, IndexError, KeyError, struct.error, OSError) as exc:
        raise GGUFError(
            f"{path}: corrupt GGUF: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    kv: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kv[key] = fld.contents()
    tensors = [
        TensorSummary(
            name=t.name,
            shape=tuple(int(d) for d in t.shape),
            ggml_type=t.tensor_type.name,
            n_elements=int(t.n_elements),
            n_bytes=int(t.n_bytes),
            offset=int(t.data_offset),
        )
        for t in reader.tensors
    ]
    arch = kv.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str):
        raise GGUFError(f"{path}: GGUF has no general.architecture")
    version = int(reader.fields["GGUF.version"].contents())
    return GGUFSummary(
        path=path,
        file_size=path.stat().st_size,
        version=version,
        architecture=arch,
        name=kv.get(gguf.Keys.General.NAME),
        file_type=file_type_name(kv.get(gguf.Keys.General.FILE_TYPE)),
        tensors=tensors,
        kv=kv,
        data_offset=int(reader.data_offset),
    )
