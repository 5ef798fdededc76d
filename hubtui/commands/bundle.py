"""`hubtui bundle`."""

from __future__ import annotations

from pathlib import Path

import click

from hubtui.commands._common import checkpoint_source, echo_json, json_option, lora_merges, lora_scales_option
from hubtui.commands.convert import parse_type


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
@click.option(
    "--lora",
    "loras",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="With FILE.gguf: a LoRA adapter GGUF shipped beside it and applied at run time. With a CHECKPOINT "
    "folder: a PEFT adapter folder merged into the weights while converting (repeatable).",
)
@lora_scales_option
@click.option(
    "--type",
    "qtype",
    callback=parse_type,
    metavar="TYPE",
    help="With a CHECKPOINT folder: the type to convert to (default Q4_K_M).",
)
@click.option("--verify", is_flag=True, help="PATH is a bundle folder: re-check its SHA256SUMS.")
@json_option
def command(
    path: str,
    out_dir: str | None,
    target: str | None,
    loras: tuple[Path, ...],
    lora_scales: tuple[float, ...],
    qtype: str | None,
    verify: bool,
    as_json: bool,
) -> None:
    """Make a field bundle: the GGUF, checksums, smoke report, Ollama Modelfile, README and a standalone chat.

    \b
    hubtui bundle FILE.gguf -o DIR [--target PROFILE]
    hubtui bundle FILE.gguf --lora ADAPTER.gguf [--lora-scale S] -o DIR    (base + adapter)
    hubtui bundle CHECKPOINT --lora ADAPTER_DIR [--type T] -o DIR         (adapter merged while converting)
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
    from hubtui.runner.bundle import build_bundle, build_merged_bundle

    def progress(stage: str, message: str) -> None:
        if not as_json:
            click.echo(f"  {stage}: {message}", err=True)

    merges = lora_merges(loras, lora_scales)
    src = Path(path)
    if src.is_dir() or (not src.exists() and "/" in path and not path.endswith(".gguf")):
        if not loras:
            raise click.UsageError(
                "a CHECKPOINT folder is bundled with --lora ADAPTER_DIR (merged while converting)"
            )
        if bad := [str(d) for d in loras if not d.is_dir()]:
            raise click.UsageError(
                f"with a CHECKPOINT, --lora takes PEFT adapter folders, not {', '.join(bad)}"
            )
        result = build_merged_bundle(
            checkpoint_source(src),
            out_dir,
            qtype=qtype or "Q4_K_M",
            loras=merges,
            target=target,
            progress=progress,
        )
    else:
        if qtype is not None:
            raise click.UsageError("--type applies when PATH is a checkpoint folder to convert")
        if len(merges) > 1:
            raise click.UsageError("a bundle ships one LoRA adapter GGUF beside the model")
        if merges and merges[0][0].is_dir():
            raise click.UsageError(
                f"{merges[0][0]} is a folder: with FILE.gguf, --lora takes an adapter GGUF "
                "(hubtui convert ADAPTER --base BASE); to merge, bundle the CHECKPOINT folder"
            )
        lora, scale = merges[0] if merges else (None, 1.0)
        result = build_bundle(path, out_dir, target=target, progress=progress, lora=lora, lora_scale=scale)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"bundle written to {result['path']} (smoke test: {result['verdict']})")
        for name in result["files"]:
            click.echo(f"  {name}")
