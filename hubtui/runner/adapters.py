"""LoRA adapter GGUFs at run time: checking one against the model it is meant to run on."""

from __future__ import annotations

import os
from pathlib import Path


def check_adapter(path: str | os.PathLike[str], architecture: str) -> str | None:
    """Why llama.cpp would refuse `path` as a LoRA adapter for a model of `architecture`, or None."""
    from quant.errors import QuantError
    from quant.gguf_file import read_gguf_summary

    try:
        summary = read_gguf_summary(Path(path))
    except (OSError, QuantError) as exc:
        return f"adapter {exc}"
    if not summary.is_adapter or summary.kv.get("adapter.type") != "lora":
        return (
            f"{Path(path).name}: not a LoRA adapter GGUF (general.type is {summary.kv.get('general.type')!r})"
        )
    if summary.architecture != architecture:
        return (
            f"{Path(path).name}: adapter for architecture {summary.architecture}, the model is {architecture}"
        )
    return None


def check_adapter_for(path: str | os.PathLike[str], model: str | os.PathLike[str]) -> str | None:
    """`check_adapter` against the model GGUF `model`'s architecture (read from its header's leading KVs);
    None when the model cannot be read either: loading it then says why."""
    from quant.errors import QuantError
    from quant.gguf_file import read_gguf_general

    try:
        architecture = read_gguf_general(Path(model)).get("general.architecture")
    except (OSError, QuantError):
        return None
    return check_adapter(path, architecture) if isinstance(architecture, str) else None
