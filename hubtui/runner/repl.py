"""A line-based chat REPL over the chat engine, for terminals, SSH sessions and scripts.

It is a front end like the TUI: it writes only to the streams it is given (replies to `out`,
prompts, stats and notices to `err`), so piped stdin/stdout work for scripts and tests.
Ctrl-C while a reply streams stops that reply; the session goes on.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import IO

from hubtui.runner.chat import ChatEngine
from hubtui.runner.chat_commands import HELP as COMMANDS_HELP
from hubtui.runner.chat_commands import run_command
from hubtui.runner.errors import RunnerError

HELP = COMMANDS_HELP + "\nCtrl-C stops the reply being generated."


def run_repl(
    engine: ChatEngine, inp: IO[str], out: IO[str], err: IO[str], *, interactive: bool, stats: bool = True
) -> int:
    """Read lines from `inp` until EOF or /quit; return an exit status."""
    use_input = interactive and inp is sys.stdin
    if use_input:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    if interactive:
        err.write(f"chat format: {engine.format.source}; context {engine.n_ctx} tokens; /help for commands\n")
    while True:
        try:
            if use_input:
                err.flush()
                line = input("you> ") + "\n"
            else:
                if interactive:
                    err.write("you> ")
                    err.flush()
                line = inp.readline()
        except EOFError:
            line = ""
        except KeyboardInterrupt:
            err.write("\n")
            return 130
        if not line:
            if interactive:
                err.write("\n")
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        result = run_command(engine, text)
        if result is not None:
            if result.kind == "quit":
                return 0
            message = HELP if result.text == COMMANDS_HELP else result.text
            err.write({"notice": "({})", "error": "error: {}"}.get(result.kind, "{}").format(message) + "\n")
            err.flush()
            continue
        _reply(engine, text, out, err, interactive=interactive, stats=stats)


def _reply(
    engine: ChatEngine, text: str, out: IO[str], err: IO[str], *, interactive: bool, stats: bool
) -> None:
    def on_token(chunk: str) -> None:
        out.write(chunk)
        out.flush()

    def on_notice(message: str) -> None:
        err.write(f"({message})\n")
        err.flush()

    previous = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:  # Ctrl-C cancels this reply instead of ending the session
        previous = signal.signal(signal.SIGINT, lambda *_: engine.cancel())
    try:
        if interactive:
            err.write("assistant> ")
            err.flush()
        try:
            reply = engine.send(text, on_token=on_token, on_notice=on_notice)
        except RunnerError as exc:
            err.write(f"error: {exc}\n")
            return
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    out.write("\n")
    out.flush()
    s = reply.stats
    if s.stop == "cancelled":
        err.write("(reply cancelled)\n")
    if stats:
        speed = f", {s.tokens_per_s:.1f} tokens/s" if s.tokens_per_s else ""
        err.write(f"[{s.tokens} tokens{speed}; prompt {s.prompt_tokens} tokens, {s.new_prompt_tokens} new]\n")
    err.flush()
