"""The chat engine and the `hubtui chat` REPL: templates, streaming, cancel, truncation, commands."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubtui.runner.chat import ChatEngine, load_model
from hubtui.runner.errors import RunnerError
from hubtui.runner.formats import FALLBACK_TEMPLATES, ChatFormat, guess_fallback
from hubtui.runner.repl import run_repl
from tests.support.runner_models import converted_gguf

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def chat_gguf(smollm2_dir: Path) -> Path:
    return converted_gguf(smollm2_dir, "Q8_0")


@pytest.fixture(scope="session")
def llm(chat_gguf: Path) -> Iterator[Any]:
    model = load_model(chat_gguf, n_ctx=1024, gpu_layers=0)
    yield model
    model.close()


@pytest.fixture(scope="session")
def small_llm(chat_gguf: Path) -> Iterator[Any]:
    model = load_model(chat_gguf, n_ctx=256, gpu_layers=0)
    yield model
    model.close()


def greedy(llm: Any, **kw: Any) -> ChatEngine:
    return ChatEngine(llm, temperature=0.0, **kw)


def test_renders_the_models_own_template(llm: Any) -> None:
    engine = greedy(llm)
    assert engine.format.source == "gguf"
    text = engine.format.render(engine.messages([{"role": "user", "content": "Hi"}]))
    # SmolLM2's template inserts its default system prompt when none is given
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    engine.set_system("Be brief.")
    text = engine.format.render(engine.messages([{"role": "user", "content": "Hi"}]))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")


def test_streams_a_greedy_reply_and_keeps_history(llm: Any) -> None:
    engine = greedy(llm, max_tokens=64)
    chunks: list[str] = []
    reply = engine.send(QUESTION, on_token=chunks.append)
    assert len(chunks) == reply.stats.tokens > 1  # one callback per token as it is generated
    assert "".join(chunks).strip() == reply.text
    assert "Paris" in reply.text
    assert reply.stats.stop == "end_of_turn"
    assert reply.stats.tokens_per_s and reply.stats.tokens_per_s > 0
    assert engine.history == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": reply.text},
    ]
    second = engine.send("And of Germany?")
    # the KV cache holds the first turn: only the new turn is evaluated
    assert second.stats.new_prompt_tokens < second.stats.prompt_tokens / 2
    assert len(engine.history) == 4
    engine.reset()
    assert engine.history == []


def test_cancel_stops_the_reply_but_not_the_session(llm: Any) -> None:
    engine = greedy(llm, max_tokens=200)
    seen: list[str] = []

    def on_token(chunk: str) -> None:
        seen.append(chunk)
        if len(seen) == 3:
            engine.cancel()

    reply = engine.send("Write a long story about a dragon and a knight.", on_token=on_token)
    assert reply.stats.stop == "cancelled"
    assert reply.stats.tokens == 3
    after = engine.send(QUESTION)
    assert after.stats.stop == "end_of_turn" and after.text
    assert [m["role"] for m in engine.history] == ["user", "assistant", "user", "assistant"]


def test_oldest_turns_are_dropped_with_a_notice(small_llm: Any) -> None:
    engine = greedy(small_llm, max_tokens=24)
    notices: list[str] = []
    long_msg = (
        "Tell me about the history of " + ", ".join(["Paris", "Rome", "Berlin", "Madrid", "Vienna"] * 4) + "."
    )
    dropped = 0
    for _ in range(4):
        reply = engine.send(long_msg, on_notice=notices.append)
        dropped += reply.dropped_turns
        assert reply.stats.prompt_tokens + 24 <= engine.n_ctx
    assert dropped >= 1
    assert any("dropped the" in n and "oldest turn" in n for n in notices)
    assert engine.history[-2]["content"] == long_msg
    assert len(engine.history) < 8


def test_a_message_longer_than_the_context_is_refused(small_llm: Any) -> None:
    engine = greedy(small_llm, max_tokens=24)
    with pytest.raises(RunnerError, match="larger --ctx"):
        engine.send("word " * 400)
    assert engine.history == []


def test_save_writes_the_conversation(llm: Any, tmp_path: Path) -> None:
    engine = greedy(llm, max_tokens=32, system="Be brief.")
    engine.send(QUESTION)
    saved = json.loads(engine.save(tmp_path / "conv.json").read_text(encoding="utf-8"))
    assert saved["system"] == "Be brief."
    assert saved["messages"][0] == {"role": "user", "content": QUESTION}
    assert saved["chat_format"] == "gguf"
    with pytest.raises(RunnerError, match="cannot save"):
        engine.save(tmp_path / "no" / "such" / "dir.json")


def test_fallback_formats_render_each_family() -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    llama3 = ChatFormat("llama-3", FALLBACK_TEMPLATES["llama-3"], "<|begin_of_text|>", "<|eot_id|>")
    assert llama3.render(msgs) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    mistral = ChatFormat("mistral-instruct", FALLBACK_TEMPLATES["mistral-instruct"], "<s>", "</s>")
    turns = [*msgs, {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}]
    assert mistral.render(turns) == "<s>[INST] S\n\nU [/INST]A</s>[INST] V [/INST]"
    chatml = ChatFormat("chatml", FALLBACK_TEMPLATES["chatml"], "", "<|im_end|>")
    assert chatml.render(msgs).endswith("<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    assert guess_fallback({"<|start_header_id|>"}) == "llama-3"
    assert guess_fallback({"[INST]"}) == "mistral-instruct"
    assert guess_fallback(set()) == "chatml"


def test_forced_fallback_format_on_a_real_model(llm: Any) -> None:
    engine = greedy(llm, chat_format="chatml", max_tokens=32)
    assert engine.format.source == "chatml"
    assert "Paris" in engine.send(QUESTION).text


def test_templates_are_sandboxed() -> None:
    evil = ChatFormat("gguf", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "", "")
    with pytest.raises(RunnerError, match="failed to render"):
        evil.render([{"role": "user", "content": "x"}])
    raising = ChatFormat("gguf", "{{ raise_exception('only user and assistant roles') }}", "", "")
    with pytest.raises(RunnerError, match="only user and assistant roles"):
        raising.render([{"role": "user", "content": "x"}])


class _InterruptingOut(io.StringIO):
    """stdout that presses Ctrl-C (SIGINT to this process) after the third streamed chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks = 0

    def write(self, s: str) -> int:
        if s != "\n":
            self.chunks += 1
            if self.chunks == 3:
                os.kill(os.getpid(), signal.SIGINT)
        return super().write(s)


