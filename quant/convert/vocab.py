"""The tokenizer of a Hugging Face checkpoint as the `tokenizer.*` KVs of a GGUF.

llama.cpp tokenises from what the converter writes here alone, so every choice below follows
llama.cpp's own converter (`convert_hf_to_gguf.py`, gguf-py `SpecialVocab`) rather than what
would look tidier: which tokenizer file wins, how added tokens are typed, which pre-tokenizer
name the BPE regexes get, which special ids and add_bos/add_eos flags are set, and the KV order.
Reading is done with the `sentencepiece` and `tokenizers` packages (never transformers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from quant.convert.tokenizer_probe import (
    CHKTXT,
    ProbeError,
    TokenizerFacts,
    TokenizerProbe,
    one_line,
    pre_tokenizer_hash,
    probe_in_process,
)
from quant.errors import ConversionError
from quant.inputs import require_regular

# gguf.TokenType values, as ints so the arrays are written as INT32 exactly like gguf-py does.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# chkhsh -> tokenizer.ggml.pre, for the BPE tokenizers of Llama/Mistral-family checkpoints
# (hashes as published by llama.cpp's convert_hf_to_gguf_update.py).
KNOWN_PRE_TOKENIZERS: dict[str, str] = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3.x
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",  # Smaug-Llama-3
    "d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406": "llama4",  # Llama 4
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral-Nemo
    "0e9433cbbb161f89e264eb32e8e64bfe69e834973ffca5d41d3948a604a3e2a3": "pixtral",  # Pixtral
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # GPT-2
    "0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4": "gpt-2",  # ruGPT3XL
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",  # DeepSeek LLM
    "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821": "deepseek-coder",  # DeepSeek Coder
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",  # Falcon3 (Llama arch)
}

# Special token types SpecialVocab looks up, in its order, and those GGUFWriter has a KV for.
SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
_ID_KEYS = {
    "bos": gguf.Keys.Tokenizer.BOS_ID,
    "eos": gguf.Keys.Tokenizer.EOS_ID,
    "unk": gguf.Keys.Tokenizer.UNK_ID,
    "sep": gguf.Keys.Tokenizer.SEP_ID,
    "pad": gguf.Keys.Tokenizer.PAD_ID,
    "mask": gguf.Keys.Tokenizer.MASK_ID,
    "eot": gguf.Keys.Tokenizer.EOT_ID,
    "eom": gguf.Keys.Tokenizer.EOM_ID,
}
_ADD_KEYS = {
    "bos": gguf.Keys.Tokenizer.ADD_BOS,
    "eos": gguf.Keys.Tokenizer.ADD_EOS,
    "sep": gguf.Keys.Tokenizer.ADD_SEP,
}
_NORMALIZER_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
_NORMALIZER_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass
class Vocab:
    """A checkpoint's tokenizer, ready to be written as GGUF KVs (gguf-py's vocab.py defines them)."""

    model: str  # "llama" (SentencePiece-style) or "gpt2" (byte-level BPE)
    pre: str
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    special_ids: dict[str, int] = field(default_factory=dict)  # insertion order = KV order
    add_special: dict[str, bool] = field(default_factory=dict)  # insertion order = KV order
    chat_template: str | list[dict[str, str]] | None = None
    add_space_prefix: bool | None = None
    normalizer_lowercase: bool | None = None
    normalizer_strip_accents: bool | None = None
    # KVs llama.cpp's LlamaModel.set_vocab adds after the SpecialVocab ones (CodeLlama eot, SmolLM add_bos).
    trailing: dict[str, int | bool] = field(default_factory=dict)
    source: Path | None = None  # the tokenizer file the tokens came from

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def bos_token_id(self) -> int | None:
        return self.special_ids.get("bos")

    @property
    def eos_token_id(self) -> int | None:
        return self.special_ids.get("eos")

    @property
    def eot_token_id(self) -> int | None:
        return self.special_ids.get("eot", self.trailing.get(gguf.Keys.Tokenizer.EOT_ID))  # type: ignore[return-value]

    @property
    def pad_token_id(self) -> int | None:
        return self.special_ids.get("pad")

    @property
    def unk_token_id(self) -> int | None:
        return self.special_ids.get("unk")

    @property
    def add_bos(self) -> bool | None:
        return self.kv_dict().get(gguf.Keys.Tokenizer.ADD_BOS)  # type: ignore[return-value]

    @property
    def add_eos(self) -> bool | None:
        return self.kv_dict().get(gguf.Keys.Tokenizer.ADD_EOS)  # type: ignore[return-value]

    def kv_items(self) -> list[tuple[str, Any, gguf.GGUFValueType]]:
        """Every tokenizer KV as (key, value, type), in the order llama.cpp's converter writes them."""
        t = gguf.Keys.Tokenizer
        V = gguf.GGUFValueType
        kvs: dict[str, tuple[Any, gguf.GGUFValueType]] = {}
        if self.add_space_prefix is not None:
            kvs[t.ADD_PREFIX] = (self.add_space_prefix, V.BOOL)
        kvs[t.MODEL] = (self.model, V.STRING)
        kvs[t.PRE] = (self.pre, V.STRING)
        kvs[t.LIST] = (self.tokens, V.ARRAY)
        if self.scores is not None:
            kvs[t.SCORES] = (self.scores, V.ARRAY)
        kvs[t.TOKEN_TYPE] = (self.token_types, V.ARRAY)
        if self.merges:
            kvs[t.MERGES] = (self.merges, V.ARRAY)
        for typ, tid in self.special_ids.items():
            if typ in _ID_KEYS:
                kvs[_ID_KEYS[typ]] = (tid, V.UINT32)
        for typ, flag in self.add_special.items():
            if typ in _ADD_KEYS:
                kvs[_ADD_KEYS[typ]] = (flag, V.BOOL)
        for key, value in _chat_template_kvs(self.chat_template):
            kvs[key] = value
        if self.normalizer_lowercase is not None:
            kvs[_NORMALIZER_LOWERCASE] = (self.normalizer_lowercase, V.BOOL)
        if self.normalizer_strip_accents is not None:
            kvs[_NORMALIZER_STRIP_ACCENTS] = (self.normalizer_strip_accents, V.BOOL)
        for key, flag_or_count in self.trailing.items():
            # A key already written keeps its place and takes the new value, as in GGUFWriter.
            kvs[key] = (flag_or_count, V.BOOL if isinstance(flag_or_count, bool) else V.UINT32)
        return [(key, value, vtype) for key, (value, vtype) in kvs.items()]

    def kv_dict(self) -> dict[str, Any]:
        return {key: value for key, value, _ in self.kv_items()}

    def write_to(self, writer: gguf.GGUFWriter) -> None:
        """Add every `tokenizer.*` KV to `writer`, in llama.cpp's order (convert_hf_to_gguf.py writes them after the hparams)."""
        for key, value, vtype in self.kv_items():
            if vtype == gguf.GGUFValueType.ARRAY:
                writer.add_array(key, value)
            else:
                writer.add_key_value(key, value, vtype)


