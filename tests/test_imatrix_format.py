"""quant.imatrix.format: llama.cpp's GGUF imatrix (written and read back as llama-imatrix lays it out), the
legacy .dat format (written here byte by byte as llama-imatrix's save_imatrix_legacy does), the weights
llama-quantize derives from each, and damaged files named in one line."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from quant.errors import ImatrixError
from quant.imatrix.format import ImatrixEntry, read_imatrix, write_imatrix


def _entries() -> dict[str, ImatrixEntry]:
    rng = np.random.default_rng(3)
    return {
        "blk.0.attn_q.weight": ImatrixEntry(rng.random((1, 64), dtype=np.float32) * 40, np.array([40.0])),
        # three experts: one never routed (count 0 -> weights 1), two with their own counts
        "blk.0.ffn_down_exps.weight": ImatrixEntry(
            rng.random((3, 32), dtype=np.float32) * 9, np.array([0.0, 3.0, 9.0])
        ),
    }


def test_gguf_round_trip_layout_and_weights(tmp_path: Path) -> None:
    entries = _entries()
    path = write_imatrix(tmp_path / "m.gguf", entries, datasets=["calib.txt"], chunk_count=5, chunk_size=512)
    reader = gguf.GGUFReader(path)
    assert [k for k in reader.fields if not k.startswith("GGUF.")] == [
        "general.type",
        "imatrix.datasets",
        "imatrix.chunk_count",
        "imatrix.chunk_size",
    ]  # and no general.architecture, as llama-imatrix writes it
    assert [(t.name, [int(n) for n in t.shape]) for t in reader.tensors] == [
        ("blk.0.attn_q.weight.in_sum2", [64, 1]),
        ("blk.0.attn_q.weight.counts", [1, 1]),
        ("blk.0.ffn_down_exps.weight.in_sum2", [32, 3]),
        ("blk.0.ffn_down_exps.weight.counts", [1, 3]),
    ]
    im = read_imatrix(path)
    assert (im.datasets, im.chunk_count, im.chunk_size, im.legacy) == (["calib.txt"], 5, 512, False)
    dense = entries["blk.0.attn_q.weight"]
    np.testing.assert_array_equal(im.weights("blk.0.attn_q.weight"), dense.in_sum2 / np.float32(40))
    w = im.weights("blk.0.ffn_down_exps.weight")
    moe = entries["blk.0.ffn_down_exps.weight"]
    assert w is not None and w.shape == (3, 32)
    np.testing.assert_array_equal(w[0], np.ones(32, np.float32))
    np.testing.assert_array_equal(w[2], moe.in_sum2[2] / np.float32(9))
    assert im.weights("blk.9.attn_q.weight") is None


def _legacy_bytes(
    entries: dict[str, ImatrixEntry], chunk_size: int, trailer: tuple[int, str] | None
) -> bytes:
    """save_imatrix_legacy: entries sorted by name, ncall = ceil(max count / chunk_size), values stored as
    mean x ncall (1 x ncall for a matrix that saw nothing); then the chunk count and the dataset."""
    out = struct.pack("<i", len(entries))
    for name in sorted(entries):
        e = entries[name]
        ncall = math.ceil(float(e.counts.max()) / chunk_size)
        v = np.empty_like(e.in_sum2)
        for j in range(e.n_mat):
            v[j] = (e.in_sum2[j] / np.float32(e.counts[j])) * ncall if e.counts[j] > 0 else ncall
        raw = name.encode()
        out += (
            struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, v.size) + v.astype("<f4").tobytes()
        )
    if trailer is not None:
        out += struct.pack("<i", trailer[0]) + struct.pack("<i", len(trailer[1])) + trailer[1].encode()
    return out


def test_legacy_dat_gives_the_same_weights(tmp_path: Path) -> None:
    entries = {"blk.0.attn_q.weight": _entries()["blk.0.attn_q.weight"]}
    entries["blk.0.attn_q.weight"].counts[:] = 1024  # two calls of 512
    path = tmp_path / "m.dat"
    path.write_bytes(_legacy_bytes(entries, 512, (2, "calib.txt")))
    im = read_imatrix(path)
    assert im.legacy and im.chunk_count == 2 and im.datasets == ["calib.txt"]
    want = entries["blk.0.attn_q.weight"].in_sum2 / np.float32(1024)
    np.testing.assert_allclose(im.weights("blk.0.attn_q.weight"), want, rtol=1e-6)
    bare = tmp_path / "bare.dat"  # the trailer is optional
    bare.write_bytes(_legacy_bytes(entries, 512, None))
    assert read_imatrix(bare).chunk_count == 0 and read_imatrix(bare).names() == ["blk.0.attn_q.weight"]


def test_damaged_files_are_named_in_one_line(tmp_path: Path) -> None:
    entries = _entries()
    good = write_imatrix(tmp_path / "good.gguf", entries, datasets=["t.txt"], chunk_count=1, chunk_size=512)

    def fails(path: Path, *culprits: str) -> None:
        with pytest.raises(ImatrixError) as exc:
            read_imatrix(path)
        msg = str(exc.value)
        assert "\n" not in msg and str(path) in msg and all(c in msg for c in culprits), msg

    model = tmp_path / "model.gguf"  # a GGUF that is not an imatrix
    w = gguf.GGUFWriter(model, "llama")
    w.add_tensor("x", np.zeros((2, 32), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    fails(model, "general.type", "not 'imatrix'")
    no_counts = tmp_path / "no-counts.gguf"  # an in_sum2 without its counts
    w = gguf.GGUFWriter(no_counts, "")
    for key, value in (("general.type", "imatrix"), ("imatrix.chunk_count", 1), ("imatrix.chunk_size", 512)):
        w.add_string(key, value) if isinstance(value, str) else w.add_uint32(key, value)
    w.add_array("imatrix.datasets", ["t.txt"])
    w.add_tensor("blk.0.attn_q.weight.in_sum2", np.ones((1, 64), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    fails(no_counts, "blk.0.attn_q.weight.counts", "missing")
    cut = tmp_path / "cut.dat"
    cut.write_bytes(_legacy_bytes({"blk.0.attn_q.weight": entries["blk.0.attn_q.weight"]}, 512, None)[:-40])
    fails(cut, "blk.0.attn_q.weight")
    text = tmp_path / "notes.txt"
    text.write_text("not an imatrix at all")
    fails(text, "not an importance matrix")
    fails(tmp_path / "absent.gguf", "cannot read")
    assert read_imatrix(good).names() == sorted(entries)  # the good one still reads


def test_writing_refuses_what_llama_quantize_would_refuse(tmp_path: Path) -> None:
    entries = _entries()
    with pytest.raises(ImatrixError, match="no dataset given"):
        write_imatrix(tmp_path / "a.gguf", entries, datasets=[], chunk_count=1, chunk_size=512)
    bad = {"blk.0.attn_q.weight": ImatrixEntry(np.ones((2, 8), np.float32), np.ones(3))}
    with pytest.raises(ImatrixError, match="blk.0.attn_q.weight"):
        write_imatrix(tmp_path / "b.gguf", bad, datasets=["t"], chunk_count=1, chunk_size=512)
    assert list(tmp_path.iterdir()) == []
