"""`hubtui download`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("download", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Download a checkpoint (resumable, verified) into the Hugging Face cache or a folder."""
    not_implemented("download")