def _chat_template_kvs(template: str | list[dict[str, str]] | None) -> list[tuple[str, tuple[Any, Any]]]:
    """The chat template KVs as GGUFWriter.add_chat_template writes them (named templates included)."""
    V = gguf.GGUFValueType
    t = gguf.Keys.Tokenizer
    if template is None:
        return []
    if isinstance(template, str):
        return [(t.CHAT_TEMPLATE, (template, V.STRING))]
    out: list[tuple[str, tuple[Any, Any]]] = []
    default = None
    names: dict[str, None] = {}
    for choice in template:
        name = "".join(c if c.isascii() and c.isalnum() else "_" for c in choice.get("name", ""))
        text = choice.get("template")
        if name and text is not None:
            if name == "default":
                default = text
            else:
                names[name] = None
                out.append((t.CHAT_TEMPLATE_N.format(name=name), (text, V.STRING)))
    if names:
        out.append((t.CHAT_TEMPLATES, (list(names), V.ARRAY)))
    if default is not None:
        out.append((t.CHAT_TEMPLATE, (default, V.STRING)))
    return out


# --------------------------------------------------------------------------------------------------
# Loading


def load_vocab(
    src: Path, config: Mapping[str, Any], *, probe: TokenizerProbe | None = None, arch: str = "llama"
) -> Vocab:
    """Read the tokenizer of checkpoint `src` as llama.cpp's LlamaModel.set_vocab would.

    `probe` is a TokenizerProbe of src/tokenizer.json started earlier by the caller (so the `tokenizers`
    work overlaps whatever the caller did meanwhile); without one that work is done here, in-process.
    `arch` is the output's architecture (a Mistral tokenizer writes `<arch>.vocab_size`).
    """
    src = Path(src)
    hparams = _merged_config(config)
    tokenizer_model = src / "tokenizer.model"
    tokenizer_json = src / "tokenizer.json"

    if (src / "tekken.json").is_file() and not tokenizer_json.is_file():
        from quant.convert.mistral_vocab import load_mistral_vocab  # llama.cpp's _set_vocab_mistral path

        return load_mistral_vocab(src, arch, native=False)
    tokenizer_config = _read_json_file(src / "tokenizer_config.json")

    add_space_prefix = tokenizer_config.get("add_prefix_space") if tokenizer_config else None
    vocab: Vocab | None = None
    if tokenizer_model.is_file():
        vocab = _sentencepiece_vocab(src, hparams, tokenizer_config, beside_json=tokenizer_json.is_file())
    if vocab is None:
        if not tokenizer_json.is_file():
            raise ConversionError(f"{src}: no tokenizer found (expected tokenizer.model or tokenizer.json)")
        tj = _read_json_file(tokenizer_json, required=True)
        model = tj.get("model")
        if not isinstance(model, dict) or "type" not in model:
            raise ConversionError(f"{tokenizer_json}: no 'model' section with a 'type'")
        if model.get("type") != "BPE":
            raise ConversionError(
                f"{tokenizer_json}: tokenizer model type {model.get('type')!r} is not supported (expected BPE)"
            )
        if _is_llama_hf(tj):
            facts = _tokenizer_facts(tokenizer_json, probe)
            vocab = _llama_hf_vocab(src, tj, facts, hparams, tokenizer_config)
        else:
            vocab = _gpt2_vocab(
                src, tj, lambda: _tokenizer_facts(tokenizer_json, probe), hparams, tokenizer_config
            )
    if isinstance(add_space_prefix, bool):
        vocab.add_space_prefix = add_space_prefix

    vocab_size = hparams.get("vocab_size", 32000)
    if vocab_size == 32016 and "eot" not in vocab.special_ids:
        # CodeLlama: llama.cpp adds an eot id (its prefix/suffix/middle ids have no KV).
        eot = _lookup_added_token(tokenizer_json, tokenizer_config, "eot_token")
        if eot is None and isinstance(hparams.get("eot_token_id"), int):
            eot = hparams["eot_token_id"]
        vocab.trailing[gguf.Keys.Tokenizer.EOT_ID] = eot if eot is not None else 32010
    if vocab_size == 49152:  # SmolLM/SmolLM2/Granite small: llama.cpp forces add_bos_token false
        vocab.trailing[gguf.Keys.Tokenizer.ADD_BOS] = False
    return vocab


