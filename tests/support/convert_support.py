"""Helpers for the converter tests: llama.cpp's own quantiser as the reference, GGUF comparison, tiny checkpoints."""

from __future__ import annotations

import ctypes
import hashlib
import json
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from hubtui.demo.checkpoint_writer import write_json, write_weights
from quant.convert.options import TensorOptions
from quant.gguf_file import GGUF_NUMPY_DTYPES
from tests.fixtures.checkpoints import fp8_quantize, random_weights


def llama_ftype(qtype: str) -> int:
    """llama.h's llama_ftype id of a file type name, from gguf-py's copy of the enum (not from quant)."""
    return int(gguf.LlamaFileType["ALL_F32" if qtype == "F32" else f"MOSTLY_{qtype}"])


@dataclass(frozen=True)
class QuantizeOptions:
    """llama-quantize's per-tensor options, spelled as its command line takes them (patterns as given)."""

    tensor_types: tuple[tuple[str, str], ...] = ()  # (pattern, ggml type name)
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    pure: bool = False
    leave_output_tensor: bool = False

    def ours(self) -> TensorOptions:
        """The same options for quant.convert."""
        return TensorOptions.parse(
            [f"{p}={t}" for p, t in self.tensor_types],
            output_tensor_type=self.output_tensor_type,
            token_embedding_type=self.token_embedding_type,
            pure=self.pure,
            leave_output_tensor=self.leave_output_tensor,
        )


def _ggml_type(name: str) -> int:
    return int(gguf.GGMLQuantizationType[name.upper()])


@dataclass(frozen=True)
class QuantizeImatrix:
    """What llama-quantize --imatrix FILE hands the library: per-column weights by tensor name (flattened,
    as its load_imatrix computes them) and the KV overrides it adds (tools/quantize/quantize.cpp)."""

    weights: tuple[tuple[str, np.ndarray], ...]
    kv: tuple[tuple[str, str | int], ...]

    @classmethod
    def from_file(cls, path: str) -> QuantizeImatrix:
        """Read with our reader (tests/test_imatrix_format.py checks it); the KVs as llama-quantize sets them."""
        from quant.imatrix.format import read_imatrix

        im = read_imatrix(path)
        weights = tuple((n, np.ascontiguousarray(im.weights(n), np.float32).ravel()) for n in im.names())
        kv: list[tuple[str, str | int]] = [("quantize.imatrix.file", path[:127])]
        if im.datasets:
            kv.append(("quantize.imatrix.dataset", im.datasets[0][:127]))
        kv.append(("quantize.imatrix.entries_count", len(weights)))
        if im.chunk_count > 0:
            kv.append(("quantize.imatrix.chunks_count", im.chunk_count))
        return cls(weights, tuple(kv))


