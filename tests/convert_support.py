"""Helpers for the converter tests: llama.cpp's own quantiser as the reference, GGUF comparison, tiny checkpoints."""

from __future__ import annotations

import ctypes
import json
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hubtui.demo.checkpoint_writer import write_json, write_weights
from tests.fixtures.checkpoints import random_weights

LLAMA_FTYPES = {"Q4_K_M": 15, "Q4_K_S": 14, "Q5_K_M": 17, "Q6_K": 18, "Q8_0": 7}


def llama_quantize(src: Path, dst: Path, qtype: str, nthread: int = 2) -> Path:
    """llama.cpp's `llama_model_quantize` (through llama-cpp-python's ctypes binding)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = nthread
    params.ftype = LLAMA_FTYPES[qtype]
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize failed ({rc})"
    return dst


def tensor_bytes(path: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """name -> (ggml type name, ne, raw bytes) for every tensor of a GGUF file."""
    reader = gguf.GGUFReader(path)
    return {
        t.name: (t.tensor_type.name, tuple(int(n) for n in t.shape), np.asarray(t.data).tobytes())
        for t in reader.tensors
    }


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A very small Mistral-style config using the mistral-tiny fixture's SentencePiece tokenizer (vocab 32768)."""
    config = {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "vocab_size": 32768,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    return config | overrides


TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json")


def write_tiny_checkpoint(
    out: Path, tokenizer_src: Path, *, dtype: str = "F16", shards: int = 1, seed: int = 7, **overrides: Any
) -> Path:
    """A small random checkpoint (HF layout) with a real tokenizer copied from `tokenizer_src`."""
    out.mkdir(parents=True, exist_ok=True)
    config = tiny_config(**overrides)
    write_json(out / "config.json", config)
    write_weights(out, random_weights(config, seed), dtype, shards=shards)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_src / name, out / name)
    return out


def clone_checkpoint(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A copy of `src` made of symlinks (cheap), so a test can replace single files without touching `src`."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name not in skip:
            (dst / p.name).symlink_to(p.resolve())
    return dst


def rewrite_header(path: Path, edit) -> None:
    """Apply `edit(header_dict)` to a safetensors file's JSON header, keeping the data after it unchanged."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.unlink()  # it may be a symlink into a shared fixture
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n :])
