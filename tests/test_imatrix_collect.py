"""`hubtui imatrix`: the statistics llama.cpp's eval callback collects, against a numpy forward of the same
tokens; the written file; the command end to end; bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hubtui.cli import main
from hubtui.runner.imatrix import DEFAULT_TEXT, compute_imatrix
from quant.imatrix.format import read_imatrix
from tests.reference.forward import Model

N_CTX = 32
TEXT = (
    "The river ran past the old mill, and the miller counted sacks of grain while the children played. "
    "def area(r):\n    return 3.14159 * r * r\n"
    "El río pasaba junto al molino viejo y el molinero contaba los sacos de trigo. "
) * 6


def _hf_to_gguf(name: str) -> tuple[str, int]:
    """A HF weight name to (GGUF weight name, expert index or 0)."""
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.weight", name)
    assert m, name
    blk, rest = f"blk.{m.group(1)}.", m.group(2)
    dense = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "block_sparse_moe.gate": "ffn_gate_inp",
    }  # fmt: skip
    if rest in dense:
        return blk + dense[rest] + ".weight", 0
    e = re.fullmatch(r"block_sparse_moe\.experts\.(\d+)\.(w[123])", rest)
    assert e, name
    kind = {"w1": "ffn_gate_exps", "w2": "ffn_down_exps", "w3": "ffn_up_exps"}[e.group(2)]
    return blk + kind + ".weight", int(e.group(1))


class _Recorded(np.ndarray):
    """A weight that records the squared input rows of every `x @ W.T` it takes part in."""

    def __array_finalize__(self, obj):
        self.tag = getattr(obj, "tag", None)
        self.sink = getattr(obj, "sink", None)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(i) if isinstance(i, _Recorded) else i for i in inputs]
        if ufunc is np.matmul and isinstance(inputs[1], _Recorded):
            x = np.atleast_2d(plain[0]).astype(np.float64)
            name, expert = inputs[1].tag
            sums, counts = inputs[1].sink.setdefault(name, ({}, {}))
            sums[expert] = sums.get(expert, 0) + (x * x).sum(axis=0)
            counts[expert] = counts.get(expert, 0) + x.shape[0]
        return getattr(ufunc, method)(*plain, **kwargs)


def numpy_statistics(ckpt: Path, chunks: list[list[int]]) -> dict[str, tuple[dict, dict]]:
    """Σx² per column and row counts of every blk.* matmul input, from the numpy reference forward."""
    model = Model(ckpt)
    sink: dict[str, tuple[dict, dict]] = {}
    for name, w in list(model.w.items()):
        if name.startswith("model.layers.") and name.endswith("proj.weight") or ".block_sparse_moe." in name:
            if name.endswith("norm.weight"):
                continue
            r = w.view(_Recorded)
            r.tag, r.sink = _hf_to_gguf(name), sink
            model.w[name] = r
    for chunk in chunks:
        model.logits(chunk)  # every position runs through every layer
    return sink


def chunk_tokens(gguf_path: Path, text: str, n_ctx: int, n_chunks: int) -> list[list[int]]:
    """The chunks llama-imatrix feeds: the whole text tokenised with BOS, each chunk's first token BOS."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
    bos = llm.token_bos()
    chunks = [tokens[i * n_ctx : (i + 1) * n_ctx] for i in range(n_chunks)]
    for c in chunks:
        c[0] = bos
    return chunks


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("fixture", ["llama3-tiny", "mixtral-tiny"])
def test_statistics_match_a_numpy_forward(fixture, converted, checkpoints, tmp_path):
    gguf_path = converted(fixture, "F32")
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "imatrix.gguf"
    result = compute_imatrix(gguf_path, out, text=text, n_ctx=N_CTX, chunks=2, threads=2)
    assert result.chunks == 2 and result.chunk_size == N_CTX
    got = read_imatrix(out)
    want = numpy_statistics(checkpoints[fixture], chunk_tokens(gguf_path, TEXT, N_CTX, 2))
    assert sorted(got.entries) == sorted(want)
    moe = False
    for name, (sums, counts) in want.items():
        entry = got.entries[name]
        n_mat = entry.n_mat
        ref_sums = np.zeros((n_mat, entry.n_cols))
        ref_counts = np.zeros(n_mat)
        for e in range(n_mat):
            ref_sums[e] = sums.get(e, 0)
            ref_counts[e] = counts.get(e, 0)
        moe |= n_mat > 1
        np.testing.assert_array_equal(entry.counts, ref_counts, err_msg=name)
        assert cosine(entry.in_sum2, ref_sums) >= 0.9999, name
        for e in range(n_mat):  # each expert's columns, not just the whole tensor
            if ref_counts[e]:
                assert cosine(entry.in_sum2[e], ref_sums[e]) >= 0.9999, (name, e)
    assert moe == (fixture == "mixtral-tiny")
    if moe:  # routing spread the tokens: per-expert counts differ and add up to 2 per token
        c = got.entries["blk.0.ffn_up_exps.weight"].counts
        assert len(set(c)) > 1 and c.sum() == 2 * 2 * N_CTX


