"""Reading a Hugging Face checkpoint directory: safetensors shards (memory-mapped, validated) and config.json.

safetensors headers are parsed here rather than with the `safetensors` package so every corruption (a header
length past the end, offsets out of range or overlapping, a shape that does not match the byte length) is
reported with the file and tensor at fault, and so tensors stay zero-copy views of one mmap per shard.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quant.checkpoint_format import HF, MISTRAL, hf_weights, mistral_weights
from quant.errors import ConversionError
from quant.inputs import not_regular

if TYPE_CHECKING:
    from quant.convert.archs import Architecture
    from quant.convert.fp8 import ScaleGrid

PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
INDEX_NAME = "model.safetensors.index.json"

# safetensors dtype -> (numpy storage dtype, bytes per element); BF16 is kept as raw uint16 bits, FP8 as
# raw bytes (quant.convert.fp8 scales them).
_DTYPES: dict[str, tuple[np.dtype, int]] = {
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "F8_E4M3": (np.dtype("u1"), 1),
}


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of a safetensors shard: where its bytes are and how to view them."""

    name: str
    dtype: str  # "F32" | "F16" | "BF16" | "F8_E4M3"
    shape: tuple[int, ...]
    shard: Path
    start: int  # absolute byte offset in the shard file
    nbytes: int
    scale: SourceTensor | None = None  # an FP8 weight's `_scale_inv` tensor (quant.convert.fp8)
    scale_grid: ScaleGrid | None = None  # which scale multiplies which element

    def array(self, mm: np.ndarray) -> np.ndarray:
        """Zero-copy view of this tensor inside its shard's memory map (BF16 as uint16 bits, FP8 as bytes)."""
        np_dtype, _ = _DTYPES[self.dtype]
        return mm[self.start : self.start + self.nbytes].view(np_dtype).reshape(self.shape)


def read_safetensors_header(path: Path) -> list[SourceTensor]:
    """Parse and validate one shard's header; raises ConversionError naming the file (and tensor)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ConversionError(f"{path}: truncated safetensors file ({size} bytes, no header length)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ConversionError(
                    f"{path}: corrupt safetensors header: header length {n} runs past the end of the file ({size} bytes)"
                )
            raw = f.read(n)
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: corrupt safetensors header: not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ConversionError(f"{path}: corrupt safetensors header: not a JSON object")
    data_start = 8 + n
    data_size = size - data_start
    tensors: list[SourceTensor] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = (
                info["dtype"],
                tuple(int(d) for d in info["shape"]),
                info["data_offsets"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConversionError(f"{path}: corrupt safetensors header entry for tensor {name!r}") from exc
        if dtype not in _DTYPES:
            raise ConversionError(
                f"{path}: tensor {name!r} has dtype {dtype}; supported: F32, F16, BF16 and F8_E4M3 (fp8 checkpoints)"
            )
        if (
            not (isinstance(begin, int) and isinstance(end, int))
            or begin < 0
            or end < begin
            or end > data_size
        ):
            raise ConversionError(
                f"{path}: tensor {name!r} data offsets [{begin}, {end}] are out of range "
                f"(data section is {data_size} bytes; file truncated?)"
            )
        expected = math.prod(shape) * _DTYPES[dtype][1]
        if any(d < 0 for d in shape) or end - begin != expected:
            raise ConversionError(
                f"{path}: tensor {name!r} shape {list(shape)} x {dtype} needs {expected} bytes "
                f"but its data offsets span {end - begin}"
            )
        tensors.append(SourceTensor(name, dtype, shape, path, data_start + begin, end - begin))
    by_offset = sorted(tensors, key=lambda t: t.start)
    for a, b in zip(by_offset, by_offset[1:], strict=False):
        if b.start < a.start + a.nbytes:
            raise ConversionError(f"{path}: tensors {a.name!r} and {b.name!r} overlap in the data section")
    return tensors


def _refuse_pickle(src: Path) -> None:
    found = sorted({p.name for pat in PICKLE_PATTERNS for p in src.glob(pat)})
    if found:
        raise ConversionError(
            f"{src}: only pickle weights found ({', '.join(found)}); refusing to load them because unpickling "
            "can run arbitrary code. Use a checkpoint with .safetensors weights"
        )
    raise ConversionError(f"{src}: no model*.safetensors weights found")


def _check_shard_name(index_path: Path, src: Path, name: object) -> None:
    """An index entry must name a file inside the checkpoint folder (no absolute path, no `..`, no link out)."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ConversionError(f"{index_path}: weight_map names an invalid shard {name!r}")
    target = src / name
    inside = not Path(name).is_absolute() and ".." not in Path(name).parts
    if inside and target.exists():
        # a symlink to a blob is fine (the hub cache is made of them); a path that resolves out of the folder
        # through a symlinked directory is not
        inside = Path(os.path.realpath(target.parent)).is_relative_to(os.path.realpath(src))
    if not inside:
        raise ConversionError(
            f"{index_path}: weight_map names shard {name!r}, which is outside the checkpoint folder {src}"
        )


