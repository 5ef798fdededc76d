"""The exact byte layout of the GGUF a conversion writes, known before any weight is read.

Everything about the output (KVs, tensor names, types, sizes, offsets, total file size) follows from the
safetensors headers, config.json and the tokenizer files, so the converter can write the header first and
stream tensor data after it, check free disk space exactly, and the sizing code can use the same numbers.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf  # quant/convert/__init__.py imported it already, without mistral_common (quant.gguf_import)
import numpy as np

from quant.checkpoint_format import MISTRAL, checkpoint_format
from quant.convert.archs.base import QUANTIZATION_VERSION
from quant.convert.checkpoint import HParams, index_tensors, parse_hparams, read_config, read_params
from quant.convert.config_check import check_config_against_tensors
from quant.convert.fp8 import attach_scales, read_quantization
from quant.convert.gguf_internals import kv_table, pack_value
from quant.convert.options import TensorOptions
from quant.convert.tensors import OutTensor, map_tensors
from quant.convert.tokenizer_probe import TokenizerProbe, start_tokenizer_probe
from quant.convert.type_rules import (
    FileType,
    TensorSpec,
    choose_types,
    layer_key,
    resolve_file_type,
    row_nbytes,
)
from quant.errors import ConversionError
from quant.filetypes import check_imatrix_use
from quant.gguf_file import GGUF_NUMPY_DTYPES

if TYPE_CHECKING:
    from quant.imatrix.apply import AppliedImatrix
    from quant.imatrix.format import Imatrix

ALIGNMENT = gguf.GGUF_DEFAULT_ALIGNMENT  # 32; the converter never sets general.alignment


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
    options: TensorOptions
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

    @property
    def by_quantize(self) -> bool:
        """Laid out as llama-quantize writes it: its file types, and any type given per-tensor options."""
        return quantize_layout(self.file_type, self.options)


def quantize_layout(ft: FileType, options: TensorOptions) -> bool:
    """llama.cpp makes the file with llama-quantize (its tensor order and KV placement), not convert_hf_to_gguf:
    the K-quant and legacy mixtures, and Q8_0 when per-tensor options ask for llama-quantize's controls."""
    return ft.by_quantize or options.active


@dataclass
class Prepared:
    """A layout plus what the writer needs to produce it (header bytes, tensor data sources)."""

    layout: Layout
    header: bytes  # header + KVs + tensor infos + padding up to the data section
    tensors: list[OutTensor]
    general: Any  # D's GeneralInfo (for the default output name)
    imatrix: AppliedImatrix | None = None  # each tensor's importance weights, when an imatrix is applied


# the numeric array types packed with numpy here (bools go through gguf-py's own packing)
_NUMPY_TYPES = {k: v for k, v in GGUF_NUMPY_DTYPES.items() if k is not gguf.GGUFValueType.BOOL}


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
        return pack_value(w, value, val.type, add_vtype=True, sub_type=val.sub_type)
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
    return pack_value(w, value, val.type, add_vtype=True, sub_type=val.sub_type)


def _header_bytes(w: gguf.GGUFWriter, tensors: list[TensorLayout]) -> bytes:
    """Serialise header, KVs and tensor infos (GGUF v3, little-endian), padded to the data section."""
    kv = kv_table(w)
    buf = bytearray(struct.pack("<IIQQ", gguf.GGUF_MAGIC, gguf.GGUF_VERSION, len(tensors), len(kv)))
    for key, val in kv.items():
        buf += pack_value(w, key, gguf.GGUFValueType.STRING, add_vtype=False)
        buf += _pack_value(w, val)
    for t in tensors:
        name = t.name.encode("utf-8")
        buf += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(t.ne))
        buf += struct.pack(f"<{len(t.ne)}Q", *t.ne)
        buf += struct.pack("<IQ", gguf.GGMLQuantizationType[t.type], t.offset)
    buf += b"\0" * (_pad(len(buf)) - len(buf))
    return bytes(buf)


