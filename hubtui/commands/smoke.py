"""`hubtui smoke`."""

from __future__ import annotations

import click

from hubtui.commands._common import echo_json, gpu_layers_option, json_option, parse_gpu_layers


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
    type=click.Path(dir_okay=False, exists=True),
    help="Reference GGUF (say the F16 conversion): perplexity ratio and KL divergence against it.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds before a hung load or run is stopped.",
)
@json_option
def command(
    file: str, n_ctx: int, gpu_layers: str, baseline: str | None, timeout: float, as_json: bool
) -> None:
    """Smoke-test a GGUF: load, tokenise, generate, perplexity, speed; prints a verdict.

    Exit status 0 for pass and warn, 1 for fail.
    """
    import sys

    from hubtui.runner.smoke import run_smoke
    from hubtui.runner.smoke_report import render_text

    ngl = parse_gpu_layers(gpu_layers)

    def progress(stage: str, message: str) -> None:
        if not as_json:
            click.echo(f"  {stage}: {message}", err=True)

    report = run_smoke(
        file, n_ctx=n_ctx, gpu_layers=ngl, baseline=baseline, timeout=timeout, on_progress=progress
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(render_text(report))
    sys.exit(report.exit_code)