def test_file_has_llama_imatrix_keys(converted, tmp_path):
    import gguf

    text = tmp_path / "calib.txt"
    text.write_text(TEXT)
    out = tmp_path / "m.imatrix.gguf"
    compute_imatrix(converted("llama3-tiny", "F32"), out, text=text, n_ctx=N_CTX, chunks=3, threads=2)
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.type"].contents() == "imatrix"
    assert reader.fields["imatrix.datasets"].contents() == ["calib.txt"]
    im = read_imatrix(out)
    n_chunks = im.chunk_count
    assert im.chunk_size == N_CTX and n_chunks == 3
    assert all(e.counts[0] == n_chunks * N_CTX for n, e in im.entries.items())
    assert "general.architecture" not in reader.fields
    names = [t.name for t in reader.tensors]
    bases = [n.removesuffix(".in_sum2") for n in names[::2]]
    assert bases == sorted(bases) and names == [n for b in bases for n in (b + ".in_sum2", b + ".counts")]


def test_default_text_is_shipped_and_mixed():
    body = DEFAULT_TEXT.read_text(encoding="utf-8")
    assert len(body.encode()) > 300_000
    # what --imatrix auto reads (64 chunks of 512 tokens: 97,638 characters with SmolLM2's tokenizer, more
    # with larger vocabularies) already holds code and
    # eight natural languages: English, Spanish, German, French, Russian, Chinese, Japanese, Arabic
    head = body[:95_000]
    words = ["def ", "return ", " the ", " el ", " ist ", " est "]  # code, English, Spanish, German, French
    scripts = {"Cyrillic": "[\u0400-\u04ff]", "Han": "[\u4e00-\u9fff]", "Kana": "[\u3040-\u30ff]"}
    scripts["Arabic"] = "[\u0600-\u06ff]"
    missing = [w for w in words if w not in head] + [
        n for n, rx in scripts.items() if not re.search(rx, head)
    ]
    assert not missing, missing


