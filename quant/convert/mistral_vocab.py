"""Mistral's own tokenizer files (tekken.json, tokenizer.model.vN) as the `tokenizer.*` KVs llama.cpp writes.

llama.cpp reads them through mistral-common (`TextModel._set_vocab_mistral`, gguf-py `MistralVocab`) for
checkpoints in Mistral's layout, and for Hugging Face checkpoints that have a tekken.json but no
tokenizer.json. The formats are simple enough to read directly, which keeps mistral-common (and its
dependencies) out of the converter:

* tekken.json: a tiktoken-style byte-level BPE. `config` gives the regex, the version, the vocabulary size
  and the number of special tokens; `special_tokens` lists them (files up to v7 may omit the list, which then
  is mistral-common's fixed list of 20); fillers `<SPECIAL_i>` make up the rest. The regular tokens follow,
  each the byte string of one rank. In the GGUF: the special tokens (CONTROL), then each rank's bytes as
  GPT-2 byte-level text (NORMAL), scores all 0 (written as int32, as llama.cpp does), model "gpt2", pre
  "tekken", and merges rebuilt from the ranks (every split of each token whose halves are tokens, by the
  halves' ranks, tokens in rank order).
* tokenizer.model.vN: a SentencePiece model (model "llama", pieces with their scores and types).

The KV order is `_set_vocab_mistral`'s, with `<arch>.vocab_size` among them, and the chat template is
chat_template.jinja (Mistral's layout) or the name of one of llama.cpp's built-in Mistral templates chosen
by the tokenizer's version.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
from gguf.vocab import bytes_to_unicode

from quant.convert.tokenizer_probe import one_line
from quant.convert.vocab import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, Vocab
from quant.errors import ConversionError

# mistral-common's special tokens for tekken files (v7 and older) that do not list their own.
LEGACY_TEKKEN_SPECIALS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
    "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
)  # fmt: skip

# (tokenizer kind, version) -> the llama.cpp built-in chat template llama.cpp's converter names.
COMMUNITY_TEMPLATES = {
    ("spm", "v1"): "mistral-v1",
    ("tekken", "v1"): "mistral-v1",
    ("spm", "v3"): "mistral-v3",
    ("tekken", "v3"): "mistral-v3-tekken",
    ("spm", "v7"): "mistral-v7",
    ("tekken", "v7"): "mistral-v7-tekken",
}

_SPM_SUFFIX = re.compile(r"\.model(\.v(\d+)(m\d+)?)?$")


@dataclass
class MistralVocab(Vocab):
    """A Mistral-format tokenizer; its KVs follow `_set_vocab_mistral` and include `<arch>.vocab_size`."""

    arch: str = "llama"
    kind: str = "tekken"  # or "spm"
    version: str = "v1"

    def kv_items(self) -> list[tuple[str, Any, gguf.GGUFValueType]]:
        t = gguf.Keys.Tokenizer
        V = gguf.GGUFValueType
        items: list[tuple[str, Any, gguf.GGUFValueType]] = [(t.MODEL, self.model, V.STRING)]
        if self.kind == "tekken":
            items += [(t.PRE, self.pre, V.STRING), (t.MERGES, self.merges, V.ARRAY)]
        items += [
            (t.BOS_ID, self.special_ids["bos"], V.UINT32),
            (t.EOS_ID, self.special_ids["eos"], V.UINT32),
            (t.UNK_ID, self.special_ids["unk"], V.UINT32),
            (t.PAD_ID, self.special_ids["pad"], V.UINT32),
            (t.LIST, self.tokens, V.ARRAY),
            (t.SCORES, self.scores, V.ARRAY),
            (t.TOKEN_TYPE, self.token_types, V.ARRAY),
            (gguf.Keys.LLM.VOCAB_SIZE.format(arch=self.arch), len(self.tokens), V.UINT32),
            (t.ADD_BOS, True, V.BOOL),
            (t.ADD_EOS, False, V.BOOL),
        ]
        if self.chat_template is not None:
            items.append((t.CHAT_TEMPLATE, self.chat_template, V.STRING))
        return items

    def write_to(self, writer: gguf.GGUFWriter) -> None:
        """As Vocab.write_to; a vocab_size key the model KVs already hold takes the new value in place."""
        from quant.convert.gguf_internals import kv_table

        kv = kv_table(writer)
        for key, value, vtype in self.kv_items():
            if key in kv and vtype != gguf.GGUFValueType.ARRAY:
                kv[key] = gguf.GGUFValue(value=value, type=vtype)
            elif vtype == gguf.GGUFValueType.ARRAY:
                writer.add_array(key, value)
            else:
                writer.add_key_value(key, value, vtype)


def find_tokenizer_file(src: Path) -> Path:
    """The file mistral-common would load: tekken.json if there is one, else the last versioned .model."""
    found = [p for p in src.glob("**/*") if p.is_file() and _is_tokenizer_file(p)]
    if not found:
        raise ConversionError(
            f"{src}: no Mistral tokenizer found (expected tekken.json or tokenizer.model.vN)"
        )
    for p in found:
        if p.name == "tekken.json":
            return p
    return sorted(found, key=lambda p: p.name)[-1]


def _is_tokenizer_file(p: Path) -> bool:
    return p.name == "tekken.json" or bool(_SPM_SUFFIX.fullmatch("".join(p.suffixes)))


def load_mistral_vocab(src: Path, arch: str, *, native: bool) -> MistralVocab:
    """The tokenizer of `src` the way llama.cpp's `_set_vocab_mistral` writes it for architecture `arch`.

    `native`: the checkpoint is in Mistral's layout (then its chat_template.jinja, if any, is the template).
    """
    path = find_tokenizer_file(src)
    vocab = _tekken(path, arch) if path.name == "tekken.json" else _sentencepiece(path, arch)
    jinja = src / "chat_template.jinja"
    if native and jinja.is_file():
        try:
            vocab.chat_template = jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConversionError(f"{jinja}: cannot be read ({one_line(e)})") from None
        return vocab
    name = COMMUNITY_TEMPLATES.get((vocab.kind, vocab.version))
    if name is None:
        where = "put the model's chat_template.jinja next to it" if native else "use its tokenizer.json"
        raise ConversionError(
            f"{path}: no chat template for a {vocab.kind} tokenizer of version {vocab.version} "
            f"(llama.cpp's converter takes one from its own source tree); {where}"
        )
    vocab.chat_template = name
    return vocab


def _tekken(path: Path, arch: str) -> MistralVocab:
    try:
        data = json.loads(path.read_bytes())
        config = data["config"]
        version = str(config["version"])
        n_vocab = int(config["default_vocab_size"])
        n_special = int(config["default_num_special_tokens"])
        entries = data["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConversionError(f"{path}: not a tekken tokenizer file ({one_line(exc)})") from None
    specials = data.get("special_tokens")
    if specials is None:
        if _version_number(path, version) > 7:
            raise ConversionError(f"{path}: a version {version} tekken file must list its special_tokens")
        names = list(LEGACY_TEKKEN_SPECIALS)
    else:
        try:
            names = [str(t["token_str"]) for t in specials]
        except (KeyError, TypeError):
            raise ConversionError(f"{path}: malformed special_tokens entry") from None
    if len(set(names)) != len(names) or len(names) > n_special:
        raise ConversionError(f"{path}: special_tokens must be unique and at most {n_special}")
    names += [f"<SPECIAL_{i}>" for i in range(len(names), n_special)]
    n_inner = n_vocab - n_special
    if n_inner <= 256 or len(entries) < n_inner:
        raise ConversionError(
            f"{path}: default_vocab_size {n_vocab} needs {n_inner} regular tokens but the file has {len(entries)}"
        )
    ranked: list[bytes] = []
    for i, e in enumerate(entries[:n_inner]):
        try:
            token = base64.b64decode(e["token_bytes"])
            ok = e["rank"] == i and (i >= 256 or token == bytes([i]))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ConversionError(f"{path}: vocab entry {i} is malformed or out of rank order")
        ranked.append(token)
    ranks = {token: i for i, token in enumerate(ranked)}
    if len(ranks) != n_inner:
        raise ConversionError(f"{path}: the vocabulary repeats a token")
    byte_text = bytes_to_unicode()  # GPT-2's byte -> printable character table of byte-level BPE
    text = ["".join(byte_text[b] for b in token) for token in ranked]
    specials_id = {n: i for i, n in enumerate(names)}
    for needed in ("<s>", "</s>", "<unk>", "<pad>"):
        if needed not in specials_id:
            raise ConversionError(f"{path}: special token {needed} is missing")
    return MistralVocab(
        model="gpt2",
        pre="tekken",
        tokens=names + text,
        token_types=[CONTROL] * n_special + [NORMAL] * n_inner,
        scores=[0] * n_vocab,
        merges=_tekken_merges(path, ranked, ranks, text),
        special_ids={
            "bos": specials_id["<s>"],
            "eos": specials_id["</s>"],
            "unk": specials_id["<unk>"],
            "pad": specials_id["<pad>"],
        },
        source=path,
        arch=arch,
        kind="tekken",
        version=version,
    )


def _tekken_merges(path: Path, ranked: list[bytes], ranks: dict[bytes, int], text: list[str]) -> list[str]:
    """BPE merges equivalent to tiktoken's ranks: for each token (by rank), its splits ordered by halves' ranks."""
    merges: list[str] = []
    for i in range(256, len(ranked)):
        token = ranked[i]
        local = []
        for j in range(1, len(token)):
            a, b = ranks.get(token[:j]), ranks.get(token[j:])
            if a is not None and b is not None:
                local.append((a, b))
        if not local:
            raise ConversionError(f"{path}: token of rank {i} cannot be made by merging two tokens")
        local.sort()
        merges.extend(f"{text[a]} {text[b]}" for a, b in local)
    return merges


def _version_number(path: Path, version: str) -> int:
    m = re.fullmatch(r"v(\d+)", version)
    if m is None:
        raise ConversionError(f"{path}: unknown tokenizer version {version!r}")
    return int(m.group(1))


def _sentencepiece(path: Path, arch: str) -> MistralVocab:
    from sentencepiece import SentencePieceProcessor

    m = _SPM_SUFFIX.search("".join(path.suffixes))
    version = f"v{m.group(2)}" if m and m.group(2) else "v1"  # a bare tokenizer.model counts as v1
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except (OSError, RuntimeError) as e:
        raise ConversionError(f"{path}: not a SentencePiece model ({one_line(e)})") from None
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        typ = NORMAL
        if sp.IsUnknown(i):
            typ = UNKNOWN
        if sp.IsControl(i):
            typ = CONTROL
        if sp.IsUnused(i):
            typ = UNUSED
        if sp.IsByte(i):
            typ = BYTE
        tokens.append(sp.IdToPiece(i))
        scores.append(sp.GetScore(i))
        types.append(typ)
    pad = sp.pad_id()
    return MistralVocab(
        model="llama",
        pre="default",
        tokens=tokens,
        token_types=types,
        scores=scores,
        special_ids={
            "bos": sp.bos_id(),
            "eos": sp.eos_id(),
            "unk": sp.unk_id(),
            "pad": pad if pad >= 0 else sp.eos_id(),
        },
        source=path,
        arch=arch,
        kind="spm",
        version=version,
    )
