"""`hubtui chat`."""

from __future__ import annotations

import click

from hubtui.commands._common import (
    gpu_layers_option,
    lora_option,
    lora_scale_option,
    memory_mode_options,
    parse_gpu_layers,
    seed_option,
    temperature_option,
)
from hubtui.runner.formats import FALLBACK_TEMPLATES


@click.command("chat")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--system", "system", help="System prompt.")
@click.option(
    "--ctx", "n_ctx", type=click.IntRange(min=128), help="Context size (default: the model's, at most 4096)."
)
@temperature_option
@click.option(
    "--max-tokens", type=click.IntRange(min=1), default=512, show_default=True, help="Longest reply."
)
@seed_option
@gpu_layers_option
@click.option(
    "--format",
    "chat_format",
    type=click.Choice(sorted(FALLBACK_TEMPLATES)),
    help="Use this named chat format instead of the model's own template.",
)
@click.option("--no-stats", is_flag=True, help="Do not print per-reply token counts and speed.")
@lora_option
@lora_scale_option
@memory_mode_options
def command(
    file: str,
    system: str | None,
    n_ctx: int | None,
    temperature: float,
    max_tokens: int,
    seed: int | None,
    gpu_layers: str,
    chat_format: str | None,
    no_stats: bool,
    lora: str | None,
    lora_scale: float,
    mmap: bool | None,
    mlock: bool,
) -> None:
    """Chat with a GGUF in the terminal using its own chat template.

    Reads one message per line from stdin (scripts can pipe them in); replies go to stdout,
    prompts, notices and stats to stderr. Commands: /reset, /system TEXT, /save FILE, /help, /quit.
    Ctrl-C stops the current reply without ending the session.
    """
    import sys

    from hubtui.runner.chat import ChatEngine, load_model
    from hubtui.runner.repl import run_repl

    llm = load_model(
        file,
        n_ctx=n_ctx,
        gpu_layers=parse_gpu_layers(gpu_layers),
        lora=lora,
        lora_scale=lora_scale,
        mmap=mmap,
        mlock=mlock,
    )
    engine = ChatEngine(
        llm,
        system=system,
        temperature=temperature,
        max_tokens=max_tokens,
        chat_format=chat_format,
        seed=seed,
        model_path=file,
    )
    try:
        rc = run_repl(
            engine, sys.stdin, sys.stdout, sys.stderr, interactive=sys.stdin.isatty(), stats=not no_stats
        )
    finally:
        engine.close()
    sys.exit(rc)
