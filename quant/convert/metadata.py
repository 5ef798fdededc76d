"""The `general.*` metadata of a converted checkpoint, and the default output file name.

llama.cpp's converter gathers these from the model card's YAML front matter, config.json,
generation_config.json and the directory name (gguf-py `Metadata`); doing the same here gives the
converted file the name, size label and base-model record users see in llama.cpp, Ollama and LM
Studio, and the same default file name (`SmolLM2-135M-Instruct-Q4_K_M.gguf`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import yaml

from quant.errors import ConversionError
from quant.inputs import not_regular

# generation_config.json key -> Metadata field, as gguf-py's Metadata.load maps them.
_SAMPLING_KEYS = {
    "sequence": "sampling_sequence",
    "top_k": "sampling_top_k",
    "top_p": "sampling_top_p",
    "min_p": "sampling_min_p",
    "xtc_probability": "sampling_xtc_probability",
    "xtc_threshold": "sampling_xtc_threshold",
    "temperature": "sampling_temp",
    "penalty_last_n": "sampling_penalty_last_n",
    "mirostat": "sampling_mirostat",
    "mirostat_tau": "sampling_mirostat_tau",
    "mirostat_eta": "sampling_mirostat_eta",
}


@dataclass
class GeneralInfo:
    """What a checkpoint says about itself, as llama.cpp's converter would record it."""

    metadata: gguf.Metadata
    n_params: int

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def basename(self) -> str | None:
        return self.metadata.basename

    @property
    def finetune(self) -> str | None:
        return self.metadata.finetune

    @property
    def version(self) -> str | None:
        return self.metadata.version

    @property
    def size_label(self) -> str | None:
        return self.metadata.size_label

    @property
    def license(self) -> str | None:
        value = self.metadata.license
        return ",".join(value) if isinstance(value, list) else value

    @property
    def base_models(self) -> list[dict[str, Any]]:
        return list(self.metadata.base_models or [])

    @property
    def sampling(self) -> dict[str, Any]:
        """Recommended sampler settings (top_k, top_p, temp, ...) that will be written, by short name."""
        out = {}
        for field in (*_SAMPLING_KEYS.values(), "sampling_penalty_repeat"):
            value = getattr(self.metadata, field)
            if value is not None:
                out[field.removeprefix("sampling_")] = value
        return out

    def write_to(self, writer: gguf.GGUFWriter) -> None:
        """Add `general.type` and the `general.*` KVs that follow general.architecture (convert_hf_to_gguf.py's order)."""
        from quant.convert.gguf_internals import kv_table

        if gguf.Keys.General.TYPE not in kv_table(writer):
            writer.add_type(gguf.GGUFType.MODEL)
        self.metadata.set_gguf_meta_model(writer)


def load_general(
    src: Path,
    config: Mapping[str, Any],
    *,
    n_params: int,
    n_experts: int | None = None,
    expert_params: int | None = None,
) -> GeneralInfo:
    """Gather the general metadata of checkpoint `src`.

    `n_params` is the element count of every tensor the GGUF will hold (rope_freqs included);
    for a mixture of experts, `n_experts` is the expert count and `expert_params` the parameters of
    ONE expert summed over all layers (gguf-py's convention), which give a size label like "8x7B".
    """
    src = Path(src).resolve()
    card = _model_card(src)
    generation = _generation_config(src)
    org, name_path = _hub_cache_repo(src)
    meta = gguf.Metadata.apply_metadata_heuristic(gguf.Metadata(), card, dict(config), name_path, n_params)
    if meta.organization is None and org is not None:
        meta.organization = gguf.Metadata.id_to_title(org)

    gen_path = src / "generation_config.json"
    for key, field in _SAMPLING_KEYS.items():
        if key in generation:
            setattr(meta, field, _sampling_value(gen_path, key, generation[key]))
    repeat_key = "penalty_repeat" if "penalty_repeat" in generation else "repetition_penalty"
    if generation.get(repeat_key) is not None:
        meta.sampling_penalty_repeat = _sampling_value(gen_path, repeat_key, generation[repeat_key])
    _check_card_values(meta, src / "README.md")

    if meta.name is None:
        meta.name = name_path.name
    if meta.size_label is None and n_params > 0:
        if n_experts and expert_params:
            shared = n_params - expert_params * n_experts
            meta.size_label = gguf.size_label(n_params, shared, expert_params, n_experts)
        else:
            meta.size_label = gguf.size_label(n_params, n_params, 0, 0)
    return GeneralInfo(metadata=meta, n_params=n_params)


