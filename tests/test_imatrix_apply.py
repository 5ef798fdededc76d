"""Applying an importance matrix to a conversion, against llama.cpp's own quantiser.

The reference is `llama_model_quantize` (ctypes) of our F32 conversion, handed the imatrix weights and the KV
overrides exactly as tools/quantize/quantize.cpp hands them over; and, per tensor, `ggml_quantize_chunk`
with each expert's slice of the weights.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from quant.convert import convert
from quant.convert.layout import prepare
from quant.errors import ImatrixError, OptionError
from quant.imatrix.apply import plan_weights, requires_imatrix
from quant.imatrix.format import Imatrix, ImatrixEntry, write_imatrix
from tests.support import ggml_ref
from tests.support.convert_support import (
    Converted,
    QuantizeImatrix,
    llama_quantize,
    only_with_slow,
    sha256,
    tensor_bytes,
)


def entries_for(f32_gguf, *, skip=("token_embd.weight",), seed=0) -> dict[str, ImatrixEntry]:
    """Random statistics for every matrix of a GGUF, as llama-imatrix would collect them (one row per expert)."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in gguf.GGUFReader(f32_gguf).tensors:
        ne = [int(n) for n in t.shape]
        if len(ne) < 2 or t.name in skip or "norm" in t.name or "ffn_gate_inp" in t.name:
            continue
        n_mat = ne[2] if len(ne) == 3 else 1
        counts = rng.integers(1, 4000, n_mat).astype(np.float64)
        sums = rng.gamma(0.5, 2.0, (n_mat, ne[0])).astype(np.float32) * counts[:, None].astype(np.float32)
        out[t.name] = ImatrixEntry(sums, counts)
    return out


@pytest.fixture(scope="module")
def imatrix_files(converted: Converted, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("imatrix")

    def make(fixture: str) -> str:
        path = root / f"{fixture}.imatrix.gguf"
        if not path.exists():
            entries = entries_for(converted(fixture, "F32"))
            write_imatrix(path, entries, datasets=["calibration.txt"], chunk_count=7, chunk_size=512)
        return str(path)

    return make


# -- lookup rules ---------------------------------------------------------------------------------------


def _imatrix(**entries: tuple[int, int]) -> Imatrix:
    rng = np.random.default_rng(1)
    return Imatrix(
        {
            name.replace("__", "."): ImatrixEntry(
                rng.uniform(1, 2, (m, c)).astype(np.float32), np.full(m, 4.0)
            )
            for name, (m, c) in entries.items()
        },
        source=None,
    )


def test_lookup_expert_slices_and_missing_entries() -> None:
    im = _imatrix(blk__0__attn_q__weight=(1, 64), blk__0__ffn_up_exps__weight=(4, 64))
    tensors = [
        ("token_embd.weight", (100, 64), "Q4_K"),
        ("blk.0.attn_norm.weight", (64,), "F32"),
        ("blk.0.attn_q.weight", (64, 64), "Q4_K"),
        ("blk.0.attn_k.weight", (16, 64), "Q4_K"),
        ("blk.0.ffn_up_exps.weight", (4, 32, 64), "Q4_K"),
    ]
    applied = plan_weights(im, "m.gguf", tensors, "Q4_K_M")
    assert set(applied.weights) == {"blk.0.attn_q.weight", "blk.0.ffn_up_exps.weight"}
    assert applied.notes == [
        "did not find weights for token_embd.weight",
        "did not find weights for blk.0.attn_k.weight",
    ]
    exps = im.weights("blk.0.ffn_up_exps.weight")
    for row, (expert, stop) in {0: (0, 32), 31: (0, 32), 32: (1, 64), 127: (3, 128)}.items():
        w, end = applied.rows_weights("blk.0.ffn_up_exps.weight", row, 32)
        assert np.array_equal(w, exps[expert]) and end == stop
    w, end = applied.rows_weights("blk.0.attn_q.weight", 40, 64)
    assert np.array_equal(w, im.weights("blk.0.attn_q.weight")[0]) and end > 10**9
    assert applied.rows_weights("blk.0.attn_k.weight", 0, 16)[0] is None
    assert applied.kv() == {"quantize.imatrix.file": "m.gguf", "quantize.imatrix.entries_count": 2}


def test_missing_entry_for_a_type_that_needs_one() -> None:
    im = _imatrix(blk__0__attn_q__weight=(1, 256))
    tensors = [("blk.0.attn_q.weight", (256, 256), "IQ2_XXS"), ("blk.0.attn_k.weight", (64, 256), "IQ2_XXS")]
    with pytest.raises(ImatrixError, match=r"Missing importance matrix for tensor blk\.0\.attn_k\.weight"):
        plan_weights(im, "m", tensors, "IQ2_XXS")
    # exempt tensors, and Q2_K outside Q2_K_S, go without
    assert not requires_imatrix("output.weight", "IQ2_XXS", "IQ2_XXS")
    assert not requires_imatrix("token_embd.weight", "IQ1_S", "IQ1_S")
    assert requires_imatrix("blk.0.ffn_down.weight", "Q2_K", "Q2_K_S")
    assert not requires_imatrix("blk.0.ffn_down.weight", "Q2_K", "IQ2_XXS")
    assert not requires_imatrix("blk.0.ffn_down.weight", "IQ3_S", "IQ3_M")


def test_size_mismatch_names_the_tensor_except_token_embd() -> None:
    im = _imatrix(
        blk__0__attn_q__weight=(1, 128), token_embd__weight=(1, 32), blk__0__ffn_up_exps__weight=(2, 64)
    )
    with pytest.raises(
        ImatrixError, match=r"tensor blk\.0\.attn_q\.weight: imatrix size 128 .* tensor size 64"
    ):
        plan_weights(im, "m", [("blk.0.attn_q.weight", (64, 64), "Q4_K")], "Q4_K_M")
    with pytest.raises(
        ImatrixError, match=r"blk\.0\.ffn_up_exps\.weight: imatrix size 128 .* tensor size 256"
    ):
        plan_weights(im, "m", [("blk.0.ffn_up_exps.weight", (4, 32, 64), "Q4_K")], "Q4_K_M")
    applied = plan_weights(im, "m", [("token_embd.weight", (100, 64), "Q4_K")], "Q4_K_M")
    assert not applied.weights and "token_embd.weight" in applied.notes[0]


# -- whole files against llama_model_quantize with the same imatrix --------------------------------------

# The MoE fixture in the default run (dense attention and stacked experts, two IQ types); the dense model
# with IQ2_XXS and with Q4_0 (a legacy type that reads the weights) adds ~45 s and runs with -m slow.
FILES = [("mixtral-tiny", "IQ3_XXS"), ("mixtral-tiny", "IQ2_M")]
FILES_SLOW = [("mistral-tiny", "IQ2_XXS"), ("mistral-tiny", "Q4_0")]


@pytest.mark.parametrize(("fixture", "qtype"), FILES)
def test_file_equals_llama_quantize_with_imatrix(
    converted: Converted, imatrix_files, tmp_path, fixture, qtype
) -> None:
    _check_file(converted, imatrix_files, tmp_path, fixture, qtype)


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "qtype"), FILES_SLOW)
def test_file_equals_llama_quantize_with_imatrix_dense(
    request: pytest.FixtureRequest, converted: Converted, imatrix_files, tmp_path, fixture, qtype
) -> None:
    only_with_slow(request, "the dense model's imatrix files")
    _check_file(converted, imatrix_files, tmp_path, fixture, qtype)


