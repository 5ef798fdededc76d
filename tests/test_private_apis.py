"""The private gguf-py and huggingface_hub APIs we rely on are still there, as their adapters expect."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest


def test_gguf_writer_internals_are_as_expected() -> None:
    from quant.convert.gguf_internals import check, kv_table, pack_value

    check()
    w = gguf.GGUFWriter(path=None, arch="llama")
    assert list(kv_table(w)) == ["general.architecture"]
    packed = pack_value(w, "ab", gguf.GGUFValueType.STRING, add_vtype=True)
    assert (
        packed == (8).to_bytes(4, "little") + (2).to_bytes(8, "little") + b"ab"
    )  # STRING tag, length, bytes


def test_a_changed_gguf_writer_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from quant.convert.gguf_internals import GGUFInternalsChanged, check, kv_table

    monkeypatch.delattr(gguf.GGUFWriter, "_pack_val")
    with pytest.raises(
        GGUFInternalsChanged, match=r"^gguf .*: GGUFWriter\._pack_val changed; quant/convert/"
    ):
        check()

    class Writer:
        kv_data = {"general.architecture": "llama"}  # a dict, no longer a list of one per shard

    with pytest.raises(GGUFInternalsChanged, match=r"GGUFWriter\.kv_data \(a list of dicts"):
        kv_table(Writer())  # type: ignore[arg-type]


def test_huggingface_hub_local_folder_helpers_round_trip(tmp_path: Path) -> None:
    from hubtui.hub.local_folder import check, read_download_metadata, write_download_metadata

    check()
    (tmp_path / "config.json").write_text("{}")
    write_download_metadata(tmp_path, "config.json", "c" * 40, "e" * 64)
    meta = read_download_metadata(tmp_path, "config.json")
    assert meta is not None and meta.commit_hash == "c" * 40 and meta.etag == "e" * 64


def test_a_changed_local_folder_helper_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub._local_folder as private

    from hubtui.hub.local_folder import LocalFolderAPIChanged, check, write_download_metadata

    monkeypatch.delattr(private, "write_download_metadata")
    with pytest.raises(LocalFolderAPIChanged, match=r"_local_folder\.write_download_metadata\(local_dir, "):
        check()
    with pytest.raises(LocalFolderAPIChanged, match="hubtui/hub/local_folder.py must be updated"):
        write_download_metadata(Path("."), "x", "c", "e")