_INT_SAMPLING = {"top_k", "penalty_last_n", "mirostat"}
_STRING_FIELDS = (
    "name", "author", "version", "organization", "finetune", "basename", "description", "quantized_by",
    "size_label", "url", "doi", "uuid", "repo_url", "source_url", "source_doi", "source_uuid",
    "source_repo_url", "license_name", "license_link",
)  # fmt: skip


def _sampling_value(path: Path, key: str, value: Any) -> Any:
    """A generation_config value of the type its GGUF KV needs (None is left out, like a missing key)."""
    if value is None:
        return None
    if key == "sequence":
        ok = isinstance(value, str)
    elif key in _INT_SAMPLING:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ConversionError(f"{path}: {key} has the wrong type ({value!r})")
    return value


def _check_card_values(meta: gguf.Metadata, path: Path) -> None:
    """YAML gives numbers and dates where GGUF wants strings: make them strings, refuse anything else."""

    def as_text(what: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConversionError(f"{path}: {what} should be text, got {value!r}")

    for field in _STRING_FIELDS:
        value = getattr(meta, field)
        if value is not None:
            setattr(meta, field, as_text(field, value))
    if meta.license is not None:
        if isinstance(meta.license, list):
            meta.license = [as_text("license", v) for v in meta.license]
        else:
            meta.license = as_text("license", meta.license)
    for field in ("tags", "languages"):
        values = getattr(meta, field)
        if values is not None:
            setattr(meta, field, [as_text(field, v) for v in values])
    for field in ("base_models", "datasets"):
        entries = getattr(meta, field)
        if entries is None:
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                raise ConversionError(f"{path}: {field} entry {entry!r} is not a name or a mapping")
            for key, value in entry.items():
                entry[key] = as_text(f"{field} {key}", value)


def default_output_name(info: GeneralInfo, type_name: str) -> str:
    """llama.cpp's default file name: <basename or name>-<size>-<finetune>-<version>-<TYPE>.gguf."""
    meta = info.metadata
    stem = gguf.naming_convention(
        meta.name, meta.basename, meta.finetune, meta.version, meta.size_label, type_name
    )
    return f"{stem}.gguf"


def _hub_cache_repo(src: Path) -> tuple[str | None, Path]:
    """(organization, path named after the model) for a Hugging Face cache snapshot, else (None, src).

    A download lands in `models--<org>--<name>/snapshots/<commit>`; naming the model after the commit
    hash (what llama.cpp's converter would do) gives useless default file names.
    """
    repo_dir = src.parent.parent
    if src.parent.name == "snapshots" and repo_dir.name.startswith("models--"):
        parts = repo_dir.name.removeprefix("models--").split("--", 1)
        if len(parts) == 2 and all(parts):
            return parts[0], src.parent / parts[1]
        if len(parts) == 1 and parts[0]:
            return None, src.parent / parts[0]
    return None, src


def _model_card(src: Path) -> dict[str, Any]:
    """The README.md front matter; a malformed one is an error rather than silently dropped metadata."""
    path = src / "README.md"
    try:
        return gguf.Metadata.load_model_card(src)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConversionError(f"{path}: front matter is not valid YAML{where} ({problem})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: cannot be read ({e})") from None


def _generation_config(src: Path) -> dict[str, Any]:
    # llama.cpp ignores an unreadable generation_config.json (many checkpoints ship broken ones).
    path = src / "generation_config.json"
    if not_regular(path) is not None:  # absent, or a FIFO/device that would block the read
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["GeneralInfo", "default_output_name", "load_general"]