def _check_file(converted: Converted, imatrix_files, tmp_path, fixture: str, qtype: str) -> None:  # noqa: ANN001
    path = imatrix_files(fixture)
    ours = tmp_path / "ours.gguf"
    convert(converted.checkpoints[fixture], ours, qtype, threads=2, imatrix=path)
    ref = llama_quantize(
        converted(fixture, "F32"), tmp_path / "ref.gguf", qtype, imatrix=QuantizeImatrix.from_file(path)
    )
    assert ours.stat().st_size == ref.stat().st_size
    assert sha256(ours) == sha256(ref)
    fields = gguf.GGUFReader(ours).fields
    assert fields["quantize.imatrix.file"].contents() == path
    assert fields["quantize.imatrix.dataset"].contents() == "calibration.txt"
    assert fields["quantize.imatrix.chunks_count"].contents() == 7


def test_tensor_bytes_equal_ggml_quantize_chunk_per_expert(
    converted: Converted, imatrix_files, tmp_path
) -> None:
    """Each tensor of an IQ3_M conversion of the MoE fixture is ggml_quantize_chunk of our F32 tensor, expert by
    expert with that expert's weights (tensors without an entry: without weights)."""
    path = imatrix_files("mixtral-tiny")
    ours = tmp_path / "ours.gguf"
    convert(converted.checkpoints["mixtral-tiny"], ours, "IQ3_M", threads=2, imatrix=path)
    f32 = tensor_bytes(converted("mixtral-tiny", "F32"))
    from quant.imatrix.format import read_imatrix

    im = read_imatrix(path)
    checked = 0
    for name, (type_name, ne, data) in tensor_bytes(ours).items():
        if type_name == "F32":
            continue
        x = np.frombuffer(f32[name][2], dtype=np.float32).reshape(-1, ne[0])
        w = im.weights(name)
        n_mat = ne[2] if len(ne) == 3 else 1
        parts = np.split(x, n_mat)
        expect = b"".join(
            ggml_ref.quantize(np.ascontiguousarray(p), type_name, None if w is None else w[i]).tobytes()
            for i, p in enumerate(parts)
        )
        assert data == expect, name
        checked += 1
    assert checked > 10


