"""Every llama-quantize file type and per-tensor option against llama.cpp itself.

The reference is llama.cpp's `llama_model_quantize` (ctypes) applied to our F32 conversion:
- mixtures: its dry run names each tensor's type, and ours must be the same, for every fixture × quantised file
  type, for synthetic checkpoints that reach rules the fixtures do not (16 layers with grouped KV heads, tied
  embeddings without grouping, the 80-layer 70B rule, rows that are not multiples of 256 or of 32), and with
  per-tensor options;
- layouts: our header (KVs, tensor infos, offsets, padding) is the first bytes of its real output, and the
  file sizes agree, before a weight is read;
- files: our whole file equals its output byte for byte, for every type (each type's kernels are registered).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quant.convert.layout import Prepared, prepare
from quant.convert.type_rules import TensorSpec, choose_types
from quant.filetypes import FILE_TYPES, resolve_file_type
from tests.support.convert_support import (
    Converted,
    QuantizeOptions,
    llama_quantize_types,
    only_with_slow,
    sha256,
    write_tiny_checkpoint,
)

FIXTURES = ("smollm2-135m", "llama3-tiny", "mistral-tiny", "mixtral-tiny")
QUANTISED = tuple(name for name, ft in FILE_TYPES.items() if ft.quantized)
NEW_TYPES = (
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q5_K_S",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "IQ4_NL",
    "IQ4_XS",
)


def shape(layers: int, hidden: int, ff: int, heads: int, kv_heads: int, **extra: object) -> dict[str, object]:
    """config.json overrides for `write_tiny_checkpoint`."""
    return dict(
        num_hidden_layers=layers,
        hidden_size=hidden,
        intermediate_size=ff,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        **extra,
    )


# Small random checkpoints (Mistral v0.3 tokenizer, vocab 32768) for what the four fixtures do not reach.
SYNTHETIC = {
    # grouped KV heads (n_gqa 4), untied, enough layers for the n/8 and n/16 layer rules
    "gqa4-16": shape(16, 256, 512, 8, 2),
    # no grouping (n_gqa 1), tied embeddings
    "gqa1-tied": shape(16, 256, 512, 4, 4, tie_word_embeddings=True),
    # llama.cpp's LLM_TYPE_70B (80 layers, grouped KV): attn_v Q3_K/Q4_K become Q5_K
    "llama-80": shape(80, 64, 128, 4, 2),
    # rows of 96 (a multiple of 32, not of 256) and ffn_down rows of 200 (not a multiple of 32)
    "odd-rows": shape(2, 96, 200, 4, 2),
}

OPTIONS = {
    # a manual type skips the mixture, and with it the attn_v counter: later layers' use_more_bits shift
    "manual-blk0-attn_v": QuantizeOptions(tensor_types=((r"blk\.0\.attn_v", "q8_0"),)),
    # patterns are lower-cased first (so \D reads \d, as in llama-quantize), searched, first match wins
    "regex": QuantizeOptions(
        tensor_types=(
            (r"^BLK\.\D+\.ATTN_(Q|K)\.", "q5_0"),
            (r"blk\.1\.ffn_(up|gate)", "iq4_nl"),
            ("ffn_(up|gate)", "Q6_K"),
            (r"blk\.[0-9]*[13579]\.ffn_down", "q2_k"),
        )
    ),
    "output-and-embedding": QuantizeOptions(output_tensor_type="q4_0", token_embedding_type="q8_0"),
    # untied: output.weight takes it as is; tied: token_embd takes it through the mixture, then the fallback
    "output-k": QuantizeOptions(output_tensor_type="q3_k"),
    "pure": QuantizeOptions(pure=True),
    "pure-output": QuantizeOptions(pure=True, output_tensor_type="q8_0", token_embedding_type="f16"),
    # output.weight stays F32; the pattern "output" then decides attn_output
    "leave-output": QuantizeOptions(leave_output_tensor=True, tensor_types=(("output", "q8_0"),)),
}
OPTION_TYPES = ("Q2_K", "Q3_K_M", "IQ4_XS", "Q8_0")


@pytest.fixture(scope="session")
def synthetic(
    converted: Converted, mistral_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Converted:
    """`converted`, knowing the synthetic checkpoints too."""
    root = tmp_path_factory.mktemp("synthetic")
    for name, config in SYNTHETIC.items():
        if name not in converted.checkpoints:
            converted.checkpoints[name] = write_tiny_checkpoint(root / name, mistral_tiny_dir, **config)
    return converted


class Mixtures:
    """Our per-tensor types for any (checkpoint, type, options), from one `prepare` per checkpoint (as plan
    does: the tokenizer is read once, the types are chosen anew)."""

    def __init__(self, converted: Converted) -> None:
        self.converted = converted
        self.prepared: dict[str, Prepared] = {}

    def __call__(self, name: str, qtype: str, options: QuantizeOptions | None = None) -> dict[str, str]:
        if name not in self.prepared:
            self.prepared[name] = prepare(self.converted.checkpoints[name], "F32")
        prep = self.prepared[name]
        hp = prep.layout.hparams
        return choose_types(
            [TensorSpec(t.name, t.shape, t.keep_f32) for t in prep.tensors],
            resolve_file_type(qtype),
            n_layer=hp.n_layer,
            n_expert=hp.n_expert,
            n_head=hp.n_head,
            n_head_kv=hp.n_head_kv,
            options=options.ours() if options else None,
        )


@pytest.fixture(scope="session")
def mixtures(synthetic: Converted) -> Mixtures:
    return Mixtures(synthetic)


def assert_same_types(ours: dict[str, str], ref: dict[str, str], what: str) -> None:
    assert set(ours) == set(ref), what
    wrong = [f"{n}: ours {ours[n]}, llama.cpp {ref[n]}" for n in ref if ours[n] != ref[n]]
    assert not wrong, f"{what}: {len(wrong)} tensors differ: " + "; ".join(wrong[:6])


# -- mixtures (llama_model_quantize's dry run) ------------------------------------------------------------


@pytest.mark.parametrize("name", [*FIXTURES, *SYNTHETIC])
def test_every_file_type_chooses_llama_quantize_types(mixtures: Mixtures, name: str) -> None:
    f32 = mixtures.converted(name, "F32")
    for qtype in QUANTISED:
        assert_same_types(mixtures(name, qtype), llama_quantize_types(f32, qtype), f"{name} {qtype}")


@pytest.mark.parametrize("name", [*FIXTURES, "odd-rows"])
@pytest.mark.parametrize("option_set", OPTIONS)
def test_per_tensor_options_choose_llama_quantize_types(
    mixtures: Mixtures, name: str, option_set: str
) -> None:
    options = OPTIONS[option_set]
    if name == "odd-rows" and option_set in ("output-k", "output-and-embedding"):
        pytest.skip("llama-quantize cannot write these (a named type must divide the rows; tested below)")
    f32 = mixtures.converted(name, "F32")
    for qtype in OPTION_TYPES:
        ref = llama_quantize_types(f32, qtype, options)
        assert_same_types(mixtures(name, qtype, options), ref, f"{name} {qtype} {option_set}")


def test_rules_the_fixtures_reach(mixtures: Mixtures) -> None:
    """Spot checks that the synthetic checkpoints exercise what they are there for (beyond equality)."""
    b70 = mixtures("llama-80", "Q3_K_S")  # rows of 64: the 70B rule's Q5_K falls back to Q5_1, Q3_K to Q4_0
    assert b70["blk.40.attn_v.weight"] == "Q5_1" and b70["blk.40.attn_q.weight"] == "Q4_0"
    odd = mixtures("odd-rows", "Q3_K_M")
    assert odd["blk.0.attn_q.weight"] == "Q4_0" and odd["blk.0.ffn_down.weight"] == "F16"
    assert mixtures("odd-rows", "IQ4_XS")["blk.1.ffn_up.weight"] == "IQ4_NL"
    gqa = mixtures("gqa4-16", "IQ4_NL")
    assert [gqa[f"blk.{i}.ffn_down.weight"] for i in (0, 1, 2)] == ["Q5_K", "Q5_K", "IQ4_NL"]
    assert mixtures("gqa1-tied", "Q2_K")["blk.3.attn_v.weight"] == "Q3_K"
    assert mixtures("gqa4-16", "Q2_K")["blk.3.attn_v.weight"] == "Q4_K"


# -- layouts and whole files (llama_model_quantize's real output) ----------------------------------------

# every new file type once, on the fixtures llama.cpp's reference quantiser is quickest on (the dry runs above
# cover llama3-tiny), the shape fallbacks on odd-rows; the rest of the matrix runs with -m slow
FILES_FAST = [
    ("mistral-tiny", "Q2_K"),
    ("mistral-tiny", "Q3_K_S"),
    ("smollm2-135m", "Q3_K_M"),
    ("mixtral-tiny", "Q3_K_L"),
    ("mistral-tiny", "Q5_K_S"),
    ("mistral-tiny", "Q4_0"),
    ("mixtral-tiny", "Q4_1"),
    ("mistral-tiny", "Q5_0"),
    ("mixtral-tiny", "Q5_1"),
    ("mixtral-tiny", "IQ4_NL"),
    ("mixtral-tiny", "IQ4_XS"),
    ("odd-rows", "Q5_K_S"),
    ("odd-rows", "Q3_K_M"),
]
FILES_SLOW = [
    (f, q) for f in (*FIXTURES, "odd-rows") for q in NEW_TYPES if (f, q) not in FILES_FAST
]  # fmt: skip
OPTION_FILES = [
    (
        "mistral-tiny",
        "Q4_K_M",
        QuantizeOptions(
            tensor_types=((r"blk\.0\.attn_v", "q8_0"), (r"blk\.[01]\.ffn_down", "q6_k")),
            output_tensor_type="f16",
            token_embedding_type="q5_1",
        ),
    ),  # fmt: skip
    ("mixtral-tiny", "Q8_0", QuantizeOptions(leave_output_tensor=True, token_embedding_type="q6_k")),
    ("mixtral-tiny", "Q6_K", QuantizeOptions(pure=True, output_tensor_type="q8_0")),
    ("mistral-tiny", "Q3_K_M", OPTIONS["regex"]),
]


def _check_layout(converted: Converted, name: str, qtype: str, options: QuantizeOptions | None) -> Prepared:
    ref = converted.reference(name, qtype, options)
    prep = prepare(converted.checkpoints[name], qtype, options=options.ours() if options else None)
    assert prep.layout.file_size == ref.stat().st_size
    with ref.open("rb") as f:
        head = f.read(len(prep.header))
    if head != prep.header:
        at = next(i for i, (a, b) in enumerate(zip(head, prep.header, strict=True)) if a != b)
        pytest.fail(f"{name} {qtype}: header differs from llama-quantize's at byte {at} of {len(head)}")
    return prep


def _check_file(converted: Converted, name: str, qtype: str, options: QuantizeOptions | None) -> None:
    _check_layout(converted, name, qtype, options)
    assert sha256(converted(name, qtype, options)) == sha256(converted.reference(name, qtype, options))


@pytest.mark.parametrize(("name", "qtype"), FILES_FAST)
def test_file_equals_llama_quantize(synthetic: Converted, name: str, qtype: str) -> None:
    _check_file(synthetic, name, qtype, None)


@pytest.mark.parametrize(("name", "qtype", "options"), OPTION_FILES)
def test_file_with_options_equals_llama_quantize(
    synthetic: Converted, name: str, qtype: str, options: QuantizeOptions
) -> None:
    _check_file(synthetic, name, qtype, options)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "qtype"), FILES_SLOW)
def test_file_equals_llama_quantize_all(
    request: pytest.FixtureRequest, synthetic: Converted, name: str, qtype: str
) -> None:
    only_with_slow(request, "the rest of the file-type matrix")
    _check_file(synthetic, name, qtype, None)
