"""`hubtui smoke`: verdicts on good conversions, clear failures on broken files, crash/hang isolation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hubtui.runner.smoke import SmokeReport, run_child, run_smoke
from tests.support.cli_helpers import Cli
from tests.support.runner_models import converted_gguf, write_tiny_gguf


@pytest.fixture(scope="session")
def f16_gguf(smollm2_dir: Path) -> Path:
    return converted_gguf(smollm2_dir, "F16")


@pytest.fixture(scope="session")
def q8_gguf(smollm2_dir: Path) -> Path:
    return converted_gguf(smollm2_dir, "Q8_0")


@pytest.fixture(scope="session")
def q4km_gguf(smollm2_dir: Path) -> Path:
    return converted_gguf(smollm2_dir, "Q4_K_M")


@pytest.fixture(scope="session")
def q4km_report(q4km_gguf: Path, f16_gguf: Path) -> SmokeReport:
    stages: list[str] = []
    messages: list[str] = []

    def progress(stage: str, msg: str) -> None:
        stages.append(stage)
        messages.append(msg)

    report = run_smoke(q4km_gguf, baseline=f16_gguf, on_progress=progress)
    report.measurements["_stages"] = stages
    report.measurements["_messages"] = messages
    return report


def run_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m hubtui ARGS`, for the session fixture below: it outlives any one test, so it cannot use the
    function-scoped `cli` fixture (capsys)."""
    return subprocess.run(
        [sys.executable, "-m", "hubtui", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def q8_json(q8_gguf: Path, f16_gguf: Path) -> dict[str, Any]:
    res = run_subprocess("smoke", str(q8_gguf), "--baseline", str(f16_gguf), "--json", "--no-mmap")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_q4km_passes_with_sane_figures(q4km_report: SmokeReport) -> None:
    d = q4km_report.to_dict()
    assert d["verdict"] == "pass", d["reasons"]
    assert q4km_report.exit_code == 0
    assert 5 < d["perplexity"] < 40  # a trained 135M model on plain English prose
    gen = d["measurements"]["generation"]
    assert gen["stopped_at_eog"] and "Paris" in gen["text"]
    assert all(t["ok"] for t in d["measurements"]["round_trip"])
    assert d["load_seconds"] > 0 and d["prompt_tokens_per_s"] > 0 and d["generation_tokens_per_s"] > 0
    assert d["peak_rss_bytes"] > d["gguf"]["tensor_bytes"] / 2  # the mapped weights were touched
    loaded = d["measurements"]["memory_after_load"]
    assert d["mmap"] and loaded["RssFile"] > d["gguf"]["tensor_bytes"] * 0.9  # the weights are mapped
    assert d["memory_plan"]["working_set"] > 0
    assert any(c["check"] == "memory" and c["level"] == "ok" for c in d["checks"])
    stages = d["measurements"]["_stages"]
    assert stages[:2] == ["header", "load"] and stages[-1] == "baseline"
    # said before the child starts (llama.cpp's import takes seconds), not only once it is loading
    assert d["measurements"]["_messages"][1].startswith("starting llama.cpp") and stages[2] == "load"


def test_q8_via_cli_json_is_closer_to_f16_than_q4km(
    q8_json: dict[str, Any], q4km_report: SmokeReport
) -> None:
    assert q8_json["verdict"] == "pass"
    # --no-mmap reaches llama.cpp: the weights sit in anonymous memory, not in the mapped file
    loaded = q8_json["measurements"]["memory_after_load"]
    assert not q8_json["mmap"] and loaded["RssFile"] < q8_json["gguf"]["tensor_bytes"] / 4
    assert loaded["RssAnon"] > q8_json["gguf"]["tensor_bytes"]
    assert q8_json["memory_plan"]["working_set"] == q8_json["memory_plan"]["peak_rss"]
    q4 = q4km_report.to_dict()["baseline"]
    q8 = q8_json["baseline"]
    assert 5 < q8_json["perplexity"] < 40
    assert 0 <= q8["mean_kl"] < q4["mean_kl"]
    assert abs(q8["perplexity_ratio"] - 1) < abs(q4["perplexity_ratio"] - 1)
    assert q8["top1_agreement"] > q4["top1_agreement"]
    # both runs scored the same passage with the same baseline
    assert q8["perplexity"] == pytest.approx(q4["perplexity"], rel=1e-6)


def test_human_output_and_exit_status_for_truncated_file(q8_gguf: Path, tmp_path: Path, cli: Cli) -> None:
    cut = tmp_path / "cut.gguf"
    with open(q8_gguf, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(q8_gguf.stat().st_size // 2))
    res = cli("smoke", str(cut))
    assert res.code == 1
    assert "cut.gguf: FAIL" in res.out
    assert "truncated" in res.out
    assert "Traceback" not in res.out + res.err


def test_truncated_header_fails_without_loading(q8_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "head.gguf"
    cut.write_bytes(q8_gguf.read_bytes()[:4096])
    report = run_smoke(cut)
    assert report.verdict == "fail"
    assert [c.check for c in report.checks] == ["gguf"]
    assert "truncated" in report.reasons[0] and "head.gguf" in report.reasons[0]


def test_random_bytes_fail(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(bytes(range(256)) * 64)
    report = run_smoke(junk)
    assert report.verdict == "fail" and report.exit_code == 1
    assert "not a GGUF file" in report.reasons[0]


def test_random_bytes_after_gguf_magic_fail(tmp_path: Path) -> None:
    import numpy as np

    junk = tmp_path / "magic.gguf"
    junk.write_bytes(b"GGUF" + np.random.default_rng(1).bytes(10_000))
    report = run_smoke(junk)
    assert report.verdict == "fail"
    assert "magic.gguf" in report.reasons[0]


def test_vocabulary_not_matching_embedding_fails(tmp_path: Path) -> None:
    bad = write_tiny_gguf(tmp_path / "vocab.gguf", n_tokens=100, embed_rows=120)
    report = run_smoke(bad)
    assert report.verdict == "fail"
    assert report.reasons == ["vocab.gguf: vocabulary has 100 tokens but token_embd.weight has 120 rows"]
    assert report.measurements == {}  # refused before llama.cpp was asked to load it


def test_unsupported_architecture_fails(tmp_path: Path) -> None:
    bad = write_tiny_gguf(tmp_path / "arch.gguf", n_tokens=100, embed_rows=100, arch="gpt2")
    report = run_smoke(bad)
    assert report.verdict == "fail"
    assert any("unsupported architecture 'gpt2'" in r for r in report.reasons)


def test_load_failure_in_llama_cpp_is_reported(tmp_path: Path) -> None:
    # header checks pass (vocabulary matches), but the blocks' tensors are missing
    bad = write_tiny_gguf(tmp_path / "hollow.gguf", n_tokens=100, embed_rows=100)
    report = run_smoke(bad, timeout=120)
    assert report.verdict == "fail"
    (reason,) = report.reasons
    assert reason.startswith("hollow.gguf: llama.cpp could not load it: ")
    assert "tensor 'blk.0." in reason and "not found" in reason


def test_baseline_with_another_vocabulary_fails(q8_gguf: Path, tmp_path: Path) -> None:
    other = write_tiny_gguf(tmp_path / "other.gguf", n_tokens=100, embed_rows=100)
    report = run_smoke(q8_gguf, baseline=other)
    assert report.verdict == "fail"
    assert any("baseline other.gguf has 100 tokens" in r for r in report.reasons)


def test_missing_file_is_a_clean_cli_failure(tmp_path: Path, cli: Cli) -> None:
    res = cli("smoke", str(tmp_path / "nope.gguf"), "--json")
    assert res.code == 1
    data = res.json()
    assert data["verdict"] == "fail" and "no such file" in data["reasons"][0]


def test_bad_gpu_layers_is_usage_error(tmp_path: Path, cli: Cli) -> None:
    res = cli("smoke", str(tmp_path / "x.gguf"), "--gpu-layers", "lots")
    assert res.code == 2


@pytest.mark.parametrize(
    ("mode", "expect"),
    [
        ("abort", "signal SIGABRT"),
        ("exit", "exit status 3): Traceback: something broke"),
        ("hang", "timed out after 3 s"),
    ],
)
def test_child_crash_or_hang_becomes_a_reason(mode: str, expect: str) -> None:
    seen: list[str] = []
    result, failure, stage = run_child(
        "tests.support.runner_fake_worker",
        {"mode": mode},
        timeout=3 if mode == "hang" else 60,
        on_progress=lambda s, m: seen.append(s),
    )
    assert result is None
    assert failure is not None and expect in failure
    assert stage == "load" and seen == ["load"]


def test_cancel_kills_the_child_at_once() -> None:
    """A hanging child stops within a second of `cancel` being set (quitting the TUI, ctrl+x)."""
    import threading
    import time

    cancel = threading.Event()
    t0 = time.monotonic()
    result, failure, stage = run_child(
        "tests.support.runner_fake_worker",
        {"mode": "hang"},
        timeout=120,
        on_progress=lambda s, m: cancel.set(),
        cancel=cancel,
    )
    assert result is None and failure == "cancelled" and stage == "load"
    assert time.monotonic() - t0 < 60  # far from the 120 s deadline (the child would sleep 600 s)


def test_passage_is_shipped_as_package_data() -> None:
    from hubtui.runner.passage import passage_text

    text = passage_text()
    assert text.startswith("It is a truth universally acknowledged")
    assert 1500 < len(text) < 6000


def test_no_leftover_temp_dirs_from_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    run_child("tests.support.runner_fake_worker", {"mode": "exit"}, timeout=60)
    assert list(tmp_path.iterdir()) == []
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_model_larger_than_available_memory_fails_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp
    import psutil

    model = write_tiny_gguf(tmp_path / "big.gguf", n_tokens=100, embed_rows=100)
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=64 << 10))
    report = run_smoke(model, gpu_layers=0)
    assert report.verdict == "fail"
    (reason,) = report.reasons
    if not llama_cpp.llama_supports_gpu_offload():  # CPU build: "auto" means the CPU too
        assert run_smoke(model).reasons == [reason]
    assert reason.startswith("big.gguf needs about ") and reason.endswith(
        "but only 64.00 KiB of RAM is available"
    )
    assert report.measurements == {}  # never handed to llama.cpp


def test_random_weights_warn_but_exit_zero(mixtral_tiny_dir: Path) -> None:
    """Random weights load and run (a warn, not a fail): SentencePiece round trip, MoE, no end of turn."""
    report = run_smoke(converted_gguf(mixtral_tiny_dir, "Q8_0"))
    assert report.verdict == "warn" and report.exit_code == 0
    levels = {c.check: c.level for c in report.checks}
    assert levels["perplexity"] == "warn" and levels["generation"] == "warn"
    assert levels["tokenizer"] == "ok" and levels["vocabulary"] == "ok"
    assert report.measurements["perplexity"]["perplexity"] > 1000  # near-uniform over a 32k vocabulary


def test_nan_weights_fail_with_a_clear_reason(q8_gguf: Path, tmp_path: Path) -> None:
    import numpy as np
    from gguf import GGUFReader

    broken = tmp_path / "nan.gguf"
    shutil.copyfile(q8_gguf, broken)
    norm = next(t for t in GGUFReader(broken).tensors if t.name == "output_norm.weight")
    with open(broken, "r+b") as fh:
        fh.seek(int(norm.data_offset))
        fh.write(np.full(int(norm.n_elements), np.nan, dtype=np.float32).tobytes())
    report = run_smoke(broken)
    assert report.verdict == "fail"
    assert "NaN/inf logits at generation step 0" in report.reasons
    assert "non-finite logits on the perplexity passage" in report.reasons
