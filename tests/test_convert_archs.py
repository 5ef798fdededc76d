"""The architecture registry: one family module per llama.cpp architecture, no HF architecture claimed twice."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from quant.convert.archs import Architecture, for_hf_architecture, register, supported_architectures
from quant.convert.archs.llama import Llama
from quant.errors import ConversionError


def test_llama_family_converts_the_2023_24_architectures() -> None:
    for hf in ("LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"):
        family = for_hf_architecture(Path("config.json"), hf)
        assert isinstance(family, Llama) and family.name == "llama"
    assert set(supported_architectures()) >= set(Llama.hf_architectures)


def test_unknown_architecture_is_refused_naming_it_and_the_supported_ones() -> None:
    with pytest.raises(ConversionError, match="GPT2LMHeadModel.*LlamaForCausalLM") as exc:
        for_hf_architecture(Path("/x/config.json"), "GPT2LMHeadModel")
    assert str(exc.value).startswith("/x/config.json: unsupported architecture")
    with pytest.raises(ConversionError, match="missing"):
        for_hf_architecture(Path("/x/config.json"), None)


def test_registry_refuses_a_second_claim_on_an_hf_architecture() -> None:
    class Impostor(Architecture):
        name = "llama"
        hf_architectures = ("MistralForCausalLM",)

    with pytest.raises(ValueError, match="MistralForCausalLM is claimed by both Llama and Impostor"):
        register(Impostor)
    assert isinstance(for_hf_architecture(Path("c"), "MistralForCausalLM"), Llama)


def test_registry_refuses_an_architecture_llama_cpp_does_not_have() -> None:
    class Made(Architecture):
        name = "no-such-arch"
        hf_architectures = ("MadeUpForCausalLM",)

    with pytest.raises(ValueError, match="not a llama.cpp architecture"):
        register(Made)
    with pytest.raises(ConversionError):
        for_hf_architecture(Path("c"), "MadeUpForCausalLM")


def test_every_family_writes_a_llama_cpp_architecture_with_the_tensors_it_maps() -> None:
    from quant.convert.archs.base import _FAMILIES

    for family in _FAMILIES.values():
        arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[family.name]
        assert gguf.MODEL_TENSOR.TOKEN_EMBD in gguf.MODEL_TENSORS[arch]
