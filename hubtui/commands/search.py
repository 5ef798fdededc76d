"""`hubtui search`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("search", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Search the Hugging Face Hub for Llama and Mistral checkpoints."""
    not_implemented("search")
