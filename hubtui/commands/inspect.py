"""`hubtui inspect`: what a GGUF file holds, read from its header only."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@json_option
def command(file: str, as_json: bool) -> None:
    """Show a GGUF file's architecture, types, size, context and tokenizer."""
    from hubtui.commands._common import echo_json
    from hubtui.formatting import aligned, inspect_rows
    from quant.gguf_file import read_gguf_summary

    summary = read_gguf_summary(file)
    if as_json:
        echo_json(summary.to_dict())
        return
    click.echo(aligned(inspect_rows(summary)))