def _merged_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """config.json with `text_config` lifted to the root, as llama.cpp's TextModel does."""
    hparams = dict(config)
    if isinstance(hparams.get("text_config"), dict):
        hparams = {**hparams, **hparams["text_config"]}
    return hparams


def _read_json_file(path: Path, *, required: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ConversionError(f"{path}: file not found")
        return {}
    try:
        data = json.loads(path.read_bytes())  # bytes: json decodes UTF-8 itself, skipping newline translation
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path}: not valid JSON ({one_line(e)})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def does_token_look_special(token: str) -> bool:
    """Added tokens llama.cpp types CONTROL even when not flagged special (`<|...|>`, `<pad>`, ...)."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


# ---- SentencePiece tokenizer.model -> llama/default


def _sentencepiece_vocab(
    src: Path, hparams: dict[str, Any], tokenizer_config: dict[str, Any], *, beside_json: bool
) -> Vocab:
    """llama.cpp's LlamaModel.set_vocab reads tokenizer.model first whenever it is a file and only falls back
    to tokenizer.json when it is absent, so a corrupt one fails its conversion too, even beside a good
    tokenizer.json (whose scores and token types would differ): an error here as well, never a silent switch."""
    from sentencepiece import SentencePieceProcessor

    path = src / "tokenizer.model"
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except (OSError, RuntimeError) as e:
        hint = (
            "; llama.cpp's converter reads it before tokenizer.json and fails on it too: replace it with the "
            "repo's original or remove it to use tokenizer.json"
            if beside_json
            else ""
        )
        raise ConversionError(f"{path}: not a SentencePiece model ({one_line(e)}){hint}") from None
    n_sp = sp.vocab_size()
    vocab_size = hparams.get("vocab_size") or n_sp
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ConversionError(f"config.json: vocab_size {vocab_size!r} is not a positive integer")

    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [UNUSED] * vocab_size
    for i in range(min(n_sp, vocab_size)):
        if sp.IsUnknown(i):
            typ = UNKNOWN
        elif sp.IsControl(i):
            typ = CONTROL
        elif sp.IsUnused(i):
            typ = UNUSED
        elif sp.IsByte(i):
            typ = BYTE
        else:
            typ = NORMAL
        tokens[i] = sp.IdToPiece(i)
        scores[i] = sp.GetScore(i)
        types[i] = typ

    added = _read_json_file(src / "added_tokens.json")
    for text, tid in added.items():
        if not isinstance(tid, int) or tid < 0:
            raise ConversionError(f"{src / 'added_tokens.json'}: bad id {tid!r} for token {text!r}")
        if tid < vocab_size:
            tokens[tid], scores[tid], types[tid] = text, -1000.0, USER_DEFINED

    decoder = tokenizer_config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict):
        raise ConversionError(f"{src / 'tokenizer_config.json'}: added_tokens_decoder is not an object")
    for key, data in decoder.items():
        try:
            tid = int(key)
            text = data["content"]
        except (ValueError, TypeError, KeyError):
            raise ConversionError(
                f"{src / 'tokenizer_config.json'}: bad added_tokens_decoder entry {key!r}"
            ) from None
        if tid < 0 or tid >= vocab_size:
            continue
        if data.get("special") or does_token_look_special(text):
            types[tid] = CONTROL
        else:
            text = text.replace("\u2581", " ")
            types[tid] = USER_DEFINED
        scores[tid] = -1000.0
        tokens[tid] = text

    vocab = Vocab(model="llama", pre="default", tokens=tokens, token_types=types, scores=scores, source=path)
    _apply_special_vocab(vocab, src, hparams, tokenizer_config, n_vocab=vocab_size, load_merges=False)
    return vocab


# ---- tokenizer.json


def _tokenizer_facts(path: Path, probe: TokenizerProbe | None) -> TokenizerFacts:
    # Without a probe started earlier a child would overlap nothing: work in-process then.
    try:
        return probe.result() if probe is not None else probe_in_process(path)
    except ProbeError as e:
        raise ConversionError(f"{path}: cannot be loaded by the tokenizers package ({e})") from None


def _full_vocab(path: Path, tj: dict[str, Any], facts: TokenizerFacts) -> dict[str, int]:
    """tokenizers' get_vocab(with_added_tokens=True): the model's vocab with the added tokens laid over it."""
    vocab = tj["model"].get("vocab")
    if not isinstance(vocab, dict):
        raise ConversionError(f"{path}: model.vocab is not an object")
    full = dict(vocab)
    for tid, info in facts.added.items():
        full[info.content] = tid
    return full


def _is_llama_hf(tj: dict[str, Any]) -> bool:
    """The LlamaHfVocab case: a SentencePiece-style BPE with byte fallback, stored as tokenizer.json."""
    model = tj["model"]
    decoder = tj.get("decoder") or {}
    if model.get("type") != "BPE":
        return False
    if model.get("ignore_merges", False) and not model.get("byte_fallback", True):
        return False  # Llama 3 goes the gpt2 way
    return bool(model.get("byte_fallback", False)) and decoder.get("type") == "Sequence"


def _gpt2_vocab(
    src: Path,
    tj: dict[str, Any],
    get_facts: Callable[[], TokenizerFacts],
    hparams: dict[str, Any],
    tokenizer_config: dict[str, Any],
) -> Vocab:
    path = src / "tokenizer.json"
    vocab = Vocab(model="gpt2", pre="", tokens=[], token_types=[], source=path)
    # merges, special ids and flags first: they need only the JSON, so they overlap the probe's work
    _apply_special_vocab(vocab, src, hparams, tokenizer_config, n_vocab=None, load_merges=True, tj=tj)
    facts = get_facts()
    full_vocab = _full_vocab(path, tj, facts)
    vocab_size = hparams.get("vocab_size", len(full_vocab))
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ConversionError(f"config.json: vocab_size {vocab_size!r} is not a positive integer")
    max_id = max(full_vocab.values(), default=-1)
    if max_id >= vocab_size:
        raise ConversionError(
            f"{path}: token id {max_id} is out of range for config.json vocab_size {vocab_size}"
        )

    chkhsh = facts.chkhsh
    pre = KNOWN_PRE_TOKENIZERS.get(chkhsh)
    if pre is None:
        raise ConversionError(f"{path}: unknown BPE pre-tokenizer (chkhsh {chkhsh})")

    reverse = {tid: text for text, tid in full_vocab.items()}
    added = facts.added
    added_contents = {a.content for a in added.values()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        text = reverse.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        if text in added_contents:
            info = added.get(i)
            if info is not None and not info.normalized:
                # llama.cpp expects CONTROL/USER_DEFINED tokens pre-normalised: round-tripped by the probe.
                text = facts.roundtrip[i]
            if (info is not None and info.special) or does_token_look_special(text):
                types.append(CONTROL)
            else:
                text = text.replace("\u2581", " ")
                types.append(USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(text)

    vocab.pre, vocab.tokens, vocab.token_types = pre, tokens, types
    return vocab


def _llama_hf_vocab(
    src: Path,
    tj: dict[str, Any],
    facts: TokenizerFacts,
    hparams: dict[str, Any],
    tokenizer_config: dict[str, Any],
) -> Vocab:
    path = src / "tokenizer.json"
    full_vocab = _full_vocab(path, tj, facts)
    base_size = facts.base_size
    reverse = {tid: text for text, tid in full_vocab.items()}
    # transformers' all_special_tokens: the named special tokens plus additional_special_tokens.
    special_texts: set[str] = set()
    for typ in SPECIAL_TYPES:
        text = _token_content(tokenizer_config.get(f"{typ}_token"))
        if text is not None:
            special_texts.add(text)
    for entry in tokenizer_config.get("additional_special_tokens") or []:
        text = _token_content(entry)
        if text is not None:
            special_texts.add(text)
    special_ids = {full_vocab[t] for t in special_texts if t in full_vocab}

    tokens: list[str] = []
    types: list[int] = []
    for i in range(base_size):
        text = reverse.get(i)
        if text is None:
            raise ConversionError(f"{path}: token id {i} is missing from the vocabulary")
        tokens.append(text)
        if _BYTE_TOKEN.fullmatch(text):
            types.append(BYTE)
        else:
            types.append(CONTROL if i in special_ids else NORMAL)
    for tid, info in sorted(facts.added.items()):
        if tid < base_size:
            continue
        tokens.append(info.content)
        types.append(CONTROL if info.content in special_texts and tid in special_ids else USER_DEFINED)
    scores = [-1000.0] * len(tokens)
    vocab = Vocab(model="llama", pre="default", tokens=tokens, token_types=types, scores=scores, source=path)
    _apply_special_vocab(vocab, src, hparams, tokenizer_config, n_vocab=len(tokens), load_merges=False, tj=tj)
    return vocab


def _token_content(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("content"), str):
        return entry["content"]
    return None


def _lookup_added_token(tokenizer_json: Path, tokenizer_config: dict[str, Any], key: str) -> int | None:
    text = _token_content(tokenizer_config.get(key))
    if text is None or not tokenizer_json.is_file():
        return None
    tj = _read_json_file(tokenizer_json)
    for atok in tj.get("added_tokens") or []:
        if atok.get("content") == text and isinstance(atok.get("id"), int):
            return atok["id"]
    return None


# ---- SpecialVocab: special ids, add_* flags, merges, chat template, normalizer flags


def _apply_special_vocab(
    vocab: Vocab,
    src: Path,
    hparams: dict[str, Any],
    tokenizer_config: dict[str, Any],
    *,
    n_vocab: int | None,
    load_merges: bool,
    tj: dict[str, Any] | None = None,
) -> None:
    """Fill in what gguf-py's SpecialVocab finds in tokenizer.json, tokenizer_config.json and config.json."""
    json_path = src / "tokenizer.json"
    if tj is None and json_path.is_file():
        tj = _read_json_file(json_path)
    tc = dict(tokenizer_config)  # SpecialVocab edits its copy of the config as it goes
    types: list[str] = list(SPECIAL_TYPES)
    ids: dict[str, int] = {}
    add: dict[str, bool] = {}

    def set_id(typ: str, tid: Any, where: str) -> None:
        if not isinstance(tid, int) or isinstance(tid, bool):
            return
        if tid < 0:
            raise ConversionError(f"{where}: invalid id {tid} for the {typ} token")
        if (n_vocab is None or tid < n_vocab) and typ not in ids:
            ids[typ] = tid

    added_tokens: list[dict[str, Any]] = []
    if tj:
        if load_merges:
            vocab.merges = _merges(tj, json_path)
        if isinstance(tj.get("normalizer"), dict):
            _parse_normalizer(vocab, tj["normalizer"])
        added_tokens = [a for a in tj.get("added_tokens") or [] if isinstance(a, dict)]
        _parse_post_processor(tj.get("post_processor"), tc, types, add)

    if tc:
        template = tc.get("chat_template", _alternative_chat_template(src))
        if template is None or isinstance(template, (str, list)):
            vocab.chat_template = template
        for typ in types:
            flag = tc.get(f"add_{typ}_token")
            if isinstance(flag, bool) and typ not in add:
                add[typ] = flag  # the post_processor wins when both say something
            text = _token_content(tc.get(f"{typ}_token"))
            if text is None:
                continue
            tid = next((a.get("id") for a in added_tokens if a.get("content") == text), None)
            set_id(typ, tid, str(src / "tokenizer_config.json"))

    for typ in types:
        tid = hparams.get(f"{typ}_token_id")
        if tid is None and isinstance(hparams.get("text_config"), dict):
            tid = hparams["text_config"].get(f"{typ}_token_id")
        set_id(typ, tid, "config.json")

    vocab.special_ids = ids
    vocab.add_special = add