def prepare(
    src: str | Path,
    qtype: str = "Q4_K_M",
    *,
    probe: TokenizerProbe | None = None,
    options: TensorOptions | None = None,
    loras: list[tuple[Path, float]] | None = None,
    imatrix: Imatrix | str | os.PathLike[str] | None = None,
    assume_imatrix: bool = False,
) -> Prepared:
    """Read headers, config and tokenizer (never weights) and lay out the whole output file.

    `probe`: a `start_tokenizer_probe(src)` the caller started earlier (and closes); by default one is
    started here, so the tokenizers half of reading tokenizer.json overlaps the rest of this function.
    `options`: llama-quantize's per-tensor options (OptionError when they do not apply).
    `loras`: (PEFT adapter folder, scale) pairs merged into the weights while writing (`lora_merge`).
    `imatrix`: an importance matrix (or its file) to quantise with, as llama-quantize --imatrix does
    (quant.imatrix.apply); a type that needs one (`FileType.needs_imatrix`) without it is an OptionError.
    `assume_imatrix`: for sizing only, the types as an imatrix would choose them (no weights, no KVs).
    """
    src = Path(src)
    ft = resolve_file_type(qtype)
    options = options or TensorOptions()
    options.check_file_type(ft)
    check_imatrix_use(ft, imatrix is not None or assume_imatrix)
    if not src.is_dir():
        raise ConversionError(f"{src}: not a checkpoint directory")
    if probe is not None:
        return _prepare(src, ft, options, probe, loras or [], imatrix, assume_imatrix)
    with start_tokenizer_probe(src) as own:
        return _prepare(src, ft, options, own, loras or [], imatrix, assume_imatrix)


def natural_tensors(src: str | Path) -> list[OutTensor]:
    """The output tensors in convert_hf_to_gguf's order (before llama-quantize's layer sort), from headers."""
    return _read_model(Path(src))[4]


def _read_model(src: Path) -> tuple[str, dict[str, Any], HParams, Any, list[OutTensor]]:
    """(layout format, metadata config, hparams, Mistral vocabulary or None, output tensors) from the headers."""
    fmt = checkpoint_format(src)
    vocab = None
    if fmt == MISTRAL:  # Mistral's layout: params.json, and the tokenizer decides the vocabulary size
        from quant.convert.archs import family
        from quant.convert.archs.mistral import MistralNative
        from quant.convert.mistral_vocab import load_mistral_vocab

        config = read_params(src)
        native = family("MistralNative")
        assert isinstance(native, MistralNative)
        hp = native.parse(src, config)
        vocab = load_mistral_vocab(src, hp.arch_name, native=True)
        if hp.n_vocab not in (0, vocab.n_tokens):
            raise ConversionError(
                f"{src / 'params.json'}: key 'vocab_size' is {hp.n_vocab} but {vocab.source} has "
                f"{vocab.n_tokens} tokens"
            )
        hp = replace(hp, n_vocab=vocab.n_tokens)
        card_config: dict = {}  # llama.cpp's metadata reads config.json, which this layout has not
        fp8 = None
    else:
        config = read_config(src)
        fp8 = read_quantization(src, config)  # before the headers: other methods' tensors have other dtypes
        hp = parse_hparams(src, config)
        card_config = config
    sources = attach_scales(index_tensors(src, fmt), fp8)
    if fmt != MISTRAL:  # config.json's keys, named in its messages
        check_config_against_tensors(src, hp, sources)  # before anything proportional to a declared size
    return fmt, card_config, hp, vocab, map_tensors(hp, sources)


