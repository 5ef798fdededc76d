"""`hubtui plan`: which GGUF of a model fits a machine or a target profile, and how to load it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hubtui.commands._common import json_option, memory_mode_options
from hubtui.formatting import describe_target, fit_label
from quant.units import format_bytes

if TYPE_CHECKING:
    from quant.convert.options import TensorOptions
    from quant.sizing.plan import Plan
    from quant.sizing.profiles import Target

BAR_WIDTH = 20


def _validate_ctx(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 256:
        raise click.BadParameter(f"context {value} is too small: use at least 256 tokens")
    return value


def target_options(func):
    """--target/--ram/--vram/--gpus/--ctx, shared by `plan` and `convert --type auto`."""
    for opt in reversed(
        [
            click.option(
                "--target",
                "target_name",
                metavar="PROFILE",
                help="A built-in target profile (e.g. laptop-8g).",
            ),
            click.option("--ram", metavar="SIZE", help="Custom target: total RAM, e.g. 16G."),
            click.option(
                "--vram", metavar="SIZE", help="Custom target: memory of each GPU, e.g. 12G (0: no GPU)."
            ),
            click.option(
                "--gpus", type=click.IntRange(min=0), help="Custom target: number of GPUs of --vram each."
            ),
            click.option(
                "--ctx",
                type=int,
                default=None,
                callback=_validate_ctx,
                help="Context length to size for (default 4096).",
            ),
        ]
    ):
        func = opt(func)
    return func


def resolve_target(target_name: str | None, ram: str | None, vram: str | None, gpus: int | None) -> Target:
    """The target the options describe (this machine when none is given); bad values are usage errors."""
    from quant.sizing.profiles import TargetError, custom_target, get_profile, machine_target

    if target_name and (ram or vram or gpus is not None):
        raise click.UsageError("give either --target or --ram/--vram/--gpus, not both")
    try:
        if target_name:
            return get_profile(target_name)
        if ram or vram or gpus is not None:
            if not ram:
                raise click.UsageError("a custom target needs --ram (e.g. --ram 16G)")
            return custom_target(ram, vram, gpus)
    except TargetError as exc:
        hint = "--target" if target_name else ("--vram" if vram and "vram" in str(exc).lower() else None)
        raise click.BadParameter(str(exc), param_hint=hint) from None
    from hubtui.runner.machine import detect_machine

    return machine_target(detect_machine())


def build_plan(
    src: str,
    target: Target,
    ctx: int | None,
    types: tuple[str, ...] | None = None,
    *,
    flash_attn: bool = False,
    options: TensorOptions | None = None,
    mmap: bool | None = None,
    mlock: bool = False,
    has_imatrix: bool = False,
) -> Plan:
    """`mmap` None: the plan chooses (the file mapped unless only reading it into RAM fits)."""
    from quant.errors import QuantError
    from quant.filetypes import resolve_file_type
    from quant.sizing.plan import DEFAULT_CTX, DEFAULT_TYPES, PlanError, plan

    if types:
        try:
            types = tuple(dict.fromkeys(resolve_file_type(t).name for t in types))
        except QuantError as exc:
            raise click.BadParameter(str(exc), param_hint="--type") from None
    from hubtui.commands._common import checkpoint_source
    from quant.sizing.memory import RunSettings

    settings = RunSettings(flash_attn=flash_attn, repack=target.repack, mmap=mmap is not False, mlock=mlock)
    from hubtui.errors import HubtuiError
    from hubtui.hub.standin import headers_only_checkpoint

    with tempfile.TemporaryDirectory(prefix="hubtui-plan-") as tmp:
        try:
            path = checkpoint_source(Path(src))  # a hub repo id already downloaded sizes its cached snapshot
        except HubtuiError:
            path = headers_only_checkpoint(src, Path(tmp))  # else read only headers and small files
        try:
            return plan(
                path,
                target,
                ctx or DEFAULT_CTX,
                types or DEFAULT_TYPES,
                settings=settings,
                options=options,
                has_imatrix=has_imatrix,
                choose_mode=mmap is None,
            )
        except PlanError as exc:
            raise click.BadParameter(str(exc), param_hint="SRC") from None


def _bar(fraction: float | None) -> str:
    if fraction is None:
        return "[" + "?" * BAR_WIDTH + "]"
    filled = min(BAR_WIDTH, round(fraction * BAR_WIDTH))
    return (
        "["
        + "#" * filled
        + "." * (BAR_WIDTH - filled)
        + ("]" if fraction <= 1 else ">")
        + f" {fraction:4.0%}"
    )


def render(p: Plan) -> str:
    from quant.sizing.memory import MARGIN_FRACTION, MARGIN_MIN, RECLAIM_ROOM

    data = p.to_dict()
    model, tgt = data["model"], data["target"]
    lines = [
        f"{p.source.name} ({p.source.kind}): {model['n_layer']} layers, trained context {model['n_ctx_train']}, "
        f"KV cache {model['kv_bytes_per_token'] / 1024:.1f} KiB/token (f16)",
        f"target: {describe_target(p.target)}",
        f"context {p.settings.n_ctx}, n_batch {p.settings.n_batch}, flash attention "
        f"{'on' if p.settings.flash_attn else 'off'}, weights loaded with {p.settings.mode}"
        + (" (or --no-mmap where only that fits)" if p.choose_mode else ""),
        "",
    ]
    if model["n_expert"]:
        lines.insert(
            1,
            f"mixture of experts: {model['n_expert']} experts, {model['n_expert_used']} per token; "
            f"{model['n_active_params'] / 1e9:.2f} B of {model['n_params'] / 1e9:.2f} B parameters active "
            "(all experts are loaded)",
        )
    if model["n_swa"]:
        lines.insert(
            1,
            f"chunked attention: {len(model['swa_layers'])} of {model['n_layer']} layers attend within "
            f"{model['n_swa']} tokens (their KV cache is full size: llama.cpp's swa_full default)",
        )
    header = (
        "type",
        "file",
        "bpw",
        "KV",
        "compute",
        "repacked",
        "working set",
        "peak RSS",
        "fit",
        "GPU layers",
        "max ctx",
        "budget",
        "quality",
    )
    rows = []
    for r in data["types"]:
        ngl = f"{r['n_gpu_layers']}/{model['n_layer'] + 1}" if tgt["gpus"] else "-"
        rows.append(
            (
                r["type"],
                format_bytes(r["file_size"]),
                "-" if r["bpw"] is None else f"{r['bpw']:.2f}",
                format_bytes(r["kv_cache"]),
                format_bytes(r["compute_buffer"] + r["cpu_work_buffer"]),
                format_bytes(r["repack_buffer"]),
                format_bytes(r["working_set"]),
                format_bytes(r["peak_rss"]),
                fit_label(r),
                ngl,
                str(r["max_ctx"] or "-"),
                _bar(r["budget_fraction"]),
                r["hint"],
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append("")
    rec = data["recommendation"]
    if rec:
        how = {
            "gpu": "all layers on the GPU",
            "partial": f"{rec['n_gpu_layers']} layers on the GPU",
            "cpu": "on CPU",
        }
        load = ", loaded with --no-mmap" if rec["mode_switched"] else ""
        lines.append(
            f"recommended: {rec['type']} at context {rec['ctx']}, {how[rec['fit']]}{load} "
            f"(n_gpu_layers={rec['n_gpu_layers']}), working set {format_bytes(rec['working_set'])} on the host"
        )
    where = "used in place from the mapped file" if p.settings.mmap else "loaded into RAM"
    lines += [
        f"working set: what must stay in RAM: anonymous memory (repacked copies too) and the weights {where};",
        f"  a type fits when it and a margin of max({format_bytes(MARGIN_MIN)}, {MARGIN_FRACTION:.0%}) are within the "
        "budget, tightly when that is over 90 % of it",
        "peak RSS: what top shows after loading; it also counts mapped file pages the kernel can drop",
    ]
    if (
        p.settings.mmap
        and not p.settings.mlock
        and any(r["read_once"] or r["mode_switched"] for r in data["types"])
    ):
        lines.append(
            f"  with mmap the margin also keeps room for {RECLAIM_ROOM:.0%} of the repacked weights' file pages "
            "(still mapped after loading; the kernel drops them too slowly to run in less)"
            + (
                "; where that room is missing, the plan reads the file into RAM (--no-mmap)"
                if p.choose_mode
                else ""
            )
        )
    for note in tgt["assumptions"]:
        lines.append(f"assumes: {note}")
    return "\n".join(lines)


@click.command("plan")
@click.argument("src")
@target_options
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Size only these types (repeatable).")
@click.option(
    "--flash-attn",
    is_flag=True,
    help="Size for flash attention (llama-cpp-python's default is off): less compute.",
)
@click.option(
    "--imatrix",
    "has_imatrix",
    is_flag=True,
    help="Size for a conversion with an importance matrix (convert --imatrix): the types that need one "
    "(IQ1-IQ3, Q2_K_S) may be recommended, the float types are not.",
)
@memory_mode_options
@json_option
def command(
    src: str,
    target_name: str | None,
    ram: str | None,
    vram: str | None,
    gpus: int | None,
    ctx: int | None,
    types: tuple[str, ...],
    flash_attn: bool,
    has_imatrix: bool,
    mmap: bool | None,
    mlock: bool,
    as_json: bool,
) -> None:
    """Size a model for this machine or a target profile: file size, memory, GPU offload, context.

    SRC is a local checkpoint directory, a GGUF file, or a hub repo id: its cached snapshot when downloaded,
    else only its config, tokenizer and safetensors headers are read (HTTP Range requests, no weights).
    Without --target or --ram the budget is what this machine has free now (see `hubtui hw`).
    """
    from hubtui.commands._common import echo_json

    target = resolve_target(target_name, ram, vram, gpus)
    p = build_plan(
        src,
        target,
        ctx,
        types or None,
        flash_attn=flash_attn,
        mmap=mmap,
        mlock=mlock,
        has_imatrix=has_imatrix,
    )
    if types and p.source.kind == "gguf":
        click.echo(f"hubtui: warning: --type is ignored for a GGUF file: {src} is sized as it is", err=True)
    for warning in p.warnings:
        click.echo(f"hubtui: warning: {warning}", err=True)
    if p.source.missing_kernels:
        kernels = sorted({t for ts in p.source.missing_kernels.values() for t in ts})
        click.echo(
            f"hubtui: warning: {', '.join(p.source.missing_kernels)}: sized but never recommended: this build "
            f"has no kernel for {', '.join(kernels)}",
            err=True,
        )
    if as_json:
        echo_json(p.to_dict())
    else:
        click.echo(render(p))
