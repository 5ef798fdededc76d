"""Benchmark `hubtui convert` against llama.cpp's two-step pipeline on a Llama 3.2 1B-shaped model (4 layers).

The model: random BF16 weights with Llama 3.2 1B layer shapes and 4 layers (hidden 2048, ffn 8192, 32 heads,
8 KV heads, vocab 128256, tied embeddings, llama3 RoPE scaling; about 0.5 B parameters, 1 GB) and the real
Llama 3 tokenizer of the llama3-tiny test fixture. It is built once under ~/.cache/hubtui/bench.

Each conversion runs in a fresh subprocess, `--repeat` rounds interleaving ours and llama.cpp's; the medians
of wall time, CPU time (with any helper process) and peak RSS are reported. The I/O floor is
the time to read the input once (warm page cache, the same state the conversions see). With
`--anchor-python PY` (a Python with torch, transformers, sentencepiece and the sdist's gguf-py) the script
also runs llama.cpp's convert_hf_to_gguf.py (bf16, then llama_model_quantize to Q4_K_M; and --outtype q8_0)
and reports whether our files are byte-identical to llama.cpp's (sha256 of the first round's outputs).

    python scripts/bench_convert.py [--threads 2] [--repeat 3] [--anchor-python /work/anchor-venv/bin/python]
        [--llama-src /tmp/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_hidden_layers": 4,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "tie_word_embeddings": True,
    "vocab_size": 128256,
    "bos_token_id": 128000,
    "eos_token_id": 128009,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0",
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


def shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    h, f, v, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (f, h),
            p + "mlp.up_proj.weight": (f, h),
            p + "mlp.down_proj.weight": (h, f),
        }
    return out


def _bf16(x: np.ndarray) -> np.ndarray:
    u = x.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def build_model(root: Path) -> Path:
    """Write the benchmark checkpoint (streaming, one tensor in memory at a time) unless it exists."""
    out = root / "Llama-3.2-1B-4layers-random"
    if (out / "model.safetensors").is_file():
        return out
    from tests.fixtures.cache import checkpoint

    tok = checkpoint("llama3-tiny")
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    names = sorted(shapes(CONFIG).items())
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in names:
        n = math.prod(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with (tmp / "model.safetensors").open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _name, shape in names:
            if len(shape) == 1:
                x = np.float32(1) + rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            f.write(_bf16(x).tobytes())
    (tmp / "config.json").write_text(json.dumps(CONFIG, indent=2))
    for name in TOKENIZER_FILES:
        if (tok / name).is_file():
            shutil.copyfile(tok / name, tmp / name)
    os.rename(tmp, out)
    return out


class _TreeRss:
    """Samples the summed RSS of a process and its descendants (every 5 ms) from a thread: ru_maxrss only
    gives the largest single process, and our converter runs a short-lived tokenizer helper beside itself."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pid,), daemon=True)
        self._thread.start()

    def _run(self, pid: int) -> None:
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(0.005)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_child(cmd: list[str], env: dict | None = None) -> dict[str, float]:
    """Run `cmd`; its wall seconds, CPU seconds (user + sys, waited-for helpers included), peak RSS of the
    largest process and sampled peak of the whole process tree, in MB. Raises on failure.

    Linux carries the parent's RSS high-water mark into a forked child's ru_maxrss, so this process keeps
    its own footprint small (the model is built in a subprocess).
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        tree = _TreeRss(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        tree_peak = tree.stop()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd[:3]} failed ({code}): {err.read().decode(errors='replace')[-2000:]}")
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss * 1024 / 1e6),
        "peak_tree_rss_mb": round(tree_peak / 1e6),
    }


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _median(values: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(v[key] for v in values), 2)


def io_floor(src: Path) -> float:
    t0 = time.perf_counter()
    with (src / "model.safetensors").open("rb") as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - t0


def ours(src: Path, out: Path, qtype: str, threads: int) -> dict[str, float]:
    """`hubtui convert`, as users run it (python -m hubtui is the console script's entry point)."""
    cmd = [sys.executable, "-m", "hubtui", "convert", str(src), "-o", str(out), "--type", qtype]
    return run_child([*cmd, "--threads", str(threads), "--force"])


def convert_hf_to_gguf(python: str, llama_src: str, src: Path, outtype: str, out: Path) -> dict[str, float]:
    """llama.cpp's converter from the source tree, with that tree's gguf-py."""
    env = dict(os.environ, PYTHONPATH=str(Path(llama_src) / "gguf-py"))
    script = Path(llama_src) / "convert_hf_to_gguf.py"
    return run_child([python, str(script), str(src), "--outtype", outtype, "--outfile", str(out)], env)


def llama_quantize(src: Path, out: Path, threads: int) -> dict[str, float]:
    code = (
        "import ctypes, sys, llama_cpp; p = llama_cpp.llama_model_quantize_default_params(); "
        f"p.nthread = {threads}; p.ftype = 15; "
        "assert llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)) == 0"
    )
    return run_child([sys.executable, "-c", code, str(src), str(out)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--anchor-python", help="a Python with torch + transformers for convert_hf_to_gguf.py")
    ap.add_argument("--llama-src", default="/tmp/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "hubtui" / "bench"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.cache)
    root.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        print(build_model(root))
        return
    # build in a child so this process stays small (see run_child)
    src = Path(
        subprocess.run(
            [sys.executable, __file__, "--build-only", "--cache", str(root)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    res: dict[str, object] = {
        "model": src.name,
        "input_bytes": (src / "model.safetensors").stat().st_size,
        "threads": args.threads,
        "repeat": args.repeat,
        "load_average": os.getloadavg()[0],
    }
    io_floor(src)  # warm the page cache once, like a second run
    res["io_floor_s"] = round(statistics.median(io_floor(src) for _ in range(3)), 2)
    runs: dict[str, list[dict[str, float]]] = {}
    digests: dict[str, str] = {}  # first round: sha256 of every output, to check they are the same files
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)

        def done(path: Path, key: str) -> None:
            digests.setdefault(key, sha256(path))
            path.unlink()

        # Rounds interleave ours and llama.cpp's so both see the same machine state; medians are reported.
        for _ in range(args.repeat):
            for qtype in ("Q4_K_M", "Q8_0"):
                out = work / f"ours-{qtype}.gguf"
                runs.setdefault(f"ours_{qtype}", []).append(ours(src, out, qtype, args.threads))
                done(out, f"ours_{qtype}")
            if args.anchor_python:
                bf16 = work / "anchor-bf16.gguf"
                runs.setdefault("anchor_convert_bf16", []).append(
                    convert_hf_to_gguf(args.anchor_python, args.llama_src, src, "bf16", bf16)
                )
                q4 = work / "anchor-q4km.gguf"
                runs.setdefault("anchor_quantize_Q4_K_M", []).append(llama_quantize(bf16, q4, args.threads))
                bf16.unlink()
                done(q4, "anchor_Q4_K_M")
                q8 = work / "anchor-q8.gguf"
                runs.setdefault("anchor_convert_Q8_0", []).append(
                    convert_hf_to_gguf(args.anchor_python, args.llama_src, src, "q8_0", q8)
                )
                done(q8, "anchor_Q8_0")
    if args.anchor_python:
        res["identical_to_llama_cpp"] = {
            q: digests[f"ours_{q}"] == digests[f"anchor_{q}"] for q in ("Q4_K_M", "Q8_0")
        }
    for name, values in runs.items():
        res[name] = {
            key: _median(values, key) for key in ("seconds", "cpu_seconds", "peak_rss_mb", "peak_tree_rss_mb")
        }
    res["runs"] = {name: [v["seconds"] for v in values] for name, values in runs.items()}
    if args.anchor_python:
        two_step = [
            a["seconds"] + b["seconds"]
            for a, b in zip(runs["anchor_convert_bf16"], runs["anchor_quantize_Q4_K_M"], strict=True)
        ]
        res["anchor_two_step_Q4_K_M_s"] = round(statistics.median(two_step), 2)
        res["ratio_Q4_K_M_vs_two_step"] = round(
            res["ours_Q4_K_M"]["seconds"] / res["anchor_two_step_Q4_K_M_s"],  # type: ignore[index]
            3,
        )
        res["ratio_Q8_0_vs_convert"] = round(
            res["ours_Q8_0"]["seconds"] / res["anchor_convert_Q8_0"]["seconds"],  # type: ignore[index]
            3,
        )
        res["ratio_Q8_0_cpu"] = round(
            res["ours_Q8_0"]["cpu_seconds"] / res["anchor_convert_Q8_0"]["cpu_seconds"],  # type: ignore[index]
            3,
        )
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:28} {v}")


if __name__ == "__main__":
    main()
