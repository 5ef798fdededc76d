"""The file types hubtui writes: the one list the converter, the planner, the CLI and the TUI derive from.

A file type (Q4_K_M, Q3_K_S, ...) names a whole-file recipe; each tensor then gets a ggml type (Q4_K, Q6_K,
...) by llama-quantize's per-tensor type rules (`quant.convert.type_rules`). This module is plain data,
cheap to import (no numpy, gguf or numba), so command-line help and the TUI can list the types without
loading the converter.

Sources, in the llama.cpp tree: ftype ids from `include/llama.h`; default ggml types from
`llama_ftype_get_default_type` in `src/llama-quant.cpp`; the perplexity figures in the hints from
`QUANT_OPTIONS` in `tools/quantize/quantize.cpp` (Llama-3-8B; F16 and BF16 measured on Mistral-7B); the bits
per weight from the Llama-3.1-8B table in `tools/quantize/README.md`, which the mixture reproduces
(tests/test_filetypes.py; the types that need an importance matrix with one, which changes IQ3_XXS's
mixture), and for the types that table lacks, the mixture's own figure for the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

from quant.errors import ConversionError, OptionError


@dataclass(frozen=True)
class FileType:
    """One `--type`: its llama_ftype id, the ggml type of ordinary weights, and what to expect of it."""

    name: str
    ftype: int  # general.file_type (llama_ftype)
    default: str  # ggml type of ordinary weights
    bpw: float  # bits per weight of the whole file for Llama-3.1-8B (tensor bits / parameters)
    ppl: float | None  # perplexity increase llama.cpp measured (Llama-3-8B), None where it published none
    note: str  # a few words on when to choose it
    # llama.cpp makes this type only with llama-quantize (convert_hf_to_gguf cannot), so the file is laid out
    # the way llama-quantize writes it: tensors in its weights_map order, quantization_version and
    # file_type moved to the end of the KVs
    by_quantize: bool = True
    # made only with an importance matrix (`convert --imatrix`): below ~3.5 bits the rounding must know which
    # columns matter; llama-quantize itself refuses most of these without one (docs/imatrix.md)
    needs_imatrix: bool = False

    @property
    def quantized(self) -> bool:
        """False for F32/F16/BF16, which take no mixture rules and no per-tensor options."""
        return self.default not in FLOAT_TYPES

    @property
    def summary(self) -> str:
        """Bits per weight and the hint, e.g. "4.89 bpw on Llama-3.1-8B; +0.1754 ppl, balanced: ..."."""
        return f"{self.bpw:.2f} bpw on Llama-3.1-8B; {self.hint}"

    @property
    def hint(self) -> str:
        """One line on size and quality, e.g. "+0.1754 ppl, balanced: the usual choice"."""
        note = self.note + ("; needs an imatrix" if self.needs_imatrix else "")
        if self.ppl is None:
            return note
        return f"{self.ppl:+.4f} ppl, {note}"


FLOAT_TYPES = ("F32", "F16", "BF16")

# Best quality first: sizing recommends the first type that fits, and every list shows them in this order.
FILE_TYPES: dict[str, FileType] = {
    ft.name: ft
    for ft in (
        FileType("F32", 0, "F32", 32.0, None, "lossless; twice the size of F16", by_quantize=False),
        FileType("BF16", 32, "BF16", 16.0005, -0.0050, "lossless for BF16 checkpoints", by_quantize=False),
        FileType("F16", 1, "F16", 16.0005, 0.0020, "practically lossless", by_quantize=False),
        FileType("Q8_0", 7, "Q8_0", 8.5008, 0.0026, "practically lossless", by_quantize=False),
        FileType("Q6_K", 18, "Q6_K", 6.5633, 0.0217, "near lossless"),
        FileType("Q5_K_M", 17, "Q5_K", 5.7036, 0.0569, "very low loss"),
        FileType("Q5_K_S", 16, "Q5_K", 5.5704, 0.1049, "low loss"),
        FileType("Q5_1", 9, "Q5_1", 6.0377, 0.1062, "legacy; Q5_K_M is smaller and better"),
        FileType("Q5_0", 8, "Q5_0", 5.5704, 0.1316, "legacy; Q5_K_S is as small and better"),
        FileType("Q4_K_M", 15, "Q4_K", 4.8944, 0.1754, "balanced: the usual choice"),
        FileType("Q4_K_S", 14, "Q4_K", 4.6672, 0.2689, "small, some loss"),
        FileType("IQ4_NL", 25, "IQ4_NL", 4.6818, None, "non-linear 4-bit, about Q4_K_S quality"),
        FileType("IQ4_XS", 30, "IQ4_XS", 4.4597, None, "non-linear 4-bit, near Q4_K_S quality, smaller"),
        FileType("Q4_1", 3, "Q4_1", 5.1031, 0.4511, "legacy; Q4_K_M is smaller and better"),
        FileType("Q4_0", 2, "Q4_0", 4.6358, 0.4685, "legacy; repacked fastest on ARM and AVX2 CPUs"),
        FileType("Q3_K_L", 13, "Q3_K", 4.2979, 0.5562, "small, noticeable loss"),
        FileType("Q3_K_M", 12, "Q3_K", 3.9960, 0.6569, "very small, noticeable loss"),
        FileType("IQ3_M", 27, "IQ3_S", 3.7628, None, "near Q3_K_M quality, smaller", needs_imatrix=True),
        FileType("IQ3_S", 26, "IQ3_S", 3.6606, None, "better than Q3_K_S and smaller", needs_imatrix=True),
        FileType("Q3_K_S", 11, "Q3_K", 3.6429, 1.6321, "very small, high loss"),
        FileType("IQ3_XS", 22, "IQ3_S", 3.4977, None, "between IQ3_S and IQ3_XXS", needs_imatrix=True),
        FileType("IQ3_XXS", 23, "IQ3_XXS", 3.2548, None, "the smallest good 3-bit type", needs_imatrix=True),
        FileType(
            "Q2_K", 10, "Q2_K", 3.1593, 3.5199, "smallest without an imatrix, severe loss: a last resort"
        ),
        FileType("Q2_K_S", 21, "Q2_K", 2.9697, 3.1836, "severe loss", needs_imatrix=True),
        FileType(
            "IQ2_M", 29, "IQ2_S", 2.9294, None, "high loss: for models too big otherwise", needs_imatrix=True
        ),
        FileType("IQ2_S", 28, "IQ2_XS", 2.7403, None, "high loss", needs_imatrix=True),
        FileType("IQ2_XS", 20, "IQ2_XS", 2.5882, None, "very high loss", needs_imatrix=True),
        FileType("IQ2_XXS", 19, "IQ2_XXS", 2.3824, None, "very high loss", needs_imatrix=True),
        FileType(
            "IQ1_M", 31, "IQ1_M", 2.146, None, "extreme loss: very large models only", needs_imatrix=True
        ),
        FileType(
            "IQ1_S", 24, "IQ1_S", 2.0042, None, "extreme loss: very large models only", needs_imatrix=True
        ),
    )
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}  # as llama-quantize has them
TYPE_CHOICES = (*FILE_TYPES, *ALIASES)

# The types `plan` sizes when none are asked for: all but the two that are never worth their size.
# what convert_hf_to_gguf --outtype offers for a vision projector (mmproj); here so the CLI's option list
# needs no converter import
MMPROJ_TYPES = ("F32", "F16", "BF16", "Q8_0")
PLAN_TYPES = tuple(name for name in FILE_TYPES if name not in ("F32", "BF16"))

# The types made only with an importance matrix (`FileType.needs_imatrix`), in the list's order.
IMATRIX_TYPES = tuple(name for name, ft in FILE_TYPES.items() if ft.needs_imatrix)

# The ggml types a file can hold, so those `--tensor-type`, `--output-tensor-type` and
# `--token-embedding-type` may name: every file type's default type (which covers every type the mixture
# rules and the shape fallbacks pick).
TENSOR_TYPES = tuple(dict.fromkeys(ft.default for ft in FILE_TYPES.values()))


def resolve_file_type(qtype: str) -> FileType:
    """Look up a user-given type name (case-insensitive; Q4_K means Q4_K_M, as in llama-quantize)."""
    key = qtype.strip().upper()
    key = ALIASES.get(key, key)
    if key not in FILE_TYPES:
        raise ConversionError(f"unknown type {qtype!r}; choose one of {', '.join(TYPE_CHOICES)}")
    return FILE_TYPES[key]


IMATRIX_HINT = (
    "compute one with `hubtui imatrix MODEL -o imatrix.gguf` and pass --imatrix imatrix.gguf, "
    "or use --imatrix auto"
)


def usable_with(qtype: str, has_imatrix: bool) -> bool:
    """Whether `check_imatrix_use` lets a conversion to `qtype` go with (or without) an importance matrix:
    the imatrix-only types need one, the float types take none (an unknown name: not ours to judge)."""
    ft = FILE_TYPES.get(qtype)
    if ft is None:
        return True
    return ft.quantized if has_imatrix else not ft.needs_imatrix


def check_imatrix_use(ft: FileType, has_imatrix: bool) -> None:
    """A type that needs an importance matrix gets one; a float type cannot use one (OptionError)."""
    if ft.needs_imatrix and not has_imatrix:
        raise OptionError(f"--type {ft.name} needs an importance matrix (--imatrix): {IMATRIX_HINT}")
    if has_imatrix and not ft.quantized:
        raise OptionError(f"--imatrix: an importance matrix applies to quantised types, not {ft.name}")


def resolve_tensor_type(name: str, option: str) -> str:
    """A ggml type name as llama-quantize accepts it (case-insensitive: q8_0, Q6_K, f16, iq4_nl); `option`
    names the command-line option it came from in the error."""
    key = name.strip().upper()
    if key not in TENSOR_TYPES:
        raise OptionError(
            f"{option}: unknown or unsupported ggml type {name!r}; choose one of {', '.join(TENSOR_TYPES)}"
        )
    return key
