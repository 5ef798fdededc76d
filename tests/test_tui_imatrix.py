"""The Convert screen's importance matrix: off / auto / file, the imatrix-only types refused without one, a
file's matrix recorded in the GGUF, and "auto" computed first (then cancelled, leaving nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Select

import hubtui.runner.imatrix as runner_imatrix
from hubtui.app.convert_pane import ConvertPane
from hubtui.runner.imatrix import DEFAULT_TEXT, compute_imatrix
from quant.filetypes import FILE_TYPES, IMATRIX_TYPES
from tests.support.convert_support import read_gguf
from tests.support.tui_helpers import isolate, make_app, pick_type, ready, text_of, wait_until


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def imatrix_file(mixtral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real matrix of the tiny Mixtral: two chunks of 32 tokens of the default text."""
    path = tmp_path_factory.mktemp("imatrix") / "mixtral.imatrix.gguf"
    compute_imatrix(mixtral_tiny_dir, path, n_ctx=32, chunks=2, threads=2)
    return path


async def _open(app: Any, pilot: Any, src: Path) -> ConvertPane:
    await ready(pilot)
    app.open_convert(str(src))
    pane = app.query_one(ConvertPane)
    await wait_until(pilot, lambda: "★" in text_of(app, "#cv-fit"), "the fit table", 60)
    return pane


async def _set_imatrix(pilot: Any, pane: ConvertPane, mode: str, path: str = "") -> None:
    pane.query_one("#cv-imatrix", Select).value = mode
    await pilot.pause()
    if path:
        field = pane.query_one("#cv-imatrix-file", Input)
        field.value = path
        field.focus()
        await pilot.press("enter")


async def test_the_three_states_and_the_recommendation_follow_the_choice(
    out: Path, hub_env: Path, mixtral_tiny_dir: Path, imatrix_file: Path, tmp_path: Path
) -> None:
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(100, 40)) as pilot:
        pane = await _open(app, pilot, mixtral_tiny_dir)
        await pick_type(pilot, "Q8_0")  # wait for the list, then back to auto
        pane.query_one("#cv-type", Select).value = "auto"
        labels = {value: str(label) for label, value in pane.query_one("#cv-type", Select)._options}
        assert set(IMATRIX_TYPES) <= set(labels)  # every file type is listed, the imatrix-only ones marked
        assert all(labels[t].endswith("(needs imatrix)") for t in IMATRIX_TYPES)
        assert labels["Q4_K_M"] == "Q4_K_M"
        fit = text_of(app, "#cv-fit")  # the fit table marks them too, and says what the mark means
        assert "* needs an imatrix" in fit and all(f"{t}*" in fit for t in IMATRIX_TYPES)
        assert "Q4_K_M*" not in fit
        # off: nothing needing an imatrix is recommended; the file field is hidden
        assert app.session.imatrix == "" and not pane.query_one("#cv-imatrix-file", Input).display
        off = pane.recommended
        assert off is not None and not FILE_TYPES[off].needs_imatrix

        # auto: the plan is made again with has_imatrix (a float type is no longer recommendable)
        await _set_imatrix(pilot, pane, "auto")
        assert app.session.imatrix == "auto"
        assert "64 chunks" in text_of(app, "#cv-imatrix-note")
        await wait_until(pilot, lambda: pane.planned_for is not None and pane.planned_for[2], "the new plan")
        assert pane.recommended is not None and FILE_TYPES[pane.recommended].quantized

        # file: a bad file is named in one line; a good one is accepted
        bad = tmp_path / "bad.dat"
        bad.write_bytes(b"\x00\x01")
        await _set_imatrix(pilot, pane, "file", str(bad))
        assert pane.query_one("#cv-imatrix-file", Input).display
        await wait_until(pilot, lambda: bool(pane.imatrix_error), "the file check")
        assert str(bad) in text_of(app, "#cv-imatrix-note")
        await pick_type(pilot, "IQ3_XXS")
        await pilot.press("ctrl+r")
        assert pane.cancel_event is None and "Not started" in text_of(app, "#cv-status")
        await _set_imatrix(pilot, pane, "file", str(imatrix_file))
        await wait_until(pilot, lambda: "✓" in text_of(app, "#cv-imatrix-note"), "the file check")
        assert app.session.imatrix == str(imatrix_file) and pane.imatrix_error == ""

        # back to off: the recommendation is what it was
        await _set_imatrix(pilot, pane, "off")
        assert app.session.imatrix == ""
        await wait_until(pilot, lambda: pane.planned_for is not None and not pane.planned_for[2], "plan")
        assert pane.recommended == off
    assert list(out.iterdir()) == []


