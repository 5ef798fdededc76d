"""`hubtui convert`: a local safetensors checkpoint to GGUF (F32 ... Q2_K), progress on stderr."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hubtui.commands._common import (
    checkpoint_source,
    echo_json,
    json_option,
    lora_merges,
    lora_scales_option,
)
from hubtui.commands.plan import target_options
from quant.filetypes import ALIASES, FILE_TYPES, MMPROJ_TYPES, TENSOR_TYPES
from quant.units import format_bytes

if TYPE_CHECKING:
    from quant.convert.options import TensorOptions

TYPE_HELP = (
    "A file type from the list below (aliases: "
    + ", ".join(f"{a} = {t}" for a, t in ALIASES.items())
    + "), or auto: the type `hubtui plan` recommends for --target/--ram/--vram/--ctx (default: this machine)"
)


def types_epilog() -> str:
    """The file types with bits per weight (on Llama-3.1-8B) and a quality hint, kept as lines by click."""
    lines = [
        "\b",
        "File types (bits per weight on Llama-3.1-8B; perplexity increase on Llama-3-8B, F16/BF16 Mistral-7B):",
    ]
    lines += [f"  {ft.name:<7} {ft.bpw:7.2f}  {ft.hint}" for ft in FILE_TYPES.values()]
    return "\n".join(lines)


def parse_type(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Validate --type against the converter's file types (a usage error, exit 2, otherwise)."""
    from quant.errors import QuantError
    from quant.filetypes import resolve_file_type

    if value is None:
        return None
    if value.lower() == "auto":
        return "auto"
    try:
        return resolve_file_type(value).name
    except QuantError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def tensor_options(
    tensor_types: tuple[str, ...],
    output_tensor_type: str | None,
    token_embedding_type: str | None,
    pure: bool,
    leave_output_tensor: bool,
) -> TensorOptions:
    """llama-quantize's per-tensor options; a malformed one is a usage error (exit 2) naming it."""
    from quant.convert.options import TensorOptions
    from quant.errors import OptionError

    try:
        return TensorOptions.parse(
            tensor_types,
            output_tensor_type=output_tensor_type,
            token_embedding_type=token_embedding_type,
            pure=pure,
            leave_output_tensor=leave_output_tensor,
        )
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None


def per_tensor_options(func):
    """--tensor-type, --output-tensor-type, --token-embedding-type, --pure, --leave-output-tensor."""
    types = ", ".join(TENSOR_TYPES)
    for opt in reversed(
        [
            click.option(
                "--tensor-type",
                "tensor_types",
                multiple=True,
                metavar="PATTERN=TYPE",
                help="Give tensors whose name matches the regular expression PATTERN (searched anywhere in "
                "the GGUF name, lower-cased, first match wins, e.g. 'attn_v=q8_0' or "
                f"'blk\\.[0-3]\\.ffn_down=q6_k') ggml type TYPE: {types}. Repeatable.",
            ),
            click.option(
                "--output-tensor-type", metavar="TYPE", help="ggml type of output.weight (as llama-quantize)."
            ),
            click.option(
                "--token-embedding-type",
                metavar="TYPE",
                help="ggml type of token_embd.weight (as llama-quantize).",
            ),
            click.option(
                "--pure",
                is_flag=True,
                help="No mixture: every quantised tensor gets the type's default ggml type.",
            ),
            click.option("--leave-output-tensor", is_flag=True, help="Keep output.weight unquantised (F32)."),
        ]
    ):
        func = opt(func)
    return func


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
                self.stream.write(
                    f"converted {format_bytes(done)} of {format_bytes(total)} in {elapsed:.1f} s{where}\n"
                )
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
        line = f"[{bar}] {pct:5.1f}% {format_bytes(done)}/{format_bytes(total)} {format_bytes(rate)}/s ETA {eta:4.0f}s {name[:40]}"
        self.stream.write("\r" + line.ljust(110)[:110])
        if not name:
            self.stream.write("\n")
        self.stream.flush()


