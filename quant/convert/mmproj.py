"""The vision projector GGUF ("mmproj") of a Mistral 3 checkpoint, as `convert_hf_to_gguf.py --mmproj` writes it.

llama.cpp keeps a multimodal model's vision tower out of the text GGUF and converts it into a separate file
of architecture `clip` (`general.type` "mmproj") that its mtmd tools load next to the text model. For
`Mistral3ForConditionalGeneration` the class is `LlavaVisionModel` (`conversion/llava.py`, on top of
`MmprojModel` in `conversion/base.py`): the Pixtral vision tower (`vision_tower.*`, Q/K rows permuted like
the text model's) and the projector (`multi_modal_projector.*`), with the vision config, the image
normalisation of preprocessor_config.json and the `pixtral` projector type as KVs. It writes the types
convert_hf_to_gguf can (F32, F16, BF16, Q8_0): 1-D tensors, norms and biases F32, the patch embedding and
patch merger F16 in an F16 file and F32 otherwise, and a Q8_0 tensor whose rows do not divide into blocks F16.

One deliberate difference: the converter means to add the text embedding's `[IMG_BREAK]` row as
`v.token_embd.img_break` (LlavaVisionModel.modify_tensors), but its own filter drops `language_model.*`
tensors before that code sees the embedding (llama.cpp issue 24235), and mtmd then refuses the file
("unable to find tensor v.token_embd.img_break"). We write that row where the converter would have, so
everything else is llama.cpp's file and mtmd loads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gguf

from quant.checkpoint_format import MISTRAL, checkpoint_format
from quant.convert.checkpoint import (
    SourceTensor,
    index_tensors,
    parse_hparams,
    read_config,
    read_json_object,
)
from quant.convert.checkpoint import _float as float_key
from quant.convert.checkpoint import _int as int_key
from quant.convert.layout import Prepared, finish
from quant.convert.tensors import OutTensor
from quant.convert.type_rules import FileType, block_size, resolve_file_type
from quant.errors import ConversionError
from quant.filetypes import MMPROJ_TYPES

VISION_PREFIXES = (
    "multi_modal_projector.",
    "vision_tower.",
    "vision_encoder.",
    "vision_language_adapter.",
    "patch_merger.",
    "pre_mm_projector_norm",
)
SUPPORTED = ("Mistral3ForConditionalGeneration",)


def _vision_config(path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        raise ConversionError(f"{path}: no 'vision_config': this checkpoint has no vision tower for --mmproj")
    if vision.get("model_type") != "pixtral":
        raise ConversionError(
            f"{path}: vision_config model_type {vision.get('model_type')!r} is not supported (expected 'pixtral')"
        )
    # PixtralVisionConfig's defaults (AutoConfig fills them in for llama.cpp's converter)
    defaults = {
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "image_size": 1024, "patch_size": 16, "hidden_act": "gelu", "num_channels": 3,
    }  # fmt: skip
    return {**defaults, **{k: v for k, v in vision.items() if v is not None}}


def _preprocessor(src: Path) -> dict[str, Any]:
    """preprocessor_config.json, then processor_config.json (its image_processor lifted), merged."""
    merged: dict[str, Any] = {}
    for name, inner in (
        ("preprocessor_config.json", "media_proc_cfg"),
        ("processor_config.json", "image_processor"),
    ):
        path = src / name
        if not path.is_file():
            continue
        cfg = read_json_object(path, "")
        if isinstance(cfg.get(inner), dict):
            cfg = {**cfg, **cfg[inner]}
        merged |= cfg
    return merged


def _image_stats(src: Path, key: str, pre: Mapping[str, Any]) -> list[float]:
    value = pre.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, int | float) for v in value):
        raise ConversionError(
            f"{src / 'preprocessor_config.json'}: missing or bad {key!r} (the projector needs the image normalisation)"
        )
    return [float(v) for v in value]


def _mmproj_type(name: str, ft: FileType, shape: tuple[int, ...]) -> str:
    """The ggml type convert_hf_to_gguf gives a projector tensor in a file of type `ft`."""
    if ".patch_embd.weight" in name or ".patch_merger.weight" in name:
        return "F16" if ft.name == "F16" else "F32"
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return "F32"
    if ft.name == "Q8_0" and shape[-1] % block_size("Q8_0"):
        return "F16"  # gguf-py's Q8_0 refuses such rows; the converter falls back to F16
    return ft.default


def prepare_mmproj(src: str | Path, qtype: str = "F16") -> Prepared:
    """Lay out the mmproj GGUF of checkpoint `src` (headers and configs only, never weights)."""
    from quant.convert.metadata import load_general

    src = Path(src)
    ft = resolve_file_type(qtype)
    if ft.name not in MMPROJ_TYPES:
        raise ConversionError(f"a vision projector can be {', '.join(MMPROJ_TYPES)}, not {ft.name}")
    if not src.is_dir():
        raise ConversionError(f"{src}: not a checkpoint directory")
    if checkpoint_format(src) == MISTRAL:
        raise ConversionError(
            f"{src / 'params.json'}: --mmproj reads the Hugging Face layout (config.json, model*.safetensors); "
            "this checkpoint has only Mistral's own"
        )
    path = src / "config.json"
    config = read_config(src)
    hp = parse_hparams(src, config)
    if hp.architecture not in SUPPORTED:
        raise ConversionError(
            f"{path}: --mmproj supports {', '.join(SUPPORTED)}, not {hp.architecture} (no vision tower)"
        )
    vision = _vision_config(path, config)
    n_block = int_key(path, vision, "num_hidden_layers")
    n_head = int_key(path, vision, "num_attention_heads")
    pre = _preprocessor(src)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, n_block)

    img_break = _token_id(src, "[IMG_BREAK]")
    tensors: list[OutTensor] = []
    for t in index_tensors(src):
        if t.name.endswith("embed_tokens.weight") and img_break > 0:
            tensors.append(_embedding_row(t, img_break, hp.n_embd))
            continue
        if "language_model." in t.name or not t.name.startswith(VISION_PREFIXES):
            continue  # MmprojModel drops the text model; LlavaVisionModel keeps only vision prefixes
        name = tmap.get_name(t.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConversionError(f"{t.shard}: cannot map vision tensor {t.name!r} to a GGUF tensor name")
        permute = (
            n_head if t.name.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")) else 0
        )
        tensors.append(_out(name, t, permute, ft))
    if not tensors:
        raise ConversionError(f"{src}: no vision_tower.* or multi_modal_projector.* tensors to convert")

    general = load_general(src, config, n_params=sum(t.n_elements for t in tensors))

    w = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ])
    w.add_type(gguf.GGUFType.MMPROJ)
    general.write_to(w)
    w.add_file_type(ft.ftype)
    w.add_clip_has_vision_encoder(True)
    w.add_vision_projection_dim(hp.n_embd)
    w.add_vision_image_size(int_key(path, vision, "image_size"))
    w.add_vision_patch_size(int_key(path, vision, "patch_size"))
    w.add_vision_embedding_length(int_key(path, vision, "hidden_size"))
    w.add_vision_feed_forward_length(int_key(path, vision, "intermediate_size"))
    w.add_vision_block_count(n_block)
    w.add_vision_head_count(n_head)
    w.add_vision_image_mean(_image_stats(src, "image_mean", pre))
    w.add_vision_image_std(_image_stats(src, "image_std", pre))
    w.add_clip_projector_type(gguf.VisionProjectorType.PIXTRAL)
    w.add_vision_attention_layernorm_eps(
        float_key(path, vision.get("layer_norm_eps", 1e-5), "layer_norm_eps")
    )
    act = vision.get("hidden_act")
    if act == "silu":
        w.add_vision_use_silu(True)
    elif act == "gelu":
        w.add_vision_use_gelu(True)
    else:
        raise ConversionError(f"{path}: vision_config hidden_act {act!r} is not supported (silu or gelu)")
    if "spatial_merge_size" in config:
        w.add_vision_spatial_merge_size(int_key(path, config, "spatial_merge_size"))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    return finish(src, ft, hp, w, tensors, general)


def _token_id(src: Path, token: str) -> int:
    """LlavaVisionModel.get_token_id: tokenizer_config.json's added_tokens_decoder, then tokenizer.json."""
    for name, section in (
        ("tokenizer_config.json", "added_tokens_decoder"),
        ("tokenizer.json", "added_tokens"),
    ):
        path = src / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_bytes()).get(section) or {}
        except (OSError, ValueError, AttributeError) as exc:
            raise ConversionError(f"{path}: not a valid tokenizer file ({exc})") from exc
        entries = data.items() if isinstance(data, dict) else ((e.get("id"), e) for e in data)
        for tid, entry in entries:
            if isinstance(entry, dict) and entry.get("content") == token:
                return int(tid)
    raise ConversionError(f"{src}: token {token} not found in tokenizer_config.json or tokenizer.json")


def _embedding_row(embed: SourceTensor, row: int, n_embd: int) -> OutTensor:
    """`v.token_embd.img_break`: row `row` of the text embedding, as a zero-copy view of that row."""
    if len(embed.shape) != 2 or embed.shape[1] != n_embd or not 0 <= row < embed.shape[0]:
        raise ConversionError(f"{embed.shard}: tensor {embed.name!r} has no row {row} of width {n_embd}")
    size = embed.nbytes // (embed.shape[0] * embed.shape[1])
    part = SourceTensor(
        embed.name, embed.dtype, (n_embd,), embed.shard, embed.start + row * n_embd * size, n_embd * size
    )
    return OutTensor(
        gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.V_TOK_EMBD_IMG_BREAK], (n_embd,), (part,), keep_f32=True
    )


def _out(name: str, t: SourceTensor, permute: int, ft: FileType) -> OutTensor:
    out = OutTensor(name, t.shape, (t,), permute, keep_f32=len(t.shape) <= 1)
    out.type = _mmproj_type(name, ft, t.shape)
    return out
