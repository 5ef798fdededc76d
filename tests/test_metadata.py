"""quant.convert.metadata: general.* KVs and default file names as llama.cpp's converter makes them."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import gguf
import pytest

from quant.convert.metadata import GeneralInfo, default_output_name, load_general
from quant.convert.vocab import load_vocab
from quant.errors import ConversionError

G = gguf.Keys.General
V = gguf.GGUFValueType

# Real parameter counts (llama.cpp counts the elements of every tensor it writes).
MIXTRAL_8X7B = 46_702_792_704
MIXTRAL_EXPERT = 32 * 3 * 4096 * 14336  # one expert's w1, w2, w3 over the 32 layers
LLAMA_32_1B = 1_235_814_400


def safetensors_params(src: Path) -> int:
    """Element count of every tensor in the checkpoint's safetensors files, from their headers only."""
    total = 0
    for shard in sorted(src.glob("*.safetensors")):
        with shard.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total


def _checkpoint(root: Path, dirname: str, config: dict[str, Any] | None = None, **files: str) -> Path:
    src = root / dirname
    src.mkdir(parents=True)
    (src / "config.json").write_text(json.dumps(config or {"architectures": ["LlamaForCausalLM"]}))
    for name, text in files.items():
        (src / name.replace("_DOT_", ".")).write_text(text, encoding="utf-8")
    return src


def _kvs(info: GeneralInfo) -> dict[str, tuple[Any, V]]:
    w = gguf.GGUFWriter(None, "llama")
    info.write_to(w)
    return {k: (v.value, v.type) for k, v in w.kv_data[0].items()}


def test_smollm2_name_size_and_default_file_name(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())
    info = load_general(smollm2_dir, config, n_params=safetensors_params(smollm2_dir))
    assert smollm2_dir.name == "SmolLM2-135M-Instruct"
    assert (info.basename, info.size_label, info.finetune, info.version) == (
        "SmolLM2",
        "135M",
        "Instruct",
        None,
    )
    assert info.license == "apache-2.0"
    assert default_output_name(info, "Q4_K_M") == "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert default_output_name(info, "F16") == "SmolLM2-135M-Instruct-F16.gguf"
    # base_model from the model card front matter
    assert info.base_models == [
        {"name": "SmolLM2 135M", "organization": "HuggingFaceTB",
         "repo_url": "https://huggingface.co/HuggingFaceTB/SmolLM2-135M"},
    ]  # fmt: skip
    kv = _kvs(info)
    assert kv[G.BASE_MODEL_COUNT] == (1, V.UINT32)
    assert kv["general.base_model.0.organization"] == ("HuggingFaceTB", V.STRING)
    assert kv[G.LANGUAGES][0] == ["en"]


def test_kv_order_and_types(llama3_tiny_dir: Path) -> None:
    config = json.loads((llama3_tiny_dir / "config.json").read_text())
    generation = json.loads((llama3_tiny_dir / "generation_config.json").read_text())
    info = load_general(llama3_tiny_dir, config, n_params=20_000_000)
    w = gguf.GGUFWriter(None, "llama")
    info.write_to(w)
    kv = w.kv_data[0]
    keys = list(kv)
    assert keys[:2] == [G.ARCHITECTURE, G.TYPE]
    assert kv[G.TYPE].value == "model"
    # sampling defaults first, then the name block, then license and the lists (gguf-py's order)
    assert keys.index(G.SAMPLING_TOP_P) < keys.index(G.SAMPLING_TEMP) < keys.index(G.NAME)
    assert keys.index(G.NAME) < keys.index(G.SIZE_LABEL) < keys.index(G.LICENSE) < keys.index(G.TAGS)
    assert kv[G.SAMPLING_TOP_P].value == generation["top_p"] and kv[G.SAMPLING_TOP_P].type == V.FLOAT32
    assert kv[G.SAMPLING_TEMP].value == generation["temperature"]
    assert kv[G.NAME].value == "Llama3 Tiny" and kv[G.SIZE_LABEL].value == "20M"
    assert kv[G.LICENSE].value == "llama3.2"
    assert info.sampling == {"top_p": generation["top_p"], "temp": generation["temperature"]}
    # a writer that already holds general.type is not given a second one
    w2 = gguf.GGUFWriter(None, "llama")
    w2.add_type(gguf.GGUFType.MODEL)
    info.write_to(w2)
    assert list(w2.kv_data[0]) == keys


