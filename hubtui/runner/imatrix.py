"""Compute an importance matrix the way `llama-imatrix` does, with llama.cpp through llama-cpp-python.

The model runs in this process through llama.cpp's low-level API with an evaluation callback (`cb_eval`,
llama.cpp's `ggml_backend_sched_eval_callback`): for every matrix multiply that reads a `blk.*` weight with at
least 16 rows of F32 input (MUL_MAT), and for every expert multiply (MUL_MAT_ID), the squared input of each
column is summed in float32 and the rows counted, per expert for MoE weights. This is
`IMatrixCollector::collect_imatrix` in llama.cpp's tools/imatrix/imatrix.cpp. The text is tokenised and cut
into chunks as its `compute_imatrix` does (the whole text at once with BOS, chunks of n_ctx tokens whose
first token becomes BOS, logits requested for every token so the last layer sees every row, at least two
chunks), and the result is written as llama-imatrix's GGUF file (`quant.imatrix.format.write_imatrix`).

A safetensors checkpoint folder is first converted to a temporary GGUF (F16, or Q8_0 for large models)
in a temporary folder beside the output, removed whatever happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hubtui.runner.errors import RunnerError

DEFAULT_TEXT = Path(__file__).with_name("calibration.txt")
MIN_ROWS = 16  # llama-imatrix ignores MUL_MATs with fewer input rows
F16_LIMIT_BYTES = 4 << 30  # a checkpoint whose F16 GGUF is larger is converted to Q8_0 instead
GGML_TYPE_F32 = 0
GGML_TYPE_I32 = 26
AUTO_IMATRIX_CHUNKS = 64
"""`auto_imatrix` (`convert --imatrix auto`, the Convert screen's "auto") runs the first 64 chunks of 512 tokens
of the default calibration text (32k tokens; the whole text is about 200 chunks): enough for stable column
statistics at a fraction of the time."""


class ImatrixCancelled(RunnerError):
    """The cancel event was set while the importance matrix was being computed."""


@dataclass(frozen=True)
class ImatrixProgress:
    """Where a run stands, after each chunk."""

    chunks_done: int
    chunks_total: int
    tokens_done: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.chunks_done:
            return None
        return self.seconds / self.chunks_done * (self.chunks_total - self.chunks_done)


@dataclass(frozen=True)
class ImatrixResult:
    path: Path
    model: str
    dataset: str
    n_tokens: int  # the text's tokens
    chunks: int
    chunk_size: int
    n_entries: int
    seconds: float  # running the model (conversion and loading excluded)
    tokens_per_s: float
    converted: str | None  # the temporary file type a checkpoint folder was converted to

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


# -- the ggml tensor as llama.cpp hands it to the callback ----------------------------------------


class _Tensor(ctypes.Structure):
    """`struct ggml_tensor` (ggml/include/ggml.h), x86-64/aarch64 layout, 336 bytes."""

    _fields_ = [
        ("type", ctypes.c_int32),
        ("_pad0", ctypes.c_int32),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int32),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


assert ctypes.sizeof(_Tensor) == 336


class _Ggml:
    """The few libggml-base entry points the collector needs, and the ids of the two ops it wants."""

    def __init__(self) -> None:
        import llama_cpp

        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        lib = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
        lib.ggml_op_name.argtypes, lib.ggml_op_name.restype = [ctypes.c_int], ctypes.c_char_p
        lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
        lib.ggml_nbytes.argtypes, lib.ggml_nbytes.restype = [ctypes.c_void_p], ctypes.c_size_t
        lib.ggml_backend_tensor_get.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
        ]
        lib.ggml_backend_tensor_get.restype = None
        self.lib = lib
        ops = {lib.ggml_op_name(i): i for i in range(128) if lib.ggml_op_name(i)}
        self.mul_mat = ops[b"MUL_MAT"]
        self.mul_mat_id = ops[b"MUL_MAT_ID"]

    def array(self, ptr: int, t: _Tensor, dtype: type) -> np.ndarray:
        """The tensor's data as a numpy array of shape (ne3, ne2, ne1, ne0) with ggml's strides (a view of
        host memory, or a copy of a device tensor)."""
        shape = tuple(int(n) for n in reversed(t.ne))
        strides = tuple(int(s) for s in reversed(t.nb))
        if t.buffer and self.lib.ggml_backend_buffer_is_host(t.buffer):
            extent = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + np.dtype(dtype).itemsize
            buf = (ctypes.c_char * extent).from_address(t.data)
        else:
            nbytes = self.lib.ggml_nbytes(ptr)
            buf = ctypes.create_string_buffer(nbytes)
            self.lib.ggml_backend_tensor_get(ptr, buf, 0, nbytes)
        return np.ndarray(shape, dtype=dtype, buffer=memoryview(buf), strides=strides)


def _weight_name(raw: bytes) -> str:
    """llama.cpp's `filter_tensor_name`: a scheduler copy is named `BACKEND#name#k`; keep `name`."""
    name = raw.decode("utf-8", "replace")
    if "#" in name:
        name = name.split("#", 2)[1]
    return name


class Collector:
    """The cb_eval callback: sums of squared inputs per column and row counts, per weight (and expert)."""

    def __init__(self, ggml: _Ggml, cancel: threading.Event | None = None) -> None:
        self.ggml = ggml
        self.cancel = cancel
        self.sums: dict[str, np.ndarray] = {}  # float32 (n_mat, n_cols)
        self.counts: dict[str, np.ndarray] = {}  # int64 (n_mat,)
        self.error: BaseException | None = None
        self.stop = False
        self.callback = _eval_callback_type()(self._eval)  # referenced for the context's lifetime
        self.abort_callback = _abort_callback_type()(lambda _data: self.stop)

    def _eval(self, ptr: int, ask: bool, _user: Any) -> bool:
        try:
            if self.cancel is not None and self.cancel.is_set():  # polled at every graph node
                self.stop = True
            if self.stop:
                return not ask  # nothing more is wanted; a False on the collecting call would stop the split
            t = _Tensor.from_address(ptr)
            if ask:
                if t.op == self.ggml.mul_mat_id:
                    return True
                if t.op != self.ggml.mul_mat:
                    return False
                src1 = _Tensor.from_address(t.src[1])
                if src1.ne[1] < MIN_ROWS or src1.type != GGML_TYPE_F32:
                    return False
                return _weight_name(_Tensor.from_address(t.src[0]).name).startswith("blk.")
            if t.op == self.ggml.mul_mat_id:
                self._collect_experts(t)
            else:
                self._collect_dense(t)
            return True
        except BaseException as exc:  # Ctrl-C or SIGTERM land here too: stop the graph, re-raise after it
            self.error = self.error or exc
            self.stop = True
            return not ask

    def _entry(self, name: str, n_mat: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        sums = self.sums.get(name)
        if sums is None:
            sums = self.sums[name] = np.zeros((n_mat, n_cols), np.float32)
            self.counts[name] = np.zeros(n_mat, np.int64)
        elif sums.shape != (n_mat, n_cols):
            raise RunnerError(f"{name}: inconsistent size ({sums.shape} vs {(n_mat, n_cols)})")
        return sums, self.counts[name]

    def _collect_dense(self, t: _Tensor) -> None:
        src0, src1 = _Tensor.from_address(t.src[0]), _Tensor.from_address(t.src[1])
        name = _weight_name(src0.name)
        ne02, ne03 = int(src0.ne[2]), int(src0.ne[3])
        n_mat = ne02 * ne03
        x = self.ggml.array(t.src[1], src1, np.float32)  # (ne3, ne2, ne1, ne0)
        sums, counts = self._entry(name, n_mat, x.shape[3])
        if n_mat == 1:
            sq = np.square(x.reshape(-1, x.shape[3]))
            sums[0] += sq.sum(axis=0, dtype=np.float32)
        else:
            for i3 in range(x.shape[0]):
                for i2 in range(x.shape[1]):
                    mat = (i3 % ne03) * ne02 + (i2 % ne02)
                    sums[mat] += np.square(x[i3, i2]).sum(axis=0, dtype=np.float32)
        counts[0] += x.shape[0] * x.shape[1] * x.shape[2] // n_mat  # one count per dense weight, as llama.cpp
        if not np.all(np.isfinite(sums)):
            raise RunnerError(f"non-finite activations entering {name}")

    def _collect_experts(self, t: _Tensor) -> None:
        src0, src1, ids_t = (_Tensor.from_address(t.src[i]) for i in range(3))
        name = _weight_name(src0.name)
        n_expert = int(src0.ne[2])
        x = self.ggml.array(t.src[1], src1, np.float32)[0]  # (n_tokens, ne1, ne0)
        ids = self.ggml.array(t.src[2], ids_t, np.int32)[0, 0]  # (n_tokens, n_used)
        if ids.shape[0] != x.shape[0]:
            raise RunnerError(f"{name}: {ids.shape[0]} routed tokens for {x.shape[0]} input rows")
        sums, counts = self._entry(name, n_expert, x.shape[2])
        n_used = ids.shape[1]
        rows = x[:, np.arange(n_used) % x.shape[1], :]  # (n_tokens, n_used, ne0): each routed row's input
        sq = np.square(rows).reshape(-1, x.shape[2])
        flat = ids.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= n_expert):
            raise RunnerError(f"{name}: expert id out of range")
        order = np.argsort(flat, kind="stable")
        experts, starts = np.unique(flat[order], return_index=True)
        sums[experts] += np.add.reduceat(sq[order], starts, axis=0, dtype=np.float32)
        counts += np.bincount(flat, minlength=n_expert)
        if not np.all(np.isfinite(sums[experts])):
            raise RunnerError(f"non-finite activations entering {name}")

    def entries(self) -> dict[str, Any]:
        from quant.imatrix.format import ImatrixEntry

        return {
            name: ImatrixEntry(self.sums[name], self.counts[name].astype(np.float64))
            for name in sorted(self.sums)
        }

    def chunk_count(self, chunk_size: int) -> int:
        """llama-imatrix's m_last_chunk: the largest count over every weight, in chunks."""
        top = max((int(c.max()) for c in self.counts.values() if c.size), default=0)
        return top // chunk_size


def _eval_callback_type() -> Any:
    import llama_cpp

    return llama_cpp.ggml_backend_sched_eval_callback


def _abort_callback_type() -> Any:
    import llama_cpp

    return llama_cpp.ggml_abort_callback


# -- text -----------------------------------------------------------------------------------------


def read_text(path: str | os.PathLike[str]) -> str:
    """The calibration text as llama-imatrix's `-f` reads it: the whole file, one trailing newline dropped."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise RunnerError(f"{p}: cannot read the text: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunnerError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    return text[:-1] if text.endswith("\n") else text


def tokenize(vocab: Any, text: str) -> list[int]:
    """`common_tokenize(ctx, text, add_special=true, parse_special=false)`."""
    import llama_cpp

    raw = text.encode("utf-8")
    n = -llama_cpp.llama_tokenize(vocab, raw, len(raw), None, 0, True, False)
    buf = (llama_cpp.llama_token * max(n, 1))()
    got = llama_cpp.llama_tokenize(vocab, raw, len(raw), buf, n, True, False)
    if got < 0:
        raise RunnerError("llama.cpp could not tokenise the text")
    return list(buf[:got])


# -- the source -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _model_file(
    src: Path,
    work_dir: Path,
    threads: int | None,
    on_convert: Callable[[str, int, int], None] | None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[Path, str | None]]:
    """A GGUF to run: `src` itself, or a conversion of a checkpoint folder into a temporary folder beside
    the output (F16, or Q8_0 when the F16 file would exceed 4 GiB) that is removed on any exit."""
    if src.is_file():
        yield src, None
        return
    if not src.exists():
        raise RunnerError(f"{src}: no such file or directory")
    from quant.checkpoint_format import is_checkpoint_dir

    if not src.is_dir() or not is_checkpoint_dir(src):
        raise RunnerError(f"{src}: neither a GGUF file nor a safetensors checkpoint folder")
    from quant.convert import convert

    f16_bytes = 2 * _checkpoint_params(src)
    qtype = "F16" if f16_bytes <= F16_LIMIT_BYTES else "Q8_0"
    tmp = Path(tempfile.mkdtemp(prefix=".hubtui-imatrix-", dir=work_dir))
    try:
        out = tmp / f"model-{qtype}.gguf"
        convert(src, out, qtype, threads=threads, progress=on_convert, cancel=cancel)
        yield out, qtype
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _checkpoint_params(src: Path) -> int:
    """Parameter count of a checkpoint folder from its safetensors headers (sizes only, no data read)."""
    import json
    import struct

    total = 0
    for f in sorted(src.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                total += int(np.prod(v["shape"], dtype=np.int64))
    return total


# -- the run --------------------------------------------------------------------------------------


def compute_imatrix(
    model_gguf: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    text: str | os.PathLike[str] | None = None,
    n_ctx: int = 512,
    chunks: int | None = None,
    threads: int | None = None,
    progress: Callable[[ImatrixProgress], None] | None = None,
    cancel: threading.Event | None = None,
    force: bool = False,
    on_convert: Callable[[str, int, int], None] | None = None,
) -> ImatrixResult:
    """Run `model_gguf` (a GGUF, or a safetensors checkpoint folder) over `text` (default: the shipped
    calibration text) and write llama-imatrix's GGUF importance matrix to `out`.

    `progress` is called after each chunk; setting `cancel` stops at the next graph node (ImatrixCancelled),
    or the temporary conversion of a checkpoint folder (quant.convert.ConversionCancelled).
    Raises RunnerError with one line for bad input (a text shorter than two chunks names the tokens needed);
    nothing is left behind on any error, Ctrl-C or SIGTERM.
    """
    from quant.outputs import OutputClaim

    src, out_path = Path(model_gguf), Path(out)
    text_path = Path(text) if text is not None else DEFAULT_TEXT
    if n_ctx < MIN_ROWS:
        raise RunnerError(
            f"context {n_ctx} is too small: llama-imatrix ignores batches under {MIN_ROWS} tokens"
        )
    if chunks is not None and chunks < 1:
        raise RunnerError(f"chunks must be 1 or more, got {chunks}")
    if threads is not None and threads < 1:
        raise RunnerError(f"threads must be 1 or more, got {threads}")
    OutputClaim(
        out_path, force=force, inputs=[src, text_path], directory=False
    ).check()  # fail before any work
    body = read_text(text_path)
    n_threads = threads or len(os.sched_getaffinity(0))
    with _model_file(src, out_path.resolve().parent, threads, on_convert, cancel) as (gguf_path, converted):
        if converted is None:
            from hubtui.runner.gguf_check import check_facts, read_facts

            for finding in check_facts(read_facts(gguf_path)):
                if finding.level == "fail":
                    raise RunnerError(finding.message)
        collector, n_tokens, n_chunk, seconds = _run(
            gguf_path, src, body, text_path, n_ctx, chunks, n_threads, progress, cancel
        )
    from quant.imatrix.format import write_imatrix

    path = write_imatrix(
        out_path,
        collector.entries(),
        datasets=[text_path.name],
        chunk_count=collector.chunk_count(n_ctx),
        chunk_size=n_ctx,
        force=force,
        inputs=[p for p in (src, text_path) if p.is_file()],
    )
    return ImatrixResult(
        path=path,
        model=str(src),
        dataset=text_path.name,
        n_tokens=n_tokens,
        chunks=n_chunk,
        chunk_size=n_ctx,
        n_entries=len(collector.sums),
        seconds=seconds,
        tokens_per_s=n_chunk * n_ctx / seconds if seconds > 0 else 0.0,
        converted=converted,
    )


def _run(
    gguf_path: Path,
    src: Path,
    body: str,
    text_path: Path,
    n_ctx: int,
    chunks: int | None,
    n_threads: int,
    progress: Callable[[ImatrixProgress], None] | None,
    cancel: threading.Event | None,
) -> tuple[Collector, int, int, float]:
    import llama_cpp

    from hubtui.runner import llama_log

    llama_log.install()
    llama_cpp.llama_backend_init()
    collector = Collector(_Ggml(), cancel)
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(gguf_path).encode(), mp)
    if not model:
        reason = llama_log.last_error() or "unknown reason"
        raise RunnerError(f"{src.name}: llama.cpp could not load it: {reason}")
    ctx = batch = None
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        tokens = tokenize(vocab, body)
        if len(tokens) < 2 * n_ctx:
            raise RunnerError(
                f"{text_path}: {len(tokens)} tokens; at least {2 * n_ctx} are needed (2 chunks of --ctx {n_ctx})"
            )
        n_chunk = len(tokens) // n_ctx if chunks is None else min(chunks, len(tokens) // n_ctx)
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = n_ctx
        cp.n_seq_max = 1
        cp.n_threads = cp.n_threads_batch = n_threads
        cp.cb_eval = collector.callback
        cp.cb_eval_user_data = None
        cp.abort_callback = collector.abort_callback
        cp.abort_callback_data = None
        ctx = llama_cpp.llama_init_from_model(model, cp)
        if not ctx:
            reason = llama_log.last_error() or "unknown reason"
            raise RunnerError(f"{src.name}: llama.cpp could not create a context of {n_ctx}: {reason}")
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        bos = llama_cpp.llama_vocab_bos(vocab)
        batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
        t0 = time.perf_counter()
        for i in range(n_chunk):
            if cancel is not None and cancel.is_set():
                raise ImatrixCancelled("importance matrix cancelled")
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            chunk = tokens[i * n_ctx : (i + 1) * n_ctx]
            if add_bos:
                chunk[0] = bos
            batch.n_tokens = n_ctx
            for k, tok in enumerate(chunk):
                batch.token[k] = tok
                batch.pos[k] = k
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = 0
                batch.logits[k] = 1
            rc = llama_cpp.llama_decode(ctx, batch)
            if collector.error is not None:
                raise collector.error
            if cancel is not None and cancel.is_set():
                raise ImatrixCancelled("importance matrix cancelled")
            if rc != 0:
                reason = llama_log.last_error() or f"llama_decode returned {rc}"
                raise RunnerError(f"{src.name}: chunk {i + 1}: {reason}")
            if progress is not None:
                progress(ImatrixProgress(i + 1, n_chunk, (i + 1) * n_ctx, time.perf_counter() - t0))
        return collector, len(tokens), n_chunk, time.perf_counter() - t0
    finally:
        if batch is not None:
            llama_cpp.llama_batch_free(batch)
        if ctx is not None:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


@contextlib.contextmanager
def auto_imatrix(
    src: str | os.PathLike[str],
    where: str | os.PathLike[str],
    *,
    threads: int | None = None,
    progress: Callable[[ImatrixProgress], None] | None = None,
    cancel: threading.Event | None = None,
    chunks: int | None = None,
    on_convert: Callable[[str, int, int], None] | None = None,
) -> Iterator[Any]:
    """An importance matrix of `src` from the default calibration text (`chunks`, default
    AUTO_IMATRIX_CHUNKS), computed in a temporary folder inside `where` (the output's folder) and yielded
    read (`quant.imatrix.format.Imatrix`); the folder is removed on exit, however the block ends.

    One home for `convert --imatrix auto` and the Convert screen's "auto": both convert inside the block.
    """
    from quant.imatrix.format import read_imatrix

    tmp = Path(tempfile.mkdtemp(prefix=".hubtui-imatrix-", dir=where))
    try:
        result = compute_imatrix(
            src,
            tmp / "imatrix.gguf",
            chunks=AUTO_IMATRIX_CHUNKS if chunks is None else chunks,
            threads=threads,
            progress=progress,
            cancel=cancel,
            on_convert=on_convert,
        )
        matrix = read_imatrix(result.path)
        matrix.source = Path(f"auto:{result.dataset}")  # recorded as quantize.imatrix.file; the file goes
        yield matrix
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
