"""`convert`: a Hugging Face safetensors checkpoint to a GGUF file in one streaming step.

The output is claimed through `quant.outputs` (one writer per output, a unique temporary beside it, fsync,
then a rename that never replaces a file created meanwhile unless `force`, nor a file of the checkpoint);
any error, a KeyboardInterrupt, a SIGTERM/SIGHUP or the cancel event removes the temporary, so a failed
conversion leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quant.convert.tokenizer_probe import start_tokenizer_probe
from quant.errors import ConversionError
from quant.outputs import OutputClaim, claim_output, free_disk_bytes

if TYPE_CHECKING:  # imported in `convert`, after the tokenizer probe has started
    from quant.convert.layout import Layout, Prepared
    from quant.convert.options import TensorOptions
    from quant.convert.writer import CancelToken, Progress
    from quant.imatrix.format import Imatrix


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    type: str
    bytes: int
    seconds: float
    n_tensors: int
    type_counts: dict[str, int]
    peak_rss_bytes: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    On Linux VmHWM is read first: ru_maxrss also counts the RSS of a parent this process was forked from.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def default_output_path(prep: Prepared, directory: Path | None = None) -> Path:
    """llama.cpp's file name for this model and type (e.g. SmolLM2-135M-Instruct-Q4_K_M.gguf)."""
    from quant.convert.metadata import default_output_name

    name = default_output_name(prep.general, prep.layout.file_type.name)
    if not name.endswith(".gguf"):
        name += ".gguf"
    return (directory or Path.cwd()) / name


def checkpoint_inputs(src: Path) -> list[Path]:
    """The files of a checkpoint folder that a conversion may read (everything but GGUFs already there)."""
    try:
        return [p for p in src.iterdir() if not p.name.lower().endswith(".gguf") and p.is_file()]
    except OSError:
        return []


def _explicit_output(out: str | Path | None) -> Path | None:
    """`out` when it names the output file itself (not a folder for llama.cpp's default name)."""
    if out is None:
        return None
    path = Path(out)
    return None if path.is_dir() else path


def check_kernels(layout: Layout) -> None:
    """Every ggml type the layout uses has a registered kernel, checked before anything is written."""
    from quant.kernels import QUANT_TYPES

    for t in layout.tensors:
        if t.type not in QUANT_TYPES:
            raise ConversionError(
                f"{layout.file_type.name}: tensor {t.name} needs ggml type {t.type}, which has no kernel in "
                f"this build (kernels: {', '.join(QUANT_TYPES)})"
            )


def convert(
    src: str | Path,
    out: str | Path | None = None,
    qtype: str = "Q4_K_M",
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    force: bool = False,
    cancel: CancelToken | None = None,
    prepared: Prepared | None = None,
    options: TensorOptions | None = None,
    loras: list[tuple[Path, float]] | None = None,
    imatrix: Imatrix | str | os.PathLike[str] | None = None,
) -> ConvertResult:
    """Convert the checkpoint directory `src` to `out` (default: llama.cpp's naming convention in the cwd).

    `progress(tensor_name, bytes_done, total_bytes)` is called as data is written; `cancel.is_set()` is polled
    between chunks; `options` are llama-quantize's per-tensor options; `loras`: (PEFT adapter folder, scale)
    pairs added to the weights as they stream (float32, before quantising); `imatrix`: an importance matrix
    (or its GGUF / legacy .dat file) applied as llama-quantize --imatrix does (quant.imatrix.apply). Raises ConversionError (one line
    naming the file/tensor/key at fault; OptionError for an option that does not apply).
    """
    t0 = time.perf_counter()
    with _written(
        src, out, qtype, threads=threads, progress=progress, force=force, cancel=cancel,
        prepared=prepared, options=options, loras=loras, imatrix=imatrix,
    ) as done:  # fmt: skip
        done.claim.commit()
    return done.result(time.perf_counter() - t0)


