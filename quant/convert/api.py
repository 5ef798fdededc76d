"""`convert`: a Hugging Face safetensors checkpoint to a GGUF file in one streaming step.

The output is written to `OUT.part` and renamed at the end; any error, a KeyboardInterrupt or the cancel
event removes the partial file, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quant.convert.tokenizer_probe import start_tokenizer_probe
from quant.errors import ConversionError, OutputExistsError

if TYPE_CHECKING:  # imported in `convert`, after the tokenizer probe has started
    from quant.convert.layout import Prepared
    from quant.convert.writer import CancelToken, Progress


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


def free_disk_bytes(directory: Path) -> int:
    """Free bytes on the filesystem holding `directory` (tests replace this probe)."""
    return shutil.disk_usage(directory).free


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


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
) -> ConvertResult:
    """Convert the checkpoint directory `src` to `out` (default: llama.cpp's naming convention in the cwd).

    `progress(tensor_name, bytes_done, total_bytes)` is called as data is written; `cancel.is_set()` is polled
    between chunks. Raises ConversionError (one line naming the file/tensor/key at fault).
    """
    t0 = time.perf_counter()
    if prepared is None:
        # The tokenizer helper starts before the heavy imports (numba, kernels), which it then overlaps.
        with start_tokenizer_probe(src) as probe:
            from quant.convert.layout import prepare

            prepared = prepare(src, qtype, probe=probe)
    from quant.convert.writer import write_data

    prep = prepared
    out_path = Path(out) if out is not None else default_output_path(prep)
    if out_path.is_dir():
        out_path = default_output_path(prep, out_path)
    if out_path.exists() and not force:
        raise OutputExistsError(out_path)
    directory = out_path.parent if str(out_path.parent) else Path(".")
    if not directory.is_dir():
        raise ConversionError(f"{directory}: output directory does not exist")
    need = prep.layout.file_size
    free = free_disk_bytes(directory)
    if free < need:
        raise ConversionError(
            f"{directory}: not enough free disk space for {out_path.name}: need {need} bytes, {free} available"
        )
    part = out_path.with_name(out_path.name + ".part")
    try:
        with part.open("wb") as f:
            f.write(prep.header)
            write_data(f, prep, threads=threads, progress=progress, cancel=cancel)
            size = f.tell()
        if size != need:
            raise ConversionError(f"{part}: wrote {size} bytes but the layout says {need}")
        os.replace(part, out_path)
    except OSError as exc:
        _remove(part)
        raise ConversionError(f"{part}: write failed: {exc.strerror or exc}") from exc
    except BaseException:
        _remove(part)
        raise
    return ConvertResult(
        path=out_path,
        type=prep.layout.file_type.name,
        bytes=size,
        seconds=time.perf_counter() - t0,
        n_tensors=len(prep.layout.tensors),
        type_counts=prep.layout.type_counts(),
        peak_rss_bytes=peak_rss_bytes(),
    )
