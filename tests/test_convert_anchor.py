"""Opt-in: whole files against llama.cpp's own converter for Ministral 3, Mistral 3, Mistral's layout and Nemo.

Set HUBTUI_ANCHOR_PYTHON to a Python with torch, transformers, safetensors, sentencepiece and mistral-common,
and HUBTUI_LLAMA_CPP_SRC to the llama.cpp tree of the llama-cpp-python sdist. Every file must be
byte-identical: F16 and Q8_0 with `convert_hf_to_gguf.py --outtype` (`--mistral-format` for Mistral's
layout), Q4_K_M with its F32 output through the `llama-quantize` tool (tests/support/llama_tools.py).

transformers 5 loads its mistral-common tokenizer whenever a Hugging Face directory holds tekken.json, and
llama.cpp's converter then fails (`MistralCommonBackend has no attribute vocab`); our output does not depend
on that file when tokenizer.json is there, so llama.cpp converts a copy without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from quant.convert import convert
from quant.convert.mmproj import prepare_mmproj
from tests.fixtures.cache import checkpoint
from tests.support.convert_support import read_gguf, tensor_bytes, write_tiny_checkpoint
from tests.support.llama_tools import find_tool

PYTHON = os.environ.get("HUBTUI_ANCHOR_PYTHON")
LLAMA_SRC = os.environ.get("HUBTUI_LLAMA_CPP_SRC")
pytestmark = pytest.mark.skipif(
    not (PYTHON and LLAMA_SRC),
    reason="set HUBTUI_ANCHOR_PYTHON and HUBTUI_LLAMA_CPP_SRC for whole-file comparisons with llama.cpp's converter",
)
OUTTYPES = {"F32": "f32", "F16": "f16", "Q8_0": "q8_0"}


def _sha(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _without_tekken(src: Path, root: Path) -> Path:
    """A copy of `src` (symlinks, same directory name: it becomes general.name) without tekken.json."""
    if not (src / "config.json").is_file() or not (src / "tekken.json").is_file():
        return src
    dst = root / "anchor-src" / src.name
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name != "tekken.json":
            (dst / p.name).symlink_to(p.resolve())
    return dst


def llama_cpp_convert(src: Path, out: Path, qtype: str, *extra: str) -> Path:
    """convert_hf_to_gguf.py for `qtype` (F32/F16/Q8_0 directly; K-quants as F32 then llama-quantize)."""
    if qtype not in OUTTYPES:
        tool = find_tool("llama-quantize")
        if tool is None:
            pytest.skip("llama-quantize is not built (python tests/support/llama_tools.py)")
        f32 = llama_cpp_convert(src, out.with_suffix(".f32.gguf"), "F32", *extra)
        subprocess.run([str(tool), str(f32), str(out), qtype, "2"], check=True, capture_output=True)
        return out
    native = ("--mistral-format",) if not (src / "config.json").is_file() else ()
    cmd = [PYTHON, f"{LLAMA_SRC}/convert_hf_to_gguf.py", str(_without_tekken(src, out.parent))]
    cmd += ["--outtype", OUTTYPES[qtype], "--outfile", str(out), *native, *extra]
    env = dict(os.environ, PYTHONPATH=f"{LLAMA_SRC}/gguf-py")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def nemo_dir(mistral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Mistral Nemo-shaped MistralForCausalLM: explicit head_dim (q rows != hidden), tekken tokenizer.json."""
    root = tmp_path_factory.mktemp("nemo") / "Mistral-Nemo-tiny"
    write_tiny_checkpoint(
        root, mistral_tiny_dir, dtype="BF16", head_dim=48, vocab_size=131072, bos_token_id=1
    )
    for name in ("tokenizer.model", "tokenizer_config.json"):
        (root / name).unlink()
    tok = checkpoint("ministral3-tiny")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tok / name, root / name)
    return root


CASES = [
    (fixture, qtype)
    for fixture in ("ministral3-tiny", "mistral3-tiny", "ministral3-native-tiny", "nemo")
    for qtype in ("F16", "Q8_0", "Q4_K_M")
]


@pytest.mark.parametrize(("fixture", "qtype"), CASES)
def test_whole_file_equals_llama_cpps(fixture: str, qtype: str, nemo_dir: Path, tmp_path: Path) -> None:
    src = nemo_dir if fixture == "nemo" else checkpoint(fixture)
    ours = convert(src, tmp_path / "ours.gguf", qtype, threads=2).path
    theirs = llama_cpp_convert(src, tmp_path / "theirs.gguf", qtype)
    assert _sha(ours) == _sha(theirs), f"{fixture} {qtype}: not llama.cpp's file"


def test_mmproj_equals_llama_cpps_plus_the_img_break_row(tmp_path: Path) -> None:
    src = checkpoint("mistral3-tiny")
    ours = convert(src, tmp_path / "ours.gguf", "F16", prepared=prepare_mmproj(src, "F16")).path
    theirs = llama_cpp_convert(src, tmp_path / "theirs.gguf", "F16", "--mmproj")
    got, want = tensor_bytes(ours), tensor_bytes(theirs)
    assert [n for n in got if n != "v.token_embd.img_break"] == list(want)
    assert all(got[n] == want[n] for n in want)
    assert list(read_gguf(ours)[0].items()) == list(read_gguf(theirs)[0].items())
    assert json.loads((src / "config.json").read_text())["vision_config"]["model_type"] == "pixtral"
