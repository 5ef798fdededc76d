"""PEFT LoRA adapters: reading them against a base model's config, and the per-tensor factors B and A.

An adapter folder holds `adapter_config.json` and `adapter_model.safetensors` with `<module>.lora_A.weight`
(numpy [r, in]) and `<module>.lora_B.weight` ([out, r]) for each adapted linear layer. The base model's
family maps each module to its GGUF tensor the way llama.cpp's `convert_lora_to_gguf.py` does (it subclasses
the base model's converter): Q/K row permutation applies to B's rows, Mixtral's per-expert pairs are stacked,
`lm_head` follows the base's tying, mergekit's `lora_embedding_A/B` adapt `token_embd`.

PEFT scales each module's B·A by alpha/r (alpha/sqrt(r) with rsLoRA, alpha and r per module with
`alpha_pattern`/`rank_pattern`); llama.cpp applies one `adapter.lora.alpha` divided by the rank of each
tensor. `LoraPair.fold` is what has to be multiplied into B for the one alpha to give PEFT's scale
(1.0 for a plain adapter, which is then written exactly as llama.cpp's converter writes it).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from quant.convert.checkpoint import HParams, SourceTensor, read_safetensors_header
from quant.convert.tensors import shape_mismatch
from quant.errors import ConversionError
from quant.inputs import not_regular

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAMES = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")

_A, _B = ".lora_A.weight", ".lora_B.weight"
_EMB_A, _EMB_B = ".lora_embedding_A", ".lora_embedding_B"


def is_adapter_dir(path: Path) -> bool:
    """Whether `path` is a PEFT adapter folder (it has adapter_config.json)."""
    return (Path(path) / CONFIG_NAME).is_file()


@dataclass(frozen=True)
class AdapterConfig:
    """The parts of adapter_config.json that decide the arithmetic."""

    path: Path
    alpha: float
    r: int
    use_rslora: bool
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    base_model: str | None  # base_model_name_or_path
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def alpha_of(self, module: str, rank: int) -> float:
        """The alpha that llama.cpp's alpha / rank needs to give PEFT's scaling of `module` (e.g.
        model.layers.0.self_attn.q_proj): its alpha (alpha_pattern, else lora_alpha), times sqrt(r) for rsLoRA,
        whose scaling is alpha / sqrt(r)."""
        alpha = self.alpha
        for key, value in self.alpha_pattern.items():
            if re.match(rf"(.*\.)?({key})$", module):
                alpha = value
                break
        return alpha * math.sqrt(rank) if self.use_rslora else alpha

    def rank_of(self, module: str) -> int:
        """The rank PEFT gives `module` (rank_pattern, else r)."""
        for key, value in self.rank_pattern.items():
            if re.match(rf"(.*\.)?({key})$", module):
                return int(value)
        return self.r


def _number(path: Path, raw: dict[str, Any], key: str, default: Any = None) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConversionError(f"{path}: {key} must be a number, got {value!r}")
    return float(value)


def read_adapter_config(adapter_dir: Path) -> AdapterConfig:
    """adapter_config.json, validated: a LoRA (not DoRA, not another PEFT method) with rank and alpha > 0."""
    path = adapter_dir / CONFIG_NAME
    if not path.is_file():
        why = "missing" if not path.exists() else not_regular(path)
        raise ConversionError(f"{path}: {why} (a PEFT adapter folder needs adapter_config.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConversionError(f"{path}: not a JSON object")
    kind = raw.get("peft_type", "LORA")
    if str(kind).upper() != "LORA":
        raise ConversionError(f"{path}: peft_type is {kind!r}; only LoRA adapters are supported")
    if raw.get("use_dora"):
        raise ConversionError(
            f"{path}: use_dora is set; DoRA adapters (a learned magnitude per output row) are not supported "
            "by llama.cpp's LoRA format"
        )
    if "lora_alpha" not in raw:
        raise ConversionError(f"{path}: missing key 'lora_alpha'")
    alpha = _number(path, raw, "lora_alpha")
    r = raw.get("r", 8)
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ConversionError(f"{path}: rank r must be a positive integer, got {r!r}")
    if alpha <= 0:
        raise ConversionError(f"{path}: lora_alpha must be positive, got {raw['lora_alpha']!r}")
    ranks = raw.get("rank_pattern") or {}
    alphas = raw.get("alpha_pattern") or {}
    if not isinstance(ranks, dict) or not isinstance(alphas, dict):
        raise ConversionError(f"{path}: rank_pattern and alpha_pattern must be objects")
    for key, value in ranks.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConversionError(f"{path}: rank_pattern {key!r} must be a positive integer, got {value!r}")
    for key, value in alphas.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConversionError(f"{path}: alpha_pattern {key!r} must be a positive number, got {value!r}")
    base = raw.get("base_model_name_or_path")
    return AdapterConfig(
        path=path,
        alpha=alpha,
        r=r,
        use_rslora=bool(raw.get("use_rslora", False)),
        rank_pattern={str(k): int(v) for k, v in ranks.items()},
        alpha_pattern={str(k): float(v) for k, v in alphas.items()},
        base_model=base if isinstance(base, str) and base else None,
        raw=raw,
    )


@dataclass
class LoraPair:
    """One adapted base tensor: its GGUF name and the A/B sources (one per expert when stacked)."""

    gguf_name: str  # the base tensor, e.g. blk.0.attn_q.weight
    module: str  # PEFT's module name of the first part (for patterns and messages)
    a: tuple[SourceTensor, ...]
    b: tuple[SourceTensor, ...]
    rank: int
    alpha: float  # alpha / rank is PEFT's scaling of this module (rsLoRA and patterns applied)
    permute_heads: int = 0  # >0: B's rows get the base's Q/K permutation with this many heads
    embedding: bool = False  # token_embd (lora_embedding_A/B): delta is (B @ A).T
    fold: float = 1.0  # multiplied into B so that adapter.lora.alpha / rank gives `scale`

    @property
    def scale(self) -> float:
        """PEFT's scaling of B·A for this module."""
        return self.alpha / self.rank

    @property
    def stacked(self) -> bool:
        return len(self.a) > 1 or self.gguf_name.split(".")[-2].endswith("_exps")

    def matrices(self, mm: Any) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) as float32 in GGUF numpy order: A [.., r, in], B [.., out, r] (B permuted and folded);
        stacked experts get a leading expert axis. `mm(path)` gives a shard's byte view."""
        from quant.convert.tensors import _to_f32

        a = np.stack([_to_f32(t.array(mm(t.shard))) for t in self.a])
        b = np.stack([_to_f32(t.array(mm(t.shard))) for t in self.b])
        if self.permute_heads:
            rows = b.shape[1]
            h = self.permute_heads
            idx = np.arange(rows).reshape(h, 2, rows // h // 2).swapaxes(1, 2).reshape(rows)
            b = b[:, idx]
        if self.fold != 1.0:
            b = b * np.float32(self.fold)
        if not self.stacked:
            a, b = a[0], b[0]
        return a, b


@dataclass
class Adapter:
    """A PEFT adapter checked against a base model: pairs in llama.cpp's converter order."""

    path: Path
    config: AdapterConfig
    hparams: HParams
    pairs: list[LoraPair]
    norms: list[tuple[str, SourceTensor]]  # mergekit's 1-D norm tensors (GGUF name, source), kept as F32
    alpha: float  # what adapter.lora.alpha holds
    files: list[Path]

    @property
    def arch_name(self) -> str:
        return self.hparams.arch_name


def _module_of(name: str) -> tuple[str, str] | None:
    """(module path without `base_model.model.`, 'A'|'B'|'EA'|'EB') for a LoRA factor name, else None."""
    stem = name.removeprefix("base_model.model.")
    for suffix, kind in ((_A, "A"), (_B, "B"), (_EMB_A, "EA"), (_EMB_B, "EB")):
        if stem.endswith(suffix):
            return stem[: -len(suffix)], kind
    return None


def read_adapter(adapter_dir: str | Path, hp: HParams) -> Adapter:
    """Read and check an adapter against the base model's hparams (never reads the base's weights)."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise ConversionError(f"{adapter_dir}: not an adapter directory")
    weights = adapter_dir / WEIGHTS_NAME
    if not weights.is_file():
        pickles = [n for n in PICKLE_NAMES if (adapter_dir / n).exists()]
        if pickles:
            raise ConversionError(
                f"{adapter_dir / pickles[0]}: pickle weights; refusing to load them because unpickling can run "
                f"arbitrary code. Save the adapter with safetensors (PEFT's save_pretrained default)"
            )
        raise ConversionError(f"{weights}: missing (a PEFT adapter folder needs adapter_model.safetensors)")
    config = read_adapter_config(adapter_dir)
    tensors = sorted(read_safetensors_header(weights), key=lambda t: t.name)
    family = hp.family
    tmap = gguf.get_tensor_name_map(family.gguf_arch(hp), hp.n_layer)
    expected = family.expected_shapes(hp)

    halves: dict[str, dict[str, SourceTensor]] = {}
    order: list[str] = []
    norms: list[tuple[str, SourceTensor]] = []
    for t in tensors:
        if "lora_magnitude_vector" in t.name:
            raise ConversionError(
                f"{weights}: tensor {t.name!r} is a DoRA magnitude; DoRA adapters are not supported"
            )
        found = _module_of(t.name)
        if found is None:
            stem = t.name.removeprefix("base_model.model.")
            if ".base_layer." in stem:
                continue
            if len(t.shape) == 1 and ("_layernorm" in stem or ".norm" in stem):
                mapped = family.source_name(stem)
                gname = tmap.get_name(mapped, try_suffixes=(".weight", ".bias")) if mapped else None
                if gname is None:
                    raise ConversionError(f"{weights}: cannot map tensor {t.name!r} to a GGUF tensor name")
                norms.append((gname, t))
                continue
            what = (
                "a full weight (modules_to_save or new tokens)"
                if stem.endswith(".weight")
                else "not a LoRA factor"
            )
            raise ConversionError(
                f"{weights}: tensor {t.name!r} is {what}; only lora_A/lora_B pairs can be converted"
            )
        module, kind = found
        if module not in halves:
            halves[module] = {}
            order.append(module)
        halves[module][kind] = t

    pairs: list[LoraPair] = []
    experts: dict[tuple[int, str], dict[int, tuple[str, SourceTensor, SourceTensor]]] = {}
    stack = family.expert_stack
    for module in order:
        h = halves[module]
        embedding = "EA" in h or "EB" in h
        ka, kb = ("EA", "EB") if embedding else ("A", "B")
        if ka not in h or kb not in h:
            have = next(iter(h.values()))
            raise ConversionError(
                f"{weights}: tensor {have.name!r} has no matching {'A' if ka not in h else 'B'} half"
            )
        a, b = h[ka], h[kb]
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise ConversionError(f"{weights}: tensor {a.name!r} is not a matrix (shape {list(a.shape)})")
        rank = a.shape[0]
        if rank == 0 or b.shape[1] == 0:
            raise ConversionError(f"{weights}: tensor {a.name!r} has rank 0 (shape {list(a.shape)})")
        if b.shape[1] != rank:
            raise ConversionError(
                f"{weights}: tensors {a.name!r} {list(a.shape)} and {b.name!r} {list(b.shape)} differ in rank"
            )
        want = config.rank_of(module)
        if rank != want:
            raise ConversionError(
                f"{weights}: tensor {a.name!r} has rank {rank} but {CONFIG_NAME} says r = {want} for it"
            )
        mapped = family.source_name(module + ".weight")
        if mapped is None:
            continue  # a vision/audio tower module: llama.cpp's text conversion drops it too
        if mapped == "lm_head.weight" and hp.tied:
            raise ConversionError(
                f"{weights}: tensor {a.name!r} adapts lm_head, but the base model ties it to the embeddings"
            )
        if stack is not None and stack.marker in mapped:
            where = stack.locate(mapped)
            if where is None or not stack.holds(where[1], where[2], hp.n_expert):
                raise ConversionError(f"{weights}: unknown target module {module!r} (tensor {a.name!r})")
            bid, xid, wid = where
            layer = experts.setdefault((bid, wid), {})
            layer[xid] = (module, a, b)
            if len(layer) == hp.n_expert:
                parts = [layer[x] for x in range(hp.n_expert)]
                ranks = {p[1].shape[0] for p in parts}
                if len(ranks) != 1:
                    raise ConversionError(f"{weights}: experts of {module!r} differ in rank")
                merged = stack.merged.format(bid=bid, wid=wid)
                pairs.append(
                    _pair(weights, tmap, expected, hp, merged, parts[0][0], tuple(p[1] for p in parts),
                          tuple(p[2] for p in parts), config, embedding=False)
                )  # fmt: skip
                del experts[(bid, wid)]
            continue
        pairs.append(
            _pair(weights, tmap, expected, hp, mapped, module, (a,), (b,), config, embedding=embedding)
        )
    if experts:
        (bid, wid), layer = next(iter(experts.items()))
        missing = next(x for x in range(hp.n_expert) if x not in layer)
        raise ConversionError(
            f"{weights}: layer {bid} adapts {wid} of some experts but not of expert {missing}; "
            "llama.cpp needs all experts of a stacked tensor"
        )
    if not pairs:
        raise ConversionError(f"{weights}: no LoRA pairs for the base model's text layers")
    alpha = _choose_alpha(pairs)
    return Adapter(adapter_dir, config, hp, pairs, norms, alpha, [weights, config.path])


def _pair(
    weights: Path,
    tmap: gguf.TensorNameMap,
    expected: dict[str, tuple[tuple[int, ...], str]],
    hp: HParams,
    hf_name: str,
    module: str,
    a: tuple[SourceTensor, ...],
    b: tuple[SourceTensor, ...],
    config: AdapterConfig,
    *,
    embedding: bool,
) -> LoraPair:
    gname = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if gname is None or not gname.endswith(".weight"):
        raise ConversionError(f"{weights}: unknown target module {module!r} (tensor {a[0].name!r})")
    rank = a[0].shape[0]
    if embedding:  # lora_embedding_A [r, vocab], lora_embedding_B [embd, r]; token_embd is [vocab, embd]
        shape: tuple[int, ...] = (a[0].shape[1], b[0].shape[0])
    else:
        shape = (b[0].shape[0], a[0].shape[1])
    if len(a) > 1:
        shape = (len(a), *shape)
    want_keys = shape_mismatch(expected, gname, shape)
    if want_keys is not None:
        want, keys = want_keys
        raise ConversionError(
            f"{weights}: tensor {(b[0] if not embedding else a[0]).name!r} gives {gname} shape {list(shape)} but the "
            f"base model has {list(want)} ({keys} of its config.json): an adapter for another base?"
        )
    if gname == "token_embd.weight" and not embedding:
        raise ConversionError(f"{weights}: unknown target module {module!r} (tensor {a[0].name!r})")
    return LoraPair(
        gguf_name=gname,
        module=module,
        a=a,
        b=b,
        rank=rank,
        alpha=config.alpha_of(module, rank),
        permute_heads=hp.family.permute_heads(hf_name, hp),
        embedding=embedding,
    )


def _choose_alpha(pairs: list[LoraPair]) -> float:
    """The adapter.lora.alpha to write: the alpha·r/… that most tensors need; the others fold the
    difference into B (llama.cpp applies alpha / rank to every tensor)."""
    alpha = Counter(p.alpha for p in pairs).most_common(1)[0][0]
    for p in pairs:
        ratio = p.alpha / alpha
        p.fold = 1.0 if math.isclose(ratio, 1.0, rel_tol=1e-6) else ratio
    return float(alpha)


__all__ = [
    "Adapter",
    "AdapterConfig",
    "LoraPair",
    "is_adapter_dir",
    "read_adapter",
    "read_adapter_config",
]
