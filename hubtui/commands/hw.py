"""`hubtui hw`: the RAM, GPUs and container limits that sizing works from."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option
from hubtui.runner.machine import detect_machine


@click.command("hw")
@json_option
def command(as_json: bool) -> None:
    """Show the RAM, GPUs and container limits that sizing uses."""
    from hubtui.commands._common import echo_json
    from hubtui.formatting import hardware_rows

    hw = detect_machine()
    if as_json:
        echo_json(hw.to_dict())
        return
    click.echo("\n".join(f"{key:<9} {value}" for key, value in hardware_rows(hw)))
