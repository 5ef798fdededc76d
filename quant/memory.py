"""llama.cpp's memory model: what loading a GGUF with a given context and GPU offload allocates, per device.

Terms and formulas follow memory-fit.md §1 (checked against llama.cpp's load log): weights are the tensor
bytes, placed the way llama.cpp places layers (the last `n_gpu_layers` go to the GPU, the output layer
counts inside `n_gpu_layers` and goes first, token_embd stays on the host); the KV cache is f16 per layer
with GQA over a context padded to 256; the compute buffer is the worst case of the f32 KQ matrix (without
flash attention) and the logits path; the output buffer is n_vocab floats per sequence. On CPU without
flash attention ggml also needs an unlogged work buffer of n_kv × n_ubatch × n_head × 2 bytes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

MIB = 1 << 20
KV_PAD = 256  # llama-context pads n_ctx to a multiple of 256
COMPUTE_SLACK = 4 * MIB  # graph bookkeeping the closed forms leave out (measured 1-4 MiB)
HOST_RUNTIME = 150 * MIB  # the process itself: Python, llama.cpp and its libraries (gguf-parser's footprint)
# llama.cpp's in-memory copy of the GGUF metadata and its vocabulary (token texts, maps, BPE ranks): fitted on
# the fixtures' load logs (SPM 32k vocab 7.8 MiB, SmolLM2 49k + 49k merges 19.3, Llama 3 128k + 280k 54.4)
METADATA_BASE = 2 * MIB
METADATA_PER_TOKEN = 330
METADATA_PER_MERGE = 48

# Types ggml's CPU backend repacks into an anonymous CPU_REPACK copy (ggml-cpu/repack.cpp), for weights
# that feed a matrix multiplication and have a multiple of 8 rows. The file stays mapped as well.
REPACK_X86_AVX2 = ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4")
REPACK_X86_AVX512 = (*REPACK_X86_AVX2, "Q2_K")
REPACK_ARM_I8MM = ("Q4_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "MXFP4", "Q8_0")


def repack_types_for(machine: str, cpu_flags: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The repacked types of this CPU (from /proc/cpuinfo flags): what llama.cpp's CPU backend copies."""
    if machine in ("x86_64", "AMD64", "i686"):
        if "avx512f" in cpu_flags:
            return REPACK_X86_AVX512
        return REPACK_X86_AVX2 if "avx2" in cpu_flags else ()
    if machine in ("aarch64", "arm64"):
        return REPACK_ARM_I8MM if cpu_flags & {"i8mm", "asimddp"} else ()  # the same set for both
    return ()


# bytes per element of the KV cache types (block scales included)
KV_TYPE_SIZE = {"f16": 2.0, "f32": 4.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

_LAYER = re.compile(r"^blk\.(\d+)\.")


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
    # matmul weights that could be repacked: (layer index, n_layer for output.weight; ggml type; bytes)
    matmul: tuple[tuple[int, str, int], ...] = ()
    n_merges: int = 0  # BPE merges in the vocabulary

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
        tensors: list[tuple[str, int, str, tuple[int, ...]]],
        *,
        file_size: int,
        hparams: dict[str, Any],
        n_merges: int = 0,
    ) -> ModelShape:
        """Group (name, nbytes, ggml type, ne) tuples into per-layer, input and output bytes."""
        n_layer = int(hparams["n_layer"])
        layers = [0] * n_layer
        input_bytes = output_bytes = norm = 0
        sizes = {t[0]: t[1] for t in tensors}
        matmul = []
        for name, nbytes, ggml_type, ne in tensors:
            m = _LAYER.match(name)
            layer = int(m.group(1)) if m else (n_layer if name == "output.weight" else None)
            if layer is not None and name.endswith(".weight") and len(ne) >= 2 and ne[1] % 8 == 0:
                matmul.append((layer, ggml_type, nbytes))
            if m and int(m.group(1)) < n_layer:
                layers[int(m.group(1))] += nbytes
            elif name.startswith("output_norm"):
                norm += nbytes
            elif name.startswith("output"):
                output_bytes += nbytes
            else:
                input_bytes += nbytes
        tied = "output.weight" not in sizes
        if tied:
            output_bytes = sizes.get("token_embd.weight", 0)
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
            matmul=tuple(matmul),
            n_merges=n_merges,
        )


