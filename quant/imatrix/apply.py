"""Which importance weights each tensor of a conversion is quantised with, as llama-quantize decides it.

llama-quantize (`llama_model_quantize_impl` in src/llama-quant.cpp, fed by `load_imatrix` in
tools/quantize/quantize.cpp) looks each quantised tensor up by its GGUF name: a tensor the matrix lacks is
quantised without weights (an error for the types that cannot be made without them), an entry whose size
is not the tensor's row length times its expert count is an error (except for token_embd, which no matrix
multiply reads and which is then quantised without), and each expert of a stacked MoE tensor is quantised
with its own slice. `plan_weights` applies those rules to a laid-out conversion before any weight is read,
so a conversion that would fail does so before it writes anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quant.errors import ImatrixError
from quant.imatrix.format import Imatrix, read_imatrix

# the ggml types llama-quantize refuses to make without importance weights (tensor_requires_imatrix)
REQUIRES_IMATRIX = ("IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S")
# tensors it never asks weights of: no matrix multiply reads token_embd, and output.weight only with
# llama-imatrix --process-output
EXEMPT = ("token_embd.weight", "per_layer_token_embd.weight", "output.weight")
MAX_KV_STR = 127  # llama-quantize copies these strings into a char[128] (strncpy, 127 bytes)

KV_FILE = "quantize.imatrix.file"
KV_DATASET = "quantize.imatrix.dataset"
KV_ENTRIES = "quantize.imatrix.entries_count"
KV_CHUNKS = "quantize.imatrix.chunks_count"


def requires_imatrix(name: str, type_name: str, file_type: str) -> bool:
    """llama-quantize's tensor_requires_imatrix: whether `name` of ggml type `type_name` needs weights."""
    if name in EXEMPT:
        return False
    return type_name in REQUIRES_IMATRIX or (type_name == "Q2_K" and file_type == "Q2_K_S")


@dataclass
class AppliedImatrix:
    """An importance matrix bound to one conversion: each tensor's weights and what was left without."""

    imatrix: Imatrix
    file: str  # the path as given, recorded in the output (quantize.imatrix.file)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 (n_mat, n_cols)
    notes: list[str] = field(default_factory=list)  # tensors quantised without weights, and why

    def rows_weights(self, name: str, row: int, rows_per_matrix: int) -> tuple[np.ndarray | None, int]:
        """(weights for output row `row` of tensor `name`, the row where they stop applying).

        A stacked expert tensor's rows come expert after expert, `rows_per_matrix` each; a chunk of rows
        must stop at the returned row so each expert is quantised with its own slice.
        """
        w = self.weights.get(name)
        if w is None:
            return None, 1 << 62
        if w.shape[0] == 1:
            return w[0], 1 << 62
        m = row // rows_per_matrix
        return w[m], (m + 1) * rows_per_matrix

    def kv(self) -> dict[str, Any]:
        """The keys llama-quantize adds to a file made with --imatrix, in its order (as KV overrides)."""
        out: dict[str, Any] = {KV_FILE: _clip(self.file)}
        if self.imatrix.datasets:
            out[KV_DATASET] = _clip(self.imatrix.datasets[0])
        out[KV_ENTRIES] = len(self.imatrix.entries)
        if self.imatrix.chunk_count > 0:
            out[KV_CHUNKS] = self.imatrix.chunk_count
        return out


def _clip(text: str) -> str:
    """At most 127 bytes, as llama-quantize's fixed-size KV override strings hold."""
    raw = text.encode("utf-8")
    return raw[:MAX_KV_STR].decode("utf-8", "ignore") if len(raw) > MAX_KV_STR else text


def load(imatrix: Imatrix | str | os.PathLike[str]) -> tuple[Imatrix, str]:
    """An Imatrix and the file name to record: a path is read and recorded as given."""
    if isinstance(imatrix, Imatrix):
        return imatrix, str(imatrix.source or "")
    return read_imatrix(imatrix), os.fspath(imatrix)


def plan_weights(
    imatrix: Imatrix,
    file: str,
    tensors: list[tuple[str, tuple[int, ...], str]],
    file_type: str,
) -> AppliedImatrix:
    """Each quantised tensor's weights from `imatrix`, for `tensors` given as (GGUF name, numpy shape, ggml
    type) of the conversion (F32 tensors are copied, not quantised, and take none).

    Raises ImatrixError naming the tensor for a missing entry its type needs, or an entry of the wrong size.
    """
    applied = AppliedImatrix(imatrix, file)
    where = imatrix.source or "the importance matrix"
    for name, shape, type_name in tensors:
        if type_name == "F32":
            continue
        w = imatrix.weights(name)
        n_cols = shape[-1]
        n_mat = shape[0] if len(shape) == 3 else 1  # llama.cpp: ne[0] * ne[2]
        if w is None:
            if requires_imatrix(name, type_name, file_type):
                raise ImatrixError(
                    f"{where}: Missing importance matrix for tensor {name} in a very low-bit quantization "
                    f"({type_name} cannot be made without one)"
                )
            applied.notes.append(f"did not find weights for {name}")
            continue
        if w.size != n_cols * n_mat:
            if name == "token_embd.weight":  # llama-quantize: expected, and quantised without
                applied.notes.append(
                    f"imatrix size {w.size} differs from tensor size {n_cols * n_mat} for {name}"
                )
                continue
            raise ImatrixError(
                f"{where}: tensor {name}: imatrix size {w.size} is different from tensor size "
                f"{n_cols * n_mat} ({n_mat} x {n_cols})"
            )
        applied.weights[name] = np.ascontiguousarray(w.reshape(n_mat, n_cols), dtype=np.float32)
    return applied
