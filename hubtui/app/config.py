"""User settings for the TUI: `~/.config/hubtui/config.toml` (or `$HUBTUI_CONFIG`).

```toml
theme = "textual-dark"
target = "laptop-8g"          # default target profile for sizing ("" = this machine)
download_dir = "~/models"     # default --local-dir ("" = the Hugging Face cache)
output_dir = "~/models/gguf"  # where conversions write GGUFs ("" = the current directory)

[keymap]                      # binding id = keys
"screen.browse" = "f2"
"app.quit" = "ctrl+q"
```
"""

from __future__ import annotations

import os
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
    for key in ("theme", "target", "download_dir", "output_dir"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: '{key}' must be a string")
    target = data.get("target", "")
    if target:
        from quant.profiles import PROFILES

        if target.lower() not in PROFILES:
            raise ConfigError(
                f'{path}: unknown target profile {target!r}; valid: {", ".join(PROFILES)} (or "" for this machine)'
            )
        target = target.lower()
    return Settings(
        theme=data.get("theme", Settings.theme),
        target=target,
        download_dir=data.get("download_dir", ""),
        output_dir=data.get("output_dir", ""),
        keymap=dict(keymap),
    )
