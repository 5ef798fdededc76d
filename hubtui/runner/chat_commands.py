"""The chat's slash commands (/reset, /system, /save, /help, /quit): one meaning for the REPL and the TUI.

A front end passes each line it reads; `run_command` acts on the engine and says what to tell the user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubtui.runner.errors import RunnerError

if TYPE_CHECKING:
    from hubtui.runner.chat import ChatEngine

HELP = """commands:
  /reset          forget the conversation (keeps the system prompt)
  /system [TEXT]  set the system prompt (no TEXT: clear it)
  /save FILE      save the conversation as JSON
  /help           this help
  /quit           leave (so does end of input)"""


@dataclass(frozen=True)
class CommandResult:
    """`kind`: "notice" (a state change), "error", "usage" (help, wrong use) or "quit"."""

    kind: str
    text: str = ""
    reset: bool = False  # the conversation was cleared: a front end clears what it shows


def run_command(
    engine: ChatEngine, line: str, *, default_save: Callable[[], Path] | None = None
) -> CommandResult | None:
    """Act on `line` if it is a command; None when it is a message for the model.

    `default_save` names the file for a bare `/save` (the TUI saves chats under its state folder);
    without it `/save` needs a file name.
    """
    if not line.startswith("/"):
        return None
    cmd, _, arg = line[1:].partition(" ")
    arg = arg.strip()
    if cmd in ("quit", "exit"):
        return CommandResult("quit")
    if cmd == "reset":
        engine.reset()
        return CommandResult("notice", "conversation cleared", reset=True)
    if cmd == "system":
        engine.set_system(arg)
        return CommandResult("notice", "system prompt set" if engine.system else "system prompt cleared")
    if cmd == "save":
        if not arg and default_save is None:
            return CommandResult("usage", "usage: /save FILE")
        try:
            saved = engine.save(Path(arg).expanduser() if arg else default_save())  # type: ignore[misc]
        except RunnerError as exc:
            return CommandResult("error", str(exc))
        return CommandResult("notice", f"saved {len(engine.history)} messages to {saved}")
    if cmd == "help":
        return CommandResult("usage", HELP)
    return CommandResult("usage", f"unknown command /{cmd} (/help lists them)")
