"""The one machine the whole app sizes for: this machine, a built-in profile, or custom RAM/VRAM.

Browse's fit tables and badges, Convert's recommendation and the bundle all read it; the Hardware screen and
the command palette change it, and the choice is kept in config.toml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubtui.app.config import Settings
    from quant.sizing.profiles import Target

MACHINE = "this machine"
CUSTOM = "custom"


@dataclass(frozen=True)
class TargetChoice:
    """`name` is "" for this machine, a profile name (laptop-8g, ...) or "custom" with `ram`/`vram`/`gpus`
    given as `hubtui plan --ram/--vram/--gpus` takes them."""

    name: str = ""
    ram: str = ""
    vram: str = ""
    gpus: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetChoice:
        if settings.target == CUSTOM:
            return cls(CUSTOM, settings.target_ram, settings.target_vram, settings.target_gpus)
        return cls(settings.target)

    @property
    def label(self) -> str:
        """Short, for headers and tables: 'this machine', 'laptop-8g', 'custom 16G RAM + 12G GPU'."""
        if self.name == CUSTOM:
            gpu = f" + {self.gpus or 1}×{self.vram} GPU" if self.vram and self.gpus != 0 else ""
            return f"custom {self.ram} RAM{gpu}"
        return self.name or MACHINE

    @property
    def profile(self) -> str | None:
        """The built-in profile's name, None for this machine and custom targets."""
        return self.name if self.name and self.name != CUSTOM else None

    def resolve(self) -> Target:
        """The budget sizing works with; this machine is probed now (blocking: call from a worker)."""
        from quant.sizing.profiles import custom_target, get_profile, machine_target

        if self.name == CUSTOM:
            return custom_target(self.ram, self.vram or None, self.gpus)
        if self.name:
            return get_profile(self.name)
        from hubtui.runner.machine import detect_machine

        return machine_target(detect_machine())


def profile_choices() -> list[tuple[str, str]]:
    """(name, description) of every built-in profile, as `hubtui plan --target` knows them."""
    from quant.sizing.profiles import PROFILES

    return [(name, t.description) for name, t in PROFILES.items()]


def explain(target: Target) -> list[str]:
    """The target as `hubtui plan` explains it, then the assumptions behind its budget."""
    from hubtui.formatting import describe_target

    return [describe_target(target), *(f"assumes: {note}" for note in target.assumptions)]
