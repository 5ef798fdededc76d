"""The type mixture against llama-quantize's observed choices (src/llama-quant.cpp; docs/filetypes.md) and config parsing variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant.convert import file_layout
from quant.convert.options import TensorOptions, parse_tensor_type
from quant.convert.type_rules import FILE_TYPES, TensorSpec, choose_types, resolve_file_type, use_more_bits
from quant.errors import ConversionError, OptionError
from tests.support.convert_support import clone_checkpoint, write_tiny_checkpoint

CODES = {"Q4_K": "4", "Q5_K": "5", "Q6_K": "6", "Q8_0": "8", "Q5_0": "a", "Q5_1": "b"}
CODES |= {"Q2_K": "2", "Q3_K": "3", "IQ4_NL": "h", "IQ4_XS": "i", "Q4_0": "j", "Q4_1": "k", "F16": "f"}


def dense(n_layer: int, n_embd: int, n_ff: int, *, tied: bool, n_expert: int = 0) -> list[TensorSpec]:
    specs = [TensorSpec("token_embd.weight", (32000, n_embd), False)]
    if not tied:
        specs.append(TensorSpec("output.weight", (32000, n_embd), False))
    specs.append(TensorSpec("output_norm.weight", (n_embd,), True))
    for i in range(n_layer):
        b = f"blk.{i}."
        specs += [
            TensorSpec(b + "attn_norm.weight", (n_embd,), True),
            TensorSpec(b + "ffn_norm.weight", (n_embd,), True),
            TensorSpec(b + "attn_q.weight", (n_embd, n_embd), False),
            TensorSpec(b + "attn_k.weight", (n_embd // 4, n_embd), False),
            TensorSpec(b + "attn_v.weight", (n_embd // 4, n_embd), False),
            TensorSpec(b + "attn_output.weight", (n_embd, n_embd), False),
        ]
        if n_expert:
            specs += [
                TensorSpec(b + "ffn_gate_inp.weight", (n_expert, n_embd), True),
                TensorSpec(b + "ffn_gate_exps.weight", (n_expert, n_ff, n_embd), False),
                TensorSpec(b + "ffn_down_exps.weight", (n_expert, n_embd, n_ff), False),
                TensorSpec(b + "ffn_up_exps.weight", (n_expert, n_ff, n_embd), False),
            ]
        else:
            specs += [
                TensorSpec(b + "ffn_gate.weight", (n_ff, n_embd), False),
                TensorSpec(b + "ffn_down.weight", (n_embd, n_ff), False),
                TensorSpec(b + "ffn_up.weight", (n_ff, n_embd), False),
            ]
    return specs


def mix(
    specs: list[TensorSpec], qtype: str, n_layer: int, n_expert: int = 0, options: TensorOptions | None = None
) -> dict[str, str]:
    return choose_types(
        specs,
        resolve_file_type(qtype),
        n_layer=n_layer,
        n_expert=n_expert,
        n_head=8,
        n_head_kv=2,
        options=options,
    )


def per_layer(types: dict[str, str], what: str, n_layer: int) -> str:
    return "".join(CODES[types[f"blk.{i}.{what}.weight"]] for i in range(n_layer))


def test_use_more_bits_layers() -> None:
    assert [i for i in range(8) if use_more_bits(i, 8)] == [0, 3, 6, 7]
    assert [i for i in range(30) if use_more_bits(i, 30)] == [
        0,
        1,
        2,
        5,
        8,
        11,
        14,
        17,
        20,
        23,
        26,
        27,
        28,
        29,
    ]
    assert [i for i in range(32) if use_more_bits(i, 32)] == [
        0,
        1,
        2,
        3,
        6,
        9,
        12,
        15,
        18,
        21,
        24,
        27,
        28,
        29,
        30,
        31,
    ]


@pytest.mark.parametrize(
    ("qtype", "tok", "attn_v", "ffn_down"),
    [
        ("Q4_K_M", "Q4_K", "64464466", "64464466"),
        ("Q4_K_S", "Q4_K", "55554444", "54444444"),
        ("Q5_K_M", "Q5_K", "65565566", "65565566"),
        ("Q6_K", "Q6_K", "66666666", "66666666"),
        ("Q8_0", "Q8_0", "88888888", "88888888"),
    ],
)
def test_dense_untied_mixture(qtype: str, tok: str, attn_v: str, ffn_down: str) -> None:
    types = mix(dense(8, 512, 1024, tied=False), qtype, 8)
    assert types["token_embd.weight"] == tok
    assert types["output.weight"] == ("Q8_0" if qtype == "Q8_0" else "Q6_K")
    assert per_layer(types, "attn_v", 8) == attn_v and per_layer(types, "ffn_down", 8) == ffn_down
    assert types["output_norm.weight"] == types["blk.3.attn_norm.weight"] == "F32"


@pytest.mark.parametrize("qtype", ["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q8_0"])
def test_tied_embedding_is_quantised_like_output(qtype: str) -> None:
    types = mix(dense(8, 512, 1024, tied=True), qtype, 8)
    assert types["token_embd.weight"] == ("Q8_0" if qtype == "Q8_0" else "Q6_K")


def test_smollm2_shape_falls_back() -> None:
    types = mix(dense(30, 576, 1536, tied=True), "Q4_K_M", 30)
    assert types["token_embd.weight"] == "Q8_0"
    for what in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
        assert per_layer(types, what, 30) == "a" * 30
    assert per_layer(types, "attn_v", 30) == "".join("8" if use_more_bits(i, 30) else "a" for i in range(30))
    assert per_layer(types, "ffn_down", 30) == "".join(
        "6" if use_more_bits(i, 30) else "4" for i in range(30)
    )
    q6 = mix(dense(30, 576, 1536, tied=True), "Q6_K", 30)
    assert per_layer(q6, "ffn_down", 30) == "6" * 30 and per_layer(q6, "attn_q", 30) == "8" * 30


def test_mixtral_rules() -> None:
    types = mix(dense(8, 512, 1024, tied=False, n_expert=8), "Q4_K_M", 8, n_expert=8)
    assert per_layer(types, "attn_k", 8) == per_layer(types, "attn_v", 8) == "8" * 8
    assert per_layer(types, "attn_output", 8) == "5" * 8
    assert per_layer(types, "ffn_down_exps", 8) == "64464466"
    assert per_layer(types, "ffn_gate_exps", 8) == per_layer(types, "ffn_up_exps", 8) == "4" * 8
    assert types["blk.0.ffn_gate_inp.weight"] == "F32"
    assert types["token_embd.weight"] == "Q4_K" and types["output.weight"] == "Q6_K"


def test_float_file_types_follow_the_converter() -> None:
    specs = dense(2, 64, 128, tied=False)
    for name in ("F32", "F16", "BF16"):
        types = mix(specs, name, 2)
        assert types["blk.0.attn_q.weight"] == FILE_TYPES[name].default
        assert types["blk.0.attn_norm.weight"] == "F32"


def test_type_names() -> None:
    assert resolve_file_type("q4_k").name == "Q4_K_M"
    assert resolve_file_type("Q3_K").name == "Q3_K_M" and resolve_file_type("q5_k").name == "Q5_K_M"
    with pytest.raises(ConversionError, match="'TQ1_0'.*Q3_K_S"):  # a llama-quantize type we do not make
        resolve_file_type("TQ1_0")


# llama_model_quantize's dry run of a synthetic 16-layer LLaMA (n_embd 256, n_ff 512, 8 heads, 2 KV heads,
# untied), as recorded for llama.cpp's mixture rules; one character per layer (see CODES)
@pytest.mark.parametrize(
    ("qtype", "tok", "attn_v", "attn_output", "ffn_down", "rest"),
    [
        ("Q2_K", "Q2_K", "4" * 16, "3" * 16, "3" * 16, "2"),
        ("Q3_K_S", "Q3_K", "3" * 16, "3" * 16, "3" * 16, "3"),
        ("Q3_K_M", "Q3_K", "55" + "4" * 14, "4" * 16, "5" + "4" * 15, "3"),
        ("Q3_K_L", "Q3_K", "5" * 16, "5" * 16, "5" * 16, "3"),
        ("Q5_K_S", "Q5_K", "5" * 16, "5" * 16, "5" * 16, "5"),
        ("IQ4_NL", "IQ4_NL", "5" * 16, "h" * 16, "55" + "h" * 14, "h"),
        ("IQ4_XS", "IQ4_XS", "5" * 16, "i" * 16, "55" + "i" * 14, "i"),
        ("Q4_0", "Q4_0", "j" * 16, "j" * 16, "j" * 16, "j"),
        ("Q4_1", "Q4_1", "k" * 16, "k" * 16, "k" * 16, "k"),
        ("Q5_0", "Q5_0", "a" * 16, "a" * 16, "a" * 16, "a"),
        ("Q5_1", "Q5_1", "b" * 16, "b" * 16, "b" * 16, "b"),
    ],
)
def test_new_file_type_mixtures(
    qtype: str, tok: str, attn_v: str, attn_output: str, ffn_down: str, rest: str
) -> None:
    types = mix(dense(16, 256, 512, tied=False), qtype, 16)
    assert types["token_embd.weight"] == tok and types["output.weight"] == "Q6_K"
    assert per_layer(types, "attn_v", 16) == attn_v
    assert per_layer(types, "attn_output", 16) == attn_output
    assert per_layer(types, "ffn_down", 16) == ffn_down
    for what in ("attn_q", "attn_k", "ffn_gate", "ffn_up"):
        assert per_layer(types, what, 16) == rest * 16, what


# The imatrix types and the rules an imatrix changes, as llama_model_quantize chooses them for the same synthetic
# 16-layer model (n_gqa 4, untied); "+im": an importance matrix is given. Letters as in docs/imatrix.md.
IM_CODES = {
    "IQ2_XXS": "a",
    "IQ2_XS": "b",
    "IQ2_S": "c",
    "IQ3_XXS": "d",
    "IQ3_S": "e",
    "IQ1_S": "f",
    "IQ1_M": "g",
}
IM_CODES |= {"IQ4_NL": "h", "Q4_0": "j", "Q4_1": "k", "Q5_0": "l", "Q5_1": "m"}
IM_CODES |= {k: v for k, v in CODES.items() if k in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")}


@pytest.mark.parametrize(
    ("qtype", "im", "tok", "out", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_up", "ffn_down"),
    [
        ("IQ2_XXS", True, "Q2_K", "Q5_K", "a" * 16, "a" * 16, "4" * 16, "a" * 16, "a" * 16, "22" + "a" * 14),
        ("IQ2_XS", True, "Q2_K", "Q5_K", "b" * 16, "b" * 16, "4" * 16, "b" * 16, "b" * 16, "22" + "b" * 14),
        ("IQ2_S", True, "IQ3_S", "Q5_K", "b" * 16, "b" * 16, "4" * 16, "e" * 16, "b" * 16, "ee" + "b" * 14),
        ("IQ2_M", True, "IQ3_S", "Q5_K", "c" * 16, "c" * 16, "4" * 16, "e" * 16, "c" * 16, "ee" + "c" * 14),
        ("IQ1_S", True, "Q2_K", "Q5_K", "f" * 16, "f" * 16, "4" * 16, "a" * 16, "f" * 16, "22" + "f" * 14),
        (
            "IQ3_XXS",
            False,
            "IQ3_S",
            "Q5_K",
            "c" * 16,
            "c" * 16,
            "4" * 16,
            "e" * 16,
            "d" * 16,
            "44" + "3" * 14,
        ),
        ("IQ3_XXS", True, "IQ3_S", "Q5_K", "c" * 16, "c" * 16, "4" * 16, "e" * 16, "d" * 16, "d" * 16),
        (
            "IQ3_XS",
            True,
            "IQ3_S",
            "Q6_K",
            "d" * 16,
            "d" * 16,
            "4" * 16,
            "e" * 16,
            "ee" + "d" * 12 + "ee",
            "e" * 16,
        ),
        ("IQ3_M", True, "IQ3_S", "Q6_K", "e" * 16, "e" * 16, "4" * 16, "4" * 16, "e" * 16, "44" + "e" * 14),
        (
            "IQ4_NL",
            False,
            "IQ4_NL",
            "Q6_K",
            "h" * 16,
            "h" * 16,
            "5" * 16,
            "h" * 16,
            "h" * 16,
            "55" + "h" * 14,
        ),
        ("IQ4_NL", True, "IQ4_NL", "Q6_K", "h" * 16, "h" * 16, "5" * 16, "h" * 16, "h" * 16, "h" * 16),
        ("Q4_0", True, "Q4_0", "Q6_K", "j" * 16, "j" * 16, "j" * 16, "j" * 16, "j" * 16, "kk" + "j" * 14),
        ("Q5_0", True, "Q5_0", "Q6_K", "l" * 16, "l" * 16, "l" * 16, "l" * 16, "l" * 16, "mm" + "l" * 14),
    ],
)
def test_imatrix_mixtures_as_llama_quantize_chooses_them(
    qtype: str, im: bool, tok: str, out: str, attn_q: str, attn_k: str, attn_v: str, attn_output: str,
    ffn_gate_up: str, ffn_down: str,
) -> None:  # fmt: skip
    types = choose_types(
        dense(16, 256, 512, tied=False), resolve_file_type(qtype), n_layer=16, n_expert=0, n_head=8, n_head_kv=2,
        has_imatrix=im,
    )  # fmt: skip

    def row(what: str) -> str:
        return "".join(IM_CODES[types[f"blk.{i}.{what}.weight"]] for i in range(16))

    assert (types["token_embd.weight"], types["output.weight"]) == (tok, out)
    got = [row(w) for w in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    assert got == [attn_q, attn_k, attn_v, attn_output, ffn_gate_up, ffn_gate_up, ffn_down]


def test_shape_fallbacks_of_the_new_types() -> None:
    """Rows of 96 (a multiple of 32, not 256) and ffn_down rows of 200 (not a multiple of 32)."""
    specs = dense(2, 96, 200, tied=False)
    expect = {"Q2_K": "j", "Q3_K_S": "j", "IQ4_XS": "h", "Q5_K_S": "b", "Q4_0": "j", "Q4_1": "k"}
    for qtype, code in expect.items():
        types = mix(specs, qtype, 2)
        assert per_layer(types, "attn_q", 2) == code * 2, qtype
        assert per_layer(types, "ffn_down", 2) == "ff", qtype
        assert types["output.weight"] == "Q8_0", qtype  # the output rule: block does not divide the row


def opts(*tensor_types: str, **kw) -> TensorOptions:
    return TensorOptions.parse(tensor_types, **kw)


def test_tensor_type_patterns_first_match_and_counters() -> None:
    specs = dense(8, 512, 1024, tied=False)
    plain = mix(specs, "Q4_K_M", 8)
    manual = mix(specs, "Q4_K_M", 8, options=opts(r"blk\.0\.attn_v=Q8_0", "attn_v=q5_k", r"BLK\.7\.FFN=f16"))
    assert per_layer(plain, "attn_v", 8) == "64464466"
    assert per_layer(manual, "attn_v", 8) == "85555555"  # the second pattern takes the rest, first match wins
    assert manual["blk.7.ffn_up.weight"] == manual["blk.7.ffn_down.weight"] == "F16"  # lower-cased pattern
    # a manual attn_v skips the mixture and its counter: layer 1 is then the mixture's first attn_v
    shifted = mix(specs, "Q4_K_M", 8, options=opts(r"blk\.0\.attn_v=q8_0"))
    assert per_layer(shifted, "attn_v", 8) == "86446446"


def test_pure_output_embedding_and_leave_output() -> None:
    specs = dense(8, 512, 1024, tied=False)
    pure = mix(specs, "Q3_K_M", 8, options=opts(pure=True))
    assert {t for n, t in pure.items() if not n.endswith("norm.weight")} == {"Q3_K"}
    named = mix(specs, "Q3_K_M", 8, options=opts(output_tensor_type="q8_0", token_embedding_type="Q4_0"))
    assert named["output.weight"] == "Q8_0" and named["token_embd.weight"] == "Q4_0"
    left = mix(specs, "Q3_K_M", 8, options=opts(leave_output_tensor=True))
    assert left["output.weight"] == "F32" and left["token_embd.weight"] == "Q3_K"
    tied = mix(dense(8, 576, 1024, tied=True), "Q4_K_M", 8, options=opts(output_tensor_type="q3_k"))
    assert tied["token_embd.weight"] == "Q4_0"  # tied: through the mixture, so the shape fallback applies


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("attn_v", "expected PATTERN=TYPE"),
        ("=q8_0", "missing tensor name pattern"),
        ("attn_v=", "missing ggml type"),
        ("attn_v=q9_9", "'q9_9'"),
        ("attn_v=tq2_0", "'tq2_0'"),
        ("[attn=q8_0", "bad regular expression"),
        ("(?i)attn_v=q8_0", "'(?' is not ECMAScript"),
        ("attn_v++=q8_0", "'++' is not ECMAScript"),
    ],
)
def test_bad_tensor_type_options_are_named(text: str, culprit: str) -> None:
    with pytest.raises(OptionError, match="--tensor-type") as exc:
        parse_tensor_type(text)
    assert culprit in str(exc.value) and repr(text) in str(exc.value)


def test_options_that_cannot_apply_are_refused() -> None:
    specs = dense(2, 96, 192, tied=False)
    with pytest.raises(OptionError, match="'atn_v=q8_0' has no effect: it matches no quantisable tensor"):
        mix(specs, "Q4_K_M", 2, options=opts("atn_v=q8_0"))
    with pytest.raises(OptionError, match="'attn_norm=q8_0' has no effect"):
        mix(specs, "Q4_K_M", 2, options=opts("attn_norm=q8_0"))
    with pytest.raises(OptionError, match="'attn_v=q8_0' has no effect: every tensor it matches is decided"):
        mix(specs, "Q4_K_M", 2, options=opts("attn=q6_k", "attn_v=q8_0"))
    with pytest.raises(OptionError, match="output.weight has rows of 96 values, not a multiple of Q4_K's"):
        mix(specs, "Q4_K_M", 2, options=opts(output_tensor_type="q4_k"))
    with pytest.raises(OptionError, match="--token-embedding-type IQ4_XS: token_embd.weight has rows of 96"):
        mix(specs, "Q4_K_M", 2, options=opts(token_embedding_type="iq4_xs"))
    with pytest.raises(OptionError, match="--pure: per-tensor options apply to quantised types, not F16"):
        mix(specs, "F16", 2, options=opts(pure=True))
    with pytest.raises(OptionError, match="--output-tensor-type"):
        opts(output_tensor_type="q1_5")


# --- config variants, on a tiny checkpoint ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(mistral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("cfg") / "tiny", mistral_tiny_dir)


def with_config(tiny: Path, tmp_path: Path, **changes) -> Path:
    ckpt = clone_checkpoint(tiny, tmp_path / "c", skip=("config.json",))
    cfg = json.loads((tiny / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (ckpt / "config.json").write_text(json.dumps(cfg))
    return ckpt


def test_transformers5_rope_parameters(tiny: Path, tmp_path: Path) -> None:
    ckpt = with_config(
        tiny, tmp_path, rope_theta=None, rope_parameters={"rope_type": "default", "rope_theta": 12345.0}
    )
    layout = file_layout(ckpt, "F16")
    assert layout.kv["llama.rope.freq_base"] == pytest.approx(12345.0)
    assert "llama.rope.scaling.type" not in layout.kv


def test_linear_and_yarn_rope_scaling_keys(tiny: Path, tmp_path: Path) -> None:
    lin = file_layout(
        with_config(tiny, tmp_path / "a", rope_scaling={"type": "linear", "factor": 4.0}), "F16"
    )
    assert lin.kv["llama.rope.scaling.type"] == "linear" and lin.kv["llama.rope.scaling.factor"] == 4.0
    yarn = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 2048, "beta_fast": 32.0}
    y = file_layout(with_config(tiny, tmp_path / "b", rope_scaling=yarn), "F16")
    assert y.kv["llama.rope.scaling.type"] == "yarn"
    assert y.kv["llama.rope.scaling.original_context_length"] == 2048
    assert y.kv["llama.rope.scaling.yarn_beta_fast"] == 32.0
    with pytest.raises(ConversionError, match="longrope"):
        file_layout(
            with_config(tiny, tmp_path / "c", rope_scaling={"rope_type": "longrope", "factor": 2.0}), "F16"
        )


def test_explicit_head_dim_writes_key_length(tiny: Path, mistral_tiny_dir: Path, tmp_path: Path) -> None:
    layout = file_layout(with_config(tiny, tmp_path, head_dim=16), "F16")
    assert layout.kv["llama.attention.key_length"] == layout.kv["llama.attention.value_length"] == 16
    # transformers' MistralConfig and LlamaConfig fill in head_dim, so llama.cpp writes the keys anyway ...
    assert file_layout(tiny, "F16").kv["llama.attention.key_length"] == 64 // 4
    # ... MixtralConfig does not (transformers picks the class by model_type)
    mixtral = write_tiny_checkpoint(
        tmp_path / "m",
        mistral_tiny_dir,
        architectures=["MixtralForCausalLM"],
        model_type="mixtral",
        num_local_experts=2,
        num_experts_per_tok=1,
    )
    assert "llama.attention.key_length" not in file_layout(mixtral, "F16").kv
    with pytest.raises(ConversionError, match="head_dim"):
        file_layout(with_config(tiny, tmp_path / "x", head_dim=32), "F16")  # q_proj rows no longer match
