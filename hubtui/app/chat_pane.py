"""Chat: load a GGUF in a worker, stream replies as Markdown, Esc stops a reply; history and a system prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Markdown, Static

from hubtui.app.imports import load


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


class ChatPane(Vertical):
    BINDINGS = [
        Binding("escape", "stop", "Stop reply", id="chat.stop", priority=True),
        Binding("ctrl+n", "reset", "New chat", id="chat.reset", priority=True),
    ]

    class Loaded(Message):
        def __init__(self, path: str, engine: Any, error: str = "") -> None:
            super().__init__()
            self.path = path
            self.engine = engine
            self.error = error

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
        self.busy = False
        self.stream: Any = None
        self.reply_md: Markdown | None = None

    def compose(self) -> ComposeResult:
        yield Static("No model loaded: pick a GGUF on Local (F4) and press t.", id="chat-model")
        with Horizontal(classes="field"):
            yield Label("System ", classes="label")
            yield Input(placeholder="system prompt (Enter sets it)", id="chat-system")
        yield VerticalScroll(id="chat-log")
        yield PromptInput(placeholder="Message (Enter sends, Esc stops a reply, ↑ history)", id="chat-input")
        yield Static("", id="chat-stats")

    def on_unmount(self) -> None:
        if self.engine is not None:  # quitting stops a reply being generated
            self.engine.cancel()

    # -- model ------------------------------------------------------------------------------------
    def load(self, path: str) -> None:
        if self.busy:
            self.app.notify("Wait for the reply to finish (Esc stops it).", severity="warning")
            return
        self.busy = True
        self.query_one("#chat-model", Static).update(f"Loading {Path(path).name}…")
        self._load(path, self.query_one("#chat-system", Input).value)

    @work(thread=True, exit_on_error=False, group="chat-load")
    def _load(self, path: str, system: str) -> None:
        load("hubtui.runner.chat")
        from hubtui.runner.chat import ChatEngine, load_model

        try:
            engine = ChatEngine(load_model(path), system=system or None, model_path=path)
        except Exception as exc:
            self.post_message(self.Loaded(path, None, str(exc)))
            return
        self.post_message(self.Loaded(path, engine))

    async def on_chat_pane_loaded(self, message: Loaded) -> None:
        self.busy = False
        if message.engine is None:
            self.query_one("#chat-model", Static).update(
                f"[red]Cannot load {Path(message.path).name}:[/] {message.error}"
            )
            self.app.notify(message.error, title="Chat: model did not load", severity="error", timeout=10)
            return
        if self.engine is not None:
            self._close(self.engine)
        self.engine, self.path = message.engine, message.path
        await self.query_one("#chat-log", VerticalScroll).remove_children()
        self.query_one("#chat-model", Static).update(
            f"[b]{Path(message.path).name}[/b]: chat format {self.engine.format.source}, context {self.engine.n_ctx}"
        )
        self.query_one("#chat-input", PromptInput).focus()

    @work(thread=True, exit_on_error=False, group="chat-close")
    def _close(self, engine: Any) -> None:
        engine.close()

    # -- conversation -----------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-system")
    def _system(self, event: Input.Submitted) -> None:
        if self.engine is not None:
            self.engine.set_system(event.value)
            self.app.notify("System prompt set." if event.value.strip() else "System prompt cleared.")

    @on(Input.Submitted, "#chat-input")
    async def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.engine is None:
            self.app.notify("Load a model first (Local, F4, then t).", severity="warning")
            return
        if self.busy:
            self.app.notify("A reply is still streaming (Esc stops it).", severity="warning")
            return
        box = self.query_one("#chat-input", PromptInput)
        box.remember(text)
        box.value = ""
        log = self.query_one("#chat-log", VerticalScroll)
        await log.mount(Static(f"[b]you[/b]  {text}", markup=True, classes="user-msg"))
        self.reply_md = Markdown("", classes="assistant-msg")
        await log.mount(self.reply_md)
        self.stream = Markdown.get_stream(self.reply_md)
        log.scroll_end(animate=False)
        self.busy = True
        self.query_one("#chat-stats", Static).update("generating…")
        self._generate(self.engine, text)

    @work(thread=True, exit_on_error=False, group="chat")
    def _generate(self, engine: Any, text: str) -> None:
        try:
            reply = engine.send(text, on_token=lambda t: self.post_message(self.Token(t)))
        except Exception as exc:
            self.post_message(self.Replied(None, str(exc)))
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
            stats.update(f"[red]{message.error}[/]")
            self.app.notify(message.error, title="Chat failed", severity="error")
            return
        s = message.reply.stats
        speed = f", {s.tokens_per_s:.1f} tokens/s" if s.tokens_per_s else ""
        stopped = " (stopped)" if s.stop == "cancelled" else ""
        stats.update(
            f"{s.tokens} tokens{speed}; prompt {s.prompt_tokens} tokens, {s.new_prompt_tokens} new{stopped}"
        )

    def action_stop(self) -> None:
        if self.busy and self.engine is not None:
            self.engine.cancel()

    async def action_reset(self) -> None:
        if self.engine is not None and not self.busy:
            self.engine.reset()
            await self.query_one("#chat-log", VerticalScroll).remove_children()
            self.query_one("#chat-stats", Static).update("new conversation")
