"""`hubtui inspect`: what a GGUF file holds, read from its header only."""

from __future__ import annotations

import click

from hubtui.commands._common import json_option


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _params(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@json_option
def command(file: str, as_json: bool) -> None:
    """Show a GGUF file's architecture, types, size, context and tokenizer."""
    from hubtui.commands._common import echo_json
    from quant.gguf_file import read_gguf_summary

    summary = read_gguf_summary(file)
    if as_json:
        echo_json(summary.to_dict())
        return
    hp = summary.hparams
    types = ", ".join(f"{name} {count}" for name, count in summary.type_counts.items())
    specials = ", ".join(
        f"{role}={tok['id']}" + (f" {tok['text']!r}" if tok["text"] is not None else "")
        for role, tok in summary.special_tokens.items()
    )
    rows = [
        ("file", str(summary.path)),
        ("size", f"{_size(summary.file_size)} ({summary.file_size} bytes)"),
        ("architecture", summary.architecture),
        ("name", summary.name or "-"),
        ("parameters", f"{_params(summary.n_params)} ({summary.n_params})"),
        ("file type", summary.file_type or "-"),
        ("tensors", f"{len(summary.tensors)} ({types})"),
        ("context length", str(summary.context_length or "-")),
        (
            "layers / embd / heads",
            f"{hp['n_layer']} / {hp['n_embd']} / {hp['n_head']} (kv {hp['n_head_kv']}, head dim {hp['head_dim']})",
        ),
        (
            "tokenizer",
            f"{summary.tokenizer_model or '-'} (pre {summary.tokenizer_pre or '-'}), {hp['n_vocab']} tokens",
        ),
        ("special tokens", specials or "-"),
        ("chat template", "yes" if summary.chat_template is not None else "no"),
    ]
    if hp["n_expert"]:
        rows.insert(7, ("experts", f"{hp['n_expert']} ({hp['n_expert_used']} used per token)"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
