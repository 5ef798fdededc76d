"""Which GGUF of a model fits a target, how to load it (GPU layers, context), and which one to pick.

For a local checkpoint every type's file size is exact (the converter's own layout, `file_layout`); for a
GGUF file only that file is sized. Memory comes from `quant.sizing.memory`; fitting follows llama.cpp's
semantics: layers are offloaded from the last one down with the output layer first, every GPU is its own
budget, and on the host mmapped weights may exceed RAM only at the price of paging ("slow").

The load mode is part of the answer: llama.cpp maps the file by default, but a type whose weights the CPU
repacks needs room for their still-mapped file pages that way (`quant.sizing.memory.RECLAIM_ROOM`); when
that room is missing and reading the file into RAM (`--no-mmap`) fits, the plan says so, and the runner loads
it that way (hubtui.runner.offload). A mode the user asked for is sized as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quant.errors import QuantError
from quant.filetypes import FILE_TYPES, PLAN_TYPES, usable_with
from quant.inputs import not_regular
from quant.sizing.memory import (
    Estimate,
    ModelShape,
    RunSettings,
    estimate,
    kv_bytes,
    kv_bytes_per_layer,
)
from quant.sizing.profiles import Target

if TYPE_CHECKING:
    from quant.convert.options import TensorOptions

DEFAULT_TYPES = PLAN_TYPES  # best quality first
QUALITY_ORDER = tuple(FILE_TYPES)
DEFAULT_CTX = 4096
MIN_CTX = 256
CTX_STEP = 256

# How well a type fits, best first. "slow": the anonymous part fits but the weights read in place do not
# stay resident, so they page from disk on every token; "none": even the part that cannot page does not fit.
FIT_KINDS = ("gpu", "partial", "cpu", "slow", "none")
TIGHT = 0.90  # a fit that needs more than this share of a budget is "tight"
# why a placement reads the file into RAM (`Placement.mode_switched`), in the runner's words
NO_MMAP_REASON = "mapping the file leaves too little room for the pages of its repacked weights"


class PlanError(QuantError):
    """Sizing cannot run: a bad source or bad settings (the CLI shows these as usage errors)."""


@dataclass
class ModelSource:
    """A model to size: one `ModelShape` per file type."""

    path: Path
    kind: str  # "checkpoint" or "gguf"
    name: str
    shapes: dict[str, ModelShape]
    n_params: int = 0  # parameters of a checkpoint (tensor elements), for bits per weight; 0 if unknown
    # file type -> the ggml types its conversion needs that have no kernel in this build (never recommended)
    missing_kernels: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Placement:
    kind: str  # one of FIT_KINDS
    n_gpu_layers: int
    estimate: Estimate
    usage: float  # share of the tightest budget this placement needs (host working set + margin, or a GPU)
    mode_switched: bool = False  # the plan reads the file into RAM because mapping it does not fit

    @property
    def mmap(self) -> bool:
        """Whether llama.cpp should map the file (its default) or read it into RAM (--no-mmap)."""
        return self.estimate.host.mapped

    @property
    def mode(self) -> str:
        return ("mmap" if self.mmap else "no-mmap") + (" + mlock" if self.estimate.host.locked else "")

    @property
    def fits(self) -> bool:
        return self.kind in ("gpu", "partial", "cpu")

    @property
    def tight(self) -> bool:
        """Fits, but within 10 % of the budget: little room for other programs or a longer context."""
        return self.fits and self.usage > TIGHT

    @property
    def margin(self) -> int:
        return self.estimate.host.margin

    @property
    def verdict(self) -> str:
        """fits, tight, pages from disk or does not fit."""
        if self.fits:
            return "tight" if self.tight else "fits"
        return "pages from disk" if self.kind == "slow" else "does not fit"


@dataclass
class TypePlan:
    """One row of the plan: a type, its exact file size and how it fits at the chosen context."""

    qtype: str
    file_size: int
    placement: Placement
    max_ctx: int | None  # largest context (multiple of 256, up to the trained one) that still fits
    max_ctx_full_gpu: int | None = None
    bpw: float | None = None  # bits per weight of this model's file (tensor bits / parameters)

    @property
    def hint(self) -> str:
        """The file type's one-line size and quality hint ("" for a GGUF of a type we do not write)."""
        ft = FILE_TYPES.get(self.qtype)
        return ft.hint if ft else ""

    @property
    def needs_imatrix(self) -> bool:
        """Made only with an importance matrix: never recommended without one."""
        ft = FILE_TYPES.get(self.qtype)
        return bool(ft and ft.needs_imatrix)

    @property
    def fits(self) -> bool:
        return self.placement.fits

    def to_dict(self) -> dict[str, Any]:
        est = self.placement.estimate
        host = est.host
        return {
            "type": self.qtype,
            "file_size": self.file_size,
            "bpw": None if self.bpw is None else round(self.bpw, 4),
            "hint": self.hint,
            "needs_imatrix": self.needs_imatrix,
            "fit": self.placement.kind,
            "verdict": self.placement.verdict,
            "tight": self.placement.tight,
            "mmap": self.placement.mmap,
            "mode": self.placement.mode,
            "mode_switched": self.placement.mode_switched,
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
            "working_set": host.working_set,
            "margin": self.placement.margin,
            "anonymous": host.anonymous_resident,
            "weights_in_place": host.working_set - host.anonymous_resident,
            "peak_rss": host.peak_rss,
            "reclaimable": host.reclaimable,
            "read_once": host.read_once if host.mapped else 0,
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
    choose_mode: bool = False  # rows may read the file into RAM where mapping it does not fit

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
                "n_expert_used": shape.n_expert_used,
                "n_params": shape.n_params,
                "n_active_params": shape.n_active_params,
                "n_swa": shape.n_swa,
                "swa_layers": list(shape.swa_layers),
                "kv_bytes_per_token": kv_bytes(shape, replace(self.settings, n_ctx=CTX_STEP)) // CTX_STEP,
                "kv_cache_per_layer": [
                    kv_bytes_per_layer(shape, self.settings, il) for il in range(shape.n_layer)
                ],
            },
            "target": self.target.to_dict(),
            "ctx": self.settings.n_ctx,
            "settings": {
                "n_batch": self.settings.n_batch,
                "n_ubatch": self.settings.n_ubatch,
                "flash_attn": self.settings.flash_attn,
                "kv_type": self.settings.kv_type,
                "n_seq": self.settings.n_seq,
                "swa_full": self.settings.swa_full,
                "mmap": self.settings.mmap,
                "mlock": self.settings.mlock,
                "choose_mode": self.choose_mode,
                "repack": self.settings.repack.to_dict(),
            },
            "types": [r.to_dict() for r in self.rows],
            "recommendation": None
            if rec is None
            else {
                "type": rec.qtype,
                "fit": rec.placement.kind,
                "verdict": rec.placement.verdict,
                "mmap": rec.placement.mmap,
                "mode": rec.placement.mode,
                "mode_switched": rec.placement.mode_switched,
                "n_gpu_layers": rec.placement.n_gpu_layers,
                "ctx": self.settings.n_ctx,
                "file_size": rec.file_size,
                "total": rec.placement.estimate.total,
                "working_set": rec.placement.estimate.host.working_set,
                "peak_rss": rec.placement.estimate.host.peak_rss,
            },
            "warnings": self.warnings,
        }


