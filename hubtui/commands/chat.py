"""`hubtui chat`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("chat", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Chat with a GGUF in the terminal using its own chat template."""
    not_implemented("chat")
