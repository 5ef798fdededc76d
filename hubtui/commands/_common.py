"""Helpers shared by the subcommands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout."
)


def checkpoint_source(src: Path) -> Path:
    """SRC of convert/plan/bundle: a local path, or a downloaded repo id as its cached snapshot.

    The rule is `hubtui.hub.snapshots.find_snapshot`, the one the app uses; a note on stderr says when a
    snapshot other than the one refs/main names is taken.
    """
    from hubtui.hub.snapshots import resolve_checkpoint

    return resolve_checkpoint(src, note=lambda text: click.echo(f"hubtui: note: {text}", err=True))


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


temperature_option = click.option(
    "--temp",
    "temperature",
    type=click.FloatRange(min=0),
    default=0.7,
    show_default=True,
    help="Sampling temperature (0 = greedy).",
)
seed_option = click.option("--seed", type=int, help="Sampling seed, for repeatable replies.")
gpu_layers_option = click.option(
    "--gpu-layers",
    default="auto",
    show_default=True,
    help="Layers to offload to the GPU: a number, -1 for all, or 'auto'.",
)


def parse_gpu_layers(value: str) -> int | str:
    """--gpu-layers as the runner takes it; parsed in the command body so a bad value is a usage error."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'auto'") from None
    if n < -1:
        raise click.BadParameter(f"{n} must be -1 (all), 0 or more, or 'auto'")
    return n


lora_option = click.option(
    "--lora",
    type=click.Path(dir_okay=False, exists=True),
    help="A LoRA adapter GGUF (hubtui convert ADAPTER --base ...) applied on top of the model at run time.",
)
lora_scale_option = click.option(
    "--lora-scale", type=float, default=1.0, show_default=True, help="Scale of the --lora adapter."
)


lora_scales_option = click.option(
    "--lora-scale",
    "lora_scales",
    multiple=True,
    type=float,
    help="Scale of each --lora, in order (default 1.0; one value applies to all).",
)


def lora_merges(loras: tuple[Path, ...], scales: tuple[float, ...]) -> list[tuple[Path, float]]:
    """(adapter folder, scale) of each --lora; --lora-scale gives one scale per adapter, or one for all."""
    if scales and not loras:
        raise click.UsageError("--lora-scale needs --lora")
    if len(scales) > 1 and len(scales) != len(loras):
        raise click.UsageError(f"{len(scales)} --lora-scale values for {len(loras)} --lora adapters")
    each = list(scales) if len(scales) > 1 else [scales[0] if scales else 1.0] * len(loras)
    return list(zip(loras, each, strict=True))


def memory_mode_options(func):
    """--mmap/--no-mmap/--mlock, shared by `plan` (sizes for the mode), `smoke` and `chat` (load in it).

    Neither --mmap nor --no-mmap (nor --mlock): the plan's choice (quant.sizing.plan.fit), the file mapped
    unless only reading it into RAM fits."""
    func = click.option(
        "--mlock",
        is_flag=True,
        help="Pin the model in RAM (llama.cpp --mlock): it is never paged out, and with mmap the whole "
        "mapped span of the file stays resident.",
    )(func)
    return click.option(
        "--mmap/--no-mmap",
        "mmap",
        default=None,
        help="Map the file (llama.cpp's default) or read the weights into RAM (--no-mmap: nothing can be "
        "paged back to the file, so all of it must fit). Default: map it, unless the plan for this machine "
        "finds that only reading it fits (the file pages of repacked weights need room too).",
    )(func)