def find_shards(src: Path, fmt: str = HF) -> tuple[list[Path], dict[str, str] | None]:
    """The shard files in conversion order (sorted by name) and the index weight map, if there is one.

    Mistral's layout has no index: every consolidated*.safetensors, sorted.
    """
    if fmt == MISTRAL:
        shards = mistral_weights(src)
        if not shards:
            raise ConversionError(f"{src}: no consolidated*.safetensors weights found next to params.json")
        return shards, None
    index_path = src / INDEX_NAME
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConversionError(f"{index_path}: not valid JSON ({exc})") from exc
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{index_path}: missing or empty 'weight_map'")
        for n in weight_map.values():
            _check_shard_name(index_path, src, n)
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise ConversionError(f"{index_path}: names shard {missing[0]!r}, which does not exist in {src}")
        return [src / n for n in names], weight_map
    shards = hf_weights(src)
    if not shards:
        _refuse_pickle(src)
    return shards, None


def index_tensors(src: Path, fmt: str = HF) -> list[SourceTensor]:
    """Every tensor of the checkpoint in convert_hf_to_gguf's order: shards by name, then names sorted."""
    shards, weight_map = find_shards(src, fmt)
    tensors: list[SourceTensor] = []
    seen: dict[str, Path] = {}
    for shard in shards:
        for t in sorted(read_safetensors_header(shard), key=lambda t: t.name):
            if t.name in seen:
                raise ConversionError(f"{shard}: tensor {t.name!r} also appears in {seen[t.name]}")
            seen[t.name] = shard
            tensors.append(t)
    if weight_map is not None:
        index_path = src / INDEX_NAME
        for name, shard_name in sorted(weight_map.items()):
            if name not in seen:
                raise ConversionError(f"{index_path}: tensor {name!r} is missing from {shard_name}")
        extra = sorted(set(seen) - set(weight_map))
        if extra:
            raise ConversionError(
                f"{index_path}: tensor {extra[0]!r} (in {seen[extra[0]].name}) is not in the index"
            )
    return tensors


@dataclass(frozen=True)
class RopeScaling:
    """The rope scaling of config.json, normalised across transformers 4 and 5 spellings."""

    type: str  # "llama3" | "linear" | "yarn"
    factor: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HParams:
    """The hyperparameters the converter needs, validated; `arch` is the family that converts them."""

    architecture: str  # config.json's architectures[0]
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    head_dim_explicit: bool  # llama.cpp writes attention.key_length/value_length
    n_ctx_train: int
    n_vocab: int
    rms_eps: float
    rope_theta: float
    rope_scaling: RopeScaling | None
    n_expert: int
    n_expert_used: int
    tied: bool
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    arch: Architecture | None = field(repr=False, compare=False, default=None)
    extras: dict[str, Any] = field(default_factory=dict)  # the family's own hparams (parse_extras)

    @property
    def family(self) -> Architecture:
        assert self.arch is not None, "HParams made without an architecture family"
        return self.arch

    @property
    def arch_name(self) -> str:
        """llama.cpp's general.architecture of the output."""
        return self.family.arch_name(self)


def read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """A JSON object file; `missing` says why it is needed when it is not there."""
    if not path.is_file():
        why = "missing" if not path.exists() else not_regular(path)
        raise ConversionError(f"{path}: {why} ({missing})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: not a JSON object")
    return config


def read_config(src: Path) -> dict[str, Any]:
    """config.json as a dict (text_config merged into the root, as the converter does)."""
    config = read_json_object(src / "config.json", "a Hugging Face checkpoint directory needs config.json")
    text = config.get("text_config")
    if isinstance(text, dict):
        # llama.cpp takes the architecture from the root unless text_config names one
        config = {**config, **{k: v for k, v in text.items() if not (k == "architectures" and v is None)}}
    return config


