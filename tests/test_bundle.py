"""`hubtui bundle`: contents, checksums, the standalone chat app, `--verify`, and no debris on failure."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli_helpers import Cli
from tests.support.runner_models import converted_gguf

EXPECTED = {"Modelfile", "README.txt", "SHA256SUMS", "SMOKE.md", "hubtui-chat.pyz", "smoke-report.json"}


@pytest.fixture(scope="session")
def bundle_gguf(smollm2_dir: Path) -> Path:
    return converted_gguf(smollm2_dir, "Q8_0")


def run_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m hubtui ARGS`, for the session fixture below: it outlives any one test, so it cannot use the
    function-scoped `cli` fixture (capsys)."""
    return subprocess.run(
        [sys.executable, "-m", "hubtui", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def bundle(bundle_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bundle") / "field"
    res = run_subprocess("bundle", str(bundle_gguf), "-o", str(out), "--target", "laptop-8g", "--json")
    assert res.returncode == 0, res.stderr
    return out, json.loads(res.stdout)


def test_bundle_contents(bundle: tuple[Path, dict[str, Any]], bundle_gguf: Path, cli: Cli) -> None:
    out, summary = bundle
    names = {p.name for p in out.iterdir()}
    assert names == EXPECTED | {bundle_gguf.name}
    assert summary["verdict"] == "pass"
    assert (out / bundle_gguf.name).read_bytes() == bundle_gguf.read_bytes()

    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == names - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest

    report = json.loads((out / "smoke-report.json").read_text())
    assert report["verdict"] == "pass" and report["perplexity"] > 1
    plan = report["plan"]
    assert plan["target"] == "laptop-8g" and plan["fits"] and plan["n_gpu_layers"] == 0
    assert plan["n_ctx"] in (512, 1024, 2048, 4096, 8192) and 0 < plan["memory_bytes"] < 8 * 2**30

    md = (out / "SMOKE.md").read_text()
    assert (
        "**Verdict: pass**" in md
        and "## Plan for the target machine" in md
        and f"context: {plan['n_ctx']}" in md
    )

    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{bundle_gguf.name}" in modelfile and f"PARAMETER num_ctx {plan['n_ctx']}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile

    readme = (out / "README.txt").read_text()
    for needle in (
        "llama-cli -m",
        "llama-server -m",
        "ollama create",
        "lms import",
        "hubtui-chat.pyz",
        "sha256sum -c",
    ):
        assert needle in readme, needle


def test_standalone_chat_app_needs_only_llama_cpp(
    bundle: tuple[Path, dict[str, Any]], bundle_gguf: Path
) -> None:
    import llama_cpp

    out, _ = bundle
    site = str(Path(llama_cpp.__file__).resolve().parent.parent)
    # -S: no site processing, so the editable hubtui install is invisible; only the zipapp provides it
    res = subprocess.run(
        [
            sys.executable,
            "-S",
            "hubtui-chat.pyz",
            bundle_gguf.name,
            "--temp",
            "0",
            "--ctx",
            "256",
            "--max-tokens",
            "24",
        ],
        input="What is the capital of France?\n",
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
        env={**os.environ, "PYTHONPATH": site},
    )
    assert res.returncode == 0, res.stderr
    assert "Paris" in res.stdout


def test_verify_passes_then_catches_a_modified_byte(
    bundle: tuple[Path, dict[str, Any]], tmp_path: Path, cli: Cli
) -> None:
    out, _ = bundle
    ok = cli("bundle", "--verify", str(out), "--json")
    assert ok.code == 0, ok.err
    assert ok.json()["ok"] is True

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    gguf = next(copy.glob("*.gguf"))
    with open(gguf, "r+b") as fh:
        fh.seek(gguf.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))
    bad = cli("bundle", "--verify", str(copy))
    assert bad.code == 1
    assert f"{gguf.name}: MISMATCH" in bad.out
    assert bad.err.strip() == f"hubtui: error: {copy}: bundle verification failed: {gguf.name} mismatch"

    (copy / "README.txt").unlink()
    data = json.loads(cli("bundle", "--verify", str(copy), "--json").out)
    assert data["files"]["README.txt"] == "missing" and data["ok"] is False


def test_verify_rejects_a_folder_without_checksums(tmp_path: Path, cli: Cli) -> None:
    res = cli("bundle", "--verify", str(tmp_path))
    assert res.code == 1
    assert "no SHA256SUMS file" in res.err


def test_refuses_a_non_empty_destination(bundle_gguf: Path, tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    res = cli("bundle", str(bundle_gguf), "-o", str(tmp_path))
    assert res.code == 1
    assert "already exists and is not an empty directory" in res.err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_failing_model_leaves_nothing_behind(tmp_path: Path, cli: Cli) -> None:
    from tests.support.runner_models import write_tiny_gguf

    hollow = write_tiny_gguf(tmp_path / "hollow.gguf", n_tokens=100, embed_rows=100)
    dest = tmp_path / "out" / "bundle"
    res = cli("bundle", str(hollow), "-o", str(dest))
    assert res.code == 1
    last = res.err.strip().splitlines()[-1]
    assert last.startswith(
        "hubtui: error: hollow.gguf failed the smoke test: hollow.gguf: llama.cpp could not load it: "
    )
    assert "tensor 'blk.0." in last and "not found" in last
    assert not dest.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_unknown_target_and_missing_output_are_errors(bundle_gguf: Path, tmp_path: Path, cli: Cli) -> None:
    res = cli("bundle", str(bundle_gguf), "-o", str(tmp_path / "b"), "--target", "toaster")
    assert res.code == 1 and "unknown target profile 'toaster'" in res.err
    assert cli("bundle", str(bundle_gguf)).code == 2


# ---- LoRA adapters: base + adapter GGUF side by side, or merged while converting


@pytest.fixture(scope="module")
def lora_base(mistral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(base Q8_0 GGUF, PEFT adapter folder, its adapter GGUF) on the tiny Mistral fixture."""
    from quant.convert import convert
    from quant.convert.lora_gguf import convert_adapter
    from tests.fixtures.adapters import write_adapter

    root = tmp_path_factory.mktemp("lora-bundle")
    base = convert(mistral_tiny_dir, root / "base-Q8_0.gguf", "Q8_0").path
    folder = write_adapter(root / "tone", mistral_tiny_dir, r=8, alpha=16)
    adapter = convert_adapter(folder, mistral_tiny_dir, root / "tone-F16-LoRA.gguf", "F16").path
    return base, folder, adapter


def test_bundle_ships_base_and_adapter_with_its_scale(
    lora_base: tuple[Path, Path, Path], tmp_path: Path, cli: Cli
) -> None:
    import llama_cpp

    base, folder, adapter = lora_base
    out = tmp_path / "field"
    args = ["bundle", str(base), "--lora", str(adapter), "--lora-scale", "0.5", "-o", str(out), "--json"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["adapter"] == {"file": adapter.name, "scale": 0.5}
    assert {p.name for p in out.iterdir()} == EXPECTED | {base.name, adapter.name}
    assert (out / adapter.name).read_bytes() == adapter.read_bytes()
    assert adapter.name in (out / "SHA256SUMS").read_text()
    checks = json.loads((out / "smoke-report.json").read_text())["checks"]
    assert {"check": "adapter", "level": "ok", "message": f"LoRA adapter {adapter.name} x 0.5"} in checks
    assert f"ADAPTER ./{adapter.name}" in (out / "Modelfile").read_text()
    readme = (out / "README.txt").read_text()
    assert f"llama-cli -m {base.name} --lora-scaled {adapter.name} 0.5" in readme
    assert f"hubtui-chat.pyz {base.name} --lora {adapter.name} --lora-scale 0.5" in readme
    assert "LM Studio does not load LoRA adapters" in readme and "lms import" not in readme
    # the standalone chat app loads the adapter with its scale (only llama-cpp-python on the path)
    site = str(Path(llama_cpp.__file__).resolve().parent.parent)
    chat = [
        sys.executable,
        "-S",
        "hubtui-chat.pyz",
        base.name,
        "--temp",
        "0",
        "--ctx",
        "128",
        "--max-tokens",
        "4",
    ]
    for extra, ok in (
        ([], True),
        (["--lora", adapter.name, "--lora-scale", "0.5"], True),
        (["--lora", "nope"], False),
    ):
        res = subprocess.run(
            chat + extra,
            input="hi\n",
            capture_output=True,
            text=True,
            timeout=120,
            cwd=out,
            env={**os.environ, "PYTHONPATH": site},
        )
        assert (res.returncode == 0) == ok, res.stderr

    # refused, with nothing left behind: a model GGUF as the adapter, an adapter folder beside a GGUF
    bad = tmp_path / "bad"
    code, _, err = cli("bundle", str(base), "--lora", str(base), "-o", str(bad))
    assert code == 1 and "has the model's file name" in err
    model_as_adapter = adapter.parent / "model.gguf"
    shutil.copyfile(base, model_as_adapter)
    code, _, err = cli("bundle", str(base), "--lora", str(model_as_adapter), "-o", str(bad))
    assert code == 1 and "model.gguf: not a LoRA adapter GGUF" in err and err.count("\n") == 1
    code, _, err = cli("bundle", str(base), "--lora", str(folder), "-o", str(bad))
    assert code == 2 and "is a folder" in err
    assert not bad.exists() and [p.name for p in tmp_path.iterdir()] == ["field"]


def test_bundle_merges_a_peft_adapter_while_converting(
    mistral_tiny_dir: Path,
    lora_base: tuple[Path, Path, Path],
    tmp_path: Path,
    cli: Cli,
) -> None:
    from quant.convert import convert

    _, folder, adapter = lora_base
    out = tmp_path / "bundles" / "merged"
    args = ["bundle", str(mistral_tiny_dir), "--lora", str(folder), "--lora-scale", "0.5", "--type", "Q8_0"]
    code, stdout, err = cli(*args, "-o", str(out), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["adapter"] is None and summary["merged"] == [{"adapter": str(folder), "scale": 0.5}]
    (gguf_name,) = [n for n in summary["files"] if n.endswith(".gguf")]
    (tmp_path / "ref").mkdir()
    ref = convert(mistral_tiny_dir, tmp_path / "ref", "Q8_0", loras=[(folder, 0.5)]).path
    assert gguf_name == ref.name and (out / gguf_name).read_bytes() == ref.read_bytes()
    assert "ADAPTER" not in (out / "Modelfile").read_text()
    assert [p.name for p in (tmp_path / "bundles").iterdir()] == ["merged"]  # the conversion folder is gone
    # refused: an adapter GGUF to merge, a taken destination (before converting)
    code, _, err = cli(*args[:3], str(adapter), "-o", str(tmp_path / "x"))
    assert code == 2 and "PEFT adapter folders" in err
    code, _, err = cli(*args, "-o", str(out))
    assert code == 1 and "not an empty folder" in err


def test_a_custom_target_plans_the_bundle_and_cancel_leaves_nothing(
    bundle_gguf: Path, tmp_path: Path
) -> None:
    """The TUI passes its target as it is (custom RAM, say); a cancelled bundle leaves no folder."""
    import threading

    from hubtui.runner.bundle import build_bundle, plan_for_target
    from hubtui.runner.errors import RunnerError
    from hubtui.runner.gguf_check import read_facts
    from quant.sizing.profiles import custom_target

    plan = plan_for_target(bundle_gguf, read_facts(bundle_gguf), custom_target("4G"))
    assert plan.target == "custom" and plan.description == "4.00 GiB RAM, no GPU" and plan.fits
    cancel = threading.Event()
    dest = tmp_path / "out" / "b"
    with pytest.raises(RunnerError, match="cancelled"):
        build_bundle(bundle_gguf, dest, progress=lambda stage, _msg: cancel.set(), cancel=cancel)
    assert not dest.exists() and not (tmp_path / "out").exists()