def convert_with_mmproj(
    src: str | Path,
    out: str | Path | None,
    qtype: str,
    mmproj_out: str | Path,
    projector: Prepared,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    force: bool = False,
    cancel: CancelToken | None = None,
    options: TensorOptions | None = None,
    loras: list[tuple[Path, float]] | None = None,
    imatrix: Imatrix | str | os.PathLike[str] | None = None,
) -> tuple[ConvertResult, ConvertResult]:
    """The text model and its vision projector (`projector`, from `mmproj.prepare_mmproj`) as one job.

    Both outputs are claimed before anything is written and both are written in full before either is
    renamed into place, so a failure in either (a bad vision tensor, a full disk, Ctrl-C) leaves both
    outputs as they were, an older file under `force` included.
    """
    t0 = time.perf_counter()
    explicit = _explicit_output(out)
    if explicit is not None and explicit.resolve() == Path(mmproj_out).resolve():
        raise ConversionError(f"{mmproj_out}: the model and the --mmproj file need different names")
    with (
        _written(
            src, out, qtype, threads=threads, progress=progress, force=force, cancel=cancel,
            options=options, loras=loras, imatrix=imatrix,
        ) as model,
        _written(
            projector.layout.src, mmproj_out, projector.layout.file_type.name, threads=threads,
            progress=progress, force=force, cancel=cancel, prepared=projector,
        ) as proj,
    ):  # fmt: skip
        model.claim.commit()
        try:
            proj.claim.commit()
        except BaseException:
            if not model.replaced:  # a file we just created: take it back (all or nothing)
                model.claim.final.unlink(missing_ok=True)
            raise
    return model.result(model.finished - t0), proj.result(proj.finished - proj.started)


@dataclass
class _Written:
    """A conversion written to its claim's temporary, not yet renamed into place."""

    claim: OutputClaim
    prep: Prepared
    size: int
    replaced: bool  # the output existed before (with force): committing replaces it
    started: float  # perf_counter() when its data started and finished streaming
    finished: float

    def result(self, seconds: float) -> ConvertResult:
        return ConvertResult(
            path=self.claim.final,
            type=self.prep.layout.file_type.name,
            bytes=self.size,
            seconds=seconds,
            n_tensors=len(self.prep.layout.tensors),
            type_counts=self.prep.layout.type_counts(),
            peak_rss_bytes=peak_rss_bytes(),
        )


@contextlib.contextmanager
def _written(
    src: str | Path,
    out: str | Path | None,
    qtype: str,
    *,
    threads: int | None,
    progress: Progress | None,
    force: bool,
    cancel: CancelToken | None,
    prepared: Prepared | None = None,
    options: TensorOptions | None = None,
    loras: list[tuple[Path, float]] | None = None,
    imatrix: Imatrix | str | os.PathLike[str] | None = None,
) -> Iterator[_Written]:
    """Claim the output, lay out and write the conversion into the claim's temporary, and yield it there.

    The caller commits; leaving the block without a commit removes the temporary.
    """
    src_dir = Path(src) if prepared is None else prepared.layout.src
    inputs = checkpoint_inputs(src_dir) + [p for d, _ in loras or [] for p in checkpoint_inputs(Path(d))]
    with contextlib.ExitStack() as stack:
        out_path = _explicit_output(out)
        claim = None
        if out_path is not None:  # claimed before the checkpoint is read: a second writer fails at once
            claim = stack.enter_context(claim_output(out_path, force=force, inputs=inputs))
        if prepared is None:
            # The tokenizer helper starts before the heavy imports (numba, kernels), which it then overlaps.
            with start_tokenizer_probe(src) as probe:
                from quant.convert.layout import prepare

                prepared = prepare(src, qtype, probe=probe, options=options, loras=loras, imatrix=imatrix)
        prep = prepared
        if claim is None:
            out_path = default_output_path(prep, Path(out) if out is not None else None)
            claim = stack.enter_context(claim_output(out_path, force=force, inputs=inputs))
        replaced = claim.final.exists()
        t = time.perf_counter()
        size = _write(claim, prep, threads=threads, progress=progress, cancel=cancel)
        yield _Written(claim, prep, size, replaced, t, time.perf_counter())


def _write(
    claim: OutputClaim,
    prep: Prepared,
    *,
    threads: int | None,
    progress: Progress | None,
    cancel: CancelToken | None,
) -> int:
    """Check free space and stream header and tensors into the claim's temporary (the caller commits)."""
    from quant.convert.writer import write_data

    check_kernels(prep.layout)
    need = prep.layout.file_size
    free = free_disk_bytes(claim.parent)
    if free < need:
        raise ConversionError(
            f"{claim.parent}: not enough free disk space for {claim.final.name}: need {need} bytes, {free} available"
        )
    try:
        with claim.create_file() as f:
            f.write(prep.header)
            write_data(f, prep, threads=threads, progress=progress, cancel=cancel)
            size = f.tell()
    except OSError as exc:
        raise ConversionError(f"{claim.temp}: write failed: {exc.strerror or exc}") from exc
    if size != need:
        raise ConversionError(f"{claim.temp}: wrote {size} bytes but the layout says {need}")
    return size
