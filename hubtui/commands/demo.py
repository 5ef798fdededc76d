"""`hubtui demo`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.command("demo", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
def command(args: tuple[str, ...], as_json: bool) -> None:
    """Offline demo: build SmolLM2-135M-Instruct, convert it to Q4_K_M, smoke-test it and chat."""
    not_implemented("demo")
