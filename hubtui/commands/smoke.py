"""`hubtui smoke`."""

from __future__ import annotations

import click

from hubtui.commands._common import (
    echo_json,
    gpu_layers_option,
    json_option,
    lora_option,
    lora_scale_option,
    memory_mode_options,
    parse_gpu_layers,
)


@click.command("smoke")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--ctx",
    "n_ctx",
    type=click.IntRange(min=128),
    default=1024,
    show_default=True,
    help="Context size to load with.",
)
@gpu_layers_option
@click.option(
    "--baseline",
    is_flag=False,
    flag_value="",
    type=click.Path(dir_okay=False),
    help="Reference GGUF (say the F16 conversion): perplexity ratio and KL divergence against it. "
    "With --lora and no FILE: the same model without the adapter.",
)
@lora_option
@lora_scale_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds before a hung load or run is stopped.",
)
@memory_mode_options
@json_option
def command(
    file: str,
    n_ctx: int,
    gpu_layers: str,
    baseline: str | None,
    lora: str | None,
    lora_scale: float,
    timeout: float,
    mmap: bool | None,
    mlock: bool,
    as_json: bool,
) -> None:
    """Smoke-test a GGUF: load, tokenise, generate, perplexity, speed; prints a verdict.

    Exit status 0 for pass and warn, 1 for fail.
    """
    import os
    import sys

    from hubtui.runner.smoke import run_smoke
    from hubtui.runner.smoke_report import render_text

    ngl = parse_gpu_layers(gpu_layers)
    if baseline == "":
        if lora is None:
            raise click.BadParameter(
                "give a FILE (a bare --baseline compares with and without --lora)", param_hint="--baseline"
            )
        baseline = file
    elif baseline is not None and not os.path.isfile(baseline):
        raise click.BadParameter(f"{baseline}: no such file", param_hint="--baseline")

    def progress(stage: str, message: str) -> None:
        if not as_json:
            click.echo(f"  {stage}: {message}", err=True)

    report = run_smoke(
        file,
        n_ctx=n_ctx,
        gpu_layers=ngl,
        baseline=baseline,
        timeout=timeout,
        on_progress=progress,
        lora=lora,
        lora_scale=lora_scale,
        mmap=mmap,
        mlock=mlock,
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(render_text(report))
    sys.exit(report.exit_code)
