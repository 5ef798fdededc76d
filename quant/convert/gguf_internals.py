"""The two parts of gguf-py's GGUFWriter we use that are not its public API, in one place.

`layout` serialises the header itself (to know the file size before writing and to pack large token
arrays in bulk), so it needs the writer's KV table (`kv_data[0]`: key -> GGUFValue, in insertion order)
and its value packer (`_pack_val`). gguf-py has no public equivalent; if a gguf release changes either,
`check()` (run by tests/test_private_apis.py) fails naming the attribute rather than a conversion failing
later with an AttributeError.
"""

from __future__ import annotations

import inspect
from typing import Any

import gguf

from quant.errors import QuantError

_PACK_PARAMS = ("val", "vtype", "add_vtype", "sub_type")


class GGUFInternalsChanged(QuantError):
    """The installed gguf-py no longer has the GGUFWriter internals this module wraps."""


def _changed(what: str) -> GGUFInternalsChanged:
    version = getattr(gguf, "__version__", None) or _installed_version()
    return GGUFInternalsChanged(
        f"gguf {version}: GGUFWriter.{what} changed; quant/convert/gguf_internals.py must be updated for it"
    )


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gguf")
    except PackageNotFoundError:
        return "(unknown version)"


def kv_table(writer: gguf.GGUFWriter) -> dict[str, Any]:
    """The writer's KVs of its first (only) shard: key -> GGUFValue (`.value`, `.type`, `.sub_type`)."""
    data = getattr(writer, "kv_data", None)
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise _changed("kv_data (a list of dicts, one per shard)")
    return data[0]


def pack_value(
    writer: gguf.GGUFWriter, value: Any, vtype: Any, *, add_vtype: bool, sub_type: Any = None
) -> bytes:
    """One value as the writer packs it (little-endian GGUF), with its type tag when `add_vtype`."""
    pack = getattr(writer, "_pack_val", None)
    if pack is None:
        raise _changed("_pack_val")
    return pack(value, vtype, add_vtype=add_vtype, sub_type=sub_type)


def check() -> None:
    """Raise `GGUFInternalsChanged` unless GGUFWriter still has `kv_data` and `_pack_val(val, vtype,
    add_vtype, sub_type)`."""
    pack = getattr(gguf.GGUFWriter, "_pack_val", None)
    if pack is None:
        raise _changed("_pack_val")
    params = tuple(inspect.signature(pack).parameters)[1:]
    if params[: len(_PACK_PARAMS)] != _PACK_PARAMS:
        raise _changed(f"_pack_val's parameters (now {', '.join(params)})")
    writer = gguf.GGUFWriter(path=None, arch="llama")
    kv_table(writer)