def _prepare(
    src: Path,
    ft: FileType,
    options: TensorOptions,
    probe: TokenizerProbe,
    loras: list[tuple[Path, float]],
    imatrix: Imatrix | str | os.PathLike[str] | None = None,
    assume_imatrix: bool = False,
) -> Prepared:
    from quant.convert.metadata import load_general
    from quant.convert.vocab import load_vocab

    loaded = None
    if imatrix is not None:  # read first: a bad file fails before the checkpoint is read
        from quant.imatrix.apply import load

        loaded = load(imatrix)
    fmt, card_config, hp, vocab, out_tensors = _read_model(src)
    if loras:
        from quant.convert.lora_merge import attach_loras

        attach_loras(hp, out_tensors, loras)
    by_quantize = quantize_layout(ft, options) or loaded is not None  # only llama-quantize applies one
    if by_quantize:  # llama-quantize writes tensors in its weights_map order (layer, then name)
        out_tensors.sort(key=lambda t: layer_key(t.name))
    specs = [TensorSpec(t.name, t.shape, t.keep_f32) for t in out_tensors]
    types = choose_types(
        specs,
        ft,
        n_layer=hp.n_layer,
        n_expert=hp.n_expert,
        n_head=hp.n_head,
        n_head_kv=hp.n_head_kv,
        options=options,
        has_imatrix=loaded is not None or assume_imatrix,
    )
    for t in out_tensors:
        t.type = types[t.name]
    applied = None
    if loaded is not None:
        from quant.imatrix.apply import plan_weights

        applied = plan_weights(*loaded, [(t.name, t.shape, t.type) for t in out_tensors], ft.name)

    total, _shared, expert, n_exp = hp.family.param_counts(out_tensors)
    general = load_general(
        src, card_config, n_params=total, n_experts=n_exp or None, expert_params=expert if n_exp else None
    )
    if fmt != MISTRAL:
        vocab = load_vocab(src, card_config, probe=probe, arch=hp.arch_name)
    w = gguf.GGUFWriter(None, hp.arch_name)
    w.add_type(gguf.GGUFType.MODEL)
    general.write_to(w)
    hp.family.add_hparams(w, hp, replace(ft, by_quantize=by_quantize))
    vocab.write_to(w)
    if by_quantize:  # where llama-quantize puts them: it sets both anew, which appends them
        w.add_quantization_version(QUANTIZATION_VERSION)
        w.add_file_type(ft.ftype)
    if applied is not None:  # llama-quantize's KV overrides, set after file_type
        for key, value in applied.kv().items():
            (w.add_string if isinstance(value, str) else w.add_uint32)(key, value)
    prep = finish(src, ft, hp, w, out_tensors, general, n_expert_params=expert, options=options)
    prep.imatrix = applied
    return prep


def finish(
    src: Path,
    ft: FileType,
    hp: HParams,
    w: gguf.GGUFWriter,
    tensors: list[OutTensor],
    general: Any,
    *,
    n_expert_params: int = 0,
    options: TensorOptions | None = None,
) -> Prepared:
    """Offsets of typed `tensors` after the header of KVs `w`: the exact file and what writes it."""
    layouts: list[TensorLayout] = []
    offset = 0
    for t in tensors:
        nbytes = t.n_rows * row_nbytes(t.type, t.n_cols)
        layouts.append(TensorLayout(t.name, t.shape, tuple(reversed(t.shape)), t.type, nbytes, offset))
        offset += _pad(nbytes)
    header = _header_bytes(w, layouts)
    layout = Layout(
        src=src,
        file_type=ft,
        options=options or TensorOptions(),
        hparams=hp,
        tensors=layouts,
        data_offset=len(header),
        file_size=len(header) + offset,  # every tensor, the last included, is padded
        n_params=sum(t.n_elements for t in tensors),
        n_expert_params=n_expert_params,
        kv={k: v.value for k, v in kv_table(w).items()},
    )
    return Prepared(layout, header, tensors, general)


def file_layout(
    src: str | Path,
    qtype: str = "Q4_K_M",
    options: TensorOptions | None = None,
    imatrix: Imatrix | str | os.PathLike[str] | None = None,
) -> Layout:
    """The exact layout (tensors, types, offsets, file size) `convert(src, ..., qtype, options=)` would write."""
    return prepare(src, qtype, options=options, imatrix=imatrix).layout
