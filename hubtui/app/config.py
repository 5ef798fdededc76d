"""User settings for the TUI: `~/.config/hubtui/config.toml` (or `$HUBTUI_CONFIG`).

```toml
theme = "textual-dark"
target = "laptop-8g"          # the machine to size for: "" (this machine), a profile, or "custom"
target_ram = "16G"            # custom target: total RAM, VRAM of each GPU, number of GPUs
target_vram = "12G"
target_gpus = 1
download_dir = "~/models"     # default --local-dir ("" = the Hugging Face cache)
output_dir = "~/models/gguf"  # where conversions write GGUFs ("" = the current directory)

[keymap]                      # binding id = keys
"screen.browse" = "f2"
"app.quit" = "ctrl+q"
```

The app writes the `target*` keys itself when the target is changed on the Hardware screen or from the
command palette, leaving the rest of the file as it was.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hubtui.errors import HubtuiError


class ConfigError(HubtuiError):
    """The config file cannot be read or holds a value of the wrong kind."""


def config_path() -> Path:
    override = os.environ.get("HUBTUI_CONFIG")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "hubtui" / "config.toml"


@dataclass(frozen=True)
class Settings:
    theme: str = "textual-dark"
    target: str = ""
    target_ram: str = ""
    target_vram: str = ""
    target_gpus: int | None = None
    download_dir: str = ""
    output_dir: str = ""
    keymap: dict[str, str] = field(default_factory=dict)


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file; a missing file means defaults, a broken one is a one-line error."""
    path = path or config_path()
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
        raise ConfigError(f"{path}: [keymap] must map binding ids to key strings")
    for key in ("theme", "target", "target_ram", "target_vram", "download_dir", "output_dir"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: '{key}' must be a string")
    gpus = data.get("target_gpus")
    if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0):
        raise ConfigError(f"{path}: 'target_gpus' must be a whole number, 0 or more")
    target = data.get("target", "").lower()
    ram, vram = data.get("target_ram", ""), data.get("target_vram", "")
    if target:  # the sizing modules load only when a target is set
        _check_target(path, data, target, ram, vram, gpus)
    return Settings(
        theme=data.get("theme", Settings.theme),
        target=target,
        target_ram=ram,
        target_vram=vram,
        target_gpus=gpus,
        download_dir=data.get("download_dir", ""),
        output_dir=data.get("output_dir", ""),
        keymap=dict(keymap),
    )


def _check_target(path: Path, data: dict, target: str, ram: str, vram: str, gpus: int | None) -> None:
    from quant.sizing.profiles import PROFILES, TargetError, custom_target

    if target == "custom":
        try:
            custom_target(ram or None, vram or None, gpus)
        except TargetError as exc:
            raise ConfigError(f'{path}: target = "custom": {exc} (set target_ram, e.g. "16G")') from None
    elif target and target not in PROFILES:
        raise ConfigError(
            f"{path}: unknown target profile {data['target']!r}; valid: {', '.join(PROFILES)}, "
            '"custom" (with target_ram), or "" for this machine'
        )


TARGET_KEYS = ("target", "target_ram", "target_vram", "target_gpus")
_TARGET_LINE = re.compile(r"\s*(" + "|".join(TARGET_KEYS) + r")\s*=")


def save_target(
    name: str, ram: str = "", vram: str = "", gpus: int | None = None, path: Path | None = None
) -> Path:
    """Write the target keys into the config file (created if missing); every other line stays as it was."""
    path = path or config_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    head = [line for line in lines[:end] if not _TARGET_LINE.match(line)]
    while head and not head[-1].strip():
        head.pop()
    new = [f"target = {json.dumps(name)}"]
    if name == "custom":
        new.append(f"target_ram = {json.dumps(ram)}")
        if vram:
            new.append(f"target_vram = {json.dumps(vram)}")
        if gpus is not None:
            new.append(f"target_gpus = {gpus}")
    text = "\n".join(head + new + ([""] if end < len(lines) else []) + lines[end:]) + "\n"
    tomllib.loads(text)  # never write a file the next start could not read
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot save the target: {exc.strerror or exc}") from None
    return path
