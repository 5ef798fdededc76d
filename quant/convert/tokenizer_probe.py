"""What only the `tokenizers` package can tell about a tokenizer.json, computed in a helper process.

The converter needs three things from the real tokenizer: llama.cpp's pre-tokenizer hash (the ids of a fixed
text), the added-token table, and the decode(encode(t)) round trip of non-normalised added tokens. Loading a
large tokenizer.json into `tokenizers` takes about as long as parsing it with `json` (0.35 s each for Llama 3's
128k tokens and 280k merges), and neither releases the GIL, so in one process they run back to back. Here the
`tokenizers` half runs in a child Python started first, while the converter parses the JSON itself; when no
child can be started the same function runs in-process.

This file is also the child's script (run with `python -P`, so it imports nothing of this project): keep it
to the standard library and `tokenizers`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The fixed text llama.cpp hashes the token ids of to recognise a BPE pre-tokenizer.
CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f "
    "(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 "
    "3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785"
    "\U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= "
    "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll "
    "make it, 'D you like some tea? We'Ve a'lL"
)


CHILD_TIMEOUT_S = 300.0  # a child that has not answered by then is killed and the work done in-process


@dataclass(frozen=True)
class AddedToken:
    content: str
    special: bool
    normalized: bool


@dataclass(frozen=True)
class TokenizerFacts:
    chkhsh: str  # llama.cpp's pre-tokenizer hash
    base_size: int  # vocabulary size without added tokens
    added: dict[int, AddedToken]  # the added-token table, id -> token
    roundtrip: dict[int, str]  # decode(encode(content)) of each non-normalised added token


class ProbeError(Exception):
    """tokenizers could not load the file; the message is one line."""


def pre_tokenizer_hash(tokenizer: Any) -> str:
    """llama.cpp's chkhsh: sha256 of the repr of the ids of CHKTXT (special tokens added)."""
    ids = tokenizer.encode(CHKTXT, add_special_tokens=True).ids
    return hashlib.sha256(str(list(ids)).encode("utf-8")).hexdigest()


def one_line(e: BaseException) -> str:
    """An exception's message on one line (Rust and YAML errors span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def probe(path: str | Path) -> dict[str, Any]:
    """The facts as plain JSON data (what the child prints)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exception subclasses
        raise ProbeError(one_line(e)) from None
    added = tok.get_added_tokens_decoder()
    roundtrip = {}
    for tid, info in added.items():
        if not info.normalized:
            # llama.cpp expects CONTROL/USER_DEFINED tokens pre-normalised: round-trip them.
            ids = tok.encode(info.content, add_special_tokens=False).ids
            roundtrip[str(tid)] = tok.decode(ids, skip_special_tokens=False)
    return {
        "chkhsh": pre_tokenizer_hash(tok),
        "base_size": tok.get_vocab_size(with_added_tokens=False),
        "added": {str(tid): [a.content, bool(a.special), bool(a.normalized)] for tid, a in added.items()},
        "roundtrip": roundtrip,
    }


def _facts(data: dict[str, Any]) -> TokenizerFacts:
    return TokenizerFacts(
        chkhsh=data["chkhsh"],
        base_size=int(data["base_size"]),
        added={int(k): AddedToken(c, s, n) for k, (c, s, n) in data["added"].items()},
        roundtrip={int(k): v for k, v in data["roundtrip"].items()},
    )


def probe_in_process(path: str | Path) -> TokenizerFacts:
    return _facts(probe(path))


class TokenizerProbe:
    """`probe(path)` running in a child Python from construction until `result()`.

    `result()` falls back to running in-process when the child could not start or died without an answer,
    so callers always get the same facts (or the same ProbeError) either way.
    """

    def __init__(self, path: str | Path, *, use_process: bool = True) -> None:
        self.path = Path(path)
        self.proc: subprocess.Popen[bytes] | None = None
        # (not from a frozen app, whose executable is not a Python, nor an embedded one without an executable)
        if use_process and sys.executable and not getattr(sys, "frozen", False):
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-P", __file__, str(self.path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            except OSError:
                self.proc = None

    def result(self) -> TokenizerFacts:
        if self.proc is not None:
            try:
                out, _ = self.proc.communicate(timeout=CHILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.close()
                return probe_in_process(self.path)
            code, self.proc = self.proc.returncode, None
            try:  # the answer is the last line (a sitecustomize may have printed before it)
                data = json.loads(out.splitlines()[-1]) if out.strip() else None
            except ValueError:
                data = None
            if isinstance(data, dict):
                if code == 2 and isinstance(data.get("error"), str):
                    raise ProbeError(data["error"])
                if code == 0:
                    try:
                        return _facts(data)
                    except (KeyError, TypeError, ValueError):
                        pass  # not our child's answer: do the work here
        return probe_in_process(self.path)

    def close(self) -> None:
        """Stop the child if it is still running (an error elsewhere, or Ctrl-C)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> TokenizerProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_tokenizer_probe(src: str | Path) -> TokenizerProbe:
    """The probe for checkpoint directory `src`: in a child when src/tokenizer.json will be read.

    Not when a tokenizer.model is there (SentencePiece wins then; tokenizer.json is read only if that file
    turns out not to be SentencePiece, and then in-process).
    """
    from quant.checkpoint_format import HF, checkpoint_format  # (in the parent only: the child runs -P)

    path = Path(src) / "tokenizer.json"
    in_child = (
        path.is_file()
        and not (Path(src) / "tokenizer.model").is_file()
        and checkpoint_format(Path(src)) == HF
    )
    return TokenizerProbe(path, use_process=in_child)


def _main(argv: list[str]) -> int:
    try:
        data = probe(argv[1])
    except ProbeError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
