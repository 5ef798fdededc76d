"""GGUFs for the runner tests: the project's own conversions of the SmolLM2 fixture, and crafted bad files.

Conversions are memoised per process, so the smoke, chat, bundle and bench tests share one file per type.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np


@functools.cache
def _work_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="hubtui-runner-tests-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def converted_gguf(checkpoint: Path, qtype: str) -> Path:
    """A fixture checkpoint directory converted by quant.convert to `qtype` (once per process)."""
    from quant.convert import convert

    return convert(checkpoint, _work_dir() / f"{checkpoint.name}-{qtype}.gguf", qtype).path


def write_tiny_gguf(path: Path, *, n_tokens: int, embed_rows: int, arch: str = "llama") -> Path:
    """A small llama-shaped GGUF whose vocabulary has `n_tokens` tokens and token_embd `embed_rows` rows.

    It carries only the embedding and norm tensors: enough for header checks, not for llama.cpp to load.
    """
    import gguf

    n_embd = 64
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    tokens = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(n_tokens - 3)]
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_tokens)
    w.add_token_types([2, 3, 3] + [1] * (n_tokens - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((embed_rows, n_embd), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
