"""The chat engine shared by `hubtui chat` (REPL) and the TUI chat screen.

It renders the conversation with the model's own template (sandboxed Jinja), streams tokens through
a callback, stops at any end-of-generation token, can be cancelled from another thread or a signal
handler without ending the session, and drops the oldest turns (with a notice) when the
conversation outgrows the context. Generation goes straight through `Llama.generate`, which reuses
the KV cache for the unchanged prefix of the conversation, so the engine adds almost nothing per token.
"""

from __future__ import annotations

import codecs
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubtui.runner.errors import RunnerError
from hubtui.runner.formats import ChatFormat, chat_format_for

TokenCallback = Callable[[str], None]
NoticeCallback = Callable[[str], None]


@dataclass
class ReplyStats:
    """Per-reply figures; `stop` is end_of_turn, max_tokens, cancelled or context_full."""

    prompt_tokens: int
    new_prompt_tokens: int
    prompt_seconds: float
    tokens: int
    seconds: float
    tokens_per_s: float | None
    stop: str


@dataclass
class Reply:
    text: str
    stats: ReplyStats
    dropped_turns: int = 0


def prompt_tokens(llm: Any, fmt: ChatFormat, messages: list[dict[str, str]]) -> list[int]:
    """Render and tokenise; add BOS only when the model wants one and the template did not write it."""
    from hubtui.runner import llama_text

    text = fmt.render(messages)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    bos = llm.token_bos()
    if bos >= 0 and llama_text.add_bos(llama_text.vocab_of(llm)) and (not tokens or tokens[0] != bos):
        tokens = [bos, *tokens]
    return tokens


def load_model(
    path: str | os.PathLike[str],
    *,
    n_ctx: int | None = None,
    gpu_layers: int | str = "auto",
    lora: str | os.PathLike[str] | None = None,
    lora_scale: float = 1.0,
    mmap: bool | None = None,
    mlock: bool = False,
) -> Any:
    """Load a GGUF in this process, quietly; header problems become one-line RunnerErrors first.

    `lora`: a LoRA adapter GGUF applied at run time with `lora_scale`. `mmap=False` reads the weights into
    anonymous memory (nothing can be paged back to the file); `mlock` pins the model's memory so it is never
    paged out. `hubtui plan --no-mmap/--mlock` sizes these modes; `mmap=None` takes the plan's choice for this
        machine (`hubtui.runner.offload.load_mode`).
    """
    from hubtui.runner import llama_log
    from hubtui.runner.gguf_check import check_facts, read_facts

    try:
        import quant.gguf_file  # noqa: F401  (absent in the field bundle's standalone hubtui-chat.pyz)
    except ImportError:
        facts = None
    else:
        facts = read_facts(path)
        for finding in check_facts(facts):
            if finding.level == "fail":
                raise RunnerError(finding.message)
    if not Path(path).is_file():
        raise RunnerError(f"{path}: no such file")
    if lora is not None and facts is not None:
        from hubtui.runner.adapters import check_adapter

        problem = check_adapter(lora, facts.architecture)
        if problem:
            raise RunnerError(problem)
    from llama_cpp import Llama

    llama_log.install()
    if n_ctx is None:
        n_ctx = min(4096, (facts.context_length if facts else None) or 4096)
    if mmap is None:
        from hubtui.runner.offload import load_mode

        mmap, _reason = load_mode(path, n_ctx, mlock=mlock)
    if gpu_layers == "auto":
        from hubtui.runner.offload import auto_gpu_layers

        gpu_layers, _why = auto_gpu_layers(path, n_ctx, mmap=mmap, mlock=mlock)
    try:
        extra: dict[str, Any] = {"lora_path": str(lora), "lora_scale": lora_scale} if lora is not None else {}
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_gpu_layers=int(gpu_layers),
            use_mmap=mmap,
            use_mlock=mlock,
            verbose=False,
            **extra,
        )
    except Exception as exc:
        reason = llama_log.last_error() or str(exc)
        raise RunnerError(f"{Path(path).name}: llama.cpp could not load it: {reason}") from None