@dataclass(frozen=True)
class RunSettings:
    """How llama.cpp is asked to run; defaults are llama-cpp-python's."""

    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: bool = False  # llama-cpp-python defaults to off
    kv_type: str = "f16"
    n_seq: int = 1
    repack_types: tuple[str, ...] = REPACK_X86_AVX2  # see repack_types_for

    @property
    def kv_size(self) -> int:
        return -(-self.n_ctx // KV_PAD) * KV_PAD

    @property
    def tokens(self) -> int:
        """Tokens per micro-batch in the worst-case graph."""
        return min(self.n_ctx, self.n_batch, self.n_ubatch)


@dataclass
class DeviceUse:
    """Bytes one device needs. `mapped` weights are file-backed on the host (evictable, not anonymous)."""

    device: str  # "host" or "gpu0", "gpu1", ...
    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0
    work: int = 0  # CPU work buffer without flash attention
    repack: int = 0  # anonymous CPU_REPACK copies of some quantised weights
    metadata: int = 0  # llama.cpp's parsed GGUF metadata and vocabulary
    overhead: int = 0
    compute_untouched: int = (
        0  # part of `compute` that stays virtual when only the last token's logits are used
    )
    layers: int = 0
    mapped: bool = False

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
    def resident(self) -> int:
        """Expected peak RSS after filling the context (allocated but never touched pages excluded)."""
        return self.total - self.compute_untouched

    @property
    def anonymous(self) -> int:
        """What cannot be paged back to the file: everything but mmapped host weights."""
        return self.total - (self.weights if self.mapped else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"total": self.total, "anonymous": self.anonymous, "resident": self.resident}


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
        return self.host.resident

    def component(self, name: str) -> int:
        return getattr(self.host, name) + sum(getattr(g, name) for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_gpu_layers": self.n_gpu_layers,
            "total": self.total,
            "host_rss": self.host_rss,
            "host": self.host.to_dict(),
            "gpus": [g.to_dict() for g in self.gpus],
        }


def kv_bytes_per_layer(shape: ModelShape, settings: RunSettings) -> int:
    ts = KV_TYPE_SIZE[settings.kv_type]
    ts_v = ts if settings.flash_attn else 2.0  # quantised V needs flash attention; llama.cpp keeps f16
    return int(settings.kv_size * (shape.n_embd_k_gqa * ts + shape.n_embd_v_gqa * ts_v)) * settings.n_seq


def kv_bytes(shape: ModelShape, settings: RunSettings) -> int:
    return shape.n_layer * kv_bytes_per_layer(shape, settings)


def metadata_bytes(shape: ModelShape) -> int:
    return METADATA_BASE + METADATA_PER_TOKEN * shape.n_vocab + METADATA_PER_MERGE * shape.n_merges


def output_buffer_bytes(shape: ModelShape, settings: RunSettings) -> int:
    return shape.n_vocab * 4 * settings.n_seq


def _kq_term(shape: ModelShape, settings: RunSettings) -> int:
    """The f32 KQ matrix and its neighbours for one layer (only without flash attention)."""
    b, e, c = settings.tokens, shape.n_embd, settings.kv_size
    return 4 * b * (1 + 4 * e + (0 if settings.flash_attn else c * (1 + shape.n_head)))


def _logits_term(shape: ModelShape, settings: RunSettings) -> int:
    return 4 * settings.tokens * (shape.n_embd + shape.n_vocab)


# The reserved compute buffer is sized for logits of a whole micro-batch, but with one output token (llama-cpp-python's
# default, logits_all=False) most of that is never touched; graph allocation still scatters tensors over part of it
# (measured up to ~13 MiB beyond the KQ term on the fixtures), so at most this much of the rest counts as resident.
LOGITS_TOUCHED_MAX = 32 * MIB


def compute_untouched(shape: ModelShape, settings: RunSettings) -> int:
    """Bytes of the full compute buffer that one-token logits leave untouched (0 when the KQ term dominates)."""
    rest = compute_full(shape, settings) - COMPUTE_SLACK - _kq_term(shape, settings)
    return max(0, rest - LOGITS_TOUCHED_MAX)


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
    """ggml's CPU work buffer for the f16 KQ path without flash attention (not in llama.cpp's log)."""
    return 0 if settings.flash_attn else settings.kv_size * settings.tokens * shape.n_head * 2


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


def estimate(
    shape: ModelShape, settings: RunSettings, n_gpu_layers: int = 0, gpu_budgets: tuple[int, ...] = ()
) -> Estimate:
    """Bytes per device for loading `shape` with `settings`, `n_gpu_layers` offloaded over `gpu_budgets`."""
    placement, out_dev = gpu_layer_split(shape, n_gpu_layers, gpu_budgets)
    kv_layer = kv_bytes_per_layer(shape, settings)
    gpus = [DeviceUse(f"gpu{i}") for i in range(len(gpu_budgets))]
    host = DeviceUse(
        "host",
        mapped=True,
        overhead=HOST_RUNTIME,
        output=output_buffer_bytes(shape, settings),
        metadata=metadata_bytes(shape),
    )
    host.weights = shape.input_bytes
    for il, dev in enumerate(placement):
        use = host if dev < 0 else gpus[dev]
        use.weights += shape.layer_bytes[il]
        use.kv += kv_layer
        use.layers += 1
    if out_dev is None:
        # on the host a tied output reads token_embd's mapped bytes: only the norm is extra
        host.weights += shape.output_norm_bytes + (0 if shape.tied_output else shape.output_weight_bytes)
    else:
        gpus[out_dev].weights += shape.output_bytes
        gpus[out_dev].layers += 1
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
    on_host = {il for il, dev in enumerate(placement) if dev < 0} | (
        {shape.n_layer} if out_dev is None else set()
    )
    host.repack = sum(
        nbytes for layer, t, nbytes in shape.matmul if layer in on_host and t in settings.repack_types
    )
    return Estimate(n_gpu_layers if on_gpu else 0, host, [g for g in gpus])
