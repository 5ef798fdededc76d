"""Memory budgets to size a model for: built-in target profiles, custom `--ram/--vram/--gpus`, this machine.

A `Target` holds what a model may use, not what the box has: each profile states the reserve it
assumes (docs/sizing.md: usable RAM = total − max(1.5 GiB, 20 %) for the OS, a browser and the
desktop; usable VRAM = total − 0.5 GiB for the CUDA/ROCm context, minus 1 GiB more on a card that
drives a display; Apple's GPU gets Metal's working-set cap, a part of the same pool as RAM).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from quant.errors import QuantError
from quant.sizing.hardware import GIB, MIB, Hardware, metal_default_budget
from quant.sizing.repack import ARM_I8MM, X86_AVX2, X86_AVX512, CpuRepack, repack_rules
from quant.units import format_bytes

RAM_RESERVE_MIN = 1536 * MIB
RAM_RESERVE_FRACTION = 0.20
GPU_CONTEXT_RESERVE = 512 * MIB
DISPLAY_RESERVE = 1024 * MIB


class TargetError(QuantError):
    """A target that cannot be built: unknown profile name, malformed size, impossible combination."""


@dataclass(frozen=True)
class Target:
    """A memory budget: usable host RAM and usable memory per GPU (never summed)."""

    name: str
    ram: int  # bytes of host RAM a model may use
    gpus: tuple[int, ...] = ()  # usable bytes per GPU
    unified: bool = False  # Apple Silicon: the GPU budget is part of `ram`, not extra
    description: str = ""
    assumptions: list[str] = field(default_factory=list)
    repack: CpuRepack = X86_AVX2  # which weights llama.cpp's CPU backend copies (quant.sizing.repack)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"gpus": list(self.gpus), "repack": self.repack.to_dict()}


def usable_ram(total: int) -> int:
    return max(0, total - max(RAM_RESERVE_MIN, int(total * RAM_RESERVE_FRACTION)))


def usable_vram(total: int, *, display: bool) -> int:
    return max(0, total - GPU_CONTEXT_RESERVE - (DISPLAY_RESERVE if display else 0))


_RAM_RULE = "usable RAM = total − max(1.5 GiB, 20 %) for the OS, a browser and the desktop"
_VRAM_RULE = "usable VRAM = total − 0.5 GiB for the CUDA context"


def _cpu_rule(repack: CpuRepack) -> str:
    return f"CPU: {repack.cpu}; llama.cpp repacks {', '.join(repack.types) or 'nothing'} into RAM"


def _pc(name: str, ram_gib: int, desc: str) -> Target:
    notes = [f"{ram_gib} GiB RAM, no GPU", _RAM_RULE, _cpu_rule(X86_AVX2)]
    return Target(name, usable_ram(ram_gib * GIB), (), False, desc, notes, X86_AVX2)


def _desktop(
    name: str, vram_gib: int, ram_gib: int, desc: str, *, display: bool, repack: CpuRepack = X86_AVX2
) -> Target:
    rule = _VRAM_RULE + (" − 1 GiB because the card drives the display" if display else " (headless server)")
    return Target(
        name,
        usable_ram(ram_gib * GIB),
        (usable_vram(vram_gib * GIB, display=display),),
        False,
        desc,
        [f"{vram_gib} GiB GPU, {ram_gib} GiB host RAM", rule, _RAM_RULE, _cpu_rule(repack)],
        repack,
    )


def _mac(name: str, ram_gib: int, desc: str) -> Target:
    total = ram_gib * GIB
    ram = usable_ram(total)
    return Target(
        name,
        ram,
        (min(ram, metal_default_budget(total)),),
        True,
        desc,
        [
            f"{ram_gib} GiB unified memory (Apple M2 or later CPU: NEON with i8mm)",
            "GPU budget = Metal's default working-set cap (2/3 of RAM up to 36 GB, 3/4 above)",
            _RAM_RULE + "; GPU and RAM are one pool",
            _cpu_rule(ARM_I8MM),
        ],
        ARM_I8MM,
    )


PROFILES: dict[str, Target] = {
    t.name: t
    for t in (
        _pc("laptop-8g", 8, "8 GB laptop, CPU only"),
        _pc("laptop-16g", 16, "16 GB laptop, CPU only"),
        _mac("mac-m-16g", 16, "Apple Silicon Mac with 16 GB unified memory"),
        _desktop("rtx-3060-12g", 12, 32, "desktop with an RTX 3060 12 GB driving the display", display=True),
        _desktop("rtx-4090-24g", 24, 64, "desktop with an RTX 4090 24 GB driving the display", display=True),
        _desktop("a100-80g", 80, 256, "server with one A100 80 GB", display=False, repack=X86_AVX512),
        _desktop("h100-80g", 80, 256, "server with one H100 80 GB", display=False, repack=X86_AVX512),
    )
}


def get_profile(name: str) -> Target:
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise TargetError(f"unknown target profile {name!r}; valid profiles: {', '.join(PROFILES)}") from None


_SIZE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """ "8G", "8GB", "8GiB", "512M", "1.5T", "0" → bytes. Units are binary (G = 2^30); a bare number
    other than 0 is refused because it is ambiguous."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise TargetError(f"malformed size {text!r}: use a number and a unit, e.g. 8G, 512M, 1.5T or 0")
    unit = m.group("unit").lower()
    value = float(m.group("num"))
    has_b = text.strip().lower().endswith("b")
    if not unit and not has_b and value != 0:
        raise TargetError(f"size {text!r} has no unit: write e.g. {m.group('num')}G")
    return int(value * _UNITS[unit])


