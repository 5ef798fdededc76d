"""The per-tensor type rules: the ggml type of every tensor for each file type, exactly as llama.cpp chooses.

F32/F16/BF16 follow convert_hf_to_gguf's --outtype rules. The quantised file types follow llama-quantize
(`llama_tensor_get_type` and `llama_tensor_get_type_impl` in src/llama-quant.cpp) applied to the F32
conversion: per-tensor options first, then the mixture rules by tensor category (with the attn_v / ffn_down
counters in llama-quantize's sorted processing order), then the shape fallback (`tensor_type_fallback`) for
a type whose block does not divide a row. The file-type list itself lives in quant.filetypes.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf

from quant.convert.options import TensorOptions, TensorTypeRule
from quant.errors import ConversionError, OptionError
from quant.filetypes import ALIASES, FILE_TYPES, TYPE_CHOICES, FileType, resolve_file_type

__all__ = [
    "ALIASES",
    "FILE_TYPES",
    "TYPE_CHOICES",
    "FileType",
    "TensorSpec",
    "block_size",
    "choose_types",
    "layer_key",
    "resolve_file_type",
    "row_nbytes",
    "use_more_bits",
]


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


def category(name: str) -> str:
    """llama-quantize's broad tensor category (tensor_get_category): exact names, then substrings in order."""
    if name == "output.weight":
        return "output"
    # (llama.cpp also counts Gemma 3n's per_layer_token_embd.weight here, a tensor our converter never writes)
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


ATTN_V_LIKE = ("attn_v", "attn_qkv", "attn_kv_b")  # the tensors the attn_v rules and counter cover


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

    @property
    def n_cols(self) -> int:
        return self.shape[-1]


def choose_types(
    tensors: list[TensorSpec],
    ft: FileType,
    *,
    n_layer: int,
    n_expert: int,
    n_head: int,
    n_head_kv: int,
    options: TensorOptions | None = None,
    has_imatrix: bool = False,
) -> dict[str, str]:
    """The ggml type name of every tensor for file type `ft` (and llama-quantize's per-tensor `options`).

    `has_imatrix`: an importance matrix is applied, which changes a few rules (IQ3_XXS, IQ4_NL/IQ4_XS,
    Q4_0/Q5_0), as it does in llama-quantize.
    """
    options = options or TensorOptions()
    options.check_file_type(ft)
    if not ft.quantized:
        return {t.name: "F32" if t.keep_f32 else ft.default for t in tensors}
    mixture = Mixture(
        ft,
        tensors,
        n_layer=n_layer,
        n_expert=n_expert,
        n_head=n_head,
        n_head_kv=n_head_kv,
        has_imatrix=has_imatrix,
    )
    chooser = _Chooser(mixture, options)
    types = {t.name: chooser.tensor_type(t) for t in sorted(tensors, key=lambda t: layer_key(t.name))}
    chooser.check_rules_used(tensors)
    return types


