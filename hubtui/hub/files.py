"""What a repo's file list means: safe names, checkpoint layout, GGUF quant types, what to download."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from hubtui.hub.errors import NotConvertibleError, UnsafeFileNameError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

# Small files the converter reads besides the weights (config, tokenizer, chat template, model card).
SUPPORT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "params.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "tokenizer.model.v*",
    "tekken.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "README.md",
)


# A PEFT adapter repo: its config (r, alpha, targets, base_model_name_or_path) and weights.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def base_model_of_card(value: object) -> str | None:
    """The first repo id in a model card's `base_model` (a string or a list of them), else None."""
    if isinstance(value, list | tuple):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def check_name(name: str) -> str:
    """Reject names that would land outside the target directory (absolute, drive, UNC, `..`, NUL)."""
    bad = (
        not name
        or "\0" in name
        or ".." in name.replace("\\", "/").split("/")
        or any(
            p.drive or p.root for p in (PurePosixPath(name), *(PureWindowsPath(s) for s in name.split("/")))
        )
    )
    if bad:
        raise UnsafeFileNameError(f"refusing unsafe file name from the hub: {name!r} (absolute or with '..')")
    return name


def safe_join(root: Path, name: str) -> Path:
    """root/name whose folder is inside root (the file itself may be a cache symlink we replace)."""
    check_name(name)
    target = root.joinpath(*name.split("/"))
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise UnsafeFileNameError(f"refusing file name {name!r}: it resolves outside {root}")
    return target


def _gguf_quant_names() -> list[str]:
    """Quant type names as llama.cpp spells them (Q4_K_M, IQ4_XS, BF16, ...), longest first."""
    from gguf import GGMLQuantizationType, LlamaFileType

    names = {n.removeprefix("MOSTLY_") for n in LlamaFileType.__members__ if n not in ("GUESSED", "ALL_F32")}
    names |= set(GGMLQuantizationType.__members__)
    names |= {"F32", "F16", "BF16"}
    return sorted(names, key=len, reverse=True)


_QUANT_RE: re.Pattern[str] | None = None
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def gguf_quant(name: str) -> str | None:
    """The quant type in a GGUF file name (`model-Q4_K_M.gguf` -> `Q4_K_M`), None if it names none."""
    global _QUANT_RE
    if _QUANT_RE is None:
        alt = "|".join(re.escape(n) for n in _gguf_quant_names())
        _QUANT_RE = re.compile(rf"(?<![A-Za-z0-9])({alt})(?![A-Za-z0-9])", re.IGNORECASE)
    stem = PurePosixPath(name).name
    found = _QUANT_RE.findall(_SHARD_RE.sub(".gguf", stem))
    return found[-1].upper() if found else None


@dataclass
class Layout:
    """Which checkpoint formats a repo holds; `kind` is what the converter will use."""

    kind: str  # "hf", "mistral", "adapter" (PEFT LoRA), "gguf", "pickle" or "none"
    hf_weights: list[str] = field(default_factory=list)
    mistral_weights: list[str] = field(default_factory=list)
    gguf_files: list[str] = field(default_factory=list)
    pickle_files: list[str] = field(default_factory=list)
    adapter_files: list[str] = field(default_factory=list)

    @property
    def convertible(self) -> bool:
        """`hubtui convert` takes it: a checkpoint, or an adapter (with --base, or merged with --lora)."""
        return self.kind in ("hf", "mistral", "adapter")

    @property
    def weights(self) -> list[str]:
        return {"hf": self.hf_weights, "mistral": self.mistral_weights, "adapter": self.adapter_files}.get(
            self.kind, []
        )

    @property
    def note(self) -> str:
        if self.kind == "hf" and self.mistral_weights:
            return "HF layout (model-*.safetensors); the Mistral-native consolidated copy is skipped"
        return {
            "hf": "HF layout (model-*.safetensors)",
            "mistral": "Mistral-native layout (consolidated*.safetensors)",
            "adapter": "PEFT LoRA adapter (adapter_model.safetensors): convert ADAPTER --base BASE, "
            "or merge with convert BASE --lora ADAPTER",
            "gguf": "GGUF files only (already converted)",
            "pickle": "pickle weights only (.bin/.pt): not convertible, and unsafe to load",
            "none": "no weights found",
        }[self.kind]


def detect_layout(names: Iterable[str]) -> Layout:
    names = list(names)
    top = [n for n in names if "/" not in n]
    hf = sorted(
        n for n in top if fnmatch.fnmatch(n, "model*.safetensors") or n == "model.safetensors.index.json"
    )
    mistral = sorted(n for n in top if fnmatch.fnmatch(n, "consolidated*.safetensors"))
    gguf = sorted(n for n in names if n.lower().endswith(".gguf"))
    pickles = sorted(n for n in names if n.lower().endswith(PICKLE_SUFFIXES))
    hf_shards = [n for n in hf if n.endswith(".safetensors")]
    adapter = sorted(n for n in top if n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS))
    if hf_shards:
        kind = "hf"
    elif mistral:
        kind = "mistral"
    elif len(adapter) == 2:
        kind = "adapter"
    elif gguf:
        kind = "gguf"
    elif pickles:
        kind = "pickle"
    else:
        kind = "none"
    return Layout(kind, hf if hf_shards else [], mistral, gguf, pickles, adapter if kind == "adapter" else [])


def select_for_conversion(names: Iterable[str], repo_id: str) -> list[str]:
    """The files the converter needs: config, tokenizer, card and one copy of the safetensors weights (for an
    adapter repo: adapter_config.json, adapter_model.safetensors and the card)."""
    names = list(names)
    layout = detect_layout(names)
    if not layout.convertible:
        hint = ""
        if layout.gguf_files:
            quants = sorted({q for q in map(gguf_quant, layout.gguf_files) if q})
            hint = f"; it publishes GGUF files ({', '.join(quants) or 'unknown types'}): pick one with --gguf TYPE"
        raise NotConvertibleError(f"{repo_id}: {layout.note}{hint}")
    support = [n for n in names if "/" not in n and any(fnmatch.fnmatch(n, p) for p in SUPPORT_PATTERNS)]
    if layout.kind == "hf":
        support = [n for n in support if n != "params.json"]
    elif layout.kind == "adapter":  # the adapter's config and weights, and its card (base_model, licence)
        support = [n for n in support if n == "README.md"]
    return sorted(set(support) | set(layout.weights))


def select_gguf(names: Iterable[str], quant: str, repo_id: str) -> list[str]:
    """Every GGUF file (all shards) of one quant type."""
    ggufs = [n for n in names if n.lower().endswith(".gguf")]
    chosen = sorted(n for n in ggufs if (gguf_quant(n) or "").upper() == quant.upper())
    if not chosen:
        have = sorted({q for q in map(gguf_quant, ggufs) if q})
        raise NotConvertibleError(
            f"{repo_id} has no {quant.upper()} GGUF file (available: {', '.join(have) or 'none'})"
        )
    return chosen


def filter_names(names: Iterable[str], include: list[str] | None, exclude: list[str] | None) -> list[str]:
    """Glob filtering the way `hf download --include/--exclude` does it."""
    from huggingface_hub.utils import filter_repo_objects

    return list(
        filter_repo_objects(list(names), allow_patterns=include or None, ignore_patterns=exclude or None)
    )
