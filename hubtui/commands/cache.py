"""`hubtui cache ls|rm`: what is in the Hugging Face cache, and deleting it (works offline)."""

from __future__ import annotations

import datetime as dt

import click

from hubtui.commands._common import echo_json, json_option


@click.group("cache")
def command() -> None:
    """List or delete cached checkpoints and GGUF files."""


@command.command("ls")
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="HF cache to list (default: HF_HUB_CACHE/HF_HOME)."
)
@json_option
def ls(cache_dir: str | None, as_json: bool) -> None:
    """List cached repos and GGUF files with sizes and incomplete downloads."""
    from hubtui.hub import list_cache
    from hubtui.hub.download import format_bytes

    report = list_cache(cache_dir)
    if as_json:
        echo_json(report.to_json())
        return
    if not report.repos and not report.incomplete:
        click.echo(f"cache {report.cache_dir} is empty")
        return
    header = ("REPO", "SIZE", "FILES", "LAST USED", "REFS")
    rows = [
        (
            r.repo_id,
            format_bytes(r.size),
            str(r.nb_files),
            dt.datetime.fromtimestamp(r.last_accessed).strftime("%Y-%m-%d %H:%M"),
            ",".join(r.refs) or "-",
        )
        for r in report.repos
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    for r in report.repos:
        for g in r.gguf_files:
            click.echo(f"gguf        {r.repo_id}/{g.name}  {g.quant or '?'}  {format_bytes(g.size)}")
    for i in report.incomplete:
        click.echo(
            f"incomplete  {i.repo_id or '?'}  {format_bytes(i.size)}  {i.path}  (resumes on next download)"
        )
    click.echo(
        f"total {format_bytes(report.size)} in {len(report.repos)} repos"
        + (f", {format_bytes(report.incomplete_size)} incomplete" if report.incomplete else "")
        + f" ({report.cache_dir})"
    )


@command.command("rm")
@click.argument("target")
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="HF cache (default: HF_HUB_CACHE/HF_HOME)."
)
@json_option
def rm(target: str, cache_dir: str | None, as_json: bool) -> None:
    """Delete a cached repo (by id) or a file (by path) and show the space freed."""
    from hubtui.hub import remove
    from hubtui.hub.download import format_bytes

    removal = remove(target, cache_dir)
    if as_json:
        echo_json(
            {"target": removal.target, "paths": [str(p) for p in removal.paths], "freed": removal.freed}
        )
        return
    click.echo(f"removed {target}: freed {format_bytes(removal.freed)}")