def read_params(src: Path) -> dict[str, Any]:
    """Mistral's params.json as a dict (raw: llama.cpp reads it without any config class)."""
    return read_json_object(src / "params.json", "Mistral's own layout describes the model in params.json")


def _int(path: Path, config: dict[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        raise ConversionError(f"{path}: missing key {key!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConversionError(f"{path}: key {key!r} must be a positive integer, got {value!r}")
    return value


def _float(path: Path, value: Any, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConversionError(f"{path}: key {key!r} must be a positive number, got {value!r}")
    return float(value)


def parse_hparams(src: Path, config: dict[str, Any]) -> HParams:
    """Validate config.json for the supported architectures; errors name the key at fault."""
    from quant.convert.archs import for_hf_architecture

    path = src / "config.json"
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs else None
    family = for_hf_architecture(path, arch)
    assert isinstance(arch, str)  # for_hf_architecture rejects any other
    cfg = {**family.config_defaults(arch, config), **{k: v for k, v in config.items() if v is not None}}
    cfg = family.adjust_config(cfg)
    n_embd = _int(path, cfg, "hidden_size")
    n_head = _int(path, cfg, "num_attention_heads")
    n_head_kv = _int(path, cfg, "num_key_value_heads", n_head)
    if n_head % n_head_kv:
        raise ConversionError(
            f"{path}: key 'num_key_value_heads' ({n_head_kv}) must divide 'num_attention_heads' ({n_head})"
        )
    explicit = cfg.get("head_dim") is not None  # from config.json or the config class's default
    if explicit:
        head_dim = _int(path, cfg, "head_dim")
    elif n_embd % n_head:
        raise ConversionError(
            f"{path}: key 'hidden_size' ({n_embd}) is not a multiple of 'num_attention_heads' ({n_head})"
        )
    else:
        head_dim = n_embd // n_head
    if head_dim % 2:
        raise ConversionError(f"{path}: key 'head_dim' ({head_dim}) must be even for rotary embeddings")

    rope = cfg.get("rope_parameters", cfg.get("rope_scaling")) or {}
    if not isinstance(rope, dict):
        raise ConversionError(f"{path}: key 'rope_scaling' must be an object, got {rope!r}")
    rope = rope.get("full_attention", rope)
    theta = _float(path, rope.get("rope_theta", cfg.get("rope_theta")), "rope_theta")
    rope_type = rope.get("rope_type", rope.get("type"))
    scaling = None
    if rope_type not in (None, "default"):
        kind = str(rope_type).lower()
        if kind not in ("llama3", "linear", "yarn"):
            raise ConversionError(
                f"{path}: unsupported rope scaling type {rope_type!r} (supported: llama3, linear, yarn)"
            )
        factor = rope.get("factor", 8.0 if kind == "llama3" else None)
        factor = _float(path, factor, "rope_scaling.factor")
        if kind == "yarn" and "original_max_position_embeddings" not in rope:
            raise ConversionError(f"{path}: yarn rope scaling needs key 'original_max_position_embeddings'")
        scaling = RopeScaling(kind, factor, dict(rope))

    is_moe = arch in family.moe_architectures
    n_expert = _int(path, cfg, "num_local_experts") if is_moe else 0
    n_expert_used = _int(path, cfg, "num_experts_per_tok") if is_moe else 0
    if is_moe and n_expert_used > n_expert:
        raise ConversionError(
            f"{path}: key 'num_experts_per_tok' ({n_expert_used}) exceeds 'num_local_experts' ({n_expert})"
        )
    return HParams(
        architecture=arch,
        n_layer=_int(path, cfg, "num_hidden_layers"),
        n_embd=n_embd,
        n_ff=_int(path, cfg, "intermediate_size"),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        head_dim_explicit=explicit,
        n_ctx_train=_int(path, cfg, "max_position_embeddings"),
        n_vocab=_int(path, cfg, "vocab_size"),
        rms_eps=_float(path, cfg.get("rms_norm_eps"), "rms_norm_eps"),
        rope_theta=theta,
        rope_scaling=scaling,
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        tied=bool(cfg.get("tie_word_embeddings", False)),
        raw=config,
        arch=family,
        extras=family.parse_extras(path, cfg, rope),
    )