class Mixture:
    """llama_tensor_get_type_impl for one file: the model facts its rules read and its running counters.

    `rule_type` must see the tensors in llama-quantize's processing order (`layer_key`), each once.
    """

    def __init__(
        self,
        ft: FileType,
        tensors: list[TensorSpec],
        *,
        n_layer: int,
        n_expert: int,
        n_head: int,
        n_head_kv: int,
        has_imatrix: bool = False,
    ) -> None:
        self.ft = ft
        self.has_imatrix = has_imatrix
        self.n_layer = n_layer
        self.n_expert = n_expert
        self.n_gqa = n_head // n_head_kv if n_head_kv else 0
        # llama.cpp's LLM_TYPE_70B: a LLaMA with 80 layers and grouped KV heads (not an 8-expert model)
        self.is_70b = n_expert != 8 and n_layer == 80 and n_head != n_head_kv
        self.tied = all(t.name != "output.weight" for t in tensors)
        self.n_attention_wv = sum(category(t.name) in ATTN_V_LIKE for t in tensors)
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0

    def _layer(self, t: TensorSpec, counter: int) -> int:
        """The layer an FFN rule reads: the running counter, or for MoE models the number in the name."""
        if self.n_expert <= 1:
            return counter
        i = layer_key(t.name)[0]
        if not 0 <= i < self.n_layer:
            raise ConversionError(f"tensor {t.name!r}: bad layer {i} (num_hidden_layers is {self.n_layer})")
        return i

    def rule_type(self, t: TensorSpec, cat: str, new: str, output_tensor_type: str | None) -> str:
        """The mixture's type for `t`, starting from the file type's default `new`."""
        ft, n, im = self.ft.name, self.n_layer, self.has_imatrix
        if cat == "output" or (self.tied and cat == "token_embd"):
            if output_tensor_type:
                return output_tensor_type
            if t.n_cols % block_size(new) != 0:
                return "Q8_0"
            if ft in LOW or ft == "IQ3_XXS":
                return "Q5_K"
            return new if new == "Q8_0" else "Q6_K"
        if cat == "token_embd":
            if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                return "Q2_K"
            if ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                return "IQ3_S"
            return new
        if ft in LOW:
            return self._low_rule(t, cat, new)
        if cat in ATTN_V_LIKE:
            i = self.i_attention_wv
            if ft == "Q2_K":
                new = "Q4_K" if self.n_gqa >= 4 else "Q3_K"
            elif ft == "Q2_K_S":
                if self.n_gqa >= 4:
                    new = "Q4_K"
            elif ft == "IQ3_XXS":
                new = "Q4_K" if self.n_gqa >= 4 else ("IQ3_XXS" if im else "IQ3_S")
            elif ft in ("IQ3_XS", "IQ3_S"):
                if self.n_gqa >= 4:
                    new = "Q4_K"
            elif ft == "IQ3_M":
                new = "Q4_K"
            elif ft == "Q3_K_M":
                new = "Q5_K" if i < 2 else "Q4_K"
            elif ft == "Q3_K_L" or (ft in ("IQ4_NL", "IQ4_XS") and self.n_gqa >= 4):
                new = "Q5_K"
            elif ft in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, self.n_attention_wv):
                new = "Q6_K"
            elif ft == "Q4_K_S" and i < 4:
                new = "Q5_K"
            if self.is_70b and new in ("Q3_K", "Q4_K"):  # attn_v is 8x smaller there: more bits are cheap
                new = "Q5_K"
            if self.n_expert == 8:
                new = "Q8_0"
            self.i_attention_wv += 1
        elif cat == "attn_k":
            if self.n_expert == 8:
                new = "Q8_0"
            elif ft == "IQ3_XS":
                new = "IQ3_XXS"
            elif ft == "IQ3_XXS":
                new = "IQ2_S"
        elif cat == "attn_q":
            if ft == "IQ3_XS":
                new = "IQ3_XXS"
            elif ft == "IQ3_XXS":
                new = "IQ2_S"
        elif cat == "ffn_down":
            i = self._layer(t, self.i_ffn_down)
            if ft == "Q2_K":
                new = "Q3_K"
            elif ft == "Q2_K_S":
                if i < n // 8:
                    new = "Q4_K"
            elif ft == "IQ3_XXS" and not im:
                new = "Q4_K" if i < n // 8 else "Q3_K"
            elif ft == "Q3_K_M":
                new = "Q5_K" if i < n // 16 else "Q4_K"
            elif ft == "IQ3_M" and (i < n // 8 or (self.n_expert == 8 and use_more_bits(i, n))):
                new = "Q4_K"
            elif ft == "Q3_K_L":
                new = "Q5_K"
            elif ft == "Q4_K_M":
                if use_more_bits(i, n):
                    new = "Q6_K"
            elif i < n // 8 and ft in ("IQ4_NL", "IQ4_XS") and not im:
                new = "Q5_K"
            elif ft == "Q5_K_M" and use_more_bits(i, n):
                new = "Q6_K"
            elif ft == "Q4_K_S" and i < n // 8:
                new = "Q5_K"
            elif ft in ("Q4_0", "Q5_0") and im and i < n // 8:
                new = "Q4_1" if ft == "Q4_0" else "Q5_1"
            self.i_ffn_down += 1
        elif cat == "attn_output":
            if self.n_expert == 8:
                if ft in _ATTN_OUTPUT_Q5_K_MOE:
                    new = "Q5_K"
            elif ft == "Q2_K":
                new = "Q3_K"
            elif ft == "IQ3_XXS":
                new = "IQ3_S"
            elif ft in ("Q3_K_M", "IQ3_M"):
                new = "Q4_K"
            elif ft == "Q3_K_L":
                new = "Q5_K"
        elif cat == "ffn_gate":
            i = self._layer(t, self.i_ffn_gate)
            if ft == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
                new = "IQ3_XXS"
            self.i_ffn_gate += 1
        elif cat == "ffn_up":
            i = self._layer(t, self.i_ffn_up)
            if ft == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
                new = "IQ3_XXS"
            self.i_ffn_up += 1
        return new

    def _low_rule(self, t: TensorSpec, cat: str, new: str) -> str:
        """The rules of the 1- and 2-bit file types (`LOW`), which llama.cpp checks before the others."""
        ft = self.ft.name
        wide = ft in ("IQ2_S", "IQ2_M")  # these take IQ3_S where the others take Q2_K
        if cat in ATTN_V_LIKE:
            grouped = self.n_gqa >= 4 or self.n_expert >= 4
            new = "Q4_K" if grouped else ("IQ3_S" if wide else "Q2_K")
            self.i_attention_wv += 1
        elif cat == "attn_k":
            if self.n_expert == 8:
                new = "Q4_K"
        elif cat == "ffn_down":
            if self.i_ffn_down < self.n_layer // 8:  # the running counter, even for MoE models
                new = "IQ3_S" if wide else "Q2_K"
            self.i_ffn_down += 1
        elif cat == "attn_output":
            if self.n_expert == 8:
                new = "Q5_K"
            elif ft in ("IQ1_S", "IQ1_M"):
                new = "IQ2_XXS"
            elif wide:
                new = "IQ3_S"
        return new


# the 1- and 2-bit file types, whose rules come first (IQ3_XXS is not one of them)
LOW = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")
# attn_output of an 8-expert model takes Q5_K for these
_ATTN_OUTPUT_Q5_K_MOE = (
    "Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS",
)  # fmt: skip


class _Chooser:
    """llama_tensor_get_type: the per-tensor options, then the mixture rules, then the shape fallback."""

    def __init__(self, mixture: Mixture, options: TensorOptions) -> None:
        self.mixture, self.options = mixture, options
        self.used: set[int] = set()  # indices of the --tensor-type rules that decided a tensor

    def tensor_type(self, t: TensorSpec) -> str:
        opts, default = self.options, self.mixture.ft.default
        if t.keep_f32 or not allows_quantization(t.name, len(t.shape)):
            return "F32"
        if opts.leave_output_tensor and t.name == "output.weight":
            return "F32"  # left as the F32 conversion has it
        cat = category(t.name)
        if opts.token_embedding_type and cat == "token_embd":
            return self._exact(t, opts.token_embedding_type, "--token-embedding-type")
        if opts.output_tensor_type and cat == "output":
            return self._exact(t, opts.output_tensor_type, "--output-tensor-type")
        rule = self._first_rule(t.name)
        if rule is not None:
            new = rule.type
        elif opts.pure:
            new = default
        else:
            new = self.mixture.rule_type(t, cat, default, opts.output_tensor_type)
        return fallback(new, t.n_cols)

    def _first_rule(self, name: str) -> TensorTypeRule | None:
        for i, rule in enumerate(self.options.tensor_types):
            if rule.matches(name):
                self.used.add(i)
                return rule
        return None

    @staticmethod
    def _exact(t: TensorSpec, type_name: str, option: str) -> str:
        """A type the user named for one tensor is used as is (llama-quantize has no fallback for it)."""
        bs = block_size(type_name)
        if t.n_cols % bs:
            raise OptionError(
                f"{option} {type_name}: {t.name} has rows of {t.n_cols} values, not a multiple of "
                f"{type_name}'s block of {bs}"
            )
        return type_name

    def check_rules_used(self, tensors: list[TensorSpec]) -> None:
        """A --tensor-type rule that decides no tensor is almost always a typo: say so instead of ignoring it."""
        for i, rule in enumerate(self.options.tensor_types):
            if i in self.used:
                continue
            if any(rule.matches(t.name) for t in tensors if allows_quantization(t.name, len(t.shape))):
                why = "every tensor it matches is decided by another option first"
            else:
                why = "it matches no quantisable tensor (names look like blk.0.attn_v.weight)"
            raise OptionError(f"--tensor-type {rule.text!r} has no effect: {why}")


# tensor_type_fallback: a type whose block does not divide the row length gives way to a 32-block type
_FALLBACK = {
    **dict.fromkeys(("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"), "IQ4_NL"),
    "IQ4_XS": "IQ4_NL",
    "Q2_K": "Q4_0",
    "Q3_K": "Q4_0",
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
}


def fallback(type_name: str, n_cols: int) -> str:
    """tensor_type_fallback: the 32-block stand-in when the type's block does not divide the row, then F16."""
    bs = block_size(type_name)
    if n_cols % bs == 0:
        return type_name
    new = _FALLBACK.get(type_name)
    if new is None:
        if bs > 32:
            raise ConversionError(f"no tensor type fallback is defined for type {type_name}")
        new = type_name
    if n_cols % block_size(new) != 0:
        new = "F16"
    return new
