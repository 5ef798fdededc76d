"""The perplexity passage: the opening of Jane Austen's *Pride and Prejudice* (1813, public domain).

Plain English prose of a few hundred tokens, shipped as package data so every smoke test of every
quant scores the same text and the numbers compare across files and machines.
"""

from __future__ import annotations

from importlib import resources

PASSAGE_SOURCE = "Jane Austen, Pride and Prejudice (1813), chapter 1 (public domain)"


def passage_text() -> str:
    return resources.files("hubtui.runner").joinpath("passage.txt").read_text(encoding="utf-8")
