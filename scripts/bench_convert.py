"""Benchmark `hubtui convert` against llama.cpp's two-step pipeline on a real-shaped model with random weights.

Models (`--model`), built once under ~/.cache/hubtui/bench (or `--cache`):
- `llama3.2-1b` (default): Llama 3.2 1B layer shapes, 4 layers (hidden 2048, ffn 8192, 32 heads, 8 KV heads,
  vocab 128256, tied embeddings, llama3 RoPE scaling; about 0.5 B parameters, 1 GB), with the real Llama 3
  tokenizer of the llama3-tiny test fixture.
- `ministral3-8b`: Ministral 3 8B's shapes (Mistral3ForConditionalGeneration: a `ministral3` text model with
  hidden 4096, ffn 14336, 32/8 heads of 128, vocab 131072, untied, yarn RoPE and the llama 4 attention
  temperature; 4 of its 34 layers; plus the Pixtral vision tower's shapes with 2 of its 24 layers and the
  projector, which the text conversion skips), with the real tekken tokenizer of the ministral3-tiny fixture
  as tokenizer.json (no tekken.json: with it, transformers 5 hands llama.cpp's converter a tokenizer it
  cannot read). About 2.0 B parameters, 4.0 GB.
Both are random BF16. With `--input fp8` the same weights come as a fine-grained FP8 checkpoint (every linear
layer F8_E4M3 with 128x128 F32 block scales, quant_method "fp8"), which both converters dequantise; llama.cpp's
Q4_K_M then goes through an F32 intermediate, the lossless one for dequantised weights.

Each conversion runs in a fresh subprocess, `--repeat` rounds interleaving ours and llama.cpp's; the medians
of wall time, CPU time (with any helper process) and peak RSS are reported. The I/O floor is
the time to read the input once (warm page cache, the same state the conversions see). With
`--anchor-python PY` (a Python with torch, transformers, sentencepiece and the sdist's gguf-py) the script
also runs llama.cpp's convert_hf_to_gguf.py (bf16, then llama_model_quantize to the `--kquant` file type,
Q4_K_M unless told; and --outtype q8_0) and reports whether our files are byte-identical to llama.cpp's (sha256
of the first round's outputs). Ours converts straight to the same file type (`--type`).

With `--lora` each round also converts with a rank-16 LoRA adapter on every linear layer merged in
(`hubtui convert --lora`; random BF16 factors, built once beside the model) and reports its time relative to
the plain conversion of the same round.

    python scripts/bench_convert.py [--model llama3.2-1b|ministral3-8b] [--input bf16|fp8] [--threads 2]
        [--kquant Q4_K_M|Q3_K_M|...] [--repeat 3] [--anchor-python /work/anchor-venv/bin/python]
        [--llama-src /tmp/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp] [--lora] [--json]
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quant.filetypes import FILE_TYPES  # noqa: E402  (plain data: keeps this process small)
from tests.fixtures.real_shapes import tensor_shapes  # noqa: E402  (shapes only; numpy at most)

# The file types llama.cpp makes only with llama_model_quantize (convert_hf_to_gguf writes the others itself).
QUANTIZE_TYPES = tuple(name for name, ft in FILE_TYPES.items() if ft.by_quantize)

LLAMA_CONFIG = {
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

MINISTRAL3_CONFIG = {
    "architectures": ["Mistral3ForConditionalGeneration"],
    "dtype": "bfloat16",
    "image_token_index": 10,
    "model_type": "mistral3",
    "multimodal_projector_bias": False,
    "projector_hidden_act": "gelu",
    "spatial_merge_size": 2,
    "text_config": {
        "attention_dropout": 0.0,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 14336,
        "max_position_embeddings": 262144,
        "model_type": "ministral3",
        "num_attention_heads": 32,
        "num_hidden_layers": 4,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_parameters": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 16.0,
            "llama_4_scaling_beta": 0.1,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 16384,
            "rope_theta": 1000000.0,
            "rope_type": "yarn",
            "type": "yarn",
        },
        "sliding_window": None,
        "tie_word_embeddings": False,
        "use_cache": True,
        "vocab_size": 131072,
    },
    "transformers_version": "5.0.0.dev0",
    "vision_config": {
        "attention_dropout": 0.0,
        "head_dim": 64,
        "hidden_act": "silu",
        "hidden_size": 1024,
        "image_size": 1540,
        "initializer_range": 0.02,
        "intermediate_size": 4096,
        "model_type": "pixtral",
        "num_attention_heads": 16,
        "num_channels": 3,
        "num_hidden_layers": 2,
        "patch_size": 14,
        "rope_theta": 10000.0,
    },
    "vision_feature_layer": -1,
}


def mistral3_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Mistral3ForConditionalGeneration as Mistral publishes it: language_model.*, vision_tower.*, projector."""
    text, vis = cfg["text_config"], cfg["vision_config"]
    h, ff, p, m = vis["hidden_size"], vis["intermediate_size"], vis["patch_size"], cfg["spatial_merge_size"]
    out = tensor_shapes(text, "language_model.model.")
    out |= {
        "vision_tower.patch_conv.weight": (h, vis["num_channels"], p, p),
        "vision_tower.ln_pre.weight": (h,),
        "multi_modal_projector.norm.weight": (h,),
        "multi_modal_projector.patch_merger.merging_layer.weight": (h, h * m * m),
        "multi_modal_projector.linear_1.weight": (text["hidden_size"], h),
        "multi_modal_projector.linear_2.weight": (text["hidden_size"], text["hidden_size"]),
    }
    for i in range(vis["num_hidden_layers"]):
        v = f"vision_tower.transformer.layers.{i}."
        out |= {v + f"attention.{w}_proj.weight": (h, h) for w in "qkvo"}
        out |= {v + "attention_norm.weight": (h,), v + "ffn_norm.weight": (h,)}
        out |= {v + "feed_forward.gate_proj.weight": (ff, h), v + "feed_forward.up_proj.weight": (ff, h)}
        out[v + "feed_forward.down_proj.weight"] = (h, ff)
    return out


def shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    return mistral3_shapes(cfg) if "text_config" in cfg else tensor_shapes(cfg)


FP8_BLOCK = (128, 128)


def _fp8(name: str, shape: tuple[int, ...]) -> bool:
    """Whether the FP8 input stores this tensor as F8_E4M3 (every linear layer, as FP8 exports do)."""
    return len(shape) == 2 and name.endswith("_proj.weight")


def tensor_specs(cfg: dict, fp8: bool) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, safetensors dtype, shape) in file order; the FP8 input adds each linear's F32 block scales."""
    specs = []
    for name, shape in shapes(cfg).items():
        if fp8 and _fp8(name, shape):
            specs.append((name, "F8_E4M3", shape))
            grid = tuple(-(-d // b) for d, b in zip(shape, FP8_BLOCK, strict=True))
            specs.append((name + "_scale_inv", "F32", grid))
        else:
            specs.append((name, "BF16", shape))
    return sorted(specs)


@dataclass(frozen=True)
class BenchModel:
    """A benchmark checkpoint: its directory name, config, tokenizer (from a test fixture) (random BF16 weights)."""

    dirname: str
    config: dict
    tokenizer_fixture: str
    tokenizer_files: tuple[str, ...]


MODELS = {
    "llama3.2-1b": BenchModel(
        "Llama-3.2-1B-4layers-random",
        LLAMA_CONFIG,
        "llama3-tiny",
        ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"),
    ),
    "ministral3-8b": BenchModel(
        "Ministral-3-8B-4layers-random",
        MINISTRAL3_CONFIG,
        "ministral3-tiny",
        ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"),
    ),
}


def build_model(root: Path, model: BenchModel, fp8: bool = False) -> Path:
    """Write the benchmark checkpoint (streaming, one tensor in memory at a time) unless it exists.

    With `fp8`, the same random weights as a fine-grained FP8 checkpoint: each linear layer F8_E4M3 with
    128x128 F32 `weight_scale_inv` blocks (amax / 448), the rest BF16, quant_method "fp8" in config.json.
    """
    from hubtui.demo.checkpoint_writer import encode_tensor
    from tests.fixtures.checkpoints import fp8_quantize

    out = root / (model.dirname + ("-fp8" if fp8 else ""))
    if (out / "model.safetensors").is_file():
        return out
    from tests.fixtures.cache import checkpoint

    tok = checkpoint(model.tokenizer_fixture)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    specs = tensor_specs(model.config, fp8)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, dtype, shape in specs:
        n = math.prod(shape) * {"BF16": 2, "F32": 4, "F8_E4M3": 1}[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    scales: dict[str, np.ndarray] = {}  # a weight's scales, written right after it (names sort that way)
    with (tmp / "model.safetensors").open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, dtype, shape in specs:
            if name in scales:
                f.write(scales.pop(name).tobytes())
                continue
            if len(shape) == 1:
                x = np.float32(1) + rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            if dtype == "F8_E4M3":
                q, _ = fp8_quantize({name: x}, FP8_BLOCK)
                x, scales[name + "_scale_inv"] = q[name], q[name + "_scale_inv"]
            f.write(encode_tensor(x, dtype).tobytes())
    config = dict(model.config)
    if fp8:
        config["quantization_config"] = {
            "activation_scheme": "dynamic",
            "quant_method": "fp8",
            "weight_block_size": list(FP8_BLOCK),
        }
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    for name in model.tokenizer_files:
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


def ours(src: Path, out: Path, qtype: str, threads: int, lora: Path | None = None) -> dict[str, float]:
    """`hubtui convert`, as users run it (python -m hubtui is the console script's entry point)."""
    cmd = [sys.executable, "-m", "hubtui", "convert", str(src), "-o", str(out), "--type", qtype]
    return run_child([*cmd, "--threads", str(threads), "--force", *(["--lora", str(lora)] if lora else [])])


def build_adapter(src: Path) -> Path:
    """A PEFT adapter of rank 16 on every linear layer of the benchmark model (BF16), unless it exists."""
    from tests.fixtures.adapters import write_adapter

    out = src.parent / (src.name + "-lora-r16")
    if not (out / "adapter_config.json").is_file():
        write_adapter(out, src, r=16, alpha=32, dtype="BF16", std=0.01)
    return out


def convert_hf_to_gguf(python: str, llama_src: str, src: Path, outtype: str, out: Path) -> dict[str, float]:
    """llama.cpp's converter from the source tree, with that tree's gguf-py."""
    env = dict(os.environ, PYTHONPATH=str(Path(llama_src) / "gguf-py"))
    script = Path(llama_src) / "convert_hf_to_gguf.py"
    return run_child([python, str(script), str(src), "--outtype", outtype, "--outfile", str(out)], env)


def llama_quantize(src: Path, out: Path, qtype: str, threads: int) -> dict[str, float]:
    """llama_model_quantize to file type `qtype`, its llama.h id taken from llama-cpp-python's own constants."""
    code = (
        "import ctypes, sys, llama_cpp; p = llama_cpp.llama_model_quantize_default_params(); "
        f"p.nthread = {threads}; p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_{qtype}; "
        "assert llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)) == 0"
    )
    return run_child([sys.executable, "-c", code, str(src), str(out)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="llama3.2-1b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--anchor-python", help="a Python with torch + transformers for convert_hf_to_gguf.py")
    ap.add_argument("--llama-src", default="/tmp/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "hubtui" / "bench"))
    ap.add_argument(
        "--input",
        choices=("bf16", "fp8"),
        default="bf16",
        help="the checkpoint's weights: BF16, or FP8 (F8_E4M3 linears with 128x128 block scales)",
    )
    ap.add_argument("--lora", action="store_true", help="also merge an r=16 adapter on every linear layer")
    ap.add_argument(
        "--kquant",
        type=str.upper,
        choices=QUANTIZE_TYPES,
        default="Q4_K_M",
        metavar="TYPE",
        help="the file type compared with convert_hf_to_gguf + llama_model_quantize (default Q4_K_M; one of "
        + ", ".join(QUANTIZE_TYPES)
        + ")",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.cache)
    root.mkdir(parents=True, exist_ok=True)
    fp8 = args.input == "fp8"
    kq = args.kquant
    if args.build_only:
        model = build_model(root, MODELS[args.model], fp8)
        if args.lora:
            build_adapter(model)
        print(model)
        return
    # build in a child so this process stays small (see run_child)
    src = Path(
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--build-only",
                "--cache",
                str(root),
                "--model",
                args.model,
                "--input",
                args.input,
            ]
            + (["--lora"] if args.lora else []),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # llama.cpp's pipeline for --kquant: convert, then llama-quantize. From BF16 weights the BF16 intermediate is
    # lossless; dequantised FP8 weights are not BF16 values, so there the lossless intermediate is F32.
    intermediate = "f32" if fp8 else "bf16"
    res: dict[str, object] = {
        "model": src.name,
        "input_bytes": (src / "model.safetensors").stat().st_size,
        "threads": args.threads,
        "repeat": args.repeat,
        "kquant": kq,
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
            for qtype in (kq, "Q8_0"):
                out = work / f"ours-{qtype}.gguf"
                runs.setdefault(f"ours_{qtype}", []).append(ours(src, out, qtype, args.threads))
                done(out, f"ours_{qtype}")
                if args.lora:
                    runs.setdefault(f"ours_{qtype}_lora", []).append(
                        ours(src, out, qtype, args.threads, build_adapter(src))
                    )
                    done(out, f"ours_{qtype}_lora")
            if args.anchor_python:
                first = work / f"anchor-{intermediate}.gguf"
                runs.setdefault(f"anchor_convert_{intermediate}", []).append(
                    convert_hf_to_gguf(args.anchor_python, args.llama_src, src, intermediate, first)
                )
                kout = work / f"anchor-{kq}.gguf"
                runs.setdefault(f"anchor_quantize_{kq}", []).append(
                    llama_quantize(first, kout, kq, args.threads)
                )
                first.unlink()
                done(kout, f"anchor_{kq}")
                q8 = work / "anchor-q8.gguf"
                runs.setdefault("anchor_convert_Q8_0", []).append(
                    convert_hf_to_gguf(args.anchor_python, args.llama_src, src, "q8_0", q8)
                )
                done(q8, "anchor_Q8_0")
    if args.anchor_python:
        res["identical_to_llama_cpp"] = {
            q: digests[f"ours_{q}"] == digests[f"anchor_{q}"] for q in (kq, "Q8_0")
        }
    for name, values in runs.items():
        res[name] = {
            key: _median(values, key) for key in ("seconds", "cpu_seconds", "peak_rss_mb", "peak_tree_rss_mb")
        }
    res["runs"] = {name: [v["seconds"] for v in values] for name, values in runs.items()}
    if args.lora:  # per-round ratios (each merge next to its plain conversion), then their median
        for qtype in ("Q4_K_M", "Q8_0"):
            pairs = zip(runs[f"ours_{qtype}_lora"], runs[f"ours_{qtype}"], strict=True)
            res[f"ratio_{qtype}_lora_vs_plain"] = round(
                statistics.median(a["seconds"] / b["seconds"] for a, b in pairs), 3
            )
    if args.anchor_python:
        steps = list(zip(runs[f"anchor_convert_{intermediate}"], runs[f"anchor_quantize_{kq}"], strict=True))
        two_step = [a["seconds"] + b["seconds"] for a, b in steps]
        two_step_cpu = [a["cpu_seconds"] + b["cpu_seconds"] for a, b in steps]
        res[f"anchor_two_step_{kq}_s"] = round(statistics.median(two_step), 2)
        res[f"anchor_two_step_{kq}_cpu_s"] = round(statistics.median(two_step_cpu), 2)
        res[f"ratio_{kq}_vs_two_step"] = round(
            res[f"ours_{kq}"]["seconds"] / res[f"anchor_two_step_{kq}_s"],  # type: ignore[index]
            3,
        )
        res[f"ratio_{kq}_cpu"] = round(
            res[f"ours_{kq}"]["cpu_seconds"] / res[f"anchor_two_step_{kq}_cpu_s"],  # type: ignore[index]
            3,
        )
        res[f"ratio_{kq}_per_round"] = [
            round(o["seconds"] / t, 3) for o, t in zip(runs[f"ours_{kq}"], two_step, strict=True)
        ]
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