def test_cli_on_a_checkpoint_folder_removes_the_temporary(mixtral_tiny_dir, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "mix.imatrix.gguf"
    args = ["imatrix", str(mixtral_tiny_dir), "-o", str(out), "--text", str(text), "--ctx", "32"]
    main([*args, "--chunks", "2", "--json"])
    assert sorted(p.name for p in out_dir.iterdir()) == [out.name]
    im = read_imatrix(out)
    assert im.chunk_count == 2 and im.entries["blk.0.ffn_down_exps.weight"].n_mat == 8
    assert '"converted": "F16"' in capsys.readouterr().out


def _fails(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_fails_in_one_line_and_leaves_nothing(converted, tmp_path, capsys):
    model = converted("llama3-tiny", "F32")
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    out = tmp_path / "o" / "x.gguf"
    out.parent.mkdir()
    err = _fails(["imatrix", str(tmp_path / "nope.gguf"), "-o", str(out), "--text", str(text)], capsys)
    assert "nope.gguf" in err
    short = tmp_path / "short.txt"
    short.write_text("Just a few words.")
    err = _fails(["imatrix", str(model), "-o", str(out), "--text", str(short), "--ctx", "32"], capsys)
    assert "short.txt" in err and "64" in err
    err = _fails(["imatrix", str(model), "-o", str(out), "--text", str(tmp_path / "none.txt")], capsys)
    assert "none.txt" in err
    assert list(out.parent.iterdir()) == []
    out.write_bytes(b"keep")
    err = _fails(["imatrix", str(model), "-o", str(out), "--text", str(text), "--ctx", "32"], capsys)
    assert "x.gguf" in err and out.read_bytes() == b"keep"
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.gguf"]


def test_same_statistics_as_llama_imatrix(converted, tmp_path):
    """Opt-in: needs llama.cpp's llama-imatrix (python tests/support/llama_tools.py llama-imatrix)."""
    import subprocess

    from tests.support.llama_tools import find_tool

    tool = find_tool("llama-imatrix")
    if tool is None:
        pytest.skip("llama-imatrix is not built (python tests/support/llama_tools.py llama-imatrix)")
    model = converted("llama3-tiny", "F32")
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    compute_imatrix(model, ours, text=text, n_ctx=N_CTX, chunks=4, threads=2)
    subprocess.run(
        [
            tool,
            "-m",
            model,
            "-f",
            text,
            "-c",
            str(N_CTX),
            "--chunks",
            "4",
            "-t",
            "2",
            "--no-ppl",
            "-o",
            theirs,
        ],
        check=True,
        capture_output=True,
    )
    a, b = read_imatrix(ours), read_imatrix(theirs)
    assert sorted(a.entries) == sorted(b.entries)
    assert a.chunk_count == b.chunk_count and a.chunk_size == b.chunk_size
    for name, e in a.entries.items():
        np.testing.assert_array_equal(e.counts, b.entries[name].counts, err_msg=name)
        assert cosine(e.in_sum2, b.entries[name].in_sum2) >= 0.9999, name


def test_convert_imatrix_auto_equals_an_explicit_imatrix(mixtral_tiny_dir, tmp_path, capsys, monkeypatch):
    """`convert --imatrix auto` computes the matrix from the default text in a temporary folder (removed) and
    quantises exactly as with that matrix given by file; an existing output stops it before any computing."""
    import hubtui.runner.imatrix as runner_imatrix
    from tests.support.convert_support import read_gguf, tensor_bytes

    monkeypatch.setattr(runner_imatrix, "AUTO_IMATRIX_CHUNKS", 2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    auto = out_dir / "auto.gguf"
    main(["convert", str(mixtral_tiny_dir), "--type", "IQ3_XXS", "--imatrix", "auto", "-o", str(auto)])
    assert "--imatrix auto: computing an importance matrix" in capsys.readouterr().err
    assert sorted(p.name for p in out_dir.iterdir()) == ["auto.gguf"]  # no temporary folder or F16 left

    explicit = tmp_path / "m.imatrix.gguf"
    compute_imatrix(mixtral_tiny_dir, explicit, chunks=2)  # the same defaults: text, ctx 512
    by_file = tmp_path / "file.gguf"
    main(
        [
            "convert",
            str(mixtral_tiny_dir),
            "--type",
            "IQ3_XXS",
            "--imatrix",
            str(explicit),
            "-o",
            str(by_file),
        ]
    )
    ours, theirs = tensor_bytes(auto), tensor_bytes(by_file)
    assert ours == theirs and any(t == "IQ3_XXS" for t, _shape, _data in ours.values())
    kv = read_gguf(auto)[0]
    assert kv["quantize.imatrix.file"] == f"auto:{DEFAULT_TEXT.name}"
    assert kv["quantize.imatrix.chunks_count"] == 2

    with pytest.raises(SystemExit) as exc:  # output exists, no --force: refused before computing
        main(["convert", str(mixtral_tiny_dir), "--type", "IQ3_XXS", "--imatrix", "auto", "-o", str(auto)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "computing" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["auto.gguf"]
