"""Which checkpoint layout a directory holds: Hugging Face's or Mistral's own (standard library only).

Hugging Face layout: config.json, model*.safetensors (plus an index when sharded), tokenizer files.
Mistral's layout (`convert_hf_to_gguf.py --mistral-format`): params.json, consolidated*.safetensors and
tekken.json or tokenizer.model.vN. Mistral repos often carry both; like llama.cpp users, we take the
Hugging Face one whenever its weights are there.
"""

from __future__ import annotations

from pathlib import Path

HF = "hf"
MISTRAL = "mistral"
CONFIG_FILES = {HF: "config.json", MISTRAL: "params.json"}


def hf_weights(src: Path) -> list[Path]:
    return sorted(p for p in src.glob("model*.safetensors") if p.is_file())


def mistral_weights(src: Path) -> list[Path]:
    """consolidated*.safetensors, sorted, as llama.cpp's converter lists them for --mistral-format."""
    return sorted(
        p for p in src.glob("consolidated*.safetensors") if p.is_file() and p.name.startswith("consolidated")
    )


def checkpoint_format(src: Path) -> str:
    """HF when its weights (or, lacking any weights, its config.json) are there, else Mistral's layout."""
    src = Path(src)
    if hf_weights(src) or (src / "model.safetensors.index.json").is_file():
        return HF
    if (src / "params.json").is_file() and (mistral_weights(src) or not (src / "config.json").is_file()):
        return MISTRAL
    return HF


def config_file(src: Path) -> Path:
    """The file that describes the model: config.json, or params.json for Mistral's layout."""
    return Path(src) / CONFIG_FILES[checkpoint_format(src)]


def is_checkpoint_dir(src: Path) -> bool:
    """Whether `src` looks like a checkpoint the converter can read (either layout's config is there)."""
    src = Path(src)
    return src.is_dir() and any((src / name).is_file() for name in CONFIG_FILES.values())
