"""The exact byte layout of the GGUF a conversion writes, known before any weight is read.

Everything about the output (KVs, tensor names, types, sizes, offsets, total file size) follows from the
safetensors headers, config.json and the tokenizer files, so the converter can write the header first and
stream tensor data after it, check free disk space exactly, and the sizing code can use the same numbers.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf  # quant/convert/__init__.py imported it already, without mistral_common
import numpy as np

from quant.convert.checkpoint import HParams, index_tensors, parse_hparams, read_config
from quant.convert.mixture import (
    FileType,
    TensorSpec,
    choose_types,
    layer_key,
    resolve_file_type,
    row_nbytes,
)
from quant.convert.tensors import OutTensor, plan_tensors
from quant.convert.tokenizer_probe import TokenizerProbe, start_tokenizer_probe
from quant.errors import ConversionError

ALIGNMENT = gguf.GGUF_DEFAULT_ALIGNMENT  # 32; the converter never sets general.alignment
QUANTIZATION_VERSION = 2


def _pad(n: int, align: int = ALIGNMENT) -> int:
    return (n + align - 1) // align * align


@dataclass(frozen=True)
class TensorLayout:
    """One output tensor: GGUF name, numpy-order shape, GGUF ne (reversed), ggml type, size and data offset."""

    name: str
    shape: tuple[int, ...]
    ne: tuple[int, ...]
    type: str
    nbytes: int
    offset: int  # relative to the start of the data section


@dataclass
class Layout:
    """What `convert` would write for (checkpoint, type): every tensor and the exact file size."""

    src: Path
    file_type: FileType
    hparams: HParams
    tensors: list[TensorLayout]
    data_offset: int  # absolute offset of the data section (header + KVs + tensor infos, padded)
    file_size: int  # exact byte size of the GGUF file
    n_params: int
    n_expert_params: int
    kv: dict[str, Any] = field(repr=False, default_factory=dict)  # key -> value, in file order

    # the hparams sizing needs, flattened for convenience
    @property
    def n_layer(self) -> int:
        return self.hparams.n_layer

    @property
    def n_embd(self) -> int:
        return self.hparams.n_embd

    @property
    def n_head(self) -> int:
        return self.hparams.n_head

    @property
    def n_head_kv(self) -> int:
        return self.hparams.n_head_kv

    @property
    def head_dim(self) -> int:
        return self.hparams.head_dim

    @property
    def n_ctx_train(self) -> int:
        return self.hparams.n_ctx_train

    @property
    def n_vocab(self) -> int:
        return self.hparams.n_vocab

    @property
    def n_expert(self) -> int:
        return self.hparams.n_expert

    @property
    def n_expert_used(self) -> int:
        return self.hparams.n_expert_used

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def type_counts(self) -> dict[str, int]:
        return dict(Counter(t.type for t in self.tensors))


@dataclass
class Prepared:
    """A layout plus what the writer needs to produce it (header bytes, tensor data sources)."""

    layout: Layout
    header: bytes  # header + KVs + tensor infos + padding up to the data section
    tensors: list[OutTensor]
    general: Any  # D's GeneralInfo (for the default output name)


def _param_counts(tensors: list[OutTensor]) -> tuple[int, int, int, int]:
    """(total, shared, expert, expert_count) the way gguf-py's GGUFWriter counts parameters."""
    total = shared = expert = expert_sum = n_expert_tensors = 0
    for t in tensors:
        size = math.prod(t.shape)
        if "_exps." in t.name and len(t.shape) >= 3:
            expert += size // t.shape[-3]
            expert_sum += t.shape[-3]
            n_expert_tensors += 1
        else:
            shared += size
        total += size
    return total, shared, expert, (expert_sum // n_expert_tensors if n_expert_tensors else 0)


def _add_hparams(w: gguf.GGUFWriter, hp: HParams, ft: FileType) -> None:
    """The llama.* KVs and general.file_type in convert_hf_to_gguf's order (reference §5.9 items 4-10)."""
    w.add_block_count(hp.n_layer)
    w.add_context_length(hp.n_ctx_train)
    w.add_embedding_length(hp.n_embd)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    rs = hp.rope_scaling
    if rs is not None and rs.type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rs.factor)
    elif rs is not None and rs.type == "yarn":
        p = rs.params
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rs.factor)
        w.add_rope_scaling_orig_ctx_len(int(p["original_max_position_embeddings"]))
        if (v := p.get("extrapolation_factor")) is not None:
            w.add_rope_scaling_yarn_ext_factor(v)
        if (v := p.get("attention_factor", p.get("attn_factor"))) is not None:
            w.add_rope_scaling_yarn_attn_factor(v)
        if (v := p.get("beta_fast")) is not None:
            w.add_rope_scaling_yarn_beta_fast(v)
        if (v := p.get("beta_slow")) is not None:
            w.add_rope_scaling_yarn_beta_slow(v)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    if hp.n_expert:
        w.add_expert_count(hp.n_expert)
        w.add_expert_used_count(hp.n_expert_used)
    if hp.head_dim_explicit:
        w.add_key_length(hp.head_dim)
        w.add_value_length(hp.head_dim)
    if not ft.by_quantize:
        w.add_file_type(ft.ftype)
    w.add_vocab_size(hp.n_vocab)
    w.add_rope_dimension_count(hp.head_dim)
    if not ft.by_quantize:
        w.add_quantization_version(QUANTIZATION_VERSION)


