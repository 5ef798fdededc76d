"""`hubtui smoke`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("smoke", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Smoke-test a GGUF: load, tokenise, generate, perplexity, speed; prints a verdict."""
    not_implemented("smoke")
