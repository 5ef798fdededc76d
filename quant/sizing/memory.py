"""llama.cpp's memory model: what loading a GGUF allocates per device, and what of it must stay in RAM.

Buffers follow llama.cpp's load log (docs/sizing.md has the derivations): weights are the tensor bytes,
placed the way llama.cpp places layers (the last `n_gpu_layers` go to the GPU, the output layer counts
inside `n_gpu_layers` and goes first, token_embd stays on the host); some host weights get an anonymous
CPU_REPACK copy (`quant.sizing.repack`); the KV cache is per layer over a context padded to 256; the compute
buffer is the worst case of the f32 KQ matrix (without flash attention) and the logits path; the output
buffer is n_vocab floats per sequence; without flash attention ggml's CPU backend also needs an unlogged work
buffer.

On the host three figures matter, and they differ a lot once weights are memory-mapped:

- `total`: every buffer llama.cpp creates (what its log adds up to);
- `working_set`: what must stay resident for the model to run without paging: the anonymous memory that is
  touched (repacked copies, KV cache, compute and work buffers, output, metadata, the process) plus the file
  pages of the weights read in place on every token. File pages read once to build a repacked copy, and the
  rows of token_embd a prompt never looks up, are clean page cache the kernel takes back under pressure;
- `peak_rss`: what `ps` shows at worst: with mmap, llama.cpp maps (and prefetches) the whole file, so the
  reclaimable pages count too.

`--no-mmap` reads the weights into anonymous memory (nothing is reclaimable: working set = peak RSS);
`--mlock` pins the mapped span of the file as well, so the pages of repacked weights stop being reclaimable.

Reclaimable is not free, though: with mmap, the file pages of repacked weights stay mapped after loading
(`read_once`), and under a cap of working set + 3 % the kernel evicts pages every token reads before it has
given all of them back (generation 5-9x slower on 3B and 8B shapes, docs/benchmarks.md). The margin therefore
keeps room for half of them (`RECLAIM_ROOM`); `--no-mmap` has no such pages, so when room is short the plan
loads repacked types that way instead (`quant.sizing.plan.fit`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from quant.sizing.repack import X86_AVX2, CpuRepack

MIB = 1 << 20
KV_PAD = 256  # llama-context pads n_ctx to a multiple of 256
COMPUTE_SLACK = 4 * MIB  # graph bookkeeping the closed forms leave out (measured 1-4 MiB)
# The process around llama.cpp: Python, llama-cpp-python, numpy, the runner, llama.cpp's own heap (model and
# context structs, tensor metadata): 50 MiB of anonymous memory measured after loading with hubtui's runner,
# a few MiB more once it has chatted (docs/benchmarks.md).
HOST_RUNTIME = 60 * MIB
# llama.cpp's in-memory copy of the GGUF metadata and its vocabulary (token texts, maps, BPE ranks): fitted on
# the fixtures' load logs (SPM 32k vocab 7.8 MiB, SmolLM2 49k + 49k merges 19.3, Llama 3 128k + 280k 54.4)
METADATA_BASE = 2 * MIB
METADATA_PER_TOKEN = 330
METADATA_PER_MERGE = 48

# What sizing keeps spare for its own error: a plan says a configuration fits when working set + margin is
# within the budget. Measured errors of the working set are in docs/benchmarks.md.
MARGIN_MIN = 64 * MIB
MARGIN_FRACTION = 0.03
# With mmap, the share of the still-mapped file pages of repacked weights (`DeviceUse.read_once`) the margin
# keeps room for. Measured on a Llama 3.2 3B Q4_K_M (1.3 GiB of them) under caps above its working set:
# +0.07 GiB generation 2.9x slower, +0.15 1.6x, +0.40 1.3x, +0.60 1.1x, +0.90 1.0x (docs/benchmarks.md).
RECLAIM_ROOM = 0.5

# bytes per element of the KV cache types (block scales included)
KV_TYPE_SIZE = {"f16": 2.0, "f32": 4.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

_LAYER = re.compile(r"^blk\.(\d+)\.")
INPUT_LAYER = -1


@dataclass(frozen=True)
class Weight:
    """One tensor as sizing sees it: where it lives, its type, its bytes and its row count (ne[1])."""

    name: str
    layer: int  # blk index; n_layer for the output layer; INPUT_LAYER for token_embd and other inputs
    ggml_type: str
    nbytes: int
    rows: int = 1
    dims: int = 1
    tied: bool = False  # the output layer reading token_embd (no output.weight in the file)
    offset: int | None = None  # of its data in the file, when the layout is known

    @property
    def end(self) -> int | None:
        return None if self.offset is None else self.offset + self.nbytes

    @property
    def matmul(self) -> bool:
        """Read by a matrix multiplication (MUL_MAT, or MUL_MAT_ID for 3-D experts): a repack candidate."""
        return self.dims >= 2 and self.layer != INPUT_LAYER

    @property
    def per_token(self) -> bool:
        """Read whole on every token; token_embd is only looked up row by row (GET_ROWS)."""
        return not self.name.startswith("token_embd")


@dataclass(frozen=True)
class ModelShape:
    """What sizing needs to know about one GGUF (read from its header or from the converter's layout)."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx_train: int
    layer_bytes: tuple[int, ...]  # tensor bytes of blk.0 … blk.N-1
    input_bytes: int  # token_embd (and anything else outside the blocks that is not output)
    output_weight_bytes: int  # output.weight, or token_embd's size when tied (llama.cpp duplicates it)
    output_norm_bytes: int
    file_size: int
    head_dim_v: int | None = None
    n_expert: int = 0
    tied_output: bool = False  # no output.weight: the output layer reads token_embd
    tensors: tuple[Weight, ...] = ()  # every tensor, plus the tied output as its own entry
    n_merges: int = 0  # BPE merges in the vocabulary
    n_ff: int = 0
    n_expert_used: int = 0
    n_params: int = 0
    n_active_params: int = 0  # what one token runs through: shared weights and n_expert_used experts
    expert_bytes: int = 0  # tensor bytes of the stacked experts (ffn_*_exps), all layers
    # sliding/chunked attention (Llama 4's chunks): the window and the layers that use it
    n_swa: int = 0
    swa_layers: tuple[int, ...] = ()

    @property
    def output_bytes(self) -> int:
        """What offloading the output layer puts on the GPU."""
        return self.output_weight_bytes + self.output_norm_bytes

    @property
    def weights(self) -> int:
        """Tensor bytes as mapped on the host (a tied output shares token_embd's bytes)."""
        own_output = self.output_norm_bytes + (0 if self.tied_output else self.output_weight_bytes)
        return self.input_bytes + sum(self.layer_bytes) + own_output

    @property
    def n_embd_k_gqa(self) -> int:
        return self.head_dim * self.n_head_kv

    @property
    def n_embd_v_gqa(self) -> int:
        return (self.head_dim_v or self.head_dim) * self.n_head_kv

    @classmethod
    def from_tensors(
        cls,
        tensors: Sequence[tuple[str, int, str, tuple[int, ...], int | None]],
        *,
        file_size: int,
        hparams: dict[str, Any],
        n_merges: int = 0,
    ) -> ModelShape:
        """Group (name, nbytes, ggml type, ne, data offset or None) tuples into per-layer, input and output bytes."""
        from quant.convert.archs import active_params, param_counts

        n_layer = int(hparams["n_layer"])
        layers = [0] * n_layer
        input_bytes = output_bytes = norm = 0
        weights = []
        numpy_shapes = [(t[0], tuple(reversed(t[3]))) for t in tensors]
        n_expert_used = int(hparams.get("n_expert_used") or 0)
        for name, nbytes, ggml_type, ne, offset in tensors:
            m = _LAYER.match(name)
            if m and int(m.group(1)) < n_layer:
                layer = int(m.group(1))
                layers[layer] += nbytes
            elif name.startswith("output_norm"):
                layer = n_layer
                norm += nbytes
            elif name.startswith("output"):
                layer = n_layer
                output_bytes += nbytes
            else:
                layer = INPUT_LAYER
                input_bytes += nbytes
            rows = ne[1] if len(ne) >= 2 else 1
            weights.append(Weight(name, layer, ggml_type, nbytes, rows, len(ne), offset=offset))
        tied = not any(w.name == "output.weight" for w in weights)
        if tied:
            embd = next((w for w in weights if w.name == "token_embd.weight"), None)
            if embd is not None:
                output_bytes = embd.nbytes
                weights.append(replace(embd, name="output.weight", layer=n_layer, tied=True))
        n_head = int(hparams["n_head"])
        head_dim = int(hparams.get("head_dim") or int(hparams["n_embd"]) // n_head)
        return cls(
            n_layer=n_layer,
            n_embd=int(hparams["n_embd"]),
            n_head=n_head,
            n_head_kv=int(hparams.get("n_head_kv") or n_head),
            head_dim=head_dim,
            head_dim_v=int(hparams.get("head_dim_v") or head_dim),
            n_vocab=int(hparams["n_vocab"]),
            n_ctx_train=int(hparams.get("n_ctx_train") or 0),
            layer_bytes=tuple(layers),
            input_bytes=input_bytes,
            output_weight_bytes=output_bytes,
            output_norm_bytes=norm,
            file_size=file_size,
            n_expert=int(hparams.get("n_expert") or 0),
            tied_output=tied,
            tensors=tuple(weights),
            n_merges=n_merges,
            n_ff=int(hparams.get("n_ff") or 0),
            n_expert_used=n_expert_used,
            n_params=param_counts(numpy_shapes)[0],
            n_active_params=active_params(numpy_shapes, n_expert_used),
            expert_bytes=sum(t[1] for t in tensors if "_exps." in t[0]),
            n_swa=int(hparams.get("n_swa") or 0),
            swa_layers=tuple(hparams.get("swa_layers") or ()),
        )


@dataclass(frozen=True)
class RunSettings:
    """How llama.cpp is asked to run; defaults are llama-cpp-python's (and hubtui's runner's)."""

    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: bool = False  # llama-cpp-python defaults to off
    kv_type: str = "f16"
    n_seq: int = 1
    repack: CpuRepack = X86_AVX2  # the CPU's repack rules (quant.sizing.repack)
    mmap: bool = True  # llama.cpp maps the file; --no-mmap reads it into anonymous memory
    mlock: bool = False  # pin the model's memory (the mapped span with mmap)
    # tokens in the KV cache when the figures are taken; None = a full context, what plans size for
    filled: int | None = None
    # llama.cpp's default, which llama-cpp-python and hubtui's runner keep: sliding/chunked-attention layers
    # get a full-size KV cache too (so the prompt cache can be reused); False trims them to the window
    swa_full: bool = True

    @property
    def kv_size(self) -> int:
        return -(-self.n_ctx // KV_PAD) * KV_PAD

    @property
    def kv_used(self) -> int:
        """Cells the attention reads: the whole cache when full, else the filled part padded to 256."""
        if self.filled is None:
            return self.kv_size
        return min(self.kv_size, max(KV_PAD, -(-self.filled // KV_PAD) * KV_PAD))

    @property
    def tokens(self) -> int:
        """Tokens per micro-batch in the worst-case graph."""
        return min(self.n_ctx, self.n_batch, self.n_ubatch)

    @property
    def tokens_used(self) -> int:
        """Tokens of the largest micro-batch actually run (a shorter prompt runs a smaller one)."""
        return self.tokens if self.filled is None else max(1, min(self.tokens, self.filled))

    @property
    def mode(self) -> str:
        return ("mmap" if self.mmap else "no-mmap") + (" + mlock" if self.mlock else "")


@dataclass
class DeviceUse:
    """Bytes one device needs. On the host, `mapped` weights are file-backed (see the module docstring)."""

    device: str  # "host" or "gpu0", "gpu1", ...
    weights: int = 0  # weight buffers as llama.cpp logs them (with mmap: the mapped span of the file)
    kv: int = 0
    compute: int = 0
    output: int = 0
    work: int = 0  # CPU work buffer without flash attention
    repack: int = 0  # anonymous CPU_REPACK copies of some quantised weights
    metadata: int = 0  # llama.cpp's parsed GGUF metadata and vocabulary
    overhead: int = 0
    compute_untouched: int = 0  # part of `compute` the graphs run never touch (stays virtual)
    in_place: int = 0  # file-backed weight bytes read on every token (mmap; folios they keep included)
    file_mapped: int = 0  # host weight bytes of the file that loading maps (mmap prefetches all of them)
    read_once: int = 0  # file bytes of repacked weights that stay mapped after loading (mmap)
    layers: int = 0
    mapped: bool = False
    locked: bool = False

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.kv
            + self.compute
            + self.output
            + self.work
            + self.repack
            + self.metadata
            + self.overhead
        )

    @property
    def anonymous(self) -> int:
        """Memory that cannot be paged back to the file: everything but mmapped host weights."""
        return self.total - (self.weights if self.mapped else 0)

    @property
    def anonymous_resident(self) -> int:
        """The anonymous part actually touched: the hard floor (without swap, going below it is an OOM kill)."""
        return self.anonymous - self.compute_untouched

    @property
    def working_set(self) -> int:
        """What must stay in RAM to run without paging: touched anonymous memory plus the file pages used."""
        if not self.mapped:
            return self.anonymous_resident
        return self.anonymous_resident + (self.weights if self.locked else self.in_place)

    @property
    def peak_rss(self) -> int:
        """Expected peak RSS: with mmap the mapped file counts whole, reclaimable pages included."""
        return self.anonymous_resident + (self.file_mapped if self.mapped else 0)

    @property
    def reclaimable(self) -> int:
        """Mapped file pages in the RSS that the kernel may drop without slowing the model down."""
        return self.peak_rss - self.working_set

    @property
    def margin(self) -> int:
        """What sizing keeps spare above the working set (see `margin`)."""
        pinned = self.locked or not self.mapped  # mlock keeps those pages; without mmap there are none
        return margin(self.working_set, 0 if pinned else self.read_once)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "total": self.total,
            "anonymous": self.anonymous_resident,
            "working_set": self.working_set,
            "peak_rss": self.peak_rss,
            "margin": self.margin,
        }


@dataclass
class Estimate:
    """Memory per device for one (model, settings, n_gpu_layers)."""

    n_gpu_layers: int
    host: DeviceUse
    gpus: list[DeviceUse] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.host.total + sum(g.total for g in self.gpus)

    @property
    def host_rss(self) -> int:
        """Expected peak RSS of the process on the host (what `ps` would show after a full context)."""
        return self.host.peak_rss

    def component(self, name: str) -> int:
        return getattr(self.host, name) + sum(getattr(g, name) for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_gpu_layers": self.n_gpu_layers,
            "total": self.total,
            "host": self.host.to_dict(),
            "gpus": [g.to_dict() for g in self.gpus],
        }


def margin(working_set: int, read_once: int = 0) -> int:
    """The allowance for the model's own error on a working set of this size, plus room for the kernel to
    give back `read_once` bytes of mapped file pages (repacked weights with mmap) before it evicts hot ones."""
    return max(MARGIN_MIN, int(working_set * MARGIN_FRACTION)) + int(read_once * RECLAIM_ROOM)


def kv_cells(shape: ModelShape, settings: RunSettings, layer: int | None = None) -> int:
    """KV cells of `layer` (None: a full-attention layer). llama.cpp's iSWA cache gives window layers
    min(n_ctx, window + n_ubatch) cells padded to 256 unless swa_full (src/llama-kv-cache-iswa.cpp)."""
    if layer is None or settings.swa_full or layer not in shape.swa_layers:
        return settings.kv_size
    return -(-min(settings.kv_size, shape.n_swa + settings.n_ubatch) // KV_PAD) * KV_PAD


def kv_bytes_per_layer(shape: ModelShape, settings: RunSettings, layer: int | None = None) -> int:
    ts = KV_TYPE_SIZE[settings.kv_type]
    ts_v = ts if settings.flash_attn else 2.0  # quantised V needs flash attention; llama.cpp keeps f16
    cells = kv_cells(shape, settings, layer)
    return int(cells * (shape.n_embd_k_gqa * ts + shape.n_embd_v_gqa * ts_v)) * settings.n_seq


def kv_bytes(shape: ModelShape, settings: RunSettings) -> int:
    return sum(kv_bytes_per_layer(shape, settings, il) for il in range(shape.n_layer))


def metadata_bytes(shape: ModelShape) -> int:
    return METADATA_BASE + METADATA_PER_TOKEN * shape.n_vocab + METADATA_PER_MERGE * shape.n_merges


def output_buffer_bytes(shape: ModelShape, settings: RunSettings) -> int:
    return shape.n_vocab * 4 * settings.n_seq


def _kq_term(shape: ModelShape, settings: RunSettings, *, used: bool = False) -> int:
    """The f32 KQ matrix and its neighbours for one layer (only without flash attention).

    `used`: for the graph actually run at `settings.filled` tokens, not the reserved worst case."""
    b = settings.tokens_used if used else settings.tokens
    c = settings.kv_used if used else settings.kv_size
    e = shape.n_embd
    return 4 * b * (1 + 4 * e + (0 if settings.flash_attn else c * (1 + shape.n_head)))


def _logits_term(shape: ModelShape, settings: RunSettings) -> int:
    return 4 * settings.tokens * (shape.n_embd + shape.n_vocab)


def _ffn_term(shape: ModelShape, settings: RunSettings) -> int:
    """The feed-forward block's tensors for one micro-batch: gate, up and their product (n_ff wide, once per
    expert used), the block's input and the residual (n_embd wide)."""
    width = shape.n_ff * max(1, shape.n_expert_used)
    return 4 * settings.tokens_used * (3 * width + 2 * shape.n_embd)


def compute_touched(shape: ModelShape, settings: RunSettings) -> int:
    """Bytes of the compute buffer the graphs run actually touch.

    The buffer is reserved for the worst graph: every token of a micro-batch producing logits. With one
    output token (llama-cpp-python's default, logits_all=False) the logits path stays virtual, and the
    largest live set is either the attention (the KQ term, for the cells filled so far) or the feed-forward
    block; measured on Llama shapes from 1B to 8B within a few MiB (docs/benchmarks.md)."""
    used = max(_kq_term(shape, settings, used=True), _ffn_term(shape, settings)) + COMPUTE_SLACK
    return min(compute_full(shape, settings), used)


def compute_untouched(shape: ModelShape, settings: RunSettings) -> int:
    """Bytes of the full compute buffer that stay virtual (one-token logits, a context not yet full)."""
    return compute_full(shape, settings) - compute_touched(shape, settings)


def compute_full(shape: ModelShape, settings: RunSettings) -> int:
    """The compute buffer of the device that runs the whole graph (CPU only, or full GPU offload)."""
    return max(_kq_term(shape, settings), _logits_term(shape, settings)) + COMPUTE_SLACK


def compute_partial_gpu(shape: ModelShape, settings: RunSettings) -> int:
    """A GPU's buffer under partial offload (Ollama's fitted llama formula; it also stages a host weight)."""
    b, e, c = settings.tokens, shape.n_embd, settings.kv_size
    kq = 0 if settings.flash_attn else 4 * c * b * shape.n_head
    attn = 4 * b * (1 + e + max(c, e)) + e * e * 9 // 16 + kq + 4 * c * shape.head_dim * shape.n_head_kv
    logits = 4 * b * (e + shape.n_vocab) + e * shape.n_vocab * 105 // 128
    return 4 * b * e + max(attn, logits) + COMPUTE_SLACK


def cpu_work_bytes(shape: ModelShape, settings: RunSettings) -> int:
    """ggml's CPU work buffer for the f16 KQ path without flash attention (not in llama.cpp's log).

    It is allocated for the largest graph run so far, so a cache not yet full needs less."""
    if settings.flash_attn:
        return 0
    return settings.kv_used * settings.tokens_used * shape.n_head * 2


def gpu_layer_split(
    shape: ModelShape, n_gpu_layers: int, budgets: tuple[int, ...]
) -> tuple[list[int], int | None]:
    """Device index of each repeating layer (-1 = host) and of the output layer (None = host).

    llama.cpp: i_gpu_start = max(n_layer + 1 − ngl, 0); layers from i_gpu_start go to the GPUs, spread
    in proportion to each device's memory (tensor_split default), the output layer last.
    """
    n = shape.n_layer
    ngl = max(0, min(n_gpu_layers, n + 1))
    if not budgets or ngl == 0:
        return [-1] * n, None
    start = n + 1 - ngl
    total = sum(budgets) or 1
    cumulative, acc = [], 0
    for b in budgets:
        acc += b
        cumulative.append(acc / total)

    def device(il: int) -> int:
        frac = (il - start) / ngl
        for i, edge in enumerate(cumulative):
            if frac < edge:
                return i
        return len(budgets) - 1

    placement = [device(il) if il >= start else -1 for il in range(n)]
    return placement, device(n)


# Page cache comes in folios: Linux 6.x file systems with large folios (ext4 since 6.16, XFS, btrfs) read a
# memory-mapped file ahead in folios of up to 2 MiB, and a folio is kept or dropped whole. A weight read in
# place therefore keeps the folios it overlaps, parts of its reclaimable neighbours included (measured: the
# per-token file pages of Llama-shaped Q4_K_M files are their in-place tensors rounded out to 2 MiB blocks).
FOLIO = 2 * MIB


def _folio_span(ranges: list[tuple[int, int]]) -> int:
    """Bytes of the FOLIO-aligned blocks that cover `ranges` (each block once)."""
    total, last = 0, -1
    for start, end in sorted(ranges):
        first, stop = max(start // FOLIO, last + 1), (end - 1) // FOLIO
        if stop >= first:
            total += (stop - first + 1) * FOLIO
            last = stop
    return total


def _aggregate_tensors(shape: ModelShape) -> tuple[Weight, ...]:
    """Stand-ins for a shape built from byte totals only (no tensor list): one entry per layer, none repacked."""
    out = [Weight("token_embd.weight", INPUT_LAYER, "?", shape.input_bytes)]
    out += [Weight(f"blk.{i}", i, "?", n) for i, n in enumerate(shape.layer_bytes)]
    out.append(Weight("output_norm.weight", shape.n_layer, "?", shape.output_norm_bytes))
    out.append(Weight("output.weight", shape.n_layer, "?", shape.output_weight_bytes, tied=shape.tied_output))
    return tuple(out)


def _host_weights(host: DeviceUse, shape: ModelShape, settings: RunSettings, on_host: set[int]) -> None:
    """Split the host's tensors into loaded or mapped bytes, CPU_REPACK copies and per-token file pages.

    With mmap, llama.cpp maps the span of the file between the first and the last weight it uses in place
    (its CPU_Mapped buffer) and unmaps the rest after loading; a repacked weight inside that span keeps its
    (reclaimable) file pages mapped: `read_once`."""
    mapped: list[Weight] = []  # in the default CPU buffer: used in place (mmap) or loaded (no mmap)
    per_token: list[Weight] = []
    repacked: list[Weight] = []
    for w in shape.tensors or _aggregate_tensors(shape):
        if w.layer not in on_host:
            continue
        if w.matmul and settings.repack.repacks(w.ggml_type, w.rows):
            host.repack += w.nbytes  # an anonymous copy; with mmap its file pages are read once
            host.file_mapped += 0 if w.tied else w.nbytes
            if not w.tied:
                repacked.append(w)
        elif w.tied:
            per_token.append(w)  # the output reads token_embd's own bytes
        else:
            mapped.append(w)
            host.file_mapped += w.nbytes
            if w.per_token:
                per_token.append(w)
    loaded = sum(w.nbytes for w in mapped)
    if not settings.mmap:
        host.weights, host.file_mapped = loaded, 0
        return
    known = [(w.offset, w.nbytes) for w in mapped if w.offset is not None]
    if mapped and len(known) == len(mapped):
        lo, hi = min(o for o, _ in known), max(o + n for o, n in known)
        host.weights = hi - lo
        host.read_once = sum(
            max(0, min(hi, w.end) - max(lo, w.offset))
            if w.offset is not None and w.end is not None
            else w.nbytes
            for w in repacked
        )
    else:
        host.weights = host.file_mapped  # layout unknown: the whole host part of the file
        host.read_once = sum(w.nbytes for w in repacked)
    if all(w.offset is not None for w in per_token):
        folios = _folio_span([(w.offset, w.end) for w in per_token])  # type: ignore[misc]
        host.in_place = min(folios, host.weights)  # no folio reaches past the mapped file
    else:
        host.in_place = sum(w.nbytes for w in per_token)


def estimate(
    shape: ModelShape, settings: RunSettings, n_gpu_layers: int = 0, gpu_budgets: tuple[int, ...] = ()
) -> Estimate:
    """Bytes per device for loading `shape` with `settings`, `n_gpu_layers` offloaded over `gpu_budgets`."""
    placement, out_dev = gpu_layer_split(shape, n_gpu_layers, gpu_budgets)
    gpus = [DeviceUse(f"gpu{i}") for i in range(len(gpu_budgets))]
    host = DeviceUse(
        "host",
        mapped=settings.mmap,
        locked=settings.mlock,
        overhead=HOST_RUNTIME,
        output=output_buffer_bytes(shape, settings),
        metadata=metadata_bytes(shape),
    )
    for il, dev in enumerate(placement):
        use = host if dev < 0 else gpus[dev]
        use.kv += kv_bytes_per_layer(shape, settings, il)
        use.layers += 1
        if dev >= 0:
            use.weights += shape.layer_bytes[il]
    if out_dev is not None:
        gpus[out_dev].weights += shape.output_bytes
        gpus[out_dev].layers += 1
    on_host = {il for il, dev in enumerate(placement) if dev < 0} | {INPUT_LAYER}
    if out_dev is None:
        on_host.add(shape.n_layer)
    _host_weights(host, shape, settings, on_host)
    on_gpu = n_gpu_layers > 0 and bool(gpu_budgets)
    full = on_gpu and host.layers == 0
    if not on_gpu:
        host.compute = compute_full(shape, settings)
        host.compute_untouched = compute_untouched(shape, settings)
    else:
        for g in gpus:
            if g.layers:
                g.compute = compute_full(shape, settings) if full else compute_partial_gpu(shape, settings)
        # the host still embeds the input batch; with CPU layers it runs their attention too
        host.compute = 4 * settings.tokens * shape.n_embd * 2 + COMPUTE_SLACK
        if host.layers:
            host.compute = max(host.compute, _kq_term(shape, settings) + COMPUTE_SLACK)
    if host.layers:
        host.work = cpu_work_bytes(shape, settings)
    return Estimate(n_gpu_layers if on_gpu else 0, host, [g for g in gpus])