# -- sources --------------------------------------------------------------------------------------


def _checkpoint_shapes(
    src: Path, types: Sequence[str], options: TensorOptions | None = None, has_imatrix: bool = False
) -> tuple[dict[str, ModelShape], int, dict[str, set[str]]]:
    """Exact layouts for every type: the first through the converter's own `prepare`, the others re-typed.

    The header (KVs, tensor infos) has the same length for every type, so only the tensor types need
    recomputing; that skips reloading the tokenizer per type. Each type's tensors are laid out in the order
    its llama.cpp tool writes them (llama-quantize sorts by layer), so data offsets are exact too.
    tests/test_plan.py checks each file size against `file_layout` itself. Returns the shapes, the parameter
    count and each type's ggml types. A type that needs an importance matrix is laid out as made with one;
    the others with one only when `has_imatrix` (it changes a few mixture rules).
    """
    from quant.convert.layout import _pad, natural_tensors, prepare, quantize_layout
    from quant.convert.options import TensorOptions
    from quant.convert.type_rules import TensorSpec, choose_types, layer_key, resolve_file_type, row_nbytes

    prep = prepare(src, types[0], options=options, assume_imatrix=_with_imatrix(types[0], has_imatrix))
    first = prep.layout
    hp = first.hparams
    n_swa, swa_layers = hp.family.attention_windows(hp.n_layer, first.kv)
    hparams = {
        "n_layer": hp.n_layer,
        "n_embd": hp.n_embd,
        "n_ff": hp.n_ff,
        "n_head": hp.n_head,
        "n_head_kv": hp.n_head_kv,
        "head_dim": hp.head_dim,
        "n_vocab": hp.n_vocab,
        "n_ctx_train": hp.n_ctx_train,
        "n_expert": hp.n_expert,
        "n_expert_used": hp.n_expert_used,
        "n_swa": n_swa,
        "swa_layers": swa_layers,
    }
    n_merges = len(first.kv.get("tokenizer.ggml.merges") or [])
    ggml_types = {types[0]: {t.type for t in first.tensors}}
    base = first.data_offset
    shapes = {
        types[0]: ModelShape.from_tensors(
            [(t.name, t.nbytes, t.type, t.ne, base + t.offset) for t in first.tensors],
            file_size=first.file_size,
            hparams=hparams,
            n_merges=n_merges,
        )
    }
    opts = options or TensorOptions()
    natural = natural_tensors(src) if first.by_quantize else prep.tensors
    for qtype in types[1:]:
        ft = resolve_file_type(qtype)
        by_quantize = quantize_layout(ft, opts)
        ordered = sorted(natural, key=lambda t: layer_key(t.name)) if by_quantize else natural
        chosen = choose_types(
            [TensorSpec(t.name, t.shape, t.keep_f32) for t in ordered],
            ft,
            n_layer=hp.n_layer,
            n_expert=hp.n_expert,
            n_head=hp.n_head,
            n_head_kv=hp.n_head_kv,
            options=options,
            has_imatrix=_with_imatrix(qtype, has_imatrix),
        )
        laid_out, offset = [], base
        for t in ordered:
            nbytes = t.n_rows * row_nbytes(chosen[t.name], t.n_cols)
            laid_out.append((t.name, nbytes, chosen[t.name], tuple(reversed(t.shape)), offset))
            offset += _pad(nbytes)
        ggml_types[qtype] = set(chosen.values())
        shapes[qtype] = ModelShape.from_tensors(
            laid_out, file_size=offset, hparams=hparams, n_merges=n_merges
        )
    return shapes, first.n_params, ggml_types


