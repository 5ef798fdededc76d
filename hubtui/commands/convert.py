"""`hubtui convert`: a local safetensors checkpoint to GGUF (F32 ... Q4_K_S), progress on stderr."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import click

from hubtui.commands._common import echo_json, json_option
from hubtui.commands.plan import target_options

TYPE_HELP = (
    "F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_K_S (Q4_K = Q4_K_M), or auto: the type `hubtui plan` "
    "recommends for --target/--ram/--vram/--ctx (default: this machine)"
)


def parse_type(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Validate --type against the converter's file types (a usage error, exit 2, otherwise)."""
    from quant.convert import resolve_file_type
    from quant.errors import QuantError

    if value.lower() == "auto":
        return "auto"
    try:
        return resolve_file_type(value).name
    except QuantError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


class StderrProgress:
    """A one-line bar (tensor, bytes, rate, ETA) on a terminal; one plain line per tensor otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self.last_step = -1
        self.last_draw = 0.0

    def __call__(self, name: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty:  # a log line at each tenth of the work, and at the end
            step = int(10 * done / total) if total else 10
            if step != self.last_step or not name:
                self.last_step = step
                elapsed = now - self.t0
                where = f" ({name})" if name else ", done"
                self.stream.write(f"converted {_mb(done)} of {_mb(total)} in {elapsed:.1f} s{where}\n")
                self.stream.flush()
            return
        if name and now - self.last_draw < 0.1 and done < total:
            return
        self.last_draw = now
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        pct = 100 * done / total if total else 100.0
        width = 24
        fill = int(width * pct / 100)
        bar = "#" * fill + "-" * (width - fill)
        line = f"[{bar}] {pct:5.1f}% {_mb(done)}/{_mb(total)} {_mb(rate)}/s ETA {eta:4.0f}s {name[:40]}"
        self.stream.write("\r" + line.ljust(110)[:110])
        if not name:
            self.stream.write("\n")
        self.stream.flush()


def resolve_source(src: Path) -> Path:
    """A local checkpoint directory as given, or a hub repo id ("owner/name") already in the hub cache."""
    text = str(src)
    if src.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        return src
    from hubtui.errors import HubtuiError
    from hubtui.hub.download import storage_folder
    from hubtui.hub.settings import cache_dir

    storage = storage_folder(cache_dir(), text)
    ref = storage / "refs" / "main"
    snapshot = storage / "snapshots" / ref.read_text().strip() if ref.is_file() else None
    if snapshot is None or not (snapshot / "config.json").is_file():
        raise HubtuiError(
            f"{text}: not a local directory, and not in the hub cache ({cache_dir()}); "
            f"download it first with `hubtui download {text}`"
        )
    return snapshot


@click.command("convert")
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", "out", type=click.Path(path_type=Path), help="Output .gguf (default: llama.cpp's name)."
)
@click.option(
    "--type",
    "qtype",
    default="Q4_K_M",
    show_default=True,
    callback=parse_type,
    metavar="TYPE",
    help=TYPE_HELP,
)
@click.option("--threads", type=click.IntRange(min=1), help="Quantisation threads (default: all cores).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@target_options
@json_option
def command(
    src: Path,
    out: Path | None,
    qtype: str,
    threads: int | None,
    force: bool,
    target_name: str | None,
    ram: str | None,
    vram: str | None,
    gpus: int | None,
    ctx: int | None,
    as_json: bool,
) -> None:
    """Convert a Hugging Face safetensors checkpoint into a GGUF file (Q4_K_M, Q8_0, ...)."""
    from quant.convert import convert

    src = resolve_source(src)
    auto = None
    if qtype == "auto":
        auto = _auto_type(src, target_name, ram, vram, gpus, ctx)
        qtype = auto["type"]
    elif target_name or ram or vram or gpus is not None or ctx is not None:
        raise click.UsageError("--target, --ram, --vram, --gpus and --ctx only apply with --type auto")
    result = convert(src, out, qtype, threads=threads, progress=StderrProgress(), force=force)
    if as_json:
        echo_json(result.to_dict() | ({"auto": auto} if auto else {}))
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.type_counts.items()))
        click.echo(
            f"wrote {result.path} ({result.type}, {_mb(result.bytes)}, {result.n_tensors} tensors: {counts}) "
            f"in {result.seconds:.1f} s, peak RSS {_mb(result.peak_rss_bytes)}"
        )


def _auto_type(
    src: Path, target_name: str | None, ram: str | None, vram: str | None, gpus: int | None, ctx: int | None
) -> dict:
    """`hubtui plan`'s recommendation for this checkpoint and target (one line about it on stderr)."""
    from hubtui.commands.plan import build_plan, resolve_target
    from hubtui.errors import HubtuiError

    target = resolve_target(target_name, ram, vram, gpus)
    p = build_plan(str(src), target, ctx)
    for warning in p.warnings:
        click.echo(f"hubtui: warning: {warning}", err=True)
    rec = p.to_dict()["recommendation"]
    if rec is None:
        raise HubtuiError(f"--type auto: no type of {src} fits {target.name} at context {p.settings.n_ctx}")
    click.echo(
        f"auto: {rec['type']} fits {target.name} at context {rec['ctx']} ({rec['fit']}, n_gpu_layers "
        f"{rec['n_gpu_layers']}, about {rec['total'] / (1 << 20):.0f} MiB)",
        err=True,
    )
    return rec
