"""Helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout."
)


def not_implemented(name: str) -> None:
    """Exit with status 2 and one line on stderr for a command that later work will build."""
    click.echo(f"hubtui {name}: not implemented yet", err=True)
    sys.exit(2)


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