def _merges(tj: dict[str, Any], path: Path) -> list[str]:
    merges = (tj.get("model") or {}).get("merges")
    if not isinstance(merges, list) or not merges:
        return []
    first = merges[0]
    if isinstance(first, str):
        return [str(m) for m in merges]
    if isinstance(first, list) and len(first) == 2 and isinstance(first[0], str):
        # The list-of-pairs format (transformers >= 4.45); spaces inside parts become U+0120 as in llama.cpp.
        fast = _join_pairs(merges)
        if fast is not None:
            return fast
        try:
            return [f"{a.replace(' ', chr(0x120))} {b.replace(' ', chr(0x120))}" for a, b in merges]
        except (TypeError, ValueError, AttributeError):
            bad = next(
                m
                for m in merges
                if not (isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m))
            )
            raise ConversionError(f"{path}: malformed merge entry {bad!r}") from None
    raise ConversionError(f"{path}: unknown merges format (first entry {first!r})")


def _join_pairs(merges: list[Any]) -> list[str] | None:
    """The usual case of list-of-pairs merges without C-level per-item Python code (280k for Llama 3): every
    entry two strings, none holding a space. None when that does not hold; the checked path handles it."""
    try:
        if set(map(len, merges)) != {2}:
            return None
        joined = list(map(" ".join, merges))
    except TypeError:
        return None
    if " ".join(joined).count(" ") != 2 * len(joined) - 1:
        return None  # a part holds a space
    return joined


