"""gguf-py, imported without its optional mistral_common import: `from quant.gguf_import import gguf`.

gguf's package import tries mistral_common for its MistralVocab (0.3-0.5 s, a third of the converter's
start-up and most of the TUI's Local listing when the cache holds GGUFs), which this project never uses
(quant.convert.vocab and quant.convert.mistral_vocab read tokenizers themselves). The block is lifted right
after, so mistral_common stays importable for everyone else. If gguf or mistral_common is loaded already,
nothing changes.
"""

from __future__ import annotations

import sys


def _import_gguf() -> None:
    if "gguf" in sys.modules or "mistral_common" in sys.modules:
        return
    sys.modules["mistral_common"] = None  # type: ignore[assignment]  # makes its import raise ImportError
    try:
        import gguf  # noqa: F401
    finally:
        del sys.modules["mistral_common"]


_import_gguf()

import gguf  # noqa: E402

__all__ = ["gguf"]
