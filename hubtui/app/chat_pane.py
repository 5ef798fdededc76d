"""Chat: load a GGUF in a worker, stream replies as Markdown under labelled turns, Esc stops a reply.

The message box has the focus from the start; a message sent while the model loads waits and goes as soon
as it is ready. The REPL's commands work here too (/save, /reset, /system, /help; the same code), ctrl+o
opens another local GGUF, and ctrl+f attaches a LoRA adapter GGUF (or detaches it): the model is reloaded
with it, as `hubtui chat FILE --lora ADAPTER --lora-scale S` loads it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Markdown, Static

from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import JobDone, JobStatus, JobUpdate
from hubtui.app.modals import AdapterPicker, ModelPicker
from hubtui.app.session import UsesSession

PLACEHOLDER = "Message (Enter sends; /system TEXT, /reset, /save [FILE], /help; ↑ history)"


class PromptInput(Input):
    """The message box: ↑/↓ walk through what was sent before."""

    BINDINGS = [
        Binding("up", "history(-1)", "Previous", show=False, id="chat.history_prev"),
        Binding("down", "history(1)", "Next", show=False, id="chat.history_next"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = []
        self.index = 0

    def remember(self, text: str) -> None:
        self.history.append(text)
        self.index = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self.index = max(0, min(len(self.history), self.index + step))
        self.value = self.history[self.index] if self.index < len(self.history) else ""
        self.cursor_position = len(self.value)


class ChatPane(UsesSession, ReportsWorkerErrors, Vertical):
    BINDINGS = [
        Binding("ctrl+o", "pick", "Open GGUF", id="chat.pick", priority=True),
        Binding("escape", "stop", "Stop reply", id="chat.stop", priority=True),
        Binding("ctrl+n", "reset", "New chat", id="chat.reset", priority=True),
        Binding("ctrl+f", "adapter", "LoRA adapter", id="chat.adapter", priority=True),
    ]

    class Loaded(Message):
        def __init__(
            self,
            path: str,
            engine: Any,
            error: str = "",
            lora: tuple[str, float] | None = None,
            refused: str = "",
        ) -> None:
            super().__init__()
            self.path = path
            self.engine = engine
            self.error = error
            self.lora = lora  # the adapter the engine runs with
            self.refused = refused  # why the adapter asked for was not attached

    class Token(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Replied(Message):
        def __init__(self, reply: Any, error: str = "") -> None:
            super().__init__()
            self.reply = reply
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.engine: Any = None
        self.path: str | None = None
        self.busy = False  # loading a model or streaming a reply
        self.loading: str | None = None  # type: ignore[assignment]  # the GGUF being loaded
        self.pending: list[str] = []  # the message sent while the model loads (one at most)
        self.stream: Any = None
        self.reply_md: Markdown | None = None
        self.system = ""
        self.lora: tuple[str, float] | None = None  # (adapter GGUF, scale) the next load applies
        self.engine_lora: tuple[str, float] | None = None  # the one the loaded engine runs with

    @staticmethod
    def command_rows() -> list[tuple[str, str, str]]:
        """The message box's commands, for F1."""
        return [
            ("/system TEXT", "Set the system prompt (no TEXT: clear it)", "-"),
            ("/reset", "Forget the conversation (ctrl+n)", "-"),
            ("/save [FILE]", "Save the conversation as JSON (no FILE: the chats folder)", "-"),
            ("/help", "List the commands", "-"),
        ]

    def compose(self) -> ComposeResult:
        yield Static(self._no_model_line(), id="chat-model")
        yield Static(self._system_line(), id="chat-system")
        yield VerticalScroll(id="chat-log")
        yield PromptInput(placeholder=PLACEHOLDER, id="chat-input")
        yield Static("", id="chat-stats")

    def _no_model_line(self) -> str:
        line = "No model loaded: ctrl+o opens a GGUF (or ctrl+y on Local, F4)."
        if self.lora:
            line += f"\n{self._lora_text(self.lora)} attaches when one loads (ctrl+f changes it)."
        return line

    @staticmethod
    def _lora_text(lora: tuple[str, float]) -> str:
        return f"LoRA {escape(Path(lora[0]).name)} × {lora[1]:g}"

    def _model_line(self) -> str:
        assert self.engine is not None and self.path is not None
        adapter = self._lora_text(self.engine_lora) if self.engine_lora else "no adapter"
        return (
            f"[b]{escape(Path(self.path).name)}[/b]: chat format {escape(str(self.engine.format.source))}, "
            f"context {self.engine.n_ctx}; {adapter} (ctrl+f)"
        )

    def _system_line(self) -> str:
        if self.system:
            return f"[dim]system prompt:[/] {escape(self.system)}"
        return "[dim]system prompt: none (/system TEXT sets one)[/]"

    def on_unmount(self) -> None:
        self.stop_for_quit()

    def stop_for_quit(self) -> None:
        if self.engine is not None:  # quitting stops a reply being generated
            self.engine.cancel()

    # -- model ------------------------------------------------------------------------------------
    def load(self, path: str) -> None:
        box = self.query_one("#chat-input", PromptInput)
        self.screen.set_focus(box)  # type at once: kept while the model loads, sent when it is ready
        if self.busy:
            what = "the model is loading" if self.loading else "a reply is streaming (Esc stops it)"
            self.app.notify(f"Wait: {what}.", severity="warning")
            return
        self.busy = True
        self.loading = path
        self.query_one("#chat-log", VerticalScroll).remove_children()  # a new model, a new conversation
        with_lora = f" with {self._lora_text(self.lora)}" if self.lora else ""
        self.query_one("#chat-model", Static).update(f"Loading {escape(Path(path).name)}{with_lora}…")
        self.post_message(
            JobUpdate(
                JobStatus(
                    "chat", "chat", f"Loading {Path(path).name} for chat", None, "llama.cpp", "stops loading"
                )
            )
        )
        self._load(path, self.system, self.lora)

    @work(thread=True, exit_on_error=False, group="chat-load")
    def _load(self, path: str, system: str, lora: tuple[str, float] | None) -> None:
        """As `hubtui chat FILE --lora A --lora-scale S`; an adapter llama.cpp would refuse for this model
        (check_adapter's verdict) is left off, and the model loads without it."""
        from hubtui.runner.adapters import check_adapter_for
        from hubtui.runner.chat import ChatEngine, load_model

        refused = (check_adapter_for(lora[0], path) or "") if lora else ""
        if refused:
            lora = None
        try:
            llm = load_model(path, lora=lora[0] if lora else None, lora_scale=lora[1] if lora else 1.0)
            engine = ChatEngine(llm, system=system or None, model_path=path)
        except Exception as exc:
            self.post_message(self.Loaded(path, None, worker_failed(f"loading {path}", exc), refused=refused))
            return
        self.post_message(self.Loaded(path, engine, lora=lora, refused=refused))

    async def on_chat_pane_loaded(self, message: Loaded) -> None:
        self.busy = False
        self.loading = None
        self.post_message(JobDone("chat"))
        if message.refused:
            self.lora = None
            self.app.notify(
                f"{message.refused}; {Path(message.path).name} loads without it.",
                title="Chat: adapter not attached",
                severity="warning",
                timeout=10,
            )
        if message.engine is None:
            self.query_one("#chat-model", Static).update(
                f"[red]Cannot load {escape(Path(message.path).name)}:[/] {escape(message.error)}"
            )
            self.app.notify(message.error, title="Chat: model did not load", severity="error", timeout=10)
            if self.pending:
                self.query_one("#chat-input", PromptInput).value = self.pending[0]  # not lost
                self.pending.clear()
            return
        if self.engine is not None:
            self._close(self.engine)
        self.engine, self.path, self.engine_lora = message.engine, message.path, message.lora
        self.query_one("#chat-model", Static).update(self._model_line())
        if message.refused:
            self.query_one("#chat-stats", Static).update(
                f"[yellow]adapter not attached: {escape(message.refused)}[/]"
            )
        if self.pending:  # typed while it loaded: shown already, sent now
            await self._send_text(self.pending.pop(), shown=True)

    @work(thread=True, exit_on_error=False, group="chat-close")
    def _close(self, engine: Any) -> None:
        engine.close()

    def action_pick(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.load(path)

        self.app.push_screen(ModelPicker("gguf", self.session.output_dir, self.path), chosen)

    def action_adapter(self, chosen: str | None = None) -> None:
        """Pick the LoRA adapter (and scale) for the model here, or none; `chosen` is highlighted first (an
        adapter offered from Local). A loaded model is reloaded with it: a new conversation."""
        if self.busy:
            what = "the model is loading" if self.loading else "a reply is streaming (Esc stops it)"
            self.app.notify(f"Wait: {what}.", severity="warning")
            return

        def answered(result: tuple[str, float] | None) -> None:
            if result is None:
                return
            self.attach(result[0] or None, result[1])

        model = self.loading or self.path
        self.app.push_screen(AdapterPicker(self.session.output_dir, model, self.lora, chosen), answered)

    def attach(self, adapter: str | None, scale: float = 1.0) -> None:
        """Use `adapter` (None: no adapter) from the next load on; reload the model here if it changes."""
        self.lora = (adapter, scale) if adapter else None
        if self.path is not None and self.lora != self.engine_lora:
            self.load(self.path)
        elif self.path is None:
            self.query_one("#chat-model", Static).update(self._no_model_line())

    # -- conversation -----------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        box = self.query_one("#chat-input", PromptInput)
        if text.startswith("/"):
            box.remember(text)
            box.value = ""
            await self._command(text)
            return
        if self.engine is None and self.loading is None:
            self.app.notify("Open a model first (ctrl+o).", severity="warning")
            return
        if self.busy and self.loading is None:
            self.app.notify("A reply is still streaming (Esc stops it).", severity="warning")
            return
        if self.loading is not None and self.pending:
            self.app.notify("One message already waits for the model to load.", severity="warning")
            return
        box.remember(text)
        box.value = ""
        if self.loading is not None:  # kept, shown, and sent when the model is ready
            self.pending.append(text)
            await self._turn("You", text, "user-msg")
            self.query_one("#chat-stats", Static).update("waiting for the model to load…")
            return
        await self._send_text(text)

    async def _turn(self, who: str, text: str, classes: str) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        await log.mount(Static(f"[b]{escape(who)}[/b]", classes=f"turn-label {classes}"))
        await log.mount(Static(text, markup=False, classes=f"{classes} msg"))
        log.scroll_end(animate=False)

    async def _send_text(self, text: str, shown: bool = False) -> None:
        if not shown:
            await self._turn("You", text, "user-msg")
        log = self.query_one("#chat-log", VerticalScroll)
        await log.mount(
            Static(f"[b]{escape(Path(self.path or 'model').stem)}[/b]", classes="turn-label assistant-label")
        )
        self.reply_md = Markdown("", classes="assistant-msg")
        await log.mount(self.reply_md)
        self.stream = Markdown.get_stream(self.reply_md)
        log.scroll_end(animate=False)
        self.busy = True
        self.query_one("#chat-stats", Static).update("generating…")
        self._generate(self.engine, text)

    async def _command(self, text: str) -> None:
        """The REPL's commands, through the same code; the conversation shown follows."""
        from hubtui.runner.chat_commands import run_command

        stats = self.query_one("#chat-stats", Static)
        if text.split()[0] in ("/quit", "/exit"):
            stats.update("ctrl+q quits hubtui; the chat stays here.")
            return
        if self.engine is None:
            if text.startswith("/system"):  # before a model: used when one loads
                self.system = text[len("/system") :].strip()
                self.query_one("#chat-system", Static).update(self._system_line())
                stats.update("system prompt set" if self.system else "system prompt cleared")
            else:
                stats.update("Open a model first (ctrl+o); /system works before one is loaded.")
            return
        if self.busy:
            stats.update("Wait for the reply (Esc stops it).")
            return
        result = run_command(self.engine, text, default_save=self._default_save)
        if result is None:
            return
        if result.reset:
            await self.query_one("#chat-log", VerticalScroll).remove_children()
        self.system = self.engine.system or ""
        self.query_one("#chat-system", Static).update(self._system_line())
        if result.kind == "usage" and "\n" in result.text:
            await self._turn("help", result.text, "note-msg")
            stats.update("")
        else:
            colour = "red" if result.kind == "error" else "dim"
            stats.update(f"[{colour}]{escape(result.text)}[/]")

    def _default_save(self) -> Path:
        from hubtui.app.services import state_dir

        folder = state_dir() / "chats"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{Path(self.path or 'chat').stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"

    @work(thread=True, exit_on_error=False, group="chat")
    def _generate(self, engine: Any, text: str) -> None:
        try:
            reply = engine.send(text, on_token=lambda t: self.post_message(self.Token(t)))
        except Exception as exc:
            self.post_message(self.Replied(None, worker_failed("chat reply", exc)))
            return
        self.post_message(self.Replied(reply))

    async def on_chat_pane_token(self, message: Token) -> None:
        if self.stream is not None:
            await self.stream.write(message.text)
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    async def on_chat_pane_replied(self, message: Replied) -> None:
        if self.stream is not None:
            await self.stream.stop()
            self.stream = None
        self.busy = False
        stats = self.query_one("#chat-stats", Static)
        if message.reply is None:
            stats.update(f"[red]{escape(message.error)}[/]")
            self.app.notify(message.error, title="Chat failed", severity="error")
        else:
            s = message.reply.stats
            speed = f", {s.tokens_per_s:.1f} tokens/s" if s.tokens_per_s else ""
            stopped = " (stopped)" if s.stop == "cancelled" else ""
            stats.update(
                f"{s.tokens} tokens{speed}; prompt {s.prompt_tokens} tokens, {s.new_prompt_tokens} new{stopped}"
            )

    def action_stop(self) -> None:
        if self.busy and self.engine is not None and self.loading is None:
            self.engine.cancel()

    async def action_reset(self) -> None:
        if self.engine is not None and not self.busy:
            self.engine.reset()
            await self.query_one("#chat-log", VerticalScroll).remove_children()
            self.query_one("#chat-stats", Static).update("new conversation")
