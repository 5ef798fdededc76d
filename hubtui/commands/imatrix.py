"""`hubtui imatrix`: an importance matrix (llama-imatrix's GGUF) from a model and a calibration text."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from hubtui.commands._common import echo_json, json_option


class ChunkProgress:
    """A one-line bar (chunks, tokens/s, ETA) on a terminal; a plain line per tenth of the run otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_step = -1
        self.t0 = time.monotonic()

    def __call__(self, p) -> None:
        eta = "--:--" if p.eta_s is None else f"{int(p.eta_s) // 60}:{int(p.eta_s) % 60:02d}"
        if not self.tty:
            step = 10 * p.chunks_done // p.chunks_total
            if step != self.last_step or p.chunks_done == p.chunks_total:
                self.last_step = step
                self.stream.write(
                    f"chunk {p.chunks_done}/{p.chunks_total}, {p.tokens_per_s:.0f} tokens/s, ETA {eta}\n"
                )
                self.stream.flush()
            return
        width = 24
        fill = width * p.chunks_done // p.chunks_total
        line = (
            f"[{'#' * fill}{'-' * (width - fill)}] chunk {p.chunks_done}/{p.chunks_total} "
            f"{p.tokens_per_s:.0f} tokens/s ETA {eta}"
        )
        self.stream.write("\r" + line.ljust(80))
        if p.chunks_done == p.chunks_total:
            self.stream.write("\n")
        self.stream.flush()


@click.command("imatrix")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Output .gguf.")
@click.option(
    "--text",
    type=click.Path(path_type=Path),
    help="Calibration text (UTF-8). Default: the mixed prose/code/multilingual text shipped with hubtui.",
)
@click.option(
    "--ctx", "n_ctx", type=click.IntRange(min=16), default=512, show_default=True, help="Tokens per chunk."
)
@click.option(
    "--chunks", type=click.IntRange(min=1), help="At most this many chunks (default: the whole text)."
)
@click.option("--threads", type=click.IntRange(min=1), help="llama.cpp threads (default: all cores).")
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
@json_option
def command(
    src: Path,
    out: Path,
    text: Path | None,
    n_ctx: int,
    chunks: int | None,
    threads: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Compute an importance matrix for SRC (a GGUF, or a safetensors checkpoint folder) as llama-imatrix does.

    The file is llama-imatrix's GGUF format, for `llama-quantize --imatrix`. A checkpoint folder is first
    converted to a temporary GGUF, removed afterwards.
    """
    from hubtui.runner.imatrix import compute_imatrix

    result = compute_imatrix(
        src,
        out,
        text=text,
        n_ctx=n_ctx,
        chunks=chunks,
        threads=threads,
        progress=ChunkProgress(),
        force=force,
    )
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(
            f"wrote {result.path} ({result.n_entries} tensors, {result.chunks} chunks of {result.chunk_size} tokens "
            f"from {result.dataset}) in {result.seconds:.1f} s, {result.tokens_per_s:.0f} tokens/s"
        )
