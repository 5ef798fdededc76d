"""`hubtui inspect`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("inspect", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Show a GGUF file's architecture, types, size, context and tokenizer."""
    not_implemented("inspect")
