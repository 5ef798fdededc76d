"""hubtui.demo.smollm2 rebuilds the shipped GGUF's weights exactly (up to BF16), deterministically, safely."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from hubtui.demo.smollm2 import build_smollm2_checkpoint, bundled_gguf, unpermute_rows
from hubtui.errors import HubtuiError
from tests.reference.f32_gguf import permute_rows
from tests.reference.forward import read_weights


def test_unpermute_inverts_llama_cpp_row_order():
    # 2 heads of 6 rows: llama.cpp row h·6 + 2i + j holds HF row h·6 + 3j + i
    hf = np.arange(12 * 2).reshape(12, 2)
    llama = permute_rows(hf, 2)
    assert llama[:, 0].tolist() == [0, 6, 2, 8, 4, 10, 12, 18, 14, 20, 16, 22]
    np.testing.assert_array_equal(unpermute_rows(llama, 2), hf)


def test_weights_equal_the_dequantised_gguf(smollm2_dir):
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (576, 30, 9)
    assert (cfg["num_key_value_heads"], cfg["rope_theta"], cfg["rms_norm_eps"]) == (3, 100000.0, 1e-05)
    ours = read_weights(smollm2_dir)
    reader = gguf.GGUFReader(bundled_gguf())
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    to_gguf = {name: names.get_name(name, try_suffixes=(".weight",)) for name in ours}
    assert sorted(to_gguf.values()) == sorted(t.name for t in reader.tensors)
    originals = {t.name: t for t in reader.tensors}
    for name, w in ours.items():
        t = originals[to_gguf[name]]
        expected = gguf.quants.dequantize(t.data, t.tensor_type).reshape(w.shape)
        if name.endswith("q_proj.weight"):
            w = permute_rows(w, cfg["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = permute_rows(w, cfg["num_key_value_heads"])
        # BF16 keeps 8 significant bits: round-to-nearest is within half a unit in the last place
        assert w.shape == expected.shape, name
        assert (np.abs(w - expected) <= np.abs(expected) * 2**-8).all(), name


def _digest(ckpt: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ckpt.iterdir())}


def test_build_is_deterministic_and_reports_progress(smollm2_dir, tmp_path):
    calls: list[tuple[int, int, str]] = []
    out = build_smollm2_checkpoint(tmp_path / "SmolLM2-135M-Instruct", progress=lambda *a: calls.append(a))
    assert _digest(out) == _digest(smollm2_dir)
    assert [done for done, _, _ in calls] == list(range(1, 273)) and {total for _, total, _ in calls} == {272}
    assert calls[0][2] == "model.embed_tokens.weight"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SmolLM2-135M-Instruct"]


def test_refuses_a_non_empty_output_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(HubtuiError, match="not an empty directory"):
        build_smollm2_checkpoint(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_bad_source_leaves_nothing_behind(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "out" / "SmolLM2"
    with pytest.raises(HubtuiError, match=r"bogus\.gguf") as err:
        build_smollm2_checkpoint(out, source=bogus)
    assert "\n" not in str(err.value)
    assert list((tmp_path / "out").iterdir()) == []
