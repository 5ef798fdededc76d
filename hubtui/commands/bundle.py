"""`hubtui bundle`."""

from __future__ import annotations

import click

from hubtui.commands._common import echo_json, json_option


@click.command("bundle")
@click.argument("path", type=click.Path())
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder to create (must not exist or be empty).",
)
@click.option(
    "--target",
    help="Target profile to plan context and memory for (see `hubtui plan --help`); default laptop-8g.",
)
@click.option("--verify", is_flag=True, help="PATH is a bundle folder: re-check its SHA256SUMS.")
@json_option
def command(path: str, out_dir: str | None, target: str | None, verify: bool, as_json: bool) -> None:
    """Make a field bundle: the GGUF, checksums, smoke report, Ollama Modelfile, README and a standalone chat.

    \b
    hubtui bundle FILE.gguf -o DIR [--target PROFILE]
    hubtui bundle --verify DIR
    """
    import sys

    from hubtui.errors import HubtuiError

    if verify:
        from hubtui.runner.bundle import verify_bundle

        result = verify_bundle(path)
        if as_json:
            echo_json(result)
        else:
            for name, state in result["files"].items():
                click.echo(f"{name}: {'OK' if state == 'ok' else state.upper()}")
            for name in result["extra"]:
                click.echo(f"{name}: not in SHA256SUMS (ignored)")
        if not result["ok"]:
            bad = [f"{n} {s}" for n, s in result["files"].items() if s != "ok"]
            if as_json:
                sys.exit(1)
            raise HubtuiError(f"{path}: bundle verification failed: {', '.join(bad)}")
        return
    if out_dir is None:
        raise click.UsageError("give the bundle folder with -o DIR (or use --verify DIR)")
    from hubtui.runner.bundle import build_bundle

    def progress(stage: str, message: str) -> None:
        if not as_json:
            click.echo(f"  {stage}: {message}", err=True)

    result = build_bundle(path, out_dir, target=target, progress=progress)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"bundle written to {result['path']} (smoke test: {result['verdict']})")
        for name in result["files"]:
            click.echo(f"  {name}")