async def test_an_imatrix_only_type_without_one_is_refused_with_the_guidance(
    out: Path, hub_env: Path, mixtral_tiny_dir: Path
) -> None:
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(100, 40)) as pilot:
        pane = await _open(app, pilot, mixtral_tiny_dir)
        await pick_type(pilot, "IQ2_XS")
        await pilot.press("ctrl+r")
        await pilot.pause()
        status = text_of(app, "#cv-status")
        assert pane.cancel_event is None and "Not started" in status
        assert "needs an importance matrix" in status and "hubtui imatrix" in status
        assert "set Imatrix to auto or file" in status
        await pick_type(pilot, "F16")  # and a float type with one: refused as the CLI refuses it
        await _set_imatrix(pilot, pane, "auto")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert pane.cancel_event is None and "applies to quantised types" in text_of(app, "#cv-status")
    assert list(out.iterdir()) == []


async def test_a_file_imatrix_is_applied_and_recorded(
    out: Path, hub_env: Path, mixtral_tiny_dir: Path, imatrix_file: Path
) -> None:
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(100, 40)) as pilot:
        pane = await _open(app, pilot, mixtral_tiny_dir)
        await _set_imatrix(pilot, pane, "file", str(imatrix_file))
        await wait_until(pilot, lambda: "✓" in text_of(app, "#cv-imatrix-note"), "the file check")
        await pick_type(pilot, "IQ3_XXS")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: pane.last_output is not None, "the conversion", 120)
    kv, tensors = read_gguf(Path(pane.last_output))
    assert kv["quantize.imatrix.file"] == str(imatrix_file)
    assert kv["quantize.imatrix.chunks_count"] == 2 and kv["quantize.imatrix.entries_count"] > 0
    assert any(t == "IQ3_XXS" for _name, t, _ne, _data in tensors)


async def test_auto_computes_first_then_converts_and_a_cancel_leaves_nothing(
    out: Path, hub_env: Path, mixtral_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_imatrix, "AUTO_IMATRIX_CHUNKS", 2)
    steps: list[str] = []
    real_step = ConvertPane.on_convert_pane_imatrix_step

    def seen(self: ConvertPane, message: Any) -> None:
        real_step(self, message)
        steps.append(text_of(self.app, "#cv-status"))

    monkeypatch.setattr(ConvertPane, "on_convert_pane_imatrix_step", seen)
    app = make_app(out, "http://127.0.0.1:9")
    async with app.run_test(size=(100, 40)) as pilot:
        pane = await _open(app, pilot, mixtral_tiny_dir)
        await _set_imatrix(pilot, pane, "auto")
        await pick_type(pilot, "IQ3_XXS")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: pane.last_output is not None, "the conversion", 120)
        assert steps and "chunk 2/2" in steps[-1] and "ETA" in steps[-1]
        gguf = Path(pane.last_output)
        assert sorted(p.name for p in out.iterdir()) == [gguf.name]  # no temporary folder or F16 left
        kv = read_gguf(gguf)[0]
        assert kv["quantize.imatrix.file"] == f"auto:{DEFAULT_TEXT.name}"
        assert kv["quantize.imatrix.chunks_count"] == 2
        gguf.unlink()

        # cancelled during the matrix: set as the first chunk reports, seen before the second starts
        real_post = pane.post_message

        def post(message: Any) -> bool:
            if isinstance(message, ConvertPane.ImatrixStep) and pane.cancel_event is not None:
                pane.cancel_event.set()
            return real_post(message)

        pane.post_message = post  # type: ignore[method-assign]
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: pane.cancel_event is None, "the cancel", 120)
        assert "no output file was left behind" in text_of(app, "#cv-status")
        assert list(out.iterdir()) == []
