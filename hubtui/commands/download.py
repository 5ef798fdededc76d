"""`hubtui download`: resumable, verified download into the Hugging Face cache or a folder."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

import click

from hubtui.commands._common import echo_json, json_option

if TYPE_CHECKING:
    from hubtui.hub.progress import DownloadProgress


class ProgressBar:
    """One self-rewriting line on a terminal; on a pipe or log, a line per finished file and every 10 s."""

    def __init__(self, stream=None, tty: bool | None = None, width: int = 28) -> None:  # noqa: ANN001
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self._last_line = 0.0
        self._lock = threading.Lock()
        self._drawn = False

    def __call__(self, p: DownloadProgress) -> None:
        from quant.units import format_bytes

        with self._lock:
            eta = f"{int(p.eta) // 60}:{int(p.eta) % 60:02d}" if p.eta is not None else "--:--"
            rate = f"{format_bytes(p.rate)}/s" if p.rate else "-"
            line = (
                f"{p.fraction * 100:5.1f}% {format_bytes(p.done)}/{format_bytes(p.total)} "
                f"{rate} ETA {eta} [{p.files_done}/{p.files_total}] {p.file.name} {p.file.state}"
            )
            if self.tty:
                filled = int(self.width * p.fraction)
                bar = "#" * filled + "-" * (self.width - filled)
                self.stream.write(f"\r\x1b[2K[{bar}] {line}")
                self._drawn = True
            else:
                now = time.monotonic()
                if p.file.state in ("done", "cached", "failed") or now - self._last_line >= 10:
                    self._last_line = now
                    self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


@click.command("download")
@click.argument("repo_id")
@click.option("--revision", help="Branch, tag or commit (default: main).")
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable).")
@click.option(
    "--gguf",
    "gguf_type",
    metavar="TYPE",
    help="Download the repo's published GGUF of this type (e.g. Q4_K_M).",
)
@click.option(
    "--local-dir", type=click.Path(file_okay=False), help="Put the files here instead of the HF cache."
)
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="HF cache to use (default: HF_HUB_CACHE/HF_HOME)."
)
@click.option("--endpoint", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co).")
@click.option(
    "--workers", type=click.IntRange(1, 32), default=4, show_default=True, help="Files fetched at once."
)
@click.option(
    "--connections",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Parallel range requests per file above 256 MiB (1: one stream).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
def command(
    repo_id: str,
    revision: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    gguf_type: str | None,
    local_dir: str | None,
    cache_dir: str | None,
    endpoint: str | None,
    workers: int,
    connections: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """Download a checkpoint (resumable, verified) into the Hugging Face cache or a folder.

    By default only what conversion needs: config, tokenizer, model card and one copy of the
    safetensors weights (never pickles). Interrupted downloads resume where they stopped.
    """
    from hubtui.hub.download import download
    from hubtui.signals import Terminated
    from quant.units import format_bytes

    bar = None if quiet else ProgressBar()
    try:
        result = download(
            repo_id,
            revision,
            include=list(include) or None,
            exclude=list(exclude) or None,
            gguf=gguf_type,
            local_dir=local_dir,
            cache_dir=cache_dir,
            endpoint=endpoint,
            progress=bar,
            max_workers=workers,
            connections=connections,
        )
    except (KeyboardInterrupt, Terminated) as exc:
        if bar is not None:
            bar.close()
        how, code = (
            (f"stopped by {exc.name}", exc.exit_code) if isinstance(exc, Terminated) else ("interrupted", 130)
        )
        click.echo(f"hubtui: download {how}; run the same command again to resume", err=True)
        sys.exit(code)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        echo_json(
            {
                "repo_id": result.repo_id,
                "revision": result.revision,
                "commit": result.commit,
                "path": str(result.root),
                "total_bytes": result.total_bytes,
                "fetched_bytes": result.fetched_bytes,
                "files": [
                    {
                        "name": f.name,
                        "path": str(f.path),
                        "size": f.size,
                        "status": f.status,
                        "resumed_from": f.resumed_from,
                    }
                    for f in result.files
                ],
            }
        )
        return
    for f in result.files:
        click.echo(f"{f.status:>10}  {format_bytes(f.size):>9}  {f.name}")
    click.echo(
        f"{result.repo_id} @ {result.commit[:12]}: {len(result.files)} files, {format_bytes(result.total_bytes)} "
        f"({format_bytes(result.fetched_bytes)} fetched) in {result.root}"
    )