def _with_imatrix(qtype: str, has_imatrix: bool) -> bool:
    from quant.filetypes import resolve_file_type

    ft = resolve_file_type(qtype)
    return ft.quantized and (has_imatrix or ft.needs_imatrix)


def gguf_shape(path: Path) -> tuple[str, str, ModelShape]:
    """(file type, name, shape) of a GGUF file; refuses architectures sizing does not model."""
    from quant.convert.archs import for_gguf_architecture, gguf_architectures
    from quant.gguf_file import read_gguf_summary

    summary = read_gguf_summary(path)
    family = for_gguf_architecture(summary.architecture)
    if family is None:
        raise PlanError(
            f"{path}: GGUF architecture {summary.architecture!r} is not supported "
            f"(supported: {', '.join(gguf_architectures())})"
        )
    hp: dict[str, Any] = summary.hparams
    missing = [k for k in ("n_layer", "n_embd", "n_head", "n_vocab") if hp.get(k) is None]
    if missing:
        raise PlanError(f"{path}: GGUF lacks {', '.join(missing)} ({summary.architecture}.* KVs)")
    if int(hp["n_layer"]) > len(summary.tensors):  # every layer has tensors: bounds the per-layer tables
        raise PlanError(
            f"{path}: {summary.architecture}.block_count is {hp['n_layer']} but the file has only "
            f"{len(summary.tensors)} tensors"
        )
    n_swa, swa_layers = family.attention_windows(int(hp["n_layer"]), summary.kv)
    hp = {**hp, "n_swa": n_swa, "swa_layers": swa_layers}
    shape = ModelShape.from_tensors(
        [(t.name, t.n_bytes, t.ggml_type, t.shape, t.offset) for t in summary.tensors],
        file_size=summary.file_size,
        hparams=hp,
        n_merges=len(summary.kv.get("tokenizer.ggml.merges") or ()),
    )
    return summary.file_type or "unknown", summary.name or path.stem, shape


