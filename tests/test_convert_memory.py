"""Bounded memory: peak RSS of a conversion does not grow with the size of the largest tensor beyond a chunk.

Two checkpoints that differ only in hidden size (the embedding and lm_head grow from 8 MiB to 128 MiB each as
float32) are converted in fresh subprocesses; their peak RSS (VmHWM, per process) may differ by far less than
one such tensor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from quant.convert.writer import CHUNK_ELEMENTS
from tests.support.convert_support import write_fp8_checkpoint, write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
from quant.convert import convert
convert(sys.argv[1], sys.argv[2], sys.argv[3], threads=2)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"hwm": int(status["VmHWM"].split()[0]) * 1024}))
"""


def peak_rss(src: Path, out: Path, qtype: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(out), qtype],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])["hwm"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for VmHWM")
def test_peak_rss_does_not_grow_with_the_largest_tensor(mistral_tiny_dir: Path, tmp_path: Path) -> None:
    small = write_tiny_checkpoint(tmp_path / "small", mistral_tiny_dir, hidden_size=64)
    big = write_tiny_checkpoint(tmp_path / "big", mistral_tiny_dir, hidden_size=1024, num_attention_heads=16)
    largest_f32 = 32768 * 1024 * 4  # token_embd / output of `big` as float32: 128 MiB
    for qtype in ("Q8_0", "F32"):
        rss_small = peak_rss(small, tmp_path / f"small-{qtype}.gguf", qtype)
        rss_big = peak_rss(big, tmp_path / f"big-{qtype}.gguf", qtype)
        assert (tmp_path / f"big-{qtype}.gguf").stat().st_size > largest_f32 // 4
        # a whole-tensor implementation would add >= 128 MiB; streaming adds at most a few 16 MiB chunks
        assert rss_big - rss_small < 3 * CHUNK_ELEMENTS * 4 < largest_f32 // 2, (qtype, rss_small, rss_big)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for VmHWM")
def test_fp8_dequantisation_is_streamed_too(mistral_tiny_dir: Path, tmp_path: Path) -> None:
    """FP8 weights (embedding and output included here) and their block scales are read chunk by chunk."""
    small = write_fp8_checkpoint(tmp_path / "small", mistral_tiny_dir, block=(128, 128), keep=())
    big = write_fp8_checkpoint(
        tmp_path / "big",
        mistral_tiny_dir,
        block=(128, 128),
        keep=(),
        hidden_size=1024,
        num_attention_heads=16,
    )
    largest_f32 = 32768 * 1024 * 4  # token_embd / output of `big` dequantised to float32: 128 MiB
    rss_small = peak_rss(small, tmp_path / "small.gguf", "Q8_0")
    rss_big = peak_rss(big, tmp_path / "big.gguf", "Q8_0")
    assert (tmp_path / "big.gguf").stat().st_size > largest_f32 // 4
    assert rss_big - rss_small < 3 * CHUNK_ELEMENTS * 4 < largest_f32 // 2, (rss_small, rss_big)
