"""`hubtui plan`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("plan", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Size a model for this machine or a target profile: file size, memory, GPU offload, context."""
    not_implemented("plan")
