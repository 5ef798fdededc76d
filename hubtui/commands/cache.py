"""`hubtui cache ls|rm`."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option, not_implemented


@click.group("cache")
def command() -> None:
    """List or delete cached checkpoints and GGUF files."""


@command.command("ls")
@json_option
def ls(as_json: bool) -> None:
    """List cached repos and GGUF files with sizes and incomplete downloads."""
    not_implemented("cache ls")


@command.command("rm")
@click.argument("target")
def rm(target: str) -> None:
    """Delete a cached repo or file and show the space freed."""
    not_implemented("cache rm")
