"""What the converter needs to know about one llama.cpp architecture family, and the registry of families.

A family declares, in one module: the Hugging Face `architectures` it accepts, the config defaults
transformers' AutoConfig would add, the hparams it reads beyond the common ones, the GGUF architecture and
the KVs it writes (in llama.cpp's converter order), how checkpoint tensor names map to GGUF names (renames,
skipped tensors, per-expert tensors to stack), tensors it generates, the shapes config.json implies and the
tensors a complete checkpoint must have. `quant.convert.checkpoint`, `tensors` and `layout` do the rest
generically, so adding an architecture is adding a module here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gguf

from quant.errors import ConversionError

if TYPE_CHECKING:
    from quant.convert.checkpoint import HParams, SourceTensor
    from quant.convert.tensors import OutTensor
    from quant.convert.type_rules import FileType

QUANTIZATION_VERSION = 2

# Tensors convert_hf_to_gguf never writes (ModelBase.prepare_tensors).
DROPPED_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")

# TextModel.filter_tensors: multimodal tensors never go into a text model's GGUF.
_MULTIMODAL_PREFIXES = (
    "mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.", "sound_encoder.",
    "sound_projection.", "speech_embeddings.",
)  # fmt: skip
_MULTIMODAL_PARTS = (
    "visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.", "code2wav.", "projector.",
    "pre_mm_projector_norm", "image_newline", "view_seperator", "patch_embed", "patch_embedding",
    "patch_merger.", "patch_merge_mlp.", "model.connector.",
)  # fmt: skip


def is_multimodal_tensor(name: str) -> bool:
    """Whether llama.cpp's text conversion drops `name` as part of a vision/audio tower or projector."""
    return name.startswith(_MULTIMODAL_PREFIXES) or any(p in name for p in _MULTIMODAL_PARTS)


@dataclass(frozen=True)
class ExpertStack:
    """Per-expert 2-D weights that the GGUF holds stacked into one 3-D tensor per layer (Mixtral)."""

    marker: str  # the name part that introduces the expert index, e.g. "block_sparse_moe.experts"
    weights: tuple[str, ...]  # the weight ids after the expert index, in the converter's stacking order
    merged: (
        str  # the name (with {bid}, {wid}) the stacked tensor maps from, e.g. layers.{bid}.feed_forward...
    )
    count_key: str  # the config key giving the expert count, for messages

    def locate(self, name: str) -> tuple[int, int, str] | None:
        """(layer, expert, weight id) of a per-expert tensor or module name (`model.layers.3.<marker>.5.w1...`),
        None when the name does not have that form."""
        pieces = name.split(".")
        try:
            i = pieces.index(self.marker.rsplit(".", 1)[-1])
            layer = next(int(p) for p in pieces[:i] if p.isdecimal())
            return layer, int(pieces[i + 1]), pieces[i + 2]
        except (ValueError, IndexError, StopIteration):
            return None

    def holds(self, expert: int, weight: str, n_expert: int) -> bool:
        """Whether the stack of a model with `n_expert` experts has that expert's `weight`."""
        return 0 <= expert < n_expert and weight in self.weights


@dataclass(frozen=True)
class FusedSlice:
    """One output tensor cut from a fused 3-D source [experts, A, B] (Llama 4's `experts.gate_up_proj`):
    output row r of expert e is source column `first + r` of e's [A, B] matrix, so the output is
    [experts, count, A] (a transpose of the column slice, as convert_hf_to_gguf's `transpose(-1, -2)`)."""

    hf_name: str  # the name the slice maps under (e.g. ...experts.gate_proj.weight)
    shape: tuple[int, ...]  # the output's numpy shape
    columns: tuple[int, int]  # (first, count) of the source's last dimension