def _parse_normalizer(vocab: Vocab, normalizer: dict[str, Any]) -> None:
    kind = normalizer.get("type")
    if kind == "Lowercase":
        vocab.normalizer_lowercase = True
    elif kind == "StripAccents":
        vocab.normalizer_strip_accents = True
    elif kind == "BertNormalizer":
        if "lowercase" in normalizer:
            vocab.normalizer_lowercase = normalizer["lowercase"]
        if "strip_accents" in normalizer:
            vocab.normalizer_strip_accents = normalizer["strip_accents"]
    elif kind == "Sequence":
        for sub in normalizer.get("normalizers") or []:
            if isinstance(sub, dict):
                _parse_normalizer(vocab, sub)


def _special_of(item: Any) -> Any:
    return item.get("SpecialToken", {}).get("id") if isinstance(item, dict) else None


def _parse_post_processor(post: Any, tc: dict[str, Any], types: list[str], add: dict[str, bool]) -> None:
    """add_bos/add_eos/add_sep (and an eot id) from tokenizer.json's post_processor, SpecialVocab's way."""
    special_bos = tc.get("bos_token")
    special_cls = tc.get("cls_token")
    special_eos = tc.get("eos_token")
    special_sep = tc.get("sep_token")
    if not special_bos and special_cls and tc:
        tc["bos_token"] = special_bos = special_cls
    if not special_eos and special_sep and tc:
        tc["eos_token"] = special_eos = special_sep
    if not isinstance(post, dict):
        return
    for proc in post.get("processors", [post]):
        kind = proc.get("type")
        if kind == "ByteLevel":
            add.setdefault("bos", False)
            add.setdefault("eos", False)
        elif kind == "RobertaProcessing":
            add["bos"] = add["eos"] = add["sep"] = True
            if not special_cls and tc:
                special_cls = (proc.get("cls") or [special_bos])[0]
                tc["cls_token"] = special_cls
            if not special_sep and tc:
                special_sep = (proc.get("sep") or [special_eos])[0]
                tc["sep_token"] = special_sep
        elif kind == "TemplateProcessing":
            single = proc.get("single") or []
            pair = proc.get("pair") or []
            first = last = None
            if len(single) > 1:
                if first := _special_of(single[0]):
                    if not tc:
                        special_bos = first
                    elif first not in (special_bos, special_cls):
                        if not special_bos:
                            tc["bos_token"] = special_bos = first
                        if not special_cls:
                            tc["cls_token"] = special_cls = first
                    add["bos"] = first in (special_bos, special_cls)
                if last := _special_of(single[-1]):
                    if not tc:
                        special_eos = last
                    elif last != special_eos:
                        if "eot" not in types:
                            types.append("eot")
                            tc["eot_token"] = special_eos
                        elif "eom" not in types:
                            types.append("eom")
                            tc["eom_token"] = special_eos
                        tc["eos_token"] = special_eos = last
                    add["eos"] = last == special_eos
            if pair:
                start = 1 if first and _special_of(pair[0]) == first else 0
                stop = -1 if last and _special_of(pair[-1]) == last else None
                middle = pair[slice(start, stop)]
                if middle:
                    seq_a = middle[0].get("Sequence", {}).get("id") if isinstance(middle[0], dict) else None
                    seq_b = middle[-1].get("Sequence", {}).get("id") if isinstance(middle[-1], dict) else None
                    if seq_a == "A" and seq_b == "B" and (middle := middle[1:-1]):
                        add_sep = False
                        entry = _special_of(middle[0])
                        if entry and entry in (special_sep, special_eos) and not last:
                            add_sep = True
                        if len(middle) == 2:
                            entry = _special_of(middle[1])
                            if entry and entry in (special_sep, special_eos):
                                add_sep = True
                        add["sep"] = add_sep
                        if add_sep and not special_sep and tc:
                            tc["sep_token"] = special_eos


def _alternative_chat_template(src: Path) -> str | list[dict[str, str]] | None:
    """chat_template.jinja (plus additional_chat_templates/*.jinja), else chat_template.json."""
    jinja = src / "chat_template.jinja"
    if jinja.is_file():
        text = _read_text(jinja)
        template: str | list[dict[str, str]] = text
        extra = sorted((src / "additional_chat_templates").glob("*.jinja"))
        if extra:
            template = [{"name": "default", "template": text}]
            template += [{"name": p.stem, "template": _read_text(p)} for p in extra]
        return template
    path = src / "chat_template.json"
    if path.is_file():
        value = _read_json_file(path).get("chat_template")
        if value is None or isinstance(value, (str, list)):
            return value
    return None


def _read_text(path: Path) -> str:
    require_regular(path, ConversionError)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: cannot be read ({one_line(e)})") from None


__all__ = [
    "CHKTXT",
    "KNOWN_PRE_TOKENIZERS",
    "Vocab",
    "does_token_look_special",
    "load_vocab",
    "pre_tokenizer_hash",
]
