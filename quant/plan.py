"""Which GGUF of a model fits a target, how to load it (GPU layers, context), and which one to pick.

For a local checkpoint every type's file size is exact (the converter's own layout, `plan_layout`); for a
GGUF file only that file is sized. Memory comes from `quant.memory`; fitting follows llama.cpp's
semantics: layers are offloaded from the last one down with the output layer first, every GPU is its own
budget, and on the host mmapped weights may exceed RAM only at the price of paging ("slow").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from quant.errors import QuantError
from quant.memory import Estimate, ModelShape, RunSettings, estimate, kv_bytes
from quant.profiles import Target

DEFAULT_TYPES = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_K_S")  # best quality first
QUALITY_ORDER = ("F32", "BF16", *DEFAULT_TYPES)
DEFAULT_CTX = 4096
MIN_CTX = 256
CTX_STEP = 256
SUPPORTED_GGUF_ARCHS = ("llama",)  # Llama, Mistral and Mixtral GGUFs all use llama.cpp's "llama"

# How well a type fits, best first.
FIT_KINDS = ("gpu", "partial", "cpu", "slow", "none")


class PlanError(QuantError):
    """Sizing cannot run: a bad source or bad settings (the CLI shows these as usage errors)."""


@dataclass
class ModelSource:
    """A model to size: one `ModelShape` per file type."""

    path: Path
    kind: str  # "checkpoint" or "gguf"
    name: str
    shapes: dict[str, ModelShape]


@dataclass
class Placement:
    kind: str  # one of FIT_KINDS
    n_gpu_layers: int
    estimate: Estimate
    usage: float  # share of the tightest budget this placement takes (host or the fullest GPU)


@dataclass
class TypePlan:
    """One row of the plan: a type, its exact file size and how it fits at the chosen context."""

    qtype: str
    file_size: int
    placement: Placement
    max_ctx: int | None  # largest context (multiple of 256, up to the trained one) that still fits
    max_ctx_full_gpu: int | None = None

    @property
    def fits(self) -> bool:
        return self.placement.kind in ("gpu", "partial", "cpu")

    def to_dict(self) -> dict[str, Any]:
        est = self.placement.estimate
        return {
            "type": self.qtype,
            "file_size": self.file_size,
            "fit": self.placement.kind,
            "n_gpu_layers": self.placement.n_gpu_layers,
            "budget_fraction": round(self.placement.usage, 4)
            if self.placement.usage != float("inf")
            else None,
            "weights": est.component("weights"),
            "kv_cache": est.component("kv"),
            "compute_buffer": est.component("compute"),
            "output_buffer": est.component("output"),
            "cpu_work_buffer": est.component("work"),
            "repack_buffer": est.component("repack"),
            "metadata": est.component("metadata"),
            "overhead": est.component("overhead"),
            "total": est.total,
            "expected_host_rss": est.host_rss,
            "devices": est.to_dict(),
            "max_ctx": self.max_ctx,
            "max_ctx_full_gpu": self.max_ctx_full_gpu,
        }


@dataclass
class Plan:
    source: ModelSource
    target: Target
    settings: RunSettings
    rows: list[TypePlan]
    recommendation: TypePlan | None
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> ModelShape:
        return next(iter(self.source.shapes.values()))

    def to_dict(self) -> dict[str, Any]:
        shape = self.shape
        rec = self.recommendation
        return {
            "source": {"path": str(self.source.path), "kind": self.source.kind, "name": self.source.name},
            "model": {
                "n_layer": shape.n_layer,
                "n_embd": shape.n_embd,
                "n_head": shape.n_head,
                "n_head_kv": shape.n_head_kv,
                "head_dim": shape.head_dim,
                "n_vocab": shape.n_vocab,
                "n_ctx_train": shape.n_ctx_train,
                "n_expert": shape.n_expert,
                "kv_bytes_per_token": kv_bytes(shape, replace(self.settings, n_ctx=CTX_STEP)) // CTX_STEP,
            },
            "target": self.target.to_dict(),
            "ctx": self.settings.n_ctx,
            "settings": {
                "n_batch": self.settings.n_batch,
                "n_ubatch": self.settings.n_ubatch,
                "flash_attn": self.settings.flash_attn,
                "kv_type": self.settings.kv_type,
                "n_seq": self.settings.n_seq,
                "repack_types": list(self.settings.repack_types),
            },
            "types": [r.to_dict() for r in self.rows],
            "recommendation": None
            if rec is None
            else {
                "type": rec.qtype,
                "fit": rec.placement.kind,
                "n_gpu_layers": rec.placement.n_gpu_layers,
                "ctx": self.settings.n_ctx,
                "file_size": rec.file_size,
                "total": rec.placement.estimate.total,
            },
            "warnings": self.warnings,
        }


# -- sources --------------------------------------------------------------------------------------


def _checkpoint_shapes(src: Path, types: Sequence[str]) -> dict[str, ModelShape]:
    """Exact layouts for every type: the first through the converter's own `prepare`, the others re-typed.

    The header (KVs, tensor infos) has the same length for every type, so only the tensor types need
    recomputing; that skips reloading the tokenizer per type. tests/test_plan.py checks each file size
    against `plan_layout` itself.
    """
    from quant.convert.layout import _pad, prepare
    from quant.convert.mixture import TensorSpec, choose_types, resolve_file_type, row_nbytes

    prep = prepare(src, types[0])
    first = prep.layout
    hp = first.hparams
    hparams = {
        "n_layer": hp.n_layer,
        "n_embd": hp.n_embd,
        "n_head": hp.n_head,
        "n_head_kv": hp.n_head_kv,
        "head_dim": hp.head_dim,
        "n_vocab": hp.n_vocab,
        "n_ctx_train": hp.n_ctx_train,
        "n_expert": hp.n_expert,
    }
    n_merges = len(first.kv.get("tokenizer.ggml.merges") or [])
    shapes = {
        types[0]: ModelShape.from_tensors(
            [(t.name, t.nbytes, t.type, t.ne) for t in first.tensors],
            file_size=first.file_size,
            hparams=hparams,
            n_merges=n_merges,
        )
    }
    specs = [TensorSpec(t.name, t.shape, t.keep_f32) for t in prep.tensors]
    for qtype in types[1:]:
        chosen = choose_types(
            specs,
            resolve_file_type(qtype),
            n_layer=hp.n_layer,
            n_expert=hp.n_expert,
            n_head=hp.n_head,
            n_head_kv=hp.n_head_kv,
        )
        sizes = [
            (
                t.name,
                t.n_rows * row_nbytes(chosen[t.name], t.n_cols),
                chosen[t.name],
                tuple(reversed(t.shape)),
            )
            for t in prep.tensors
        ]
        size = first.data_offset + sum(_pad(t[1]) for t in sizes)
        shapes[qtype] = ModelShape.from_tensors(sizes, file_size=size, hparams=hparams, n_merges=n_merges)
    return shapes


def gguf_shape(path: Path) -> tuple[str, str, ModelShape]:
    """(file type, name, shape) of a GGUF file; refuses architectures sizing does not model."""
    from quant.gguf_file import read_gguf_summary

    summary = read_gguf_summary(path)
    if summary.architecture not in SUPPORTED_GGUF_ARCHS:
        raise PlanError(
            f"{path}: GGUF architecture {summary.architecture!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_GGUF_ARCHS)})"
        )
    hp = summary.hparams
    missing = [k for k in ("n_layer", "n_embd", "n_head", "n_vocab") if hp.get(k) is None]
    if missing:
        raise PlanError(f"{path}: GGUF lacks {', '.join(missing)} ({summary.architecture}.* KVs)")
    shape = ModelShape.from_tensors(
        [(t.name, t.n_bytes, t.ggml_type, t.shape) for t in summary.tensors],
        file_size=summary.file_size,
        hparams=hp,
    )
    return summary.file_type or "unknown", summary.name or path.stem, shape


def load_source(src: str | Path, types: Sequence[str] = DEFAULT_TYPES) -> ModelSource:
    path = Path(src)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PlanError(f"{path}: not a checkpoint directory (no config.json) and not a GGUF file")
        return ModelSource(path, "checkpoint", path.name, _checkpoint_shapes(path, list(types)))
    if path.is_file():
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise PlanError(f"{path}: neither a checkpoint directory nor a GGUF file")
        qtype, name, shape = gguf_shape(path)
        return ModelSource(path, "gguf", name, {qtype: shape})
    if not path.exists() and str(src).count("/") == 1 and not str(src).startswith((".", "/")):
        raise PlanError(
            f"{src}: no such local path (sizing a hub repo id needs a downloaded checkpoint for now)"
        )
    raise PlanError(f"{src}: no such file or directory")


# -- fitting --------------------------------------------------------------------------------------


def _usage(est: Estimate, target: Target) -> float:
    """The share of the tightest budget used: host RAM (one pool with the GPU on Apple) or a GPU."""
    host = (est.host.total + sum(g.total for g in est.gpus)) if target.unified else est.host.total
    shares = [host / target.ram if target.ram else float("inf")]
    shares += [
        g.total / b if b else float("inf") for g, b in zip(est.gpus, target.gpus, strict=False) if g.total
    ]
    return max(shares)


def fit(shape: ModelShape, settings: RunSettings, target: Target) -> Placement:
    """The best placement: all layers on the GPU(s), else as many as fit, else CPU, else paging or nothing."""
    if target.gpus:
        for ngl in range(shape.n_layer + 1, 0, -1):
            est = estimate(shape, settings, ngl, target.gpus)
            use = _usage(est, target)
            if use <= 1.0:
                return Placement("gpu" if ngl == shape.n_layer + 1 else "partial", ngl, est, use)
    est = estimate(shape, settings, 0)
    use = _usage(est, target)
    if use <= 1.0:
        return Placement("cpu", 0, est, use)
    if est.host.anonymous <= target.ram:
        return Placement("slow", 0, est, use)
    return Placement("none", 0, est, use)


def max_context(
    shape: ModelShape,
    settings: RunSettings,
    target: Target,
    *,
    kinds: tuple[str, ...] = ("gpu", "partial", "cpu"),
    ceiling: int | None = None,
) -> int | None:
    """Largest context (a multiple of 256, at most `ceiling`, default the trained one) whose fit is in `kinds`."""
    ceiling = max(ceiling or shape.n_ctx_train, MIN_CTX) // CTX_STEP
    lo, hi, best = 1, ceiling, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fit(shape, replace(settings, n_ctx=mid * CTX_STEP), target).kind in kinds:
            best, lo = mid * CTX_STEP, mid + 1
        else:
            hi = mid - 1
    return best


def _rank(row: TypePlan) -> tuple[int, int]:
    quality = QUALITY_ORDER.index(row.qtype) if row.qtype in QUALITY_ORDER else len(QUALITY_ORDER)
    return (0 if row.placement.kind == "gpu" else 1, quality)


def plan(
    src: str | Path | ModelSource,
    target: Target,
    ctx: int = DEFAULT_CTX,
    types: Sequence[str] = DEFAULT_TYPES,
    *,
    settings: RunSettings | None = None,
) -> Plan:
    """Size every type of `src` for `target` at context `ctx` and recommend one configuration."""
    if ctx < MIN_CTX:
        raise PlanError(f"context {ctx} is too small: use at least {MIN_CTX} tokens")
    if not types:
        raise PlanError("no types to size")
    source = src if isinstance(src, ModelSource) else load_source(src, types)
    settings = replace(settings or RunSettings(repack_types=target.repack_types), n_ctx=ctx)
    rows = []
    for qtype, shape in source.shapes.items():
        placement = fit(shape, settings, target)
        top = max(shape.n_ctx_train, ctx)  # up to the trained context, or the asked one when larger
        full = None
        if target.gpus and placement.kind == "gpu":
            full = max_context(shape, settings, target, kinds=("gpu",), ceiling=top)
        best = max_context(shape, settings, target, ceiling=top)
        rows.append(TypePlan(qtype, shape.file_size, placement, best, full))
    fitting = [r for r in rows if r.fits]
    recommendation = min(fitting, key=_rank) if fitting else None
    shape = next(iter(source.shapes.values()))
    warnings = []
    if shape.n_ctx_train and ctx > shape.n_ctx_train:
        warnings.append(
            f"context {ctx} is above the model's trained context {shape.n_ctx_train}: quality may degrade"
        )
    if recommendation is None:
        kinds = {r.placement.kind for r in rows}
        hint = " (the weights could page from disk, very slowly)" if "slow" in kinds else ""
        warnings.append(f"no type fits {target.name} at context {ctx}{hint}; try a smaller --ctx")
    elif recommendation.placement.kind == "partial":
        on_cpu = shape.n_layer + 1 - recommendation.placement.n_gpu_layers
        if on_cpu > (shape.n_layer + 1) / 2:
            warnings.append(
                f"{recommendation.qtype}: {on_cpu} of {shape.n_layer + 1} layers would run on the CPU, "
                "so generation will be slow"
            )
    return Plan(source, target, settings, rows, recommendation, warnings)
