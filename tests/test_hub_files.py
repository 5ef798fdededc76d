"""File-list logic of the hub client: safe names, layouts, GGUF quant types, default selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubtui.hub.errors import NotConvertibleError, UnsafeFileNameError
from hubtui.hub.files import (
    check_name,
    detect_layout,
    gguf_quant,
    safe_join,
    select_for_conversion,
    select_gguf,
)


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../x", "/etc/passwd", "C:\\Windows\\x", "D:foo", "\\\\host\\share\\x", "a\0b", "", ".."],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeFileNameError):
        check_name(name)


@pytest.mark.parametrize(
    "name", ["config.json", "original/params.json", "a..b.gguf", "sub/dir/model.safetensors"]
)
def test_ordinary_names_pass(name: str, tmp_path: Path) -> None:
    assert check_name(name) == name
    assert safe_join(tmp_path, name).is_relative_to(tmp_path)


def test_safe_join_refuses_a_symlinked_escape(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeFileNameError):
        safe_join(tmp_path / "root", "link/outside.txt")


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("mistral-7b-instruct-v0.3.Q8_0.gguf", "Q8_0"),
        ("model-IQ4_XS-00001-of-00003.gguf", "IQ4_XS"),
        ("Meta-Llama-3.1-8B-Instruct-f16.gguf", "F16"),
        ("smollm2-135m-bf16.gguf", "BF16"),
        ("q3_k_l/model-q3_k_l.gguf", "Q3_K_L"),
        ("model.gguf", None),
    ],
)
def test_gguf_quant_from_file_name(name: str, quant: str | None) -> None:
    assert gguf_quant(name) == quant


def test_layouts() -> None:
    both = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "consolidated.safetensors",
        "params.json",
    ]
    hf = detect_layout(both)
    assert hf.kind == "hf" and hf.mistral_weights == ["consolidated.safetensors"]
    assert "consolidated.safetensors" not in hf.weights and "model.safetensors.index.json" in hf.weights
    assert detect_layout(["params.json", "consolidated.safetensors"]).kind == "mistral"
    assert detect_layout(["x-Q4_K_M.gguf"]).kind == "gguf"
    pickle = detect_layout(["config.json", "pytorch_model.bin"])
    assert pickle.kind == "pickle" and not pickle.convertible
    assert detect_layout(["README.md"]).kind == "none"


def test_conversion_selection_takes_one_weight_copy_and_no_pickles() -> None:
    names = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "model.safetensors",
        "consolidated.safetensors",
        "params.json",
        "pytorch_model.bin",
        "original/consolidated.00.pth",
        "generation_config.json",
        "LICENSE.txt",
        "images/plot.png",
    ]
    assert select_for_conversion(names, "r") == [
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    mistral = ["params.json", "consolidated.safetensors", "tokenizer.model.v3", "README.md"]
    assert select_for_conversion(mistral, "r") == sorted(mistral)


def test_selection_refuses_pickle_only_and_points_gguf_repos_at_gguf() -> None:
    with pytest.raises(NotConvertibleError, match="pickle"):
        select_for_conversion(["config.json", "pytorch_model.bin"], "x/pickled")
    with pytest.raises(NotConvertibleError, match="Q4_K_M"):
        select_for_conversion(["a-Q4_K_M.gguf"], "x/gguf")


def test_gguf_selection_takes_every_shard_of_one_type() -> None:
    names = ["m-Q4_K_M.gguf", "m-IQ4_XS-00001-of-00002.gguf", "m-IQ4_XS-00002-of-00002.gguf", "m-Q8_0.gguf"]
    assert select_gguf(names, "iq4_xs", "r") == [
        "m-IQ4_XS-00001-of-00002.gguf",
        "m-IQ4_XS-00002-of-00002.gguf",
    ]
    with pytest.raises(NotConvertibleError, match="available: IQ4_XS, Q4_K_M, Q8_0"):
        select_gguf(names, "Q6_K", "r")
