"""The test checkpoints are what the rest of the suite assumes: HF layout, shapes, tokenizers, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from quant.convert.tokenizer_probe import CHKTXT
from tests.fixtures.checkpoints import build_mixtral_tiny

# llama.cpp's pre-tokenizer probe text (convert_hf_to_gguf `get_vocab_base_pre`): the converter's copy,
# pinned by its sha256, and the hashes llama.cpp knows for the fixtures
CHKTXT_SHA256 = "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da"
PRE_HASHES = {
    "llama3-tiny": "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5",  # llama-bpe
    "llama4-tiny": "d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406",  # llama4
    "smollm2-135m": "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249",  # smollm
}
TRICKY = [
    "Hello world",
    " leading space and  double  spaces ",
    "line one\nline two\n\n\ttabbed\r\n",
    "digits 1234567 3.14159 and 1,000,000",
    "emoji 🦙🚀 and 😶‍🌫️ joined",
    "中文和日本語のテキスト, 한국어",
    "I've they're we'LL don't",
    "<|im_start|>user\nhi<|im_end|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "ünïcödé çåfé naïve",
    "code: def f(x):\n    return x**2  # comment",
]
SAMPLE = "Mistral tokenizers keep spaces: hello  world!\nNumbers 12345, émigré, 中文, 🦙 and [INST] text."
DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def expected_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor an HF Llama/Mistral/Mixtral checkpoint of this config must hold, with its shape."""
    h, v, f = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    d = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    out = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg.get("tie_word_embeddings"):
        out["lm_head.weight"] = (v, h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)}
        out |= {p + "self_attn.q_proj.weight": (q, h), p + "self_attn.o_proj.weight": (h, q)}
        out |= {p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.v_proj.weight": (kv, h)}
        if cfg["architectures"] == ["MixtralForCausalLM"]:
            out[p + "block_sparse_moe.gate.weight"] = (cfg["num_local_experts"], h)
            for e in range(cfg["num_local_experts"]):
                x = f"{p}block_sparse_moe.experts.{e}."
                out |= {x + "w1.weight": (f, h), x + "w2.weight": (h, f), x + "w3.weight": (f, h)}
        else:
            p += "mlp."
            out |= {
                p + "gate_proj.weight": (f, h),
                p + "up_proj.weight": (f, h),
                p + "down_proj.weight": (h, f),
            }
    return out


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def shard_files(ckpt: Path) -> list[Path]:
    return sorted(ckpt.glob("*.safetensors"))


@pytest.fixture(scope="module")
def llama_vocab_only():
    """llama.cpp's tokenizer for the original SmolLM2 GGUF (vocabulary only, no weights)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from hubtui.demo.smollm2 import bundled_gguf

    return llama_cpp.Llama(model_path=str(bundled_gguf()), vocab_only=True, verbose=False)


def test_checkpoints_cover_the_layouts_the_converter_must_read(checkpoints):
    assert set(checkpoints) == {
        "smollm2-135m",
        "llama3-tiny",
        "mistral-tiny",
        "mixtral-tiny",
        "llama3-tiny-fp8",
        "llama4-tiny",
        "llama4-vision-tiny",
    }
    configs = {name: load_json(path / "config.json") for name, path in checkpoints.items()}
    assert any((path / "model.safetensors.index.json").exists() for path in checkpoints.values())
    assert any("rope_theta" in c for c in configs.values())
    assert any("rope_theta" in c.get("rope_parameters", {}) for c in configs.values())
    assert configs["llama3-tiny"]["rope_parameters"]["rope_type"] == "llama3"
    assert {c["architectures"][0] for c in configs.values()} == {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "Llama4ForCausalLM",
        "Llama4ForConditionalGeneration",
    }
    dtypes = {DTYPES[c.get("torch_dtype") or c["dtype"]] for c in configs.values()}
    assert dtypes == {"BF16", "F16", "F32"}
    for path in checkpoints.values():
        size = sum(f.stat().st_size for f in path.iterdir())
        assert size < 300e6, f"{path.name} is {size / 1e6:.0f} MB"


@pytest.mark.parametrize("name", ["smollm2-135m", "llama3-tiny", "mistral-tiny", "mixtral-tiny"])
def test_weights_match_config(checkpoints, name):
    ckpt = checkpoints[name]
    cfg = load_json(ckpt / "config.json")
    dtype = DTYPES[cfg.get("torch_dtype") or cfg["dtype"]]
    found: dict[str, tuple[int, ...]] = {}
    for path in shard_files(ckpt):
        with safe_open(path, framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = f.get_slice(key)
                assert tensor.get_dtype() == dtype, key
                assert key not in found, f"{key} is in two shards"
                found[key] = tuple(tensor.get_shape())
    assert found == expected_shapes(cfg)
    # and the values are finite and not degenerate (spot check through a widening read)
    from tests.reference.forward import read_safetensors

    name = "model.embed_tokens.weight"
    (w,) = [t for p in shard_files(ckpt) for t in read_safetensors(p, {name}).values()]
    assert np.isfinite(w).all() and 0.005 < float(w.std()) < 0.5


@pytest.mark.parametrize("name", ["smollm2-135m", "llama3-tiny", "mistral-tiny", "mixtral-tiny"])
def test_configs_and_index(checkpoints, name):
    ckpt = checkpoints[name]
    tok_cfg = load_json(ckpt / "tokenizer_config.json")
    assert tok_cfg["chat_template"] and tok_cfg["bos_token"] and tok_cfg["eos_token"]
    gen = load_json(ckpt / "generation_config.json")
    assert gen["bos_token_id"] == load_json(ckpt / "config.json")["bos_token_id"]
    card = (ckpt / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "\nlicense: " in card.split("\n---\n")[0]
    index = ckpt / "model.safetensors.index.json"
    if not index.exists():
        assert [p.name for p in shard_files(ckpt)] == ["model.safetensors"]
        return
    data = load_json(index)
    files = shard_files(ckpt)
    assert len(files) > 1 and {p.name for p in files} == set(data["weight_map"].values())
    total = 0
    for path in files:
        with safe_open(path, framework="numpy") as f:
            keys = set(f.keys())
        assert keys == {k for k, v in data["weight_map"].items() if v == path.name}
        (n,) = np.frombuffer(path.read_bytes()[:8], dtype="<u8")
        total += path.stat().st_size - 8 - int(n)
    assert data["metadata"]["total_size"] == total


@pytest.mark.parametrize("name", ["smollm2-135m", "llama3-tiny", "llama4-tiny"])
def test_tokenizer_json_loads_and_is_identified_like_llama_cpp(checkpoints, name):
    from tokenizers import Tokenizer

    ckpt = checkpoints[name]
    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    cfg, tok_cfg = load_json(ckpt / "config.json"), load_json(ckpt / "tokenizer_config.json")
    assert tok.get_vocab_size(with_added_tokens=True) == cfg["vocab_size"]
    assert tok.token_to_id(tok_cfg["bos_token"]) == cfg["bos_token_id"]
    for token_id, entry in tok_cfg["added_tokens_decoder"].items():
        assert tok.token_to_id(entry["content"]) == int(token_id)
    assert hashlib.sha256(CHKTXT.encode()).hexdigest() == CHKTXT_SHA256
    chkhsh = hashlib.sha256(str(tok.encode(CHKTXT).ids).encode()).hexdigest()
    assert chkhsh == PRE_HASHES[name]
    for text in TRICKY:
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text


def test_llama3_tokenizer_json_equals_meta_tiktoken(llama3_tiny_dir):
    from tokenizers import Tokenizer

    from tests.fixtures.llama3_tokenizer import llama3_tiktoken

    meta = llama3_tiktoken()
    tok = Tokenizer.from_file(str(llama3_tiny_dir / "tokenizer.json"))
    for text in [*TRICKY, CHKTXT]:
        expected = meta.encode(text, bos=True, eos=False, allowed_special="all")
        assert tok.encode(text).ids == expected, text
    assert tok.token_to_id("<|eot_id|>") == 128009 and tok.get_vocab_size() == 128256


def test_llama4_tokenizer_json_equals_meta_tiktoken(llama4_tiny_dir, llama4_vision_tiny_dir):
    from tokenizers import Tokenizer

    from tests.fixtures.llama3_tokenizer import llama4_tiktoken

    meta = llama4_tiktoken()
    tok = Tokenizer.from_file(str(llama4_tiny_dir / "tokenizer.json"))
    for text in [*TRICKY, CHKTXT, "<|header_start|>user<|header_end|>\n\nHi<|eot|>"]:
        expected = meta.encode(text, bos=True, eos=False, allowed_special="all")
        assert tok.encode(text).ids == expected, text
    assert tok.token_to_id("<|eot|>") == 200008 and tok.get_vocab_size() == 202048
    assert (llama4_vision_tiny_dir / "tokenizer.json").read_bytes() == (
        llama4_tiny_dir / "tokenizer.json"
    ).read_bytes()


@pytest.mark.parametrize("name", ["llama4-tiny", "llama4-vision-tiny"])
def test_llama4_weights_match_config(checkpoints, name):
    """HF's Llama 4 layout: experts fused per layer (gate_up_proj [E, H, 2F], down_proj [E, F, H], no .weight),
    a router and a shared expert on MoE layers, a dense MLP on the others; vision tensors beside the text."""
    from tests.fixtures.checkpoints import llama4_moe_layer
    from tests.reference.forward_llama4 import text_config

    cfg = load_json(checkpoints[name] / "config.json")
    text = text_config(cfg)
    prefix = "language_model." if "text_config" in cfg else ""
    found: dict[str, tuple[int, ...]] = {}
    for path in shard_files(checkpoints[name]):
        with safe_open(path, framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                assert f.get_slice(key).get_dtype() == "BF16", key
                found[key] = tuple(f.get_slice(key).get_shape())
    e, h, f = text["num_local_experts"], text["hidden_size"], text["intermediate_size"]
    d, v = text["head_dim"], text["vocab_size"]
    want = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not text["tie_word_embeddings"]:
        want["lm_head.weight"] = (v, h)
    moe = [i for i in range(text["num_hidden_layers"]) if llama4_moe_layer(text, i)]
    assert moe == text["moe_layers"]
    for i in range(text["num_hidden_layers"]):
        p = f"model.layers.{i}."
        want |= {p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)}
        want |= {p + "self_attn.q_proj.weight": (text["num_attention_heads"] * d, h)}
        want |= {p + "self_attn.k_proj.weight": (text["num_key_value_heads"] * d, h)}
        want |= {p + "self_attn.v_proj.weight": (text["num_key_value_heads"] * d, h)}
        want |= {p + "self_attn.o_proj.weight": (h, text["num_attention_heads"] * d)}
        p += "feed_forward."
        if i in moe:
            want |= {p + "router.weight": (e, h), p + "experts.gate_up_proj": (e, h, 2 * f)}
            want |= {p + "experts.down_proj": (e, f, h), p + "shared_expert.down_proj.weight": (h, f)}
            want |= {p + "shared_expert.gate_proj.weight": (f, h), p + "shared_expert.up_proj.weight": (f, h)}
        else:
            m = text["intermediate_size_mlp"]
            want |= {
                p + "gate_proj.weight": (m, h),
                p + "up_proj.weight": (m, h),
                p + "down_proj.weight": (h, m),
            }
    vision = {k for k in found if k.startswith(("vision_model.", "multi_modal_projector."))}
    assert {k.removeprefix(prefix): shape for k, shape in found.items() if k not in vision} == want
    assert bool(vision) == bool(prefix)


def test_smollm2_tokenizer_json_tokenises_like_llama_cpp_on_the_original_gguf(smollm2_dir, llama_vocab_only):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    for text in [*TRICKY, CHKTXT]:
        assert tok.encode(text).ids == llama_vocab_only.tokenize(
            text.encode(), add_bos=False, special=True
        ), text


@pytest.mark.parametrize(
    ("name", "vocab", "first_control"), [("mistral-tiny", 32768, "[INST]"), ("mixtral-tiny", 32000, None)]
)
def test_sentencepiece_models_round_trip(checkpoints, name, vocab, first_control):
    import sentencepiece as spm

    ckpt = checkpoints[name]
    sp = spm.SentencePieceProcessor(model_file=str(ckpt / "tokenizer.model"))
    cfg, tok_cfg = load_json(ckpt / "config.json"), load_json(ckpt / "tokenizer_config.json")
    assert sp.get_piece_size() == cfg["vocab_size"] == vocab
    assert (sp.bos_id(), sp.eos_id()) == (cfg["bos_token_id"], cfg["eos_token_id"])
    assert sp.id_to_piece(cfg["bos_token_id"]) == tok_cfg["bos_token"]
    ids = sp.encode(SAMPLE)
    assert len(ids) > 20 and sp.decode(ids) == SAMPLE
    assert sp.id_to_piece(3) == (first_control or "<0x00>")
    assert all(sp.is_control(int(i)) or sp.is_unknown(int(i)) for i in tok_cfg["added_tokens_decoder"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "smollm2-135m",
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "llama3-tiny",
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ("mistral-tiny", "<s>[INST] Hi [/INST]"),
        ("mixtral-tiny", "<s>[INST] Hi [/INST]"),
        (
            "llama4-tiny",
            "<|begin_of_text|><|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\n",
        ),
    ],
)
def test_chat_templates_render(checkpoints, name, expected):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    tok_cfg = load_json(checkpoints[name] / "tokenizer_config.json")
    template = ImmutableSandboxedEnvironment().from_string(tok_cfg["chat_template"])
    rendered = template.render(
        messages=[{"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
        bos_token=tok_cfg["bos_token"],
        eos_token=tok_cfg["eos_token"],
    )
    assert rendered == expected


def _digest(ckpt: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ckpt.iterdir())}


def test_random_fixture_build_is_deterministic(mixtral_tiny_dir, tmp_path):
    rebuilt = tmp_path / "mixtral-tiny"
    rebuilt.mkdir()
    build_mixtral_tiny(rebuilt)
    assert _digest(rebuilt) == _digest(mixtral_tiny_dir)
