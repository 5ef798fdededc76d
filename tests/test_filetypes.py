"""The one list of file types: its figures against llama.cpp's published tables, and everything derived from it."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import gguf
import pytest

from quant.convert.type_rules import TensorSpec, choose_types, row_nbytes
from quant.filetypes import ALIASES, FILE_TYPES, PLAN_TYPES, TENSOR_TYPES, TYPE_CHOICES, resolve_file_type

# tools/quantize/README.md, the meta-llama/Llama-3.1-8B table ("bits/weight" row)
PUBLISHED_BPW = {
    "F16": 16.0005,
    "Q8_0": 8.5008,
    "Q6_K": 6.5633,
    "Q5_K_M": 5.7036,
    "Q5_K_S": 5.5704,
    "Q4_K_M": 4.8944,
    "Q4_K_S": 4.6672,
    "IQ4_NL": 4.6818,
    "IQ4_XS": 4.4597,
    "Q3_K_L": 4.2979,
    "Q3_K_M": 3.9960,
    "Q3_K_S": 3.6429,
    "Q2_K": 3.1593,
    # made with an importance matrix (IQ3_XXS's mixture depends on it)
    "IQ3_M": 3.7628,
    "IQ3_S": 3.6606,
    "IQ3_XS": 3.4977,
    "IQ3_XXS": 3.2548,
    "Q2_K_S": 2.9697,
    "IQ2_M": 2.9294,
    "IQ2_S": 2.7403,
    "IQ2_XS": 2.5882,
    "IQ2_XXS": 2.3824,
    "IQ1_M": 2.146,
    "IQ1_S": 2.0042,
}


def llama31_8b() -> list[TensorSpec]:
    """Llama-3.1-8B's GGUF tensors (32 layers, n_embd 4096, n_ff 14336, 32 heads, 8 KV heads, untied)."""
    specs = [
        TensorSpec("token_embd.weight", (128256, 4096), False),
        TensorSpec("output.weight", (128256, 4096), False),
        TensorSpec("output_norm.weight", (4096,), True),
        TensorSpec("rope_freqs.weight", (64,), True),
    ]
    for i in range(32):
        b = f"blk.{i}."
        specs += [
            TensorSpec(b + "attn_norm.weight", (4096,), True),
            TensorSpec(b + "ffn_norm.weight", (4096,), True),
            TensorSpec(b + "attn_q.weight", (4096, 4096), False),
            TensorSpec(b + "attn_k.weight", (1024, 4096), False),
            TensorSpec(b + "attn_v.weight", (1024, 4096), False),
            TensorSpec(b + "attn_output.weight", (4096, 4096), False),
            TensorSpec(b + "ffn_gate.weight", (14336, 4096), False),
            TensorSpec(b + "ffn_up.weight", (14336, 4096), False),
            TensorSpec(b + "ffn_down.weight", (4096, 14336), False),
        ]
    return specs


def mixture_bpw(qtype: str) -> float:
    specs = llama31_8b()
    ft = FILE_TYPES[qtype]
    types = choose_types(
        specs, ft, n_layer=32, n_expert=0, n_head=32, n_head_kv=8, has_imatrix=ft.needs_imatrix
    )
    bits = 8 * sum(math.prod(t.shape[:-1]) * row_nbytes(types[t.name], t.shape[-1]) for t in specs)
    return bits / sum(math.prod(t.shape) for t in specs)


@pytest.mark.parametrize("qtype", FILE_TYPES)
def test_bits_per_weight_are_the_mixtures_on_llama_3_1_8b(qtype: str) -> None:
    got = round(mixture_bpw(qtype), 4)
    assert FILE_TYPES[qtype].bpw == got
    if qtype in PUBLISHED_BPW:
        assert got == PUBLISHED_BPW[qtype]  # llama.cpp's own figure, reproduced by our mixture rules


def test_the_list_agrees_with_llama_h_and_gguf() -> None:
    for name, ft in FILE_TYPES.items():
        enum = "ALL_F32" if name == "F32" else f"MOSTLY_{name}"
        assert gguf.LlamaFileType[enum] == ft.ftype, name
        assert ft.default in gguf.GGMLQuantizationType.__members__
        assert ft.hint and ("ppl" in ft.hint) == (ft.ppl is not None)
    assert set(TENSOR_TYPES) == {ft.default for ft in FILE_TYPES.values()}
    assert {resolve_file_type(a).name for a in ALIASES} == {"Q3_K_M", "Q4_K_M", "Q5_K_M"}
    assert TYPE_CHOICES[: len(FILE_TYPES)] == tuple(FILE_TYPES)


def test_every_type_a_file_can_hold_has_a_kernel() -> None:
    """The mixtures and the shape fallbacks only pick file types' defaults, so every file type is writable."""
    from quant.kernels import QUANT_TYPES

    assert set(TENSOR_TYPES) <= set(QUANT_TYPES)


def test_everything_derives_from_the_one_list() -> None:
    from hubtui.app.convert_pane import file_types
    from hubtui.commands.convert import types_epilog
    from quant.sizing.plan import DEFAULT_TYPES, QUALITY_ORDER

    assert file_types() == QUALITY_ORDER == tuple(FILE_TYPES)
    assert DEFAULT_TYPES == PLAN_TYPES == tuple(n for n in FILE_TYPES if n not in ("F32", "BF16"))
    epilog = types_epilog()
    for ft in FILE_TYPES.values():
        assert re.search(rf"^  {ft.name} +{ft.bpw:.2f}  {re.escape(ft.hint)}$", epilog, re.M), ft.name


def test_hints_quote_llama_cpp_quantize_options_table() -> None:
    """Opt-in (HUBTUI_LLAMA_CPP_SRC): the ppl figures against QUANT_OPTIONS and the bpw against the README."""
    src = os.environ.get("HUBTUI_LLAMA_CPP_SRC")
    if not src:
        pytest.skip("set HUBTUI_LLAMA_CPP_SRC to the sdist's vendor/llama.cpp to check the published tables")
    options = (Path(src) / "tools" / "quantize" / "quantize.cpp").read_text()
    published = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'\{ "(\w+)",\s+LLAMA_FTYPE_\w+,\s+"\s*[\d.]+G, ([+-][\d.]+) ppl', options)
    }
    assert published and all(FILE_TYPES[n].ppl == v for n, v in published.items() if n in FILE_TYPES)
    assert {n for n, ft in FILE_TYPES.items() if ft.ppl is not None} == set(published) & set(FILE_TYPES)
    readme = (Path(src) / "tools" / "quantize" / "README.md").read_text()
    table = readme[readme.index("### [meta-llama/Llama-3.1-8B]") :]
    bpw: dict[str, float] = {}
    for names, values in re.findall(r"\| Measure +\|(.*)\|\n.*\n\| bits/weight +\|(.*)\|", table):
        bpw |= dict(zip(names.split("|"), map(float, values.split("|")), strict=True))
    bpw = {k.strip(): v for k, v in bpw.items()}
    assert {k: v for k, v in bpw.items() if k in FILE_TYPES} == PUBLISHED_BPW