def load_source(
    src: str | Path,
    types: Sequence[str] = DEFAULT_TYPES,
    options: TensorOptions | None = None,
    has_imatrix: bool = False,
) -> ModelSource:
    """A checkpoint sized for every type in `types` (with llama-quantize's per-tensor `options`), or a GGUF."""
    path = Path(src)
    if path.is_dir():
        from quant.checkpoint_format import is_checkpoint_dir

        if not is_checkpoint_dir(path):
            raise PlanError(
                f"{path}: not a checkpoint directory (no config.json or params.json) and not a GGUF file"
            )
        from quant.kernels import QUANT_TYPES

        shapes, n_params, ggml_types = _checkpoint_shapes(path, list(types), options, has_imatrix)
        missing = {q: sorted(t - set(QUANT_TYPES)) for q, t in ggml_types.items() if t - set(QUANT_TYPES)}
        return ModelSource(path, "checkpoint", path.name, shapes, n_params, missing)
    if path.is_file():
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise PlanError(f"{path}: neither a checkpoint directory nor a GGUF file")
        qtype, name, shape = gguf_shape(path)
        return ModelSource(path, "gguf", name, {qtype: shape})
    if path.exists():  # a FIFO or device: refused unopened (reading one would block or never end)
        raise PlanError(f"{path}: {not_regular(path)}")
    if str(src).count("/") == 1 and not str(src).startswith((".", "/")):
        raise PlanError(
            f"{src}: no such local path (sizing a hub repo id needs a downloaded checkpoint for now)"
        )
    raise PlanError(f"{src}: no such file or directory")


# -- fitting --------------------------------------------------------------------------------------


def host_need(est: Estimate) -> int:
    """What the host must have free: the working set and the model's margin of error."""
    return est.host.working_set + est.host.margin


def _usage(est: Estimate, target: Target) -> float:
    """The share of the tightest budget used: host RAM (one pool with the GPU on Apple) or a GPU."""
    host = host_need(est) + (sum(g.total for g in est.gpus) if target.unified else 0)
    shares = [host / target.ram if target.ram else float("inf")]
    shares += [
        g.total / b if b else float("inf") for g, b in zip(est.gpus, target.gpus, strict=False) if g.total
    ]
    return max(shares)


def fit(shape: ModelShape, settings: RunSettings, target: Target, *, choose_mode: bool = False) -> Placement:
    """The best placement: all layers on the GPU(s), else as many as fit, else CPU, else paging or nothing.

    On the host what must fit is the working set (plus the margin); with mmap and no mlock, a working set
    over the budget whose anonymous part still fits runs, paging its in-place weights from disk ("slow").
    `choose_mode`: when mapping the file does not fit (mmap, no mlock), try reading it into RAM instead."""
    placement = _fit(shape, settings, target)
    if choose_mode and settings.mmap and not settings.mlock and not placement.fits:
        loaded = _fit(shape, replace(settings, mmap=False), target)
        if loaded.fits:
            return replace(loaded, mode_switched=True)
    return placement


def _fit(shape: ModelShape, settings: RunSettings, target: Target) -> Placement:
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
    host = est.host
    if host.mapped and not host.locked and host.anonymous_resident <= target.ram:
        return Placement("slow", 0, est, use)  # the (over-estimated) anonymous part fits: it pages, not dies
    return Placement("none", 0, est, use)