_NUMPY_TYPES = {
    gguf.GGUFValueType.UINT8: "<u1",
    gguf.GGUFValueType.INT8: "<i1",
    gguf.GGUFValueType.UINT16: "<u2",
    gguf.GGUFValueType.INT16: "<i2",
    gguf.GGUFValueType.UINT32: "<u4",
    gguf.GGUFValueType.INT32: "<i4",
    gguf.GGUFValueType.FLOAT32: "<f4",
    gguf.GGUFValueType.UINT64: "<u8",
    gguf.GGUFValueType.INT64: "<i8",
    gguf.GGUFValueType.FLOAT64: "<f8",
}


def _pack_strings(items: list[bytes]) -> bytes:
    """u64 length + bytes for each item, concatenated; vectorised (tokenizers hold ~400k strings)."""
    n = len(items)
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
    blob = np.frombuffer(b"".join(items), dtype=np.uint8)
    starts = np.zeros(n, dtype=np.int64)  # where each item's length field begins
    np.cumsum(lengths[:-1] + 8, out=starts[1:])
    out = np.empty(int(lengths.sum()) + 8 * n, dtype=np.uint8)
    out[(starts[:, None] + np.arange(8)).ravel()] = lengths.astype("<u8").view(np.uint8)
    out[
        np.arange(blob.size) + np.repeat(starts + 8 - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    ] = blob
    return out.tobytes()


def _pack_value(w: gguf.GGUFWriter, val: Any) -> bytes:
    """One KV value as GGUFWriter would pack it; large arrays (tokens, merges, scores) in bulk."""
    vt = gguf.GGUFValueType
    value = val.value
    if val.type != vt.ARRAY or isinstance(value, bytes) or not value:
        return w._pack_val(value, val.type, add_vtype=True, sub_type=val.sub_type)
    sub = val.sub_type if val.sub_type is not None else vt.get_type(value[0])
    head = struct.pack("<IIQ", vt.ARRAY, sub, len(value))
    if sub == vt.STRING:
        try:
            items = list(map(str.encode, value))
        except TypeError:  # some items are bytes already
            items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value]
        return head + _pack_strings(items)
    if sub in _NUMPY_TYPES:
        return head + np.asarray(value, dtype=_NUMPY_TYPES[sub]).tobytes()
    return w._pack_val(value, val.type, add_vtype=True, sub_type=val.sub_type)


