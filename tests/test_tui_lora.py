"""LoRA adapter GGUFs in the TUI: Local lists them as adapters naming their base, Chat attaches one (the
model is loaded with it, as `hubtui chat --lora` loads it), detaches it, and refuses one made for another
architecture with llama.cpp's reason while the model loads without it.

Adapters are built offline with numpy (tests/fixtures/adapters.py) and converted as `hubtui convert ADAPTER
--base BASE` does."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList

from hubtui.app.chat_pane import ChatPane
from hubtui.app.modals import AdapterPicker
from quant.convert import convert
from quant.convert.lora_gguf import convert_adapter
from tests.fixtures.adapters import write_adapter
from tests.support.tui_helpers import isolate, make_app, ready, text_of, wait_until

BASE_CARD = "---\nbase_model: mistralai/Mistral-7B-v0.3\nlibrary_name: peft\n---\n# adapter\n"


@pytest.fixture(scope="module")
def files(
    mistral_tiny_dir: Path, llama4_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The small-vocabulary base as F32, an adapter for it (its card names a base), and one for Llama 4."""
    tmp = tmp_path_factory.mktemp("tui-lora")
    ad = write_adapter(tmp / "My-Adapter", mistral_tiny_dir)
    (ad / "README.md").write_text(BASE_CARD)
    other = write_adapter(tmp / "L4-Adapter", llama4_tiny_dir)
    return {
        "base": convert(mistral_tiny_dir, tmp / "base-F32.gguf", "F32").path,
        "adapter": convert_adapter(ad, mistral_tiny_dir, tmp / "my-adapter.gguf", "F32").path,
        "other": convert_adapter(other, llama4_tiny_dir, tmp / "l4-adapter.gguf", "F16").path,
    }


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> Path:
    folder = isolate(tmp_path, monkeypatch)
    for path in files.values():
        (folder / path.name).symlink_to(path)
    return folder


def _warned(app, words: str) -> bool:  # noqa: ANN001
    return any(words in n.message for n in app._notifications)


async def _pick(pilot, option_id: str, scale: str | None = None) -> None:  # noqa: ANN001
    """In the adapter picker: wait for the list, choose `option_id` (a path, or the no-adapter entry)."""
    screen = pilot.app.screen
    assert isinstance(screen, AdapterPicker)
    options = screen.query_one("#adapter-list", OptionList)
    await wait_until(pilot, lambda: options.option_count > 0, "the adapter list", 60)
    if scale is not None:
        screen.query_one("#adapter-scale", Input).value = scale
    options.highlighted = options.get_option_index(option_id)
    options.focus()
    await pilot.press("enter")
    await wait_until(pilot, lambda: not isinstance(pilot.app.screen, AdapterPicker), "the picker to close")


async def _reply(pilot, chat: ChatPane, text: str) -> str:  # noqa: ANN001
    """A greedy reply of a few tokens from the engine loaded now."""
    chat.engine.sampling["temp"] = 0.0
    chat.engine.max_tokens = 12
    chat.engine.reset()
    chat.query_one("#chat-input", Input).value = text
    chat.query_one("#chat-input", Input).focus()
    await pilot.press("enter")
    await wait_until(pilot, lambda: not chat.busy and "tokens" in text_of(pilot.app, "#chat-stats"), "reply")
    return chat.engine.history[-1]["content"]


async def _loaded(pilot, chat: ChatPane) -> None:  # noqa: ANN001
    await wait_until(pilot, lambda: chat.engine is not None and not chat.busy, "the model to load")