@click.command("convert", epilog=types_epilog())
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", "out", type=click.Path(path_type=Path), help="Output .gguf (default: llama.cpp's name)."
)
@click.option(
    "--type",
    "qtype",
    callback=parse_type,
    metavar="TYPE",
    help=TYPE_HELP + "; default Q4_K_M, or F32 for an adapter (F32, F16, BF16 or Q8_0)",
)
@click.option(
    "--base",
    type=click.Path(path_type=Path),
    help="For a PEFT adapter folder SRC: the base checkpoint folder or cached hub repo (its config.json).",
)
@click.option(
    "--lora",
    "loras",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Merge this PEFT adapter folder into the weights while converting (repeatable).",
)
@lora_scales_option
@click.option("--threads", type=click.IntRange(min=1), help="Quantisation threads (default: all cores).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@per_tensor_options
@click.option(
    "--mmproj",
    "mmproj",
    type=click.Path(path_type=Path),
    help="Also write the vision projector GGUF here (Mistral 3), for llama.cpp's multimodal tools.",
)
@click.option(
    "--mmproj-type",
    type=click.Choice(MMPROJ_TYPES, case_sensitive=False),
    default="F16",
    show_default=True,
    help="Type of the --mmproj file.",
)
@click.option(
    "--imatrix",
    "imatrix",
    metavar="FILE",
    help="Quantise with this importance matrix (llama.cpp's GGUF imatrix or legacy .dat), as "
    "llama-quantize --imatrix does; the IQ1-IQ3 types and Q2_K_S need one.",
)
@target_options
@json_option
def command(
    src: Path,
    out: Path | None,
    qtype: str | None,
    base: Path | None,
    loras: tuple[Path, ...],
    lora_scales: tuple[float, ...],
    threads: int | None,
    force: bool,
    tensor_types: tuple[str, ...],
    output_tensor_type: str | None,
    token_embedding_type: str | None,
    pure: bool,
    leave_output_tensor: bool,
    mmproj: Path | None,
    mmproj_type: str,
    imatrix: str | None,
    target_name: str | None,
    ram: str | None,
    vram: str | None,
    gpus: int | None,
    ctx: int | None,
    as_json: bool,
) -> None:
    """Convert a safetensors checkpoint (Hugging Face's or Mistral's layout) into a GGUF file (Q4_K_M, Q8_0, ...).

    Quantised types follow llama-quantize's mixture rules and per-tensor options, so the file equals
    llama-quantize's output from the F32 conversion. SRC may also be a PEFT LoRA adapter folder (with --base):
    it becomes a llama.cpp LoRA adapter GGUF.
    """
    from quant.convert.lora import is_adapter_dir

    if is_adapter_dir(src):
        if loras:
            raise click.UsageError("--lora merges adapters into a base checkpoint; SRC is an adapter itself")
        _convert_adapter(src, base, out, qtype or "F32", threads, force, as_json)
        return
    if base is not None:
        raise click.UsageError(
            f"--base only applies when SRC is a PEFT adapter folder ({src} has no adapter_config.json)"
        )
    qtype = qtype or "Q4_K_M"
    auto_imatrix = imatrix is not None and imatrix.lower() == "auto"
    if qtype != "auto":
        _check_imatrix_use(qtype, imatrix)
    options = tensor_options(
        tensor_types, output_tensor_type, token_embedding_type, pure, leave_output_tensor
    )
    src = checkpoint_source(src)
    merges = lora_merges(loras, lora_scales)
    with contextlib.ExitStack() as stack:
        if auto_imatrix:
            imatrix = _auto_imatrix(src, out, threads, force, stack)
        _convert_checkpoint(
            src, out, qtype, imatrix, merges, options, threads, force, mmproj, mmproj_type,
            target_name, ram, vram, gpus, ctx, as_json,
        )  # fmt: skip


def _auto_imatrix(
    src: Path, out: Path | None, threads: int | None, force: bool, stack: contextlib.ExitStack
) -> Any:
    """`--imatrix auto`: the library's `auto_imatrix`, kept open until the conversion ends; returns it read."""
    from quant.errors import OutputExistsError

    if out is not None and not out.is_dir() and out.exists() and not force:
        raise OutputExistsError(out)  # before minutes of computing, not after

    from hubtui.commands.imatrix import ChunkProgress
    from hubtui.runner import imatrix as runner_imatrix

    where = out if out is not None and out.is_dir() else (out.parent if out is not None else Path.cwd())
    click.echo(
        f"--imatrix auto: computing an importance matrix of {src.name} from the default calibration text "
        f"({runner_imatrix.AUTO_IMATRIX_CHUNKS} chunks)",
        err=True,
    )
    return stack.enter_context(
        runner_imatrix.auto_imatrix(src, where, threads=threads, progress=ChunkProgress())
    )


def _convert_checkpoint(
    src: Path,
    out: Path | None,
    qtype: str,
    imatrix: Any,
    merges: list[tuple[Path, float]],
    options: Any,
    threads: int | None,
    force: bool,
    mmproj: Path | None,
    mmproj_type: str,
    target_name: str | None,
    ram: str | None,
    vram: str | None,
    gpus: int | None,
    ctx: int | None,
    as_json: bool,
) -> None:
    from quant.convert import convert
    from quant.errors import OptionError

    auto = None
    projector = None
    try:
        if qtype == "auto":
            auto = _auto_type(
                src, target_name, ram, vram, gpus, ctx, options, has_imatrix=imatrix is not None
            )
            qtype = auto["type"]
        elif target_name or ram or vram or gpus is not None or ctx is not None:
            raise click.UsageError("--target, --ram, --vram, --gpus and --ctx only apply with --type auto")
        if mmproj is not None:  # laid out first: a checkpoint without a vision tower fails before any writing
            from quant.convert import convert_with_mmproj
            from quant.convert.mmproj import prepare_mmproj

            projector = prepare_mmproj(src, mmproj_type)
            # Both files are written before either is renamed into place: all or nothing, old files kept.
            results = list(
                convert_with_mmproj(
                    src,
                    out,
                    qtype,
                    mmproj,
                    projector,
                    threads=threads,
                    progress=StderrProgress(),
                    force=force,
                    options=options,
                    loras=merges,
                    imatrix=imatrix,
                )
            )
        else:
            results = [
                convert(
                    src,
                    out,
                    qtype,
                    threads=threads,
                    progress=StderrProgress(),
                    force=force,
                    options=options,
                    loras=merges,
                    imatrix=imatrix,
                )
            ]
    except OptionError as exc:  # an option that does not fit this checkpoint or type: a usage error
        raise click.UsageError(str(exc)) from None
    result = results[0]
    if as_json:
        payload = result.to_dict() | ({"auto": auto} if auto else {})
        if projector is not None:
            payload["mmproj"] = results[1].to_dict()
        echo_json(payload)
    else:
        for r in results:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(r.type_counts.items()))
            click.echo(
                f"wrote {r.path} ({r.type}, {format_bytes(r.bytes)}, {r.n_tensors} tensors: {counts}) "
                f"in {r.seconds:.1f} s, peak RSS {format_bytes(r.peak_rss_bytes)}"
            )


