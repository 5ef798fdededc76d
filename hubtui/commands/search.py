"""`hubtui search`: find Llama and Mistral checkpoints on the hub (or show one repo with --details)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hubtui.commands._common import echo_json, json_option
from quant.units import format_count, parse_count

if TYPE_CHECKING:
    from hubtui.hub.details import RepoDetails


def _count(text: str | None) -> float | None:
    """--min-params/--max-params: a parameter count, or a usage error naming the value."""
    try:
        return parse_count(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("search")
@click.argument("query", required=False)
@click.option(
    "--family", type=click.Choice(["llama", "mistral"]), help="Official org first, then community repos."
)
@click.option(
    "--sort",
    type=click.Choice(["downloads", "likes", "trending", "updated"]),
    default="downloads",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--min-params", help="Smallest parameter count, e.g. 1B.")
@click.option("--max-params", help="Largest parameter count, e.g. 8B.")
@click.option("--gated/--not-gated", default=None, help="Only gated (or only open) repos.")
@click.option("--safetensors", "has_safetensors", is_flag=True, help="Only repos with safetensors weights.")
@click.option("--gguf", "has_gguf", is_flag=True, help="Only repos publishing GGUF files.")
@click.option(
    "--details", "show_details", is_flag=True, help="Treat QUERY as a repo id and show its details."
)
@click.option("--revision", help="Revision for --details.")
@click.option("--endpoint", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co).")
@json_option
def command(
    query: str | None,
    family: str | None,
    sort: str,
    limit: int,
    min_params: str | None,
    max_params: str | None,
    gated: bool | None,
    has_safetensors: bool,
    has_gguf: bool,
    show_details: bool,
    revision: str | None,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Search the Hugging Face Hub for Llama and Mistral checkpoints."""
    from hubtui.hub.details import details
    from hubtui.hub.search import SearchFilters, search

    if show_details:
        if not query:
            raise click.UsageError(
                "--details needs a repo id, e.g. hubtui search meta-llama/Llama-3.2-1B --details"
            )
        d = details(query, revision, endpoint=endpoint)
        if as_json:
            echo_json(d.to_json())
        else:
            _print_details(d)
        return
    filters = SearchFilters(_count(min_params), _count(max_params), gated, has_safetensors, has_gguf)
    results = search(query, family=family, sort=sort, limit=limit, filters=filters, endpoint=endpoint)
    if as_json:
        echo_json({"query": query, "family": family, "sort": sort, "results": [r.to_json() for r in results]})
        return
    if not results:
        click.echo("no matching repos")
        return
    rows: list[tuple[str, ...]] = [
        (
            r.id + (" *" if r.official else ""),
            format_count(r.parameters),
            f"{r.downloads:,}",
            f"{r.likes:,}",
            r.last_modified.date().isoformat() if r.last_modified else "-",
            "gated" if r.gated else "open",
            r.license or "-",
            ",".join(
                x
                for x in (
                    "lora" if r.is_adapter else "",
                    "safetensors" if r.has_safetensors else "",
                    "gguf" if r.has_gguf else "",
                )
                if x
            )
            or "-",
        )
        for r in results
    ]
    header: tuple[str, ...] = (
        "REPO",
        "PARAMS",
        "DOWNLOADS",
        "LIKES",
        "UPDATED",
        "ACCESS",
        "LICENSE",
        "FORMATS",
    )
    if any(r.is_adapter for r in results):  # adapters run on a base model: name it
        header += ("BASE",)
        rows = [
            (*row, r.base_model or "-" if r.is_adapter else "") for row, r in zip(rows, results, strict=True)
        ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    if any(r.official for r in results):
        click.echo("* official")


def _print_details(d: RepoDetails) -> None:
    from quant.units import format_bytes

    click.echo(f"{d.repo_id} @ {d.revision} ({d.commit[:12]})")
    click.echo(f"  licence:    {d.license or '-'}")
    click.echo(f"  access:     {d.access_note}")
    click.echo(f"  layout:     {d.layout.note}")
    if d.base_model or d.adapter is not None:
        click.echo(f"  base model: {d.base_model or '- (not named in the card)'}")
    if d.adapter is not None:
        a = d.adapter
        targets = a.get("target_modules")
        targets = ", ".join(targets) if isinstance(targets, list) else targets
        click.echo(
            f"  adapter:    {a.get('peft_type', 'LORA')} r={a.get('r', '?')} alpha={a.get('lora_alpha', '?')}"
            + (" rsLoRA" if a.get("use_rslora") else "")
            + (" DoRA (not supported by llama.cpp)" if a.get("use_dora") else "")
            + (f" on {targets}" if targets else "")
        )
    dtypes = ", ".join(f"{k} {format_count(v)}" for k, v in d.dtypes.items())
    click.echo(f"  parameters: {format_count(d.parameters)}" + (f" ({dtypes})" if dtypes else ""))
    if d.experts:
        click.echo(
            f"  experts:    {d.experts}, {d.experts_used} per token: "
            f"{format_count(d.active_parameters)} parameters active"
        )
    click.echo(f"  files:      {len(d.files)}, {format_bytes(d.total_size)}")
    for f in d.files:
        click.echo(f"    {f.name}  {format_bytes(f.size or 0)}")
    for g in d.gguf_files:
        click.echo(f"  gguf:       {g.name}  {g.quant or '?'}  {format_bytes(g.size or 0)}")
