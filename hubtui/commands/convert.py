"""`hubtui convert`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("convert", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Convert a Hugging Face safetensors checkpoint into a GGUF file (Q4_K_M, Q8_0, ...)."""
    not_implemented("convert")
