"""Input files must be regular files: opening a FIFO blocks until a writer appears (`inspect` on one hung),
and a device such as /dev/zero never ends. Checked with stat (which does not open) before any read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from quant.errors import QuantError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """Why `path` (symlinks followed) is not a readable regular file, or None if it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file"


def require_regular(path: str | os.PathLike[str], error: type[Exception] = QuantError) -> Path:
    """`path` if it is a regular file, else `error("PATH: why")` without having opened it."""
    why = not_regular(path)
    if why is not None:
        raise error(f"{path}: {why}")
    return Path(path)