async def test_local_lists_adapters_naming_their_base_and_keeps_model_actions_off_them(
    out: Path, hub_env: Path, files: dict[str, Path]
) -> None:
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f4")
        table = app.query_one("#local-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 3, "local listing")
        rows = {table.get_row_at(i)[1]: table.get_row_at(i) for i in range(table.row_count)}
        assert rows["my-adapter.gguf"][0] == "adapter"
        assert rows["my-adapter.gguf"][3] == "LoRA adapter for llama, base mistralai/Mistral-7B-v0.3"
        assert rows["l4-adapter.gguf"][0] == "adapter"
        assert rows["l4-adapter.gguf"][3].startswith("LoRA adapter for llama4, base ")
        assert rows["base-F32.gguf"][0] == "gguf" and rows["base-F32.gguf"][3] == "F32"

        table.focus()
        table.move_cursor(row=[k for k in range(3) if table.get_row_at(k)[1] == "my-adapter.gguf"][0])
        for key in ("ctrl+t", "ctrl+b", "ctrl+r"):  # smoke, bundle, convert: a model's actions
            app._notifications.clear()
            await pilot.press(key)
            await wait_until(pilot, lambda: _warned(app, "my-adapter.gguf is a LoRA adapter"), key)
            assert app.query_one("#tabs").active == "local"
        await pilot.press("ctrl+e")  # inspect works on an adapter: what `hubtui inspect` prints
        body = app.screen.query_one("#text-body")
        await wait_until(pilot, lambda: "base model" in str(body.render()), "inspect text")
        assert "LoRA adapter (alpha 16) for llama" in str(body.render())
        await pilot.press("escape")

        await pilot.press("ctrl+y")  # chat: the adapter is offered to Chat's adapter picker
        await wait_until(pilot, lambda: isinstance(app.screen, AdapterPicker), "the adapter picker")
        assert app.query_one("#tabs").active == "chat"
        options = app.screen.query_one("#adapter-list", OptionList)
        await wait_until(pilot, lambda: options.option_count == 3, "the adapter list")
        assert options.get_option_at_index(options.highlighted).id == str(out / "my-adapter.gguf")
        await pilot.press("escape")
        assert app.query_one(ChatPane).lora is None


async def test_chat_attaches_an_adapter_the_reply_follows_it_and_detaching_restores_it(
    out: Path, hub_env: Path
) -> None:
    base, adapter = str(out / "base-F32.gguf"), str(out / "my-adapter.gguf")
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        chat = app.query_one(ChatPane)
        app.start_chat(base)
        await _loaded(pilot, chat)
        assert chat.engine.llm.lora_path is None and "no adapter" in text_of(app, "#chat-model")
        plain = await _reply(pilot, chat, "Hello there")

        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, AdapterPicker), "the adapter picker")
        options = app.screen.query_one("#adapter-list", OptionList)
        await wait_until(pilot, lambda: options.option_count == 3, "the adapter list")
        # the Llama 4 adapter is listed with llama.cpp's reason and cannot be chosen
        other = options.get_option(str(out / "l4-adapter.gguf"))
        assert other.disabled and "adapter for architecture llama4, the model is llama" in str(other.prompt)
        assert not options.get_option(adapter).disabled
        await _pick(pilot, adapter, scale="0.75")
        await _loaded(pilot, chat)
        assert (chat.engine.llm.lora_path, chat.engine.llm.lora_scale) == (adapter, 0.75)
        assert chat.engine_lora == (adapter, 0.75)
        assert "LoRA my-adapter.gguf × 0.75" in text_of(app, "#chat-model")
        with_adapter = await _reply(pilot, chat, "Hello there")
        assert with_adapter != plain

        await pilot.press("ctrl+f")
        await _pick(pilot, AdapterPicker.NONE)
        await _loaded(pilot, chat)
        assert chat.engine.llm.lora_path is None and chat.lora is None
        assert "no adapter" in text_of(app, "#chat-model")
        assert await _reply(pilot, chat, "Hello there") == plain
        chat.engine.close()


async def test_an_adapter_for_another_architecture_is_refused_and_the_model_loads_without_it(
    out: Path, hub_env: Path
) -> None:
    base, other = str(out / "base-F32.gguf"), str(out / "l4-adapter.gguf")
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        chat = app.query_one(ChatPane)
        app._show_tab("chat")
        await pilot.press("ctrl+f")  # no model yet: nothing to check against, so any adapter may be chosen
        await wait_until(pilot, lambda: isinstance(app.screen, AdapterPicker), "the adapter picker")
        await _pick(pilot, other)
        assert chat.lora == (other, 1.0)
        assert "LoRA l4-adapter.gguf × 1 attaches when one loads" in text_of(app, "#chat-model")
        app.start_chat(base)
        await _loaded(pilot, chat)
        reason = "l4-adapter.gguf: adapter for architecture llama4, the model is llama"
        await wait_until(pilot, lambda: _warned(app, reason), "the refusal notice")  # notices are messages
        assert reason in text_of(app, "#chat-stats")
        assert chat.engine.llm.lora_path is None and chat.engine_lora is None and chat.lora is None
        assert "no adapter" in text_of(app, "#chat-model")
        chat.engine.close()