def _header_bytes(w: gguf.GGUFWriter, tensors: list[TensorLayout]) -> bytes:
    """Serialise header, KVs and tensor infos (GGUF v3, little-endian), padded to the data section."""
    kv = w.kv_data[0]
    buf = bytearray(struct.pack("<IIQQ", gguf.GGUF_MAGIC, gguf.GGUF_VERSION, len(tensors), len(kv)))
    for key, val in kv.items():
        buf += w._pack_val(key, gguf.GGUFValueType.STRING, add_vtype=False)
        buf += _pack_value(w, val)
    for t in tensors:
        name = t.name.encode("utf-8")
        buf += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(t.ne))
        buf += struct.pack(f"<{len(t.ne)}Q", *t.ne)
        buf += struct.pack("<IQ", gguf.GGMLQuantizationType[t.type], t.offset)
    buf += b"\0" * (_pad(len(buf)) - len(buf))
    return bytes(buf)


def prepare(src: str | Path, qtype: str = "Q4_K_M", *, probe: TokenizerProbe | None = None) -> Prepared:
    """Read headers, config and tokenizer (never weights) and lay out the whole output file.

    `probe`: a `start_tokenizer_probe(src)` the caller started earlier (and closes); by default one is
    started here, so the tokenizers half of reading tokenizer.json overlaps the rest of this function.
    """
    src = Path(src)
    ft = resolve_file_type(qtype)
    if not src.is_dir():
        raise ConversionError(f"{src}: not a checkpoint directory")
    if probe is not None:
        return _prepare(src, ft, probe)
    with start_tokenizer_probe(src) as own:
        return _prepare(src, ft, own)


def _prepare(src: Path, ft: FileType, probe: TokenizerProbe) -> Prepared:
    from quant.convert.metadata import load_general
    from quant.convert.vocab import load_vocab

    config = read_config(src)
    hp = parse_hparams(src, config)
    out_tensors = plan_tensors(hp, index_tensors(src))
    if ft.by_quantize:  # llama-quantize writes tensors in its weights_map order (layer, then name)
        out_tensors.sort(key=lambda t: layer_key(t.name))
    specs = [TensorSpec(t.name, t.shape, t.keep_f32) for t in out_tensors]
    types = choose_types(
        specs, ft, n_layer=hp.n_layer, n_expert=hp.n_expert, n_head=hp.n_head, n_head_kv=hp.n_head_kv
    )
    layouts: list[TensorLayout] = []
    offset = 0
    for t in out_tensors:
        t.type = types[t.name]
        nbytes = t.n_rows * row_nbytes(t.type, t.n_cols)
        layouts.append(TensorLayout(t.name, t.shape, tuple(reversed(t.shape)), t.type, nbytes, offset))
        offset += _pad(nbytes)

    total, _shared, expert, n_exp = _param_counts(out_tensors)
    general = load_general(
        src, config, n_params=total, n_experts=n_exp or None, expert_params=expert if n_exp else None
    )
    vocab = load_vocab(src, config, probe=probe)
    w = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    w.add_type(gguf.GGUFType.MODEL)
    general.write_to(w)
    _add_hparams(w, hp, ft)
    vocab.write_to(w)
    if ft.by_quantize:  # where llama-quantize puts them: it sets both anew, which appends them
        w.add_quantization_version(QUANTIZATION_VERSION)
        w.add_file_type(ft.ftype)
    header = _header_bytes(w, layouts)
    layout = Layout(
        src=src,
        file_type=ft,
        hparams=hp,
        tensors=layouts,
        data_offset=len(header),
        file_size=len(header) + offset,  # every tensor, the last included, is padded
        n_params=total,
        n_expert_params=expert,
        kv={k: v.value for k, v in w.kv_data[0].items()},
    )
    return Prepared(layout, header, out_tensors, general)


def plan_layout(src: str | Path, qtype: str = "Q4_K_M") -> Layout:
    """The exact layout (tensors, types, offsets, file size) `convert(src, ..., qtype)` would write."""
    return prepare(src, qtype).layout
