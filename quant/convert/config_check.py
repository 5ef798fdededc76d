"""config.json's declared sizes checked against the tensors actually present, before anything is built from them.

Several steps build things proportional to a declared size: gguf-py's tensor-name map has entries for every
declared layer (`num_hidden_layers` of 100000 cost 100 s and 5.4 GB before this check), llama3 rope factors
have `head_dim / 2` entries, and a SentencePiece vocabulary is padded to `vocab_size`. The safetensors
headers are already parsed (cheap, and bounded by the files' real size), so each declared size is compared
with the tensor it describes first; a config that disagrees fails here in milliseconds with the key, its
value and the tensor that contradicts it. Tensors this module does not recognise are left to the later,
complete checks (`tensors.map_tensors`).
"""

from __future__ import annotations

import re
from pathlib import Path

from quant.convert.checkpoint import HParams, SourceTensor
from quant.errors import ConversionError

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|blk)\.(\d+)\.")
_EXPERT = re.compile(r"\.experts\.(\d+)\.")


def _first(sources: list[SourceTensor], suffix: str) -> SourceTensor | None:
    return next((t for t in sources if t.name.endswith(suffix)), None)


def check_config_against_tensors(src: Path, hp: HParams, sources: list[SourceTensor]) -> None:
    """Raise ConversionError when a declared size in config.json contradicts the tensors present."""
    config = src / "config.json"
    layers = [int(m.group(1)) for t in sources if (m := _LAYER.search(t.name))]
    top = max(layers, default=-1)
    if hp.n_layer > top + 1:
        have = f"layers 0-{top}" if top >= 0 else "no per-layer tensors"
        raise ConversionError(
            f"{config}: key 'num_hidden_layers' is {hp.n_layer} but the checkpoint has {have} "
            f"(checkpoint is missing tensor 'model.layers.{top + 1}.*')"
        )
    experts = [int(m.group(1)) for t in sources if (m := _EXPERT.search(t.name))]
    if hp.n_expert and experts and hp.n_expert > max(experts) + 1:
        # one tensor per expert (Mixtral): the highest index present bounds the count
        raise ConversionError(
            f"{config}: key 'num_local_experts' is {hp.n_expert} but the checkpoint has "
            f"{max(experts) + 1} experts per layer"
        )
    # experts stacked in one tensor (Llama 4) are checked, shape and all, by the architecture's plan

    def expect(t: SourceTensor | None, axis: int, want: int, key: str) -> None:
        if t is not None and len(t.shape) > axis and t.shape[axis] != want:
            raise ConversionError(
                f"{t.shard}: tensor {t.name!r} has shape {list(t.shape)} but config.json {key} implies "
                f"{want} along axis {axis}"
            )

    embed = _first(sources, "embed_tokens.weight")
    expect(embed, 0, hp.n_vocab, f"'vocab_size' ({hp.n_vocab})")
    expect(embed, 1, hp.n_embd, f"'hidden_size' ({hp.n_embd})")
    heads = f"'num_attention_heads' x head_dim ({hp.n_head} x {hp.head_dim})"
    expect(_first(sources, "q_proj.weight"), 0, hp.n_head * hp.head_dim, heads)
    kv = f"'num_key_value_heads' x head_dim ({hp.n_head_kv} x {hp.head_dim})"
    expect(_first(sources, "k_proj.weight"), 0, hp.n_head_kv * hp.head_dim, kv)
    ff = f"'intermediate_size' ({hp.n_ff})"
    expect(_first(sources, "mlp.up_proj.weight"), 0, hp.n_ff, ff)
    expect(_first(sources, ".w3.weight"), 0, hp.n_ff, ff)