class Architecture:
    """One llama.cpp architecture family. Subclasses override the class attributes and hooks they need."""

    name: ClassVar[str]  # llama.cpp's general.architecture (the prefix of the model KVs)
    hf_architectures: ClassVar[tuple[str, ...]] = ()  # config.json `architectures[0]` values accepted
    moe_architectures: ClassVar[frozenset[str]] = frozenset()  # of those, the mixture-of-experts ones
    permute_qk: ClassVar[bool] = True  # HF rotate-half Q/K rows -> llama.cpp's adjacent pairs
    expert_stack: ClassVar[ExpertStack | None] = None
    config_file: ClassVar[str] = "config.json"  # what error messages name

    # ---- hparams

    def config_defaults(self, hf_arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Values transformers' config class fills in for keys config.json may omit."""
        return {}

    def adjust_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """The config (defaults applied) as the family's converter class rewrites it before reading hparams."""
        return cfg

    def parse_extras(self, path: Path, cfg: Mapping[str, Any], rope: Mapping[str, Any]) -> dict[str, Any]:
        """Validated hparams beyond the common ones (`HParams.extras`); `rope` is the rope parameters."""
        return {}

    def gguf_arch(self, hp: HParams) -> gguf.MODEL_ARCH:
        return _ARCH_BY_NAME[self.arch_name(hp)]

    def arch_name(self, hp: HParams) -> str:
        """general.architecture for this checkpoint (a family may pick one per checkpoint)."""
        return self.name

    def add_hparams(self, w: gguf.GGUFWriter, hp: HParams, ft: FileType) -> None:
        """The model KVs and general.file_type in convert_hf_to_gguf's order."""
        self.add_text_model_kvs(w, hp, ft)
        self.add_family_kvs(w, hp)
        if not ft.by_quantize:
            w.add_quantization_version(QUANTIZATION_VERSION)

    def add_text_model_kvs(self, w: gguf.GGUFWriter, hp: HParams, ft: FileType) -> None:
        """What llama.cpp's TextModel.set_gguf_parameters writes for the hparams a llama-like model has."""
        w.add_block_count(hp.n_layer)
        w.add_context_length(hp.n_ctx_train)
        w.add_embedding_length(hp.n_embd)
        w.add_feed_forward_length(hp.n_ff)
        w.add_head_count(hp.n_head)
        w.add_head_count_kv(hp.n_head_kv)
        rs = hp.rope_scaling
        if rs is not None and rs.type == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(rs.factor)
        elif rs is not None and rs.type == "yarn":
            p = rs.params
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(rs.factor)
            w.add_rope_scaling_orig_ctx_len(int(p["original_max_position_embeddings"]))
            if (v := p.get("extrapolation_factor")) is not None:
                w.add_rope_scaling_yarn_ext_factor(v)
            if (v := p.get("attention_factor", p.get("attn_factor"))) is not None:
                w.add_rope_scaling_yarn_attn_factor(v)
            if (v := p.get("beta_fast")) is not None:
                w.add_rope_scaling_yarn_beta_fast(v)
            if (v := p.get("beta_slow")) is not None:
                w.add_rope_scaling_yarn_beta_slow(v)
        self.add_rope_base(w, hp)
        w.add_layer_norm_rms_eps(hp.rms_eps)
        if hp.n_expert:
            w.add_expert_count(hp.n_expert)
            w.add_expert_used_count(hp.n_expert_used)
        if hp.head_dim_explicit:
            w.add_key_length(hp.head_dim)
            w.add_value_length(hp.head_dim)
        if not ft.by_quantize:
            w.add_file_type(ft.ftype)

    def add_rope_base(self, w: gguf.GGUFWriter, hp: HParams) -> None:
        w.add_rope_freq_base(hp.rope_theta)

    def add_family_kvs(self, w: gguf.GGUFWriter, hp: HParams) -> None:
        """The KVs the family's model class adds after TextModel's."""

    # ---- tensors

    def source_name(self, name: str) -> str | None:
        """The name a checkpoint tensor is mapped under, or None when the text model does not use it."""
        name = name.replace("text_model.", "")
        if name.endswith(DROPPED_SUFFIXES) or is_multimodal_tensor(name):
            return None
        return name.replace("language_model.", "")

    def fused_slices(self, name: str, t: SourceTensor, hp: HParams) -> list[FusedSlice] | None:
        """The output tensors one fused checkpoint tensor splits into, or None when it maps as it is."""
        return None

    def extra_tensors(self, hp: HParams) -> list[OutTensor]:
        """Tensors the converter generates (before the checkpoint's own), e.g. rope_freqs."""
        return []

    def permute_heads(self, hf_name: str, hp: HParams) -> int:
        """The head count whose Q/K rows are permuted for `hf_name`, or 0 for none."""
        if not self.permute_qk:
            return 0
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            return hp.n_head
        if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            return hp.n_head_kv
        return 0

    def keep_f32(self, gguf_name: str, shape: tuple[int, ...]) -> bool:
        """Tensors the converter always writes as F32 (1-D, norms, non-weights, the MoE router)."""
        return (
            len(shape) <= 1
            or gguf_name.endswith("_norm.weight")
            or not gguf_name.endswith(".weight")
            or "ffn_gate_inp" in gguf_name
        )

    def expected_shapes(self, hp: HParams) -> dict[str, tuple[tuple[int, ...], str]]:
        """GGUF base name (no blk prefix) -> (expected numpy shape, the config keys that determine it)."""
        return {}

    def required_tensors(self, hp: HParams) -> dict[str, str]:
        """GGUF name -> checkpoint name of every tensor a complete checkpoint must provide."""
        return {}

    # ---- parameter counts

    @staticmethod
    def param_counts(tensors: list[OutTensor]) -> tuple[int, int, int, int]:
        """(total, shared, expert, expert_count) the way gguf-py's GGUFWriter counts parameters."""
        return param_counts((t.name, t.shape) for t in tensors)

    # ---- running

    def attention_windows(self, n_layer: int, kv: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
        """(window, layers): the sliding/chunked attention window llama.cpp gives a model with these GGUF
        KVs and the layers that use it (their KV cache can be smaller); (0, ()) when all attend fully."""
        return 0, ()


def param_counts(tensors: Iterable[tuple[str, tuple[int, ...]]]) -> tuple[int, int, int, int]:
    """(total, shared, one expert, experts per tensor) of (GGUF name, numpy-order shape) pairs, counted as
    gguf-py's GGUFWriter does: a stacked `*_exps.*` tensor [experts, ...] holds `experts` copies of one
    expert's weights; everything else (shared experts included) is shared."""
    total = shared = expert = expert_sum = n_expert_tensors = 0
    for name, shape in tensors:
        size = math.prod(shape)
        if "_exps." in name and len(shape) >= 3:
            expert += size // shape[-3]
            expert_sum += shape[-3]
            n_expert_tensors += 1
        else:
            shared += size
        total += size
    return total, shared, expert, (expert_sum // n_expert_tensors if n_expert_tensors else 0)


def active_params(tensors: Iterable[tuple[str, tuple[int, ...]]], n_expert_used: int) -> int:
    """Parameters one token runs through: the shared ones plus `n_expert_used` experts' (total when dense)."""
    total, shared, expert, n_expert = param_counts(tensors)
    return shared + expert * n_expert_used if n_expert and n_expert_used else total


_ARCH_BY_NAME = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}
_REGISTRY: dict[str, Architecture] = {}  # HF architecture -> family
_FAMILIES: dict[str, Architecture] = {}  # family class name -> family


def register(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator: make a family available under its HF architectures (refusing duplicates)."""
    if cls.__name__ in _FAMILIES:
        raise ValueError(f"architecture family {cls.__name__} is registered twice")
    if getattr(cls, "name", None) not in _ARCH_BY_NAME:
        raise ValueError(f"{cls.__name__}: {getattr(cls, 'name', None)!r} is not a llama.cpp architecture")
    for hf in cls.hf_architectures:
        if hf in _REGISTRY:
            raise ValueError(f"{hf} is claimed by both {type(_REGISTRY[hf]).__name__} and {cls.__name__}")
    family = cls()
    _REGISTRY.update(dict.fromkeys(cls.hf_architectures, family))
    _FAMILIES[cls.__name__] = family
    return cls


def for_hf_architecture(path: Path, hf_arch: Any) -> Architecture:
    """The family converting `hf_arch` (config.json's architectures[0]); a one-line error otherwise."""
    from quant.convert import archs  # noqa: F401  (imports every family module, which registers it)

    family = _REGISTRY.get(hf_arch) if isinstance(hf_arch, str) else None
    if family is None:
        shown = hf_arch if hf_arch is not None else "missing ('architectures' is not set)"
        raise ConversionError(
            f"{path}: unsupported architecture {shown}; supported: {', '.join(supported_architectures())}"
        )
    return family


def family(name: str) -> Architecture:
    """A registered family by class name (for layouts that have no config.json architectures)."""
    from quant.convert import archs  # noqa: F401

    return _FAMILIES[name]


def for_gguf_architecture(name: str) -> Architecture | None:
    """The family writing GGUF architecture `name` (general.architecture), or None for one hubtui lacks."""
    from quant.convert import archs  # noqa: F401

    return next((f for f in _FAMILIES.values() if f.name == name), None)


def gguf_architectures() -> tuple[str, ...]:
    """The GGUF architectures (general.architecture) hubtui converts, sizes and runs."""
    from quant.convert import archs  # noqa: F401

    return tuple(dict.fromkeys(f.name for f in _FAMILIES.values()))


def supported_architectures() -> tuple[str, ...]:
    from quant.convert import archs  # noqa: F401

    return tuple(_REGISTRY)