# -- bad input -----------------------------------------------------------------------------------------


def test_bad_imatrix_inputs_leave_nothing(converted: Converted, imatrix_files, tmp_path) -> None:
    src = converted.checkpoints["mistral-tiny"]
    out = tmp_path / "out.gguf"
    with pytest.raises(OptionError, match="--type IQ2_XXS needs an importance matrix .*hubtui imatrix"):
        convert(src, out, "IQ2_XXS")
    not_imatrix = converted("mistral-tiny", "F32")
    with pytest.raises(ImatrixError, match="general.type is 'model', not 'imatrix'"):
        convert(src, out, "IQ2_XXS", imatrix=str(not_imatrix))
    entries = entries_for(not_imatrix)
    del entries["blk.1.attn_k.weight"]
    with pytest.raises(ImatrixError, match="no dataset given"):  # llama-quantize would refuse such a file
        write_imatrix(tmp_path / "empty.gguf", entries, datasets=[], chunk_count=0, chunk_size=512)
    missing = tmp_path / "missing.gguf"
    write_imatrix(missing, entries, datasets=["t.txt"], chunk_count=0, chunk_size=512)
    with pytest.raises(ImatrixError, match=r"Missing importance matrix for tensor blk\.1\.attn_k\.weight"):
        convert(src, out, "IQ2_XS", imatrix=str(missing))
    entries["blk.1.attn_k.weight"] = ImatrixEntry(np.ones((1, 96), np.float32), np.ones(1))
    wrong = tmp_path / "wrong.gguf"
    write_imatrix(wrong, entries, datasets=["t.txt"], chunk_count=0, chunk_size=512)
    with pytest.raises(ImatrixError, match=r"blk\.1\.attn_k\.weight: imatrix size 96 is different"):
        convert(src, out, "Q4_K_M", imatrix=str(wrong))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missing.gguf", "wrong.gguf"]


def test_imatrix_changes_the_layout_as_llama_quantize(converted: Converted, imatrix_files) -> None:
    """An imatrix adds llama-quantize's four quantize.imatrix.* KVs right after general.file_type; the mixture
    rules an imatrix changes need at least 8 layers (i < n/8) and are checked layer by layer on a 16-layer
    model in tests/test_convert_type_rules.py."""
    src = converted.checkpoints["mistral-tiny"]
    plain = prepare(src, "IQ4_NL").layout
    with_im = prepare(src, "IQ4_NL", imatrix=imatrix_files("mistral-tiny")).layout
    keys = list(with_im.kv)
    assert keys[keys.index("general.file_type") + 1 :] == [
        "quantize.imatrix.file",
        "quantize.imatrix.dataset",
        "quantize.imatrix.entries_count",
        "quantize.imatrix.chunks_count",
    ]
    assert not any(k.startswith("quantize.imatrix") for k in plain.kv)
    assert with_im.file_size > plain.file_size  # the four KVs


@pytest.mark.parametrize(
    ("fixture", "qtype", "fmt"), [("mixtral-tiny", "IQ3_XXS", "gguf"), ("mixtral-tiny", "Q4_K_M", "dat")]
)
def test_llama_quantize_tool_reads_our_files_and_writes_ours(
    converted: Converted, tmp_path, fixture: str, qtype: str, fmt: str
) -> None:
    """Opt-in, with the `llama-quantize` binary built from the sdist (tests/support/llama_tools.py):
    llama.cpp's own loader reads an imatrix file (our GGUF writer's, or a legacy .dat) and its output equals
    ours."""
    import subprocess

    from tests.support.llama_tools import find_tool
    from tests.test_imatrix_format import _legacy_bytes

    tool = find_tool("llama-quantize")
    if tool is None:
        pytest.skip("llama-quantize is not built (python tests/support/llama_tools.py llama-quantize)")
    f32 = converted(fixture, "F32")
    entries = entries_for(f32)
    path = tmp_path / f"m.imatrix.{fmt}"
    if fmt == "gguf":
        write_imatrix(path, entries, datasets=["calibration.txt"], chunk_count=7, chunk_size=512)
    else:  # one matrix per entry in the legacy format: the dense tensors only, as llama-imatrix's .dat
        dense = {n: e for n, e in entries.items() if e.n_mat == 1}
        for e in dense.values():
            e.counts[:] = 1024
        path.write_bytes(_legacy_bytes(dense, 512, (2, "calibration.txt")))
    ref = tmp_path / "ref.gguf"
    run = subprocess.run(
        [str(tool), "--imatrix", str(path), str(f32), str(ref), qtype, "2"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ours = convert(
        converted.checkpoints[fixture], tmp_path / "ours.gguf", qtype, threads=2, imatrix=str(path)
    ).path
    assert tensor_bytes(ours) == tensor_bytes(ref)
    assert sha256(ours) == sha256(ref)
