"""`hubtui hw`: the RAM, GPUs and container limits that sizing works from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hubtui.commands._common import json_option

if TYPE_CHECKING:
    from quant.hardware import Hardware


def gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def _llama_offload_probe():
    """llama-cpp-python's own answer, or None when it cannot be imported."""
    try:
        import llama_cpp
    except Exception:  # a broken install must not stop `hw`
        return None
    return llama_cpp.llama_supports_gpu_offload


def detect_machine() -> Hardware:
    """This machine as sizing sees it: quant's probes plus llama-cpp-python's answer on GPU offload."""
    from quant.hardware import Probes, detect_hardware

    return detect_hardware(Probes(gpu_offload=_llama_offload_probe()))


@click.command("hw")
@json_option
def command(as_json: bool) -> None:
    """Show the RAM, GPUs and container limits that sizing uses."""
    from hubtui.commands._common import echo_json

    hw = detect_machine()
    if as_json:
        echo_json(hw.to_dict())
        return
    ram = f"{gib(hw.ram_available)} available of {gib(hw.ram_total)}"
    if hw.cgroup is not None:
        ram += f" (cgroup v{hw.cgroup.version} limit {gib(hw.cgroup.limit)} at {hw.cgroup.path}; host {gib(hw.host_ram_total)})"
    click.echo(f"system    {hw.system} {hw.machine}")
    click.echo(f"RAM       {ram}")
    click.echo(f"swap      {gib(hw.swap_total)} (not counted)")
    if not hw.gpus:
        click.echo("GPUs      none")
    for gpu in hw.gpus:
        kind = (
            " integrated, counted as RAM" if gpu.integrated else (" unified with RAM" if gpu.unified else "")
        )
        click.echo(
            f"GPU {gpu.index}     {gpu.vendor} {gpu.name}: {gib(gpu.free)} free of {gib(gpu.total)}"
            f" [{gpu.source}{';' if kind else ''}{kind}]"
        )
    offload = {True: "yes", False: "no (CPU-only build)", None: "unknown (llama-cpp-python not importable)"}
    click.echo(f"offload   llama-cpp-python GPU offload: {offload[hw.gpu_offload]}")
    for note in hw.notes:
        click.echo(f"note      {note}")
