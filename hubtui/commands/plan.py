"""`hubtui plan`: which GGUF of a model fits a machine or a target profile, and how to load it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hubtui.commands._common import json_option

if TYPE_CHECKING:
    from quant.plan import Plan
    from quant.profiles import Target

BAR_WIDTH = 20
FIT_LABELS = {
    "gpu": "full GPU",
    "partial": "partial GPU",
    "cpu": "CPU only",
    "slow": "pages from disk",
    "none": "does not fit",
}


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
    from quant.profiles import TargetError, custom_target, get_profile, machine_target

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
    from hubtui.commands.hw import detect_machine

    return machine_target(detect_machine())


def build_plan(
    src: str,
    target: Target,
    ctx: int | None,
    types: tuple[str, ...] | None = None,
    *,
    flash_attn: bool = False,
) -> Plan:
    from quant.convert.mixture import ALIASES, FILE_TYPES
    from quant.plan import DEFAULT_CTX, DEFAULT_TYPES, PlanError, plan

    if types:
        names = [ALIASES.get(t.upper(), t.upper()) for t in types]
        bad = [t for t, n in zip(types, names, strict=True) if n not in FILE_TYPES]
        if bad:
            raise click.BadParameter(
                f"unknown type {bad[0]!r}; choose from {', '.join(FILE_TYPES)}", param_hint="--type"
            )
        types = tuple(dict.fromkeys(names))
    from hubtui.commands.convert import resolve_source
    from quant.memory import RunSettings

    settings = RunSettings(flash_attn=flash_attn, repack_types=target.repack_types)
    from hubtui.errors import HubtuiError

    with tempfile.TemporaryDirectory(prefix="hubtui-plan-") as tmp:
        try:
            path = resolve_source(Path(src))  # a hub repo id already downloaded sizes its cached snapshot
        except HubtuiError:
            path = headers_only_checkpoint(src, Path(tmp))  # else read only headers and small files
        try:
            return plan(path, target, ctx or DEFAULT_CTX, types or DEFAULT_TYPES, settings=settings)
        except PlanError as exc:
            raise click.BadParameter(str(exc), param_hint="SRC") from None


def headers_only_checkpoint(repo_id: str, dest: Path, endpoint: str | None = None) -> Path:
    """A stand-in checkpoint of a hub repo: its config, tokenizer and card, and each safetensors shard as a
    sparse file holding only the real header (read with HTTP Range requests), so no weight is downloaded."""
    import json
    import struct

    from hubtui.hub.client import connect
    from hubtui.hub.details import fetch_small
    from hubtui.hub.files import select_for_conversion

    ctx = connect(endpoint, need_network="sizing a hub repo")
    info = ctx.call(lambda: ctx.api.model_info(repo_id, files_metadata=True), repo_id=repo_id)
    commit = info.sha or "main"
    names = select_for_conversion([s.rfilename for s in info.siblings or []], repo_id)
    out = dest / repo_id.split("/")[-1]  # the converter names the model after its directory
    out.mkdir(parents=True)
    for name in names:
        if name.endswith(".safetensors"):
            meta = ctx.call(
                lambda n=name: ctx.api.parse_safetensors_file_metadata(repo_id, n, revision=commit),
                repo_id=repo_id,
                filename=name,
            )
            header: dict = {"__metadata__": meta.metadata} if meta.metadata else {}
            end = 0
            for tname, t in meta.tensors.items():
                header[tname] = {
                    "dtype": t.dtype,
                    "shape": list(t.shape),
                    "data_offsets": list(t.data_offsets),
                }
                end = max(end, t.data_offsets[1])
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            with (out / name).open("wb") as fh:
                fh.write(struct.pack("<Q", len(raw)) + raw)
                fh.truncate(8 + len(raw) + end)  # sparse: the weights' bytes are never fetched
        else:
            (out / name).write_bytes(fetch_small(ctx, repo_id, commit, name))
    return out


def _mib(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    return f"{n / (1 << 20):.1f} MiB"


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
    data = p.to_dict()
    model, tgt = data["model"], data["target"]
    lines = [
        f"{p.source.name} ({p.source.kind}): {model['n_layer']} layers, trained context {model['n_ctx_train']}, "
        f"KV cache {model['kv_bytes_per_token'] / 1024:.1f} KiB/token (f16)",
        f"target: {tgt['name']}: {tgt['description']}"
        + (f"; usable RAM {_mib(tgt['ram'])}" if tgt["name"] != "this machine" else "")
        + "".join(f", GPU{i} {_mib(g)}" for i, g in enumerate(tgt["gpus"])),
        f"context {p.settings.n_ctx}, n_batch {p.settings.n_batch}, flash attention "
        f"{'on' if p.settings.flash_attn else 'off'}",
        "",
    ]
    header = (
        "type",
        "file",
        "weights",
        "KV",
        "compute",
        "output",
        "total",
        "fit",
        "GPU layers",
        "max ctx",
        "budget",
    )
    rows = []
    for r in data["types"]:
        ngl = f"{r['n_gpu_layers']}/{model['n_layer'] + 1}" if tgt["gpus"] else "-"
        rows.append(
            (
                r["type"],
                _mib(r["file_size"]),
                _mib(r["weights"]),
                _mib(r["kv_cache"]),
                _mib(r["compute_buffer"] + r["cpu_work_buffer"]),
                _mib(r["output_buffer"]),
                _mib(r["total"]),
                FIT_LABELS[r["fit"]],
                ngl,
                str(r["max_ctx"] or "-"),
                _bar(r["budget_fraction"]),
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
        lines.append(
            f"recommended: {rec['type']} at context {rec['ctx']}, {how[rec['fit']]} "
            f"(n_gpu_layers={rec['n_gpu_layers']}), about {_mib(rec['total'])} in all"
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
    as_json: bool,
) -> None:
    """Size a model for this machine or a target profile: file size, memory, GPU offload, context.

    SRC is a local checkpoint directory, a GGUF file, or a hub repo id: its cached snapshot when downloaded,
    else only its config, tokenizer and safetensors headers are read (HTTP Range requests, no weights).
    Without --target or --ram the budget is what this machine has free now (see `hubtui hw`).
    """
    from hubtui.commands._common import echo_json

    target = resolve_target(target_name, ram, vram, gpus)
    p = build_plan(src, target, ctx, types or None, flash_attn=flash_attn)
    if types and p.source.kind == "gguf":
        click.echo(f"hubtui: warning: --type is ignored for a GGUF file: {src} is sized as it is", err=True)
    for warning in p.warnings:
        click.echo(f"hubtui: warning: {warning}", err=True)
    if as_json:
        echo_json(p.to_dict())
    else:
        click.echo(render(p))
