"""Hugging Face safetensors checkpoints (Llama, Mistral, Mixtral) to GGUF, in one streaming step.

`file_layout` lays out the output exactly (tensors, types, offsets, file size) from headers alone;
`convert` writes it. Tokenizer and general.* metadata come from `vocab` and `metadata`.

Names are loaded on first use: `convert` starts its tokenizer helper process before the heavy imports
(numba, the kernels), so the two overlap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# gguf-py without mistral_common, before any submodule imports gguf (quant/gguf_import.py says why)
from quant.gguf_import import gguf  # noqa: F401

_LAZY = {
    "ConvertResult": "quant.convert.api",
    "convert": "quant.convert.api",
    "convert_with_mmproj": "quant.convert.api",
    "default_output_path": "quant.convert.api",
    "Layout": "quant.convert.layout",
    "TensorLayout": "quant.convert.layout",
    "file_layout": "quant.convert.layout",
    "TYPE_CHOICES": "quant.convert.type_rules",
    "resolve_file_type": "quant.convert.type_rules",
    "TensorOptions": "quant.convert.options",
    "ConversionCancelled": "quant.convert.writer",
}

if TYPE_CHECKING:
    from quant.convert.api import ConvertResult, convert, convert_with_mmproj, default_output_path
    from quant.convert.layout import Layout, TensorLayout, file_layout
    from quant.convert.options import TensorOptions
    from quant.convert.type_rules import TYPE_CHOICES, resolve_file_type
    from quant.convert.writer import ConversionCancelled


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quant.convert' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "TYPE_CHOICES",
    "ConversionCancelled",
    "ConvertResult",
    "Layout",
    "TensorLayout",
    "TensorOptions",
    "convert",
    "convert_with_mmproj",
    "default_output_path",
    "file_layout",
    "resolve_file_type",
]
