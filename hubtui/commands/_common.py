"""Helpers shared by the subcommands."""

from __future__ import annotations

import json
from typing import Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout."
)


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
