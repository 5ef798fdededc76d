"""Thin, exact wrappers over llama.cpp's vocabulary calls that llama-cpp-python gets slightly wrong.

llama-cpp-python's `detokenize` uses a fixed 32-byte piece buffer and does not strip the
SentencePiece space prefix; these helpers size buffers from llama.cpp's answer and use
`llama_detokenize`, so round trips and streamed text come out as llama.cpp's own tools print them.
"""

from __future__ import annotations

import ctypes
from typing import Any


def vocab_of(llm: Any) -> Any:
    import llama_cpp

    return llama_cpp.llama_model_get_vocab(llm.model)


def piece(vocab: Any, token: int, special: bool = False) -> bytes:
    """The bytes of one token (may be part of a UTF-8 sequence)."""
    import llama_cpp

    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def detokenize(
    vocab: Any, tokens: list[int], remove_special: bool = True, unparse_special: bool = False
) -> str:
    """Tokens back to text exactly as llama.cpp renders them (space prefix handled)."""
    import llama_cpp

    arr = (llama_cpp.llama_token * len(tokens))(*tokens)
    size = max(64, 8 * len(tokens))
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(tokens), buf, size, remove_special, unparse_special)
        if n >= 0:
            return buf.raw[:n].decode("utf-8", errors="replace")
        size = -n


def is_eog(vocab: Any, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(vocab, token))


def add_bos(vocab: Any) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_get_add_bos(vocab))