def _quantize(
    src: Path,
    dst: Path,
    qtype: str,
    opts: QuantizeOptions,
    *,
    dry_run: bool,
    nthread: int,
    imatrix: QuantizeImatrix | None = None,
) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = nthread
    params.ftype = llama_ftype(qtype)
    params.dry_run = dry_run
    if opts.output_tensor_type:
        params.output_tensor_type = _ggml_type(opts.output_tensor_type)
    if opts.token_embedding_type:
        params.token_embedding_type = _ggml_type(opts.token_embedding_type)
    params.pure = opts.pure
    params.quantize_output_tensor = not opts.leave_output_tensor
    # llama-quantize lower-cases each pattern before handing it over (tools/quantize/quantize.cpp)
    patterns = [p.lower().encode() for p, _ in opts.tensor_types]
    overrides = (llama_cpp.llama_model_tensor_override * (len(patterns) + 1))()
    for i, (pattern, (_, type_name)) in enumerate(zip(patterns, opts.tensor_types, strict=True)):
        overrides[i].pattern = pattern
        overrides[i].type = _ggml_type(type_name)
    if patterns:
        params.tt_overrides = ctypes.cast(overrides, type(params.tt_overrides))
    if imatrix is not None:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix.weights) + 1))()
        for i, (name, w) in enumerate(imatrix.weights):
            entries[i].name = name.encode()
            entries[i].data = w.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = w.size
        params.imatrix = entries
        kvs = (llama_cpp.llama_model_kv_override * (len(imatrix.kv) + 1))()
        for i, (key, value) in enumerate(imatrix.kv):
            kvs[i].key = key.encode()
            if isinstance(value, str):
                kvs[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
                kvs[i].value.val_str = value.encode()
            else:
                kvs[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
                kvs[i].value.val_i64 = value
        params.kv_overrides = kvs
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize {qtype} of {src} failed ({rc})"


def llama_quantize(
    src: Path,
    dst: Path,
    qtype: str,
    nthread: int = 2,
    options: QuantizeOptions | None = None,
    imatrix: QuantizeImatrix | None = None,
) -> Path:
    """llama.cpp's `llama_model_quantize` (through llama-cpp-python's ctypes binding)."""
    _quantize(src, dst, qtype, options or QuantizeOptions(), dry_run=False, nthread=nthread, imatrix=imatrix)
    return dst


_DRY_RUN_LINE = re.compile(
    r"^\[\s*\d+/\s*\d+\] (\S+)\s+- \[[^\]]*\], type =\s*(\w+), size = [^(]*(?:\((\w+)\))?$"
)


def llama_quantize_types(
    src: Path, qtype: str, options: QuantizeOptions | None = None, imatrix: QuantizeImatrix | None = None
) -> dict[str, str]:
    """name -> ggml type that `llama_model_quantize` chooses for each tensor of `src`, from its dry run.

    A dry run quantises nothing and writes no file; its log names each tensor's target type, so the log is
    captured (llama_log_get/llama_log_set) and parsed, and the previous log callback restored.
    """
    import llama_cpp

    chunks: list[str] = []

    @llama_cpp.llama_log_callback
    def record(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        chunks.append(text.decode("utf-8", errors="replace"))

    old_cb, old_ud = llama_cpp.llama_log_callback(), ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(old_cb), ctypes.byref(old_ud))
    llama_cpp.llama_log_set(record, None)
    try:
        _quantize(src, src, qtype, options or QuantizeOptions(), dry_run=True, nthread=1, imatrix=imatrix)
    finally:
        llama_cpp.llama_log_set(old_cb, old_ud)
    types = {}
    for line in "".join(chunks).splitlines():
        m = _DRY_RUN_LINE.match(line.strip())
        if m:
            types[m.group(1)] = (m.group(3) or m.group(2)).upper()
    assert types, "no tensor lines in llama_model_quantize's dry-run log"
    return types


def tensor_bytes(path: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """name -> (ggml type name, ne, raw bytes) for every tensor of a GGUF file (header read by
    quant.gguf_file, which matches gguf-py's GGUFReader and is much faster on large vocabularies)."""
    from quant.gguf_file import read_gguf_summary

    raw = np.memmap(path, dtype=np.uint8, mode="r")
    return {
        t.name: (t.ggml_type, t.shape, raw[t.offset : t.offset + t.n_bytes].tobytes())
        for t in read_gguf_summary(path).tensors
    }


def read_gguf(path: Path) -> tuple[dict[str, Any], list[tuple[str, str, tuple[int, ...], bytes]]]:
    """(KVs in file order, [(name, ggml type name, ne, raw bytes)]) of a GGUF file.

    A plain sequential parse: gguf-py's GGUFReader takes tens of seconds on the 131k-token, 270k-merge
    vocabularies of the tekken and Llama 3 fixtures (a numpy view per string).
    """
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        value = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value[0] if len(value) == 1 else value

    def string() -> str:
        nonlocal pos
        n = take("<Q")
        pos += n
        return data[pos - n : pos].decode("utf-8")

    def value(vtype: int) -> Any:
        nonlocal pos
        if vtype == gguf.GGUFValueType.STRING:
            return string()
        if vtype == gguf.GGUFValueType.ARRAY:
            sub, n = take("<IQ")
            if sub in GGUF_NUMPY_DTYPES:
                arr = np.frombuffer(data, dtype=GGUF_NUMPY_DTYPES[sub], count=n, offset=pos)
                pos += arr.nbytes
                return arr.tolist()
            return [value(sub) for _ in range(n)]
        arr = np.frombuffer(data, dtype=GGUF_NUMPY_DTYPES[vtype], count=1, offset=pos)
        pos += arr.nbytes
        return arr[0].item()

    magic, _version, n_tensors, n_kv = take("<IIQQ")
    assert magic == gguf.GGUF_MAGIC, path
    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        ne = tuple(take("<Q") for _ in range(take("<I")))
        qtype, offset = gguf.GGMLQuantizationType(take("<I")), take("<Q")
        infos.append((name, qtype, ne, offset))
    align = kv.get(gguf.Keys.General.ALIGNMENT, gguf.GGUF_DEFAULT_ALIGNMENT)
    start = -(-pos // align) * align
    tensors = []
    for name, qtype, ne, offset in infos:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(ne)) // block * size
        tensors.append((name, qtype.name, ne, data[start + offset : start + offset + nbytes]))
    return kv, tensors


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A very small Mistral-style config using the mistral-tiny fixture's SentencePiece tokenizer (vocab 32768)."""
    config = {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "vocab_size": 32768,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    return config | overrides


TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json")


def write_tiny_checkpoint(
    out: Path, tokenizer_src: Path, *, dtype: str = "F16", shards: int = 1, seed: int = 7, **overrides: Any
) -> Path:
    """A small random checkpoint (HF layout) with a real tokenizer copied from `tokenizer_src`."""
    out.mkdir(parents=True, exist_ok=True)
    config = tiny_config(**overrides)
    write_json(out / "config.json", config)
    write_weights(out, random_weights(config, seed), dtype, shards=shards)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_src / name, out / name)
    return out


def write_fp8_checkpoint(
    out: Path,
    tokenizer_src: Path,
    *,
    block: tuple[int, int] | None = (32, 32),
    keep: tuple[str, ...] = ("embed_tokens", "lm_head"),
    scale_dtype: str = "F32",
    static: bool = False,
    shards: int = 1,
    seed: int = 7,
    **overrides: Any,
) -> Path:
    """A small random "fp8" checkpoint: 2-D weights but `keep` as F8_E4M3 with `scale_dtype` scales per
    `block` (per tensor when None); `static` adds the `activation_scale` tensors of a static scheme."""
    out.mkdir(parents=True, exist_ok=True)
    quant = {
        "activation_scheme": "static" if static else "dynamic",
        "quant_method": "fp8",
        "weight_block_size": list(block) if block else None,
    }
    config = tiny_config(**overrides) | {"quantization_config": quant}
    write_json(out / "config.json", config)
    weights, dtypes = fp8_quantize(random_weights(config, seed), block, keep)
    for name in [n for n in weights if n.endswith("_scale_inv")]:
        dtypes[name] = scale_dtype
        if static:
            act = name.removesuffix("weight_scale_inv") + "activation_scale"
            weights[act], dtypes[act] = np.array(0.5, dtype=np.float32), "F32"
    write_weights(out, weights, dtypes, shards=shards)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_src / name, out / name)
    return out


def clone_checkpoint(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A copy of `src` made of symlinks (cheap), so a test can replace single files without touching `src`."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name not in skip:
            (dst / p.name).symlink_to(p.resolve())
    return dst


def rewrite_header(path: Path, edit) -> None:
    """Apply `edit(header_dict)` to a safetensors file's JSON header, keeping the data after it unchanged."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.unlink()  # it may be a symlink into a shared fixture
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n :])


def converted_arrays(
    src: Path, out: Path, qtype: str, skip: tuple[str, ...] = (), layouts: list | None = None
) -> dict[str, tuple[str, np.ndarray]]:
    """Convert, then name -> (ggml type, data in numpy order) for the tensors not in `skip`, found through the
    layout the file was written from (gguf-py's reader parses a 128k-token vocabulary for seconds; the layout
    is checked against that reader in tests/test_convert.py). `layouts`, when given, receives the layout."""
    from quant.convert import convert
    from quant.convert.layout import prepare

    prep = prepare(src, qtype)
    if layouts is not None:
        layouts.append(prep.layout)
    convert(src, out, qtype, threads=2, prepared=prep)
    raw = np.memmap(out, dtype=np.uint8, mode="r")
    dtypes = {"F32": np.float32, "F16": np.float16}
    arrays = {}
    for t in prep.layout.tensors:
        if t.name not in skip:
            data = raw[prep.layout.data_offset + t.offset :][: t.nbytes]
            shape = t.shape if t.type in dtypes else (*t.shape[:-1], -1)  # quantised: rows of bytes
            arrays[t.name] = (t.type, data.view(dtypes.get(t.type, np.uint8)).reshape(shape))
    return arrays


def assert_follows_f32(
    got: dict[str, tuple[str, np.ndarray]], f32: dict[str, tuple[str, np.ndarray]], qtype: str
) -> None:
    """`got` (converted_arrays of an F16 or Q8_0 conversion) holds what llama.cpp makes of our F32 output:
    convert_hf_to_gguf's fp16 rounding, or ggml's own quantiser (ggml_quantize_chunk) row by row; norms,
    routers and rope_freqs stay F32."""
    from tests.support.ggml_ref import quantize

    assert set(got) == set(f32)
    for name, (ttype, data) in got.items():
        want = f32[name][1]
        if ttype == "F32":
            assert np.array_equal(data, want), name
        elif ttype == "F16":
            assert np.array_equal(data, want.astype(np.float16)), name
        else:
            rows = want.reshape(-1, want.shape[-1])
            assert ttype == "Q8_0" and np.array_equal(data.reshape(-1), quantize(rows, "Q8_0").reshape(-1)), (
                name
            )
        keep = name.endswith(("norm.weight", "rope_freqs.weight", "ffn_gate_inp.weight"))
        assert ttype == ("F32" if keep else qtype), name


def anchor() -> tuple[str, str]:
    """(python, llama.cpp source tree) for the opt-in comparisons with llama.cpp's Python converter (torch
    and transformers), or skip the test saying what to set."""
    import os

    import pytest

    python, src = os.environ.get("HUBTUI_ANCHOR_PYTHON"), os.environ.get("HUBTUI_LLAMA_CPP_SRC")
    if not python or not src:
        pytest.skip(
            "set HUBTUI_ANCHOR_PYTHON (a Python with torch and transformers) and HUBTUI_LLAMA_CPP_SRC "
            "(llama.cpp source tree) to compare with convert_hf_to_gguf.py"
        )
    return python, src


def convert_hf_to_gguf(src: Path, outtype: str, out: Path) -> Path:
    """llama.cpp's convert_hf_to_gguf.py from the source tree, with that tree's gguf-py (opt-in: anchor())."""
    import os
    import subprocess

    python, llama_src = anchor()
    env = dict(os.environ, PYTHONPATH=str(Path(llama_src) / "gguf-py"))
    script = str(Path(llama_src) / "convert_hf_to_gguf.py")
    subprocess.run(
        [python, script, str(src), "--outtype", outtype, "--outfile", str(out)],
        check=True,
        capture_output=True,
        env=env,
    )
    return out


def only_with_slow(request: pytest.FixtureRequest, what: str) -> None:
    """A slow matrix runs only when `-m slow` is asked for; the default run covers each case once."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip(f"{what} runs with -m slow")


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Converted:
    """Session cache of conversions: (checkpoint, type, options) -> GGUF path, each made once.

    `reference(...)` is llama.cpp's `llama_model_quantize` of our F32 conversion with the same options: the
    file a conversion of a llama-quantize type must equal byte for byte.
    """

    def __init__(self, checkpoints: dict[str, Path], root: Path) -> None:
        self.checkpoints, self.root = dict(checkpoints), root
        self.paths: dict[tuple[str, str, QuantizeOptions | None], Path] = {}

    def _name(self, fixture: str, qtype: str, options: QuantizeOptions | None) -> str:
        tag = "" if options is None else "-" + hashlib.sha1(repr(options).encode()).hexdigest()[:10]
        return f"{fixture}-{qtype}{tag}"

    def __call__(self, fixture: str, qtype: str, options: QuantizeOptions | None = None) -> Path:
        key = (fixture, qtype, options)
        if key not in self.paths:
            from quant.convert import convert

            out = self.root / f"{self._name(fixture, qtype, options)}.gguf"
            ours = options.ours() if options else None
            convert(self.checkpoints[fixture], out, qtype, threads=2, options=ours)
            self.paths[key] = out
        return self.paths[key]

    def reference(self, fixture: str, qtype: str, options: QuantizeOptions | None = None) -> Path:
        key = (fixture, f"ref-{qtype}", options)
        if key not in self.paths:
            out = self.root / f"{self._name(fixture, 'ref-' + qtype, options)}.gguf"
            self.paths[key] = llama_quantize(self(fixture, "F32"), out, qtype, options=options)
        return self.paths[key]