def test_repl_ctrl_c_cancels_the_reply_and_the_session_goes_on(llm: Any, tmp_path: Path) -> None:
    engine = greedy(llm, max_tokens=200)
    script = f"Write a long story about a dragon.\n{QUESTION}\n/save {tmp_path / 's.json'}\n"
    out, err = _InterruptingOut(), io.StringIO()
    rc = run_repl(engine, io.StringIO(script), out, err, interactive=False)
    assert rc == 0
    assert "(reply cancelled)" in err.getvalue()
    assert "Paris" in out.getvalue()  # the next message was answered
    saved = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert len(saved["messages"]) == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_cli_repl_with_scripted_stdin(chat_gguf: Path, tmp_path: Path) -> None:
    conv = tmp_path / "conv.json"
    script = "\n".join(
        [
            QUESTION,
            "/system You answer in French.",
            "/help",
            "/bogus",
            f"/save {conv}",
            "/reset",
            "Hello!",
            "/quit",
            "ignored",
        ]
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubtui",
            "chat",
            str(chat_gguf),
            "--temp",
            "0",
            "--ctx",
            "512",
            "--max-tokens",
            "48",
        ],
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) >= 2 and "Paris" in lines[0]
    assert (
        "(system prompt set)" in out.stderr
        and "/reset" in out.stderr
        and "unknown command /bogus" in out.stderr
    )
    assert "(conversation cleared)" in out.stderr
    assert out.stderr.count(" tokens/s; prompt ") == 2  # per-reply stats
    saved = json.loads(conv.read_text(encoding="utf-8"))
    assert saved["system"] == "You answer in French." and len(saved["messages"]) == 2
    assert "llama" not in out.stderr.lower().replace("llama.cpp", "")  # no llama.cpp log chatter


def test_cli_chat_on_a_broken_file_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    # a real process: "one line" is about everything on its stderr, llama.cpp's native log included, which
    # an in-process run (capsys) would not see
    out = subprocess.run(
        [sys.executable, "-m", "hubtui", "chat", str(junk)],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"hubtui: error: {junk}: not a GGUF file (magic b'not ', expected b'GGUF')"
    ]
