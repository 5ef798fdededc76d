"""Hugging Face safetensors checkpoints (Llama, Mistral, Mixtral) to GGUF, in one streaming step.

`plan_layout` lays out the output exactly (tensors, types, offsets, file size) from headers alone;
`convert` writes it. Tokenizer and general.* metadata come from `vocab` and `metadata`.
"""

from quant.convert.api import ConvertResult, convert, default_output_path
from quant.convert.layout import Layout, TensorLayout, plan_layout
from quant.convert.mixture import TYPE_CHOICES, resolve_file_type
from quant.convert.writer import ConversionCancelled

__all__ = [
    "TYPE_CHOICES",
    "ConversionCancelled",
    "ConvertResult",
    "Layout",
    "TensorLayout",
    "convert",
    "default_output_path",
    "plan_layout",
    "resolve_file_type",
]