def _check_imatrix_use(qtype: str, imatrix: str | None) -> None:
    """A type that needs an importance matrix without --imatrix (or a float type with one): a usage error."""
    from quant.errors import OptionError
    from quant.filetypes import check_imatrix_use

    try:
        check_imatrix_use(FILE_TYPES[qtype], imatrix is not None)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None


def _convert_adapter(
    src: Path,
    base: Path | None,
    out: Path | None,
    qtype: str,
    threads: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """`hubtui convert ADAPTER --base BASE`: the adapter as a llama.cpp LoRA GGUF."""
    from hubtui.errors import HubtuiError
    from quant.convert.lora_gguf import ADAPTER_TYPES, convert_adapter

    if qtype not in ADAPTER_TYPES:
        raise click.BadParameter(
            f"an adapter converts to {', '.join(ADAPTER_TYPES)}, not {qtype}", param_hint="--type"
        )
    if base is None:
        raise HubtuiError(f"{src}: --base is needed (the base model's checkpoint folder or cached hub repo)")
    result = convert_adapter(src, checkpoint_source(base), out, qtype, force=force, threads=threads)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(
            f"wrote {result.path} (LoRA adapter for {result.base}, {result.type}, {result.n_pairs} adapted tensors, "
            f"alpha {result.alpha:g}, {format_bytes(result.bytes)}) in {result.seconds:.1f} s"
        )


def _auto_type(
    src: Path,
    target_name: str | None,
    ram: str | None,
    vram: str | None,
    gpus: int | None,
    ctx: int | None,
    options: TensorOptions,
    *,
    has_imatrix: bool = False,
) -> dict:
    """`hubtui plan`'s recommendation for this checkpoint and target (one line about it on stderr); the
    per-tensor options are sized with each type, and types they cannot apply to are left out. Types that
    need an importance matrix are recommended only with one (`has_imatrix`)."""
    from hubtui.commands.plan import build_plan, resolve_target
    from hubtui.errors import HubtuiError
    from quant.filetypes import PLAN_TYPES

    target = resolve_target(target_name, ram, vram, gpus)
    types = tuple(t for t in PLAN_TYPES if FILE_TYPES[t].quantized) if options.active or has_imatrix else None
    p = build_plan(str(src), target, ctx, types, options=options, has_imatrix=has_imatrix)
    for warning in p.warnings:
        click.echo(f"hubtui: warning: {warning}", err=True)
    rec = p.to_dict()["recommendation"]
    if rec is None:
        raise HubtuiError(f"--type auto: no type of {src} fits {target.name} at context {p.settings.n_ctx}")
    click.echo(
        f"auto: {rec['type']} fits {target.name} at context {rec['ctx']} ({rec['fit']}, n_gpu_layers "
        f"{rec['n_gpu_layers']}, working set {format_bytes(rec['working_set'])}"
        + (", run it with --no-mmap" if rec["mode_switched"] else "")
        + ")",
        err=True,
    )
    return rec
