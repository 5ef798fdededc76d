"""Read a GGUF's header and check it before llama.cpp touches it.

llama.cpp aborts or asserts on some malformed files (a vocabulary that does not match the
embedding, tensor data past the end of the file); checking the header in Python first turns those
into clear one-line verdicts and keeps the child process for the things only llama.cpp can judge.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubtui.runner.errors import RunnerError


@dataclass
class GGUFFacts:
    """What the smoke test and the bundle need to know about a GGUF without loading it."""

    path: str
    file_bytes: int
    architecture: str
    name: str | None
    n_tensors: int
    n_params: int
    tensor_bytes: int
    n_vocab_tokens: int
    embedding_rows: int | None
    embedding_width: int | None
    output_rows: int | None
    vocab_size_key: int | None
    context_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    embedding_length: int | None
    expert_count: int | None
    file_type: int | None
    tokenizer_model: str | None
    chat_template: str | None
    special_tokens: dict[str, int] = field(default_factory=dict)
    tensor_types: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chat_template"] = self.chat_template is not None
        return d


@dataclass
class Finding:
    """One check result: level is "ok", "warn" or "fail"; message is one line."""

    check: str
    level: str
    message: str


def read_facts(path: str | os.PathLike[str]) -> GGUFFacts:
    """Parse the header of `path`; raise RunnerError with one line when it is not a readable GGUF.

    Read with `quant.gguf_file` (bounds-checked, one decode per vocabulary string): gguf-py's GGUFReader
    takes seconds on a 128k-token Llama 3 vocabulary, and this runs before every smoke test and chat."""
    from quant.errors import GGUFError
    from quant.gguf_file import read_gguf_summary
    from quant.inputs import require_regular

    p = Path(path)
    require_regular(p, RunnerError)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise RunnerError(f"{p}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    try:
        summary = read_gguf_summary(p)
    except GGUFError as exc:
        detail = str(exc).removeprefix(f"{p}: ")
        if "general.architecture" in detail:
            raise RunnerError(f"{p}: GGUF lacks general.architecture") from None
        raise RunnerError(f"{p}: truncated or corrupt GGUF ({size} bytes): {detail}") from None
    kv = summary.kv
    types: dict[str, int] = {}
    embed_rows = embed_width = out_rows = None
    for t in summary.tensors:
        types[t.ggml_type] = types.get(t.ggml_type, 0) + 1
        if t.name == "token_embd.weight" and len(t.shape) == 2:
            embed_width, embed_rows = t.shape
        elif t.name == "output.weight" and len(t.shape) == 2:
            out_rows = t.shape[1]
    arch = summary.architecture
    special: dict[str, int] = {}
    for kind in ("bos", "eos", "eot", "unknown", "padding", "eom"):
        v = kv.get(f"tokenizer.ggml.{kind}_token_id")
        if isinstance(v, int) and not isinstance(v, bool):
            special[kind] = v

    def arch_int(key: str) -> int | None:
        v = kv.get(f"{arch}.{key}")
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def text(key: str) -> str | None:
        v = kv.get(key)
        return v if isinstance(v, str) else None

    tokens = kv.get("tokenizer.ggml.tokens")
    template = text("tokenizer.chat_template")
    file_type = kv.get("general.file_type")
    return GGUFFacts(
        path=str(p),
        file_bytes=size,
        architecture=arch,
        name=text("general.name"),
        n_tensors=len(summary.tensors),
        n_params=summary.n_params,
        tensor_bytes=summary.tensor_bytes,
        n_vocab_tokens=len(tokens) if isinstance(tokens, list) else 0,
        embedding_rows=embed_rows,
        embedding_width=embed_width,
        output_rows=out_rows,
        vocab_size_key=arch_int("vocab_size"),
        context_length=arch_int("context_length"),
        block_count=arch_int("block_count"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=arch_int("attention.head_count_kv"),
        embedding_length=arch_int("embedding_length"),
        expert_count=arch_int("expert_count"),
        file_type=file_type if isinstance(file_type, int) and not isinstance(file_type, bool) else None,
        tokenizer_model=text("tokenizer.ggml.model"),
        chat_template=template if template is not None and template.strip() else None,
        special_tokens=special,
        tensor_types=summary.type_counts,
    )


def check_facts(facts: GGUFFacts) -> list[Finding]:
    """Metadata sanity: architecture, vocabulary vs embedding, special tokens, chat template."""
    out: list[Finding] = []
    name = Path(facts.path).name
    try:
        from quant.convert.archs import gguf_architectures

        supported: tuple[str, ...] | None = gguf_architectures()
    except ImportError:  # the field bundle's standalone chat app carries hubtui.runner, not quant
        supported = None
    if supported is not None and facts.architecture not in supported:
        out.append(
            Finding(
                "architecture",
                "fail",
                f"{name}: unsupported architecture {facts.architecture!r} (hubtui runs {', '.join(supported)})",
            )
        )
    elif supported is not None:
        out.append(Finding("architecture", "ok", f"architecture {facts.architecture}"))

    n_vocab = facts.n_vocab_tokens
    if n_vocab == 0:
        out.append(Finding("vocabulary", "fail", f"{name}: no tokenizer.ggml.tokens in the GGUF"))
    elif facts.embedding_rows is None:
        out.append(Finding("vocabulary", "fail", f"{name}: no token_embd.weight tensor"))
    elif facts.embedding_rows != n_vocab:
        out.append(
            Finding(
                "vocabulary",
                "fail",
                f"{name}: vocabulary has {n_vocab} tokens but token_embd.weight has {facts.embedding_rows} rows",
            )
        )
    elif facts.output_rows is not None and facts.output_rows != n_vocab:
        out.append(
            Finding(
                "vocabulary",
                "fail",
                f"{name}: vocabulary has {n_vocab} tokens but output.weight has {facts.output_rows} rows",
            )
        )
    elif facts.vocab_size_key is not None and facts.vocab_size_key != n_vocab:
        out.append(
            Finding(
                "vocabulary",
                "fail",
                f"{name}: {facts.architecture}.vocab_size is {facts.vocab_size_key} but the vocabulary has {n_vocab} tokens",
            )
        )
    else:
        out.append(Finding("vocabulary", "ok", f"{n_vocab} tokens match the embedding"))

    bad = {k: v for k, v in facts.special_tokens.items() if n_vocab and not 0 <= v < n_vocab}
    if bad:
        k, v = next(iter(bad.items()))
        out.append(
            Finding(
                "special_tokens",
                "fail",
                f"{name}: {k} token id {v} is outside the vocabulary (0..{n_vocab - 1})",
            )
        )
    elif "eos" not in facts.special_tokens and "eot" not in facts.special_tokens:
        out.append(Finding("special_tokens", "warn", f"{name}: no end-of-sequence token id in the GGUF"))
    else:
        kinds = ", ".join(f"{k}={v}" for k, v in facts.special_tokens.items())
        out.append(Finding("special_tokens", "ok", f"special tokens {kinds}"))

    if facts.chat_template is None:
        out.append(
            Finding(
                "chat_template",
                "warn",
                f"{name}: no chat template (tokenizer.chat_template); chat falls back to a named format",
            )
        )
    else:
        out.append(Finding("chat_template", "ok", "chat template present"))
    return out