def max_context(
    shape: ModelShape,
    settings: RunSettings,
    target: Target,
    *,
    kinds: tuple[str, ...] = ("gpu", "partial", "cpu"),
    ceiling: int | None = None,
    choose_mode: bool = False,
) -> int | None:
    """Largest context (a multiple of 256, at most `ceiling`, default the trained one) whose fit is in `kinds`."""
    ceiling = max(ceiling or shape.n_ctx_train, MIN_CTX) // CTX_STEP
    lo, hi, best = 1, ceiling, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fit(shape, replace(settings, n_ctx=mid * CTX_STEP), target, choose_mode=choose_mode).kind in kinds:
            best, lo = mid * CTX_STEP, mid + 1
        else:
            hi = mid - 1
    return best


def _rank(row: TypePlan) -> tuple[int, int, int]:
    """Full offload first, then a fit with room to spare before a tight one, then quality."""
    quality = QUALITY_ORDER.index(row.qtype) if row.qtype in QUALITY_ORDER else len(QUALITY_ORDER)
    return (0 if row.placement.kind == "gpu" else 1, 1 if row.placement.tight else 0, quality)


def plan(
    src: str | Path | ModelSource,
    target: Target,
    ctx: int = DEFAULT_CTX,
    types: Sequence[str] = DEFAULT_TYPES,
    *,
    settings: RunSettings | None = None,
    options: TensorOptions | None = None,
    has_imatrix: bool = False,
    choose_mode: bool = True,
) -> Plan:
    """Size every type of `src` for `target` at context `ctx` and recommend one configuration.

    `choose_mode`: with mmap and no mlock in `settings` (llama.cpp's default), a type whose mapped file does
    not fit may be planned to load with --no-mmap (see `fit`); False sizes the given mode only.

    `options` (llama-quantize's per-tensor options) change the checkpoint's layouts as they would the files.
    Types that need an importance matrix are sized but recommended only when `has_imatrix` (one is given);
    with one, a checkpoint's float types are sized but not recommended (an imatrix applies to quantised ones).
    """
    if ctx < MIN_CTX:
        raise PlanError(f"context {ctx} is too small: use at least {MIN_CTX} tokens")
    if not types:
        raise PlanError("no types to size")
    source = src if isinstance(src, ModelSource) else load_source(src, types, options, has_imatrix)
    settings = replace(settings or RunSettings(repack=target.repack), n_ctx=ctx)
    choose_mode = choose_mode and settings.mmap and not settings.mlock
    rows = []
    for qtype, shape in source.shapes.items():
        placement = fit(shape, settings, target, choose_mode=choose_mode)
        top = max(shape.n_ctx_train, ctx)  # up to the trained context, or the asked one when larger
        full = None
        if target.gpus and placement.kind == "gpu":
            full = max_context(shape, settings, target, kinds=("gpu",), ceiling=top, choose_mode=choose_mode)
        best = max_context(shape, settings, target, ceiling=top, choose_mode=choose_mode)
        bpw = 8 * shape.weights / source.n_params if source.n_params else None
        rows.append(TypePlan(qtype, shape.file_size, placement, best, full, bpw))
    fitting = [
        r
        for r in rows
        if r.fits
        and r.qtype not in source.missing_kernels
        and (source.kind == "gguf" or usable_with(r.qtype, has_imatrix))
    ]
    recommendation = min(fitting, key=_rank) if fitting else None
    shape = next(iter(source.shapes.values()))
    warnings = []
    if shape.n_ctx_train and ctx > shape.n_ctx_train:
        warnings.append(
            f"context {ctx} is above the model's trained context {shape.n_ctx_train}: quality may degrade"
        )
    better_tight = [
        r for r in fitting if r.placement.tight and recommendation and _rank(r)[2] < _rank(recommendation)[2]
    ]
    if better_tight and recommendation is not None:
        r = min(better_tight, key=_rank)
        warnings.append(
            f"{r.qtype} also fits, but tightly ({r.placement.usage:.0%} of the budget); "
            f"{recommendation.qtype} leaves room for other programs"
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
    return Plan(source, target, settings, rows, recommendation, warnings, choose_mode)