def test_llama_cpp_reads_general_and_tokenizer_kvs(mistral_tiny_dir: Path, tmp_path: Path) -> None:
    from llama_cpp import Llama

    config = json.loads((mistral_tiny_dir / "config.json").read_text())
    info = load_general(mistral_tiny_dir, config, n_params=safetensors_params(mistral_tiny_dir))
    path = tmp_path / default_output_name(info, "F16")
    w = gguf.GGUFWriter(str(path), "llama")
    info.write_to(w)
    for add, value in ((w.add_block_count, 1), (w.add_context_length, 64), (w.add_embedding_length, 64)):
        add(value)
    w.add_feed_forward_length(64)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-5)
    load_vocab(mistral_tiny_dir, config).write_to(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta = Llama(str(path), vocab_only=True, verbose=False).metadata
    assert meta["general.name"] == info.name == "Mistral Tiny"
    assert meta["general.size_label"] == info.size_label
    assert meta["general.license"] == "apache-2.0"
    assert meta["general.type"] == "model"
    assert path.name == f"Mistral-Tiny-{info.size_label}-F16.gguf"


def test_directory_name_heuristics(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, "Mixtral-8x7B-Instruct-v0.1")
    info = load_general(src, {}, n_params=MIXTRAL_8X7B, n_experts=8, expert_params=MIXTRAL_EXPERT)
    assert (info.name, info.basename) == ("Mixtral 8x7B Instruct v0.1", "Mixtral")
    assert (info.size_label, info.finetune, info.version) == ("8x7B", "Instruct", "v0.1")
    assert default_output_name(info, "Q4_K_M") == "Mixtral-8x7B-Instruct-v0.1-Q4_K_M.gguf"


def test_size_label_computed_when_names_say_nothing(tmp_path: Path) -> None:
    moe = load_general(
        _checkpoint(tmp_path, "my-moe"), {}, n_params=MIXTRAL_8X7B, n_experts=8, expert_params=MIXTRAL_EXPERT
    )
    assert moe.size_label == "8x7.2B"  # shared + one expert, as gguf-py labels it
    dense = load_general(_checkpoint(tmp_path, "checkpoint"), {}, n_params=LLAMA_32_1B)
    assert dense.size_label == "1.2B"
    assert dense.name == "Checkpoint" and dense.basename is None
    assert default_output_name(dense, "Q8_0") == "Checkpoint-1.2B-Q8_0.gguf"


def test_config_name_or_path(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, "snapshot")
    info = load_general(src, {"_name_or_path": "meta-llama/Llama-3.2-1B-Instruct"}, n_params=LLAMA_32_1B)
    assert info.name == "Llama 3.2 1B Instruct"
    assert info.metadata.organization == "Meta Llama"
    assert (info.basename, info.size_label, info.finetune) == ("Llama-3.2", "1B", "Instruct")
    assert default_output_name(info, "Q4_K_M") == "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    # a local path in _name_or_path is not a model id
    other = load_general(src, {"_name_or_path": "/fsx/runs/llama/ckpt"}, n_params=LLAMA_32_1B)
    assert other.name == "Snapshot"


def test_model_card_and_generation_config(tmp_path: Path) -> None:
    card = (
        "---\n"
        "model_name: Fancy Model\n"
        "license:\n- apache-2.0\n- mit\n"
        "version: 2.0\n"
        "base_model: mistralai/Mistral-7B-v0.3\n"
        "language:\n- en\n- no\n"
        "tags:\n- chat\n"
        "---\n# Fancy\n"
    )
    generation = json.dumps({"temperature": 0.7, "top_k": 40, "repetition_penalty": 1.1, "do_sample": True})
    src = _checkpoint(tmp_path, "fancy", README_DOT_md=card, generation_config_DOT_json=generation)
    info = load_general(src, {}, n_params=7_248_023_552)
    kv = _kvs(info)
    assert kv[G.NAME] == ("Fancy Model", V.STRING)
    assert kv[G.LICENSE] == ("apache-2.0,mit", V.STRING)
    assert kv[G.VERSION] == ("2.0", V.STRING)
    assert kv[G.LANGUAGES][0] == ["en", "no"]  # the YAML "Norway problem" is avoided
    assert kv["general.base_model.0.name"] == ("Mistral 7B v0.3", V.STRING)
    assert kv["general.base_model.0.version"] == ("v0.3", V.STRING)
    assert kv[G.SAMPLING_TOP_K] == (40, V.INT32)
    assert kv[G.SAMPLING_TEMP] == (0.7, V.FLOAT32)
    assert kv[G.SAMPLING_PENALTY_REPEAT] == (1.1, V.FLOAT32)
    assert info.size_label == "7.2B"


def test_unreadable_generation_config_is_ignored(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, "m", generation_config_DOT_json="{ not json")
    assert load_general(src, {}, n_params=1000).sampling == {}


def test_bad_generation_config_value_names_the_key(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, "m", generation_config_DOT_json=json.dumps({"top_k": "forty"}))
    with pytest.raises(ConversionError, match=r"generation_config\.json: top_k has the wrong type"):
        load_general(src, {}, n_params=1000)


def test_malformed_front_matter_is_an_error(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, "m", README_DOT_md="---\nlicense: [apache\nname: x\n---\n")
    with pytest.raises(ConversionError, match=r"README\.md: front matter is not valid YAML") as e:
        load_general(src, {}, n_params=1000)
    assert "\n" not in str(e.value)


def test_front_matter_value_of_the_wrong_kind_is_an_error(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, "m", README_DOT_md="---\nmodel_name:\n  nested: map\n---\n")
    with pytest.raises(ConversionError, match=r"README\.md: name should be text"):
        load_general(src, {}, n_params=1000)


def test_no_card_no_config_name(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, "plain")
    info = load_general(src, {}, n_params=0)
    assert info.name == "Plain" and info.size_label is None and info.license is None
    assert default_output_name(info, "BF16") == "Plain-BF16.gguf"


def test_hub_cache_snapshot_is_named_after_the_repo(tmp_path: Path) -> None:
    """A download in the Hugging Face cache is named after its repo id, not the commit hash."""
    cache = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots"
    src = _checkpoint(cache, "4e53ee1f2d2c6b1a0bd2f5c6e0d1b3a4c5d6e7f8")
    info = load_general(src, {}, n_params=134_515_008)
    assert info.name == "SmolLM2 135M Instruct"
    assert info.metadata.organization == "HuggingFaceTB"
    assert default_output_name(info, "Q4_K_M") == "SmolLM2-135M-Instruct-Q4_K_M.gguf"
