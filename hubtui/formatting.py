"""Text views of library results that both the CLI and the TUI show: a GGUF's summary (`hubtui inspect`),
this machine's hardware (`hubtui hw`), a target as `hubtui plan` explains it, and the fit labels.

Plain strings only (no click, no Rich, no Textual), so every front end prints the same words and units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quant.units import format_bytes

if TYPE_CHECKING:
    from quant.gguf_file import GGUFSummary
    from quant.sizing.hardware import Hardware
    from quant.sizing.profiles import Target

FIT_LABELS = {
    "gpu": "full GPU",
    "partial": "partial GPU",
    "cpu": "CPU only",
    "slow": "pages from disk",
    "none": "does not fit",
}


def fit_label(row: dict) -> str:
    """A type's verdict in words, from its `TypePlan.to_dict()`: "CPU only, tight", "pages from disk", ..."""
    label = FIT_LABELS[row["fit"]] + (" with --no-mmap" if row.get("mode_switched") else "")
    return f"{label}, tight" if row.get("tight") else label


def adapter_label(architecture: str | None, base: str | None) -> str:
    """An adapter GGUF in a listing: what it runs on (architecture, and the base model its card names)."""
    return f"LoRA adapter for {architecture or '?'}, base {base or '? (not named)'}"


def aligned(rows: list[tuple[str, str]]) -> str:
    """`key  value` lines with the values in one column."""
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _params(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def inspect_rows(summary: GGUFSummary) -> list[tuple[str, str]]:
    """What a GGUF file holds, read from its header: architecture, types, size, context, tokenizer."""
    hp = summary.hparams
    types = ", ".join(f"{name} {count}" for name, count in summary.type_counts.items())
    specials = ", ".join(
        f"{role}={tok['id']}" + (f" {tok['text']!r}" if tok["text"] is not None else "")
        for role, tok in summary.special_tokens.items()
    )
    if summary.is_adapter:  # no hparams or vocabulary: it runs on top of a base model
        return [
            ("file", str(summary.path)),
            ("size", f"{format_bytes(summary.file_size)} ({summary.file_size} bytes)"),
            (
                "kind",
                f"LoRA adapter (alpha {summary.kv.get('adapter.lora.alpha', 0):g}) for {summary.architecture}",
            ),
            ("base model", summary.adapter_base or "- (not named in the adapter)"),
            ("name", summary.name or "-"),
            ("tensors", f"{len(summary.tensors)} ({types})"),
        ]
    rows = [
        ("file", str(summary.path)),
        ("size", f"{format_bytes(summary.file_size)} ({summary.file_size} bytes)"),
        ("architecture", summary.architecture),
        ("name", summary.name or "-"),
        ("parameters", f"{_params(summary.n_params)} ({summary.n_params})"),
        ("file type", summary.file_type or "-"),
        ("tensors", f"{len(summary.tensors)} ({types})"),
        ("context length", str(summary.context_length or "-")),
        (
            "layers / embd / heads",
            f"{hp['n_layer']} / {hp['n_embd']} / {hp['n_head']} (kv {hp['n_head_kv']}, head dim {hp['head_dim']})",
        ),
        (
            "tokenizer",
            f"{summary.tokenizer_model or '-'} (pre {summary.tokenizer_pre or '-'}), {hp['n_vocab']} tokens",
        ),
        ("special tokens", specials or "-"),
        ("chat template", "yes" if summary.chat_template is not None else "no"),
    ]
    if hp["n_expert"]:
        active = summary.n_active_params
        rows.insert(
            7,
            (
                "experts",
                f"{hp['n_expert']} ({hp['n_expert_used']} used per token: "
                f"{_params(active)} of {_params(summary.n_params)} parameters active)",
            ),
        )
    rope = summary.rope
    if rope.get("scaling") or rope.get("attn_temperature_scale") is not None:
        text = f"base {rope['freq_base']:g}" if rope["freq_base"] is not None else "base default"
        if rope.get("scaling"):
            text += f", {rope['scaling']} x{rope['factor']:g} from context {rope['original_context']}"
        if rope.get("attn_temperature_scale") is not None:
            text += f", attention temperature {rope['attn_temperature_scale']:g}"
        rows.insert(rows.index(next(r for r in rows if r[0] == "tokenizer")), ("rope", text))
    if (vision := summary.vision) is not None:
        rows = [r for r in rows if r[0] not in ("context length", "layers / embd / heads", "tokenizer")]
        rows.insert(
            7,
            (
                "vision tower",
                f"{vision['projector_type']} projector, {vision['block_count']} blocks, embd "
                f"{vision['embedding_length']}, {vision['head_count']} heads, {vision['image_size']} px images in "
                f"{vision['patch_size']} px patches, into {vision['projection_dim']}-dim text embeddings",
            ),
        )
    if summary.chat_template is not None and "{" not in summary.chat_template:
        rows = [
            (k, f"llama.cpp's built-in {summary.chat_template!r}" if k == "chat template" else v)
            for k, v in rows
        ]
    return rows


OFFLOAD = {True: "yes", False: "no (CPU-only build)", None: "unknown (llama-cpp-python not importable)"}


def hardware_rows(hw: Hardware) -> list[tuple[str, str]]:
    """The RAM, GPUs and container limits sizing works from."""
    ram = f"{format_bytes(hw.ram_available)} available of {format_bytes(hw.ram_total)}"
    if hw.cgroup is not None:
        ram += (
            f" (cgroup v{hw.cgroup.version} limit {format_bytes(hw.cgroup.limit)} at {hw.cgroup.path}; "
            f"host {format_bytes(hw.host_ram_total)})"
        )
    rows = [
        ("system", f"{hw.system} {hw.machine}"),
        ("RAM", ram),
        ("swap", f"{format_bytes(hw.swap_total)} (not counted)"),
    ]
    from quant.sizing.repack import repack_rules

    rules = repack_rules(hw.cpu_features)
    repacked = ", ".join(rules.types) or "nothing"
    source = f" ({hw.cpu_features_source})" if hw.cpu_features_source else ""
    rows.append(("CPU", f"{rules.cpu}{source}: llama.cpp repacks {repacked}"))
    if not hw.gpus:
        rows.append(("GPUs", "none"))
    for gpu in hw.gpus:
        kind = (
            " integrated, counted as RAM" if gpu.integrated else (" unified with RAM" if gpu.unified else "")
        )
        rows.append(
            (
                f"GPU {gpu.index}",
                f"{gpu.vendor} {gpu.name}: {format_bytes(gpu.free)} free of {format_bytes(gpu.total)}"
                f" [{gpu.source}{';' if kind else ''}{kind}]",
            )
        )
    rows.append(("offload", f"llama-cpp-python GPU offload: {OFFLOAD[hw.gpu_offload]}"))
    rows += [("note", note) for note in hw.notes]
    return rows


def describe_target(target: Target) -> str:
    """'laptop-8g: 8 GB laptop, CPU only; usable RAM 6.40 GiB', the line `hubtui plan` starts with."""
    usable = f"; usable RAM {format_bytes(target.ram)}" if target.name != "this machine" else ""
    gpus = "".join(f", GPU{i} {format_bytes(g)}" for i, g in enumerate(target.gpus))
    return f"{target.name}: {target.description}{usable}{gpus}"
