"""huggingface_hub's `--local-dir` bookkeeping (`.cache/huggingface/download/*.metadata`), wrapped in one place.

Downloads into a local folder write the same metadata files `hf download --local-dir` writes, so either
tool resumes or skips what the other fetched. huggingface_hub keeps those helpers in its private
`_local_folder` module; if a release moves or changes them, `check()` (run by tests/test_private_apis.py)
and every call here fail with one line naming the function, not an ImportError deep in a download.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from hubtui.hub.errors import HubError

_EXPECTED = {
    "get_local_download_paths": ("local_dir", "filename"),
    "read_download_metadata": ("local_dir", "filename"),
    "write_download_metadata": ("local_dir", "filename", "commit_hash", "etag"),
}


class LocalFolderAPIChanged(HubError):
    """The installed huggingface_hub no longer has the `_local_folder` helpers this module wraps."""


def _helper(name: str) -> Any:
    module: Any
    try:
        from huggingface_hub import _local_folder as module
    except ImportError:
        module = None
    func = getattr(module, name, None)
    params = tuple(inspect.signature(func).parameters) if func is not None else ()
    if params[: len(_EXPECTED[name])] != _EXPECTED[name]:
        from importlib.metadata import version

        raise LocalFolderAPIChanged(
            f"huggingface_hub {version('huggingface_hub')}: huggingface_hub._local_folder.{name}"
            f"({', '.join(_EXPECTED[name])}) changed or is gone; hubtui/hub/local_folder.py must be updated"
        )
    return func


def get_local_download_paths(local_dir: Path, filename: str) -> Any:
    """Where a local-dir download of `filename` keeps its file, metadata and partial download."""
    return _helper("get_local_download_paths")(local_dir, filename)


def read_download_metadata(local_dir: Path, filename: str) -> Any:
    """The recorded commit and etag of a local-dir file, or None when it has none or it is stale."""
    return _helper("read_download_metadata")(local_dir, filename)


def write_download_metadata(local_dir: Path, filename: str, commit_hash: str, etag: str) -> None:
    """Record the commit and etag a local-dir file was fetched at."""
    _helper("write_download_metadata")(local_dir, filename, commit_hash, etag)


def check() -> None:
    """Raise `LocalFolderAPIChanged` unless every wrapped helper is there with its parameters."""
    for name in _EXPECTED:
        _helper(name)