class ChatEngine:
    """One conversation with one loaded model."""

    def __init__(
        self,
        llm: Any,
        *,
        system: str | None = None,
        temperature: float = 0.7,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        max_tokens: int = 512,
        chat_format: str | None = None,
        seed: int | None = None,
        model_path: str | None = None,
    ) -> None:
        from hubtui.runner import llama_text

        self.llm = llm
        self.model_path = model_path or getattr(llm, "model_path", None)
        self.format = chat_format_for(llm, force=chat_format)
        self.system = system or None
        self.history: list[dict[str, str]] = []
        self.sampling = {
            "temp": max(0.0, float(temperature)),
            "top_k": top_k,
            "top_p": top_p,
            "min_p": min_p,
            "repeat_penalty": repeat_penalty,
        }
        self.max_tokens = max_tokens
        if seed is not None:
            llm.set_seed(seed)
        self._vocab = llama_text.vocab_of(llm)
        self._cancel = threading.Event()
        self._pieces: dict[int, bytes] = {}

    # -- conversation state -------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

    def messages(self, extra: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history + (extra or [])

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history.clear()

    def set_system(self, text: str | None) -> None:
        self.system = text.strip() if text and text.strip() else None

    def cancel(self) -> None:
        """Stop the reply being generated (safe from another thread or a signal handler)."""
        self._cancel.set()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the conversation as JSON (atomically: no half-written file on failure)."""
        target = Path(path)
        data = {
            "model": str(self.model_path) if self.model_path else None,
            "chat_format": self.format.source,
            "system": self.system,
            "messages": self.history,
        }
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RunnerError(f"cannot save the conversation to {target}: {exc.strerror or exc}") from None
        return target

    def close(self) -> None:
        self.llm.close()

    # -- generation ---------------------------------------------------------------------------
    def _fit(self, user: dict[str, str]) -> tuple[list[int], int]:
        """Tokens of the prompt, dropping the oldest turns until prompt + reply room fits the context."""
        reserve = min(self.max_tokens, self.n_ctx // 4)
        dropped = 0
        while True:
            tokens = prompt_tokens(self.llm, self.format, self.messages([user]))
            if len(tokens) + reserve <= self.n_ctx:
                return tokens, dropped
            if not self.history:
                raise RunnerError(
                    f"the message needs {len(tokens)} prompt tokens, more than the context of {self.n_ctx} "
                    f"allows with {reserve} left for the reply (use a larger --ctx or a shorter message)"
                )
            # a turn is a user message and the reply to it; drop both together
            del self.history[0]
            if self.history and self.history[0]["role"] == "assistant":
                del self.history[0]
            dropped += 1

    def _piece(self, token: int) -> bytes:
        p = self._pieces.get(token)
        if p is None:
            from hubtui.runner import llama_text

            p = self._pieces[token] = llama_text.piece(self._vocab, token)
        return p

    def send(
        self,
        text: str,
        on_token: TokenCallback | None = None,
        on_notice: NoticeCallback | None = None,
    ) -> Reply:
        """Add a user message, generate and stream the reply, and add it to the history."""
        from hubtui.runner import llama_text

        user = {"role": "user", "content": text}
        tokens, dropped = self._fit(user)
        if dropped and on_notice:
            on_notice(f"context full: dropped the {dropped} oldest turn(s) of the conversation")
        self._cancel.clear()
        llm = self.llm
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []
        started = False  # strip the leading whitespace a SentencePiece reply starts with
        n_gen = 0
        stop = "max_tokens"
        limit = min(self.max_tokens, self.n_ctx - len(tokens))
        reused = _common_prefix(llm, tokens)
        yields = 0
        t0 = time.perf_counter()
        t_first = t_last = t0
        gen = llm.generate(tokens, reset=True, **self.sampling)
        try:
            for tok in gen:
                now = time.perf_counter()
                if yields == 0:
                    t_first = now
                t_last = now
                yields += 1
                if self._cancel.is_set():
                    stop = "cancelled"
                    break
                if llama_text.is_eog(self._vocab, tok):
                    stop = "end_of_turn"
                    break
                n_gen += 1
                chunk = decoder.decode(self._piece(tok))
                if not started:
                    chunk = chunk.lstrip()
                    started = bool(chunk)
                if chunk:
                    parts.append(chunk)
                    if on_token:
                        on_token(chunk)
                if n_gen >= limit:
                    stop = "context_full" if limit < self.max_tokens else "max_tokens"
                    break
                if self._cancel.is_set():
                    stop = "cancelled"
                    break
        except RuntimeError as exc:  # llama_decode failures surface as RuntimeError in llama-cpp-python
            raise RunnerError(f"llama.cpp failed while generating: {exc}") from None
        finally:
            gen.close()
        tail = decoder.decode(b"", final=True)
        if tail:
            parts.append(tail)
            if on_token:
                on_token(tail)
        if stop == "context_full" and on_notice:
            on_notice("context full: the reply was cut at the end of the context")
        reply_text = "".join(parts).rstrip()
        gen_seconds = t_last - t_first
        stats = ReplyStats(
            prompt_tokens=len(tokens),
            new_prompt_tokens=len(tokens) - reused,
            prompt_seconds=t_first - t0,
            tokens=n_gen,
            seconds=gen_seconds,
            # each yield after the first cost one decode: that is the generation speed
            tokens_per_s=(yields - 1) / gen_seconds if yields > 1 and gen_seconds > 0 else None,
            stop=stop,
        )
        self.history.append(user)
        self.history.append({"role": "assistant", "content": reply_text})
        return Reply(text=reply_text, stats=stats, dropped_turns=dropped)


def _common_prefix(llm: Any, tokens: list[int]) -> int:
    """How many prompt tokens the KV cache already holds (what Llama.generate will not re-evaluate)."""
    n = 0
    for a, b in zip(llm.input_ids[: min(llm.n_tokens, len(tokens))], tokens, strict=False):
        if a != b:
            break
        n += 1
    return n