def custom_target(ram: str | int | None, vram: str | int | None = None, gpus: int | None = None) -> Target:
    """`--ram 8G --vram 12G --gpus 2`: totals of a machine; the profile reserves apply to them."""
    ram_b = parse_size(ram) if isinstance(ram, str) else ram
    vram_b = parse_size(vram) if isinstance(vram, str) else (vram or 0)
    if ram_b is None or ram_b <= 0:
        raise TargetError("a custom target needs --ram (e.g. --ram 16G)")
    n_gpus = 1 if gpus is None else gpus
    if n_gpus < 0:
        raise TargetError(f"--gpus {n_gpus}: must be 0 or more")
    if gpus is not None and gpus > 0 and vram_b == 0:
        raise TargetError(f"--gpus {gpus} needs --vram (the memory of each card)")
    cards = tuple(usable_vram(vram_b, display=False) for _ in range(n_gpus)) if vram_b else ()
    cards = tuple(c for c in cards if c > 0)  # a card smaller than its context reserve holds nothing
    label = f"{format_bytes(ram_b)} RAM" + (
        f", {len(cards)} × {format_bytes(vram_b)} GPU" if cards else ", no GPU"
    )
    assumptions = [_RAM_RULE]
    if cards:
        assumptions.append(_VRAM_RULE + " (per card; cards are never summed)")
    assumptions.append(_cpu_rule(X86_AVX2))
    return Target("custom", usable_ram(ram_b), cards, False, label, assumptions)


def machine_target(hw: Hardware) -> Target:
    """This machine now: available RAM (container limits applied) and each GPU's free memory."""
    notes = ["RAM = available now (after running programs and any cgroup limit)"]
    gpus = hw.offload_gpus if hw.gpu_offload is not False else []
    if hw.gpu_offload is False and hw.offload_gpus:
        notes.append("GPUs ignored: this llama-cpp-python build cannot offload")
    if hw.unified_memory:
        cards = tuple(min(g.free, hw.ram_available) for g in gpus)
        notes.append(f"unified memory: GPU budget from {gpus[0].source}")
    else:
        cards = tuple(usable_vram(g.free, display=False) for g in gpus)
        if cards:
            notes.append("usable VRAM = free − 0.5 GiB for the CUDA/ROCm context, per card")
    desc = f"{format_bytes(hw.ram_available)} RAM available" + "".join(
        f", GPU {g.index} {g.name} {format_bytes(g.free)} free" for g in gpus
    )
    repack = repack_rules(hw.cpu_features)
    notes.append(_cpu_rule(repack) + f" (from the {hw.cpu_features_source})")
    return Target("this machine", hw.ram_available, cards, hw.unified_memory, desc, notes, repack)
