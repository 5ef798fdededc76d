"""The per-tensor ggml types of each file type, exactly as llama.cpp chooses them.

F32/F16/BF16 follow convert_hf_to_gguf's --outtype rules; the quantised file types follow llama-quantize
(`llama_tensor_get_type` in src/llama-quant.cpp) applied to the F32 conversion: categories by name, the
attn_v / ffn_down counters in llama-quantize's sorted processing order, use_more_bits, the output and tied
embedding rule, the 8-expert rules, the LLaMA-70B attn_v bump and the shape fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf

from quant.errors import ConversionError


@dataclass(frozen=True)
class FileType:
    name: str
    ftype: int  # general.file_type (llama_ftype)
    default: str  # ggml type of ordinary weights
    # llama.cpp makes this type only with llama-quantize (convert_hf_to_gguf cannot), so the file is laid out
    # the way llama-quantize writes it: tensors in its weights_map order, quantization_version and
    # file_type moved to the end of the KVs
    by_quantize: bool = False


FILE_TYPES: dict[str, FileType] = {
    ft.name: ft
    for ft in (
        FileType("F32", 0, "F32"),
        FileType("F16", 1, "F16"),
        FileType("BF16", 32, "BF16"),
        FileType("Q8_0", 7, "Q8_0"),
        FileType("Q6_K", 18, "Q6_K", by_quantize=True),
        FileType("Q5_K_M", 17, "Q5_K", by_quantize=True),
        FileType("Q4_K_M", 15, "Q4_K", by_quantize=True),
        FileType("Q4_K_S", 14, "Q4_K", by_quantize=True),
    )
}
ALIASES = {"Q4_K": "Q4_K_M"}
TYPE_CHOICES = (*FILE_TYPES, *ALIASES)


def resolve_file_type(qtype: str) -> FileType:
    """Look up a user-given type name (case-insensitive; Q4_K means Q4_K_M)."""
    key = qtype.upper()
    key = ALIASES.get(key, key)
    if key not in FILE_TYPES:
        raise ConversionError(f"unknown type {qtype!r}; choose one of {', '.join(TYPE_CHOICES)}")
    return FILE_TYPES[key]


def block_size(type_name: str) -> int:
    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]][0]


def row_nbytes(type_name: str, n_cols: int) -> int:
    bs, ts = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    return n_cols // bs * ts


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or _cmod(i - n // 8, 3) == 2


def _cmod(a: int, b: int) -> int:
    """C's % (truncates toward zero), which differs from Python's for negative a."""
    r = abs(a) % b
    return -r if a < 0 else r


def layer_key(name: str) -> tuple[int, str]:
    """llama.cpp's weights_map order: layer number from "blk.N." (-1 for others), then the name."""
    if name.startswith("blk."):
        try:
            return int(name.split(".")[1]), name
        except ValueError:
            pass
    return -1, name


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for cat in ("attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight", "attn_k.weight", "attn_q.weight"):
        if cat in name:
            return cat.removesuffix(".weight")
    if "attn_output.weight" in name:
        return "attn_output"
    for cat in ("ffn_up", "ffn_gate", "ffn_down"):
        if cat in name:
            return cat
    return "other"


def allows_quantization(name: str, n_dims: int) -> bool:
    """llama-quantize's tensor_allows_quantization for the tensors a LLaMA GGUF holds."""
    return (
        n_dims >= 2
        and name.endswith("weight")
        and "_norm.weight" not in name
        and "ffn_gate_inp.weight" not in name
    )


@dataclass(frozen=True)
class TensorSpec:
    """What the mixture needs to know about a tensor: its GGUF name, numpy shape and converter F32 pinning."""

    name: str
    shape: tuple[int, ...]
    keep_f32: bool


def choose_types(
    tensors: list[TensorSpec], ft: FileType, *, n_layer: int, n_expert: int, n_head: int, n_head_kv: int
) -> dict[str, str]:
    """The ggml type name of every tensor for file type `ft`."""
    if ft.name in ("F32", "F16", "BF16"):
        return {t.name: "F32" if t.keep_f32 else ft.default for t in tensors}
    names = {t.name for t in tensors}
    tied = "output.weight" not in names
    n_attention_wv = sum(_category(t.name) in ("attn_v", "attn_qkv", "attn_kv_b") for t in tensors)
    is_70b = n_expert <= 1 and n_layer == 80 and n_head != n_head_kv
    i_attention_wv = i_ffn_down = 0
    types: dict[str, str] = {}
    for t in sorted(tensors, key=lambda t: layer_key(t.name)):
        if t.keep_f32 or not allows_quantization(t.name, len(t.shape)):
            types[t.name] = "F32"
            continue
        cat = _category(t.name)
        new = ft.default
        n_cols = t.shape[-1]
        if cat == "output" or (tied and cat == "token_embd"):
            if n_cols % block_size(new) != 0:
                new = "Q8_0"
            elif new != "Q8_0":
                new = "Q6_K"
        elif cat == "token_embd":
            pass
        elif cat in ("attn_v", "attn_qkv", "attn_kv_b"):
            if ft.name in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_attention_wv, n_attention_wv):
                new = "Q6_K"
            elif ft.name == "Q4_K_S" and i_attention_wv < 4:
                new = "Q5_K"
            if is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            if n_expert == 8:
                new = "Q8_0"
            i_attention_wv += 1
        elif cat == "attn_k":
            if n_expert == 8:
                new = "Q8_0"
        elif cat == "ffn_down":
            i_layer = layer_key(t.name)[0] if n_expert > 1 else i_ffn_down
            if n_expert > 1 and not 0 <= i_layer < n_layer:
                raise ConversionError(
                    f"tensor {t.name!r}: bad layer {i_layer} (num_hidden_layers is {n_layer})"
                )
            if ft.name in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_layer, n_layer):
                new = "Q6_K"
            elif ft.name == "Q4_K_S" and i_layer < n_layer // 8:
                new = "Q5_K"
            i_ffn_down += 1
        elif cat == "attn_output" and n_expert == 8 and ft.name in ("Q4_K_S", "Q4_K_M"):
            new = "Q5_K"
        types[t.name] = _fallback(new, n_cols)
    return types


_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def _fallback(type_name: str, n_cols: int) -> str:
    """tensor_type_fallback: a type whose block does not divide the row length falls back, then to F16."""
    if n_cols % block_size(type_name) == 0:
        return type_name
    new = _FALLBACK.get(type_name, type_name)
    if n_cols % block_size(new) != 0:
        new = "F16"
    return new
