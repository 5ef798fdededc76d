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
    """List cached repos and GGUF files with sizes, LoRA adapters with their base, and incomplete downloads."""
    from hubtui.hub import list_cache
    from quant.units import format_bytes

    report = list_cache(cache_dir)
    if as_json:
        echo_json(report.to_json())
        return
    if not report.repos and not report.incomplete and not report.stale:
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
        if r.adapter is not None:
            a = r.adapter
            rank = "?" if a.r is None else a.r
            alpha = "?" if a.alpha is None else f"{a.alpha:g}"
            click.echo(
                f"adapter     {r.repo_id}  PEFT LoRA r={rank} alpha={alpha}  base {a.base or '? (not named)'}"
            )
        for g in r.gguf_files:
            kind = f"LoRA adapter, base {g.base or '? (not named)'}" if g.adapter else g.quant or "?"
            click.echo(f"gguf        {r.repo_id}/{g.name}  {kind}  {format_bytes(g.size)}")
    for i in report.incomplete:
        click.echo(
            f"incomplete  {i.repo_id or '?'}  {format_bytes(i.size)}  {i.path}  (resumes on next download)"
        )
    for s in report.stale:
        click.echo(
            f"stale       {format_bytes(s.size)}  {s.path}  (left by a stopped hubtui; cache rm --stale)"
        )
    click.echo(
        f"total {format_bytes(report.size)} in {len(report.repos)} repos"
        + (f", {format_bytes(report.incomplete_size)} incomplete" if report.incomplete else "")
        + (f", {format_bytes(report.stale_size)} stale" if report.stale else "")
        + f" ({report.cache_dir})"
    )


@command.command("rm")
@click.argument("target", required=False)
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="HF cache (default: HF_HUB_CACHE/HF_HOME)."
)
@click.option("--stale", is_flag=True, help="Delete the temporaries a stopped hubtui left (see `cache ls`).")
@json_option
def rm(target: str | None, cache_dir: str | None, stale: bool, as_json: bool) -> None:
    """Delete a cached repo (by id) or a file (by path), or --stale temporaries, and show the space freed."""
    from hubtui.hub import remove
    from hubtui.hub.cache import remove_stale
    from quant.units import format_bytes

    if (target is None) == (not stale):
        raise click.UsageError("give either TARGET (a repo id or a path) or --stale")
    removal = remove_stale() if stale or target is None else remove(target, cache_dir)
    if as_json:
        echo_json(
            {"target": removal.target, "paths": [str(p) for p in removal.paths], "freed": removal.freed}
        )
        return
    if stale:
        for path in removal.paths:
            click.echo(f"removed {path}")
    click.echo(f"removed {removal.target}: freed {format_bytes(removal.freed)}")
