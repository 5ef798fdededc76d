"""Pytest fixtures and small synthetic repos for the hub client's tests.

Import `fake_hub_fixture, hub_env_fixture` into a test module: they register as `fake_hub` and `hub_env`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from tests.fakehub.server import FakeHub, FakeRepo

TOKEN = "hf_fakeTokenDoNotLeak_0123456789abcdef"
USER = "alice"


def safetensors_bytes(shapes: dict[str, tuple[int, ...]], dtype: type = np.float16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return save({name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()})


def add_llama_repo(
    hub: FakeHub, repo_id: str = "meta-llama/Tiny-Llama", gated: str | bool = False
) -> FakeRepo:
    """HF layout (two shards + index), a Mistral-style consolidated copy, a pickle, card, tokenizer."""
    repo = hub.add_repo(
        FakeRepo(
            repo_id,
            gated=gated,
            downloads=1000,
            likes=50,
            tags=["llama", "text-generation"],
            parameters=40960,
            license="llama3.2",
        )
    )
    shard1 = safetensors_bytes({"model.embed_tokens.weight": (64, 256), "model.norm.weight": (256,)}, seed=1)
    shard2 = safetensors_bytes({"model.layers.0.mlp.up_proj.weight": (96, 256)}, np.float32, seed=2)
    repo.add("config.json", json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 256}).encode())
    repo.add("generation_config.json", b'{"bos_token_id": 1}')
    repo.add("tokenizer.json", json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}}}).encode() * 20)
    repo.add("tokenizer_config.json", b'{"chat_template": "{{ messages }}"}')
    repo.add("README.md", b"---\nlicense: llama3.2\n---\n# Tiny Llama\nA test card.\n")
    repo.add("model-00001-of-00002.safetensors", shard1)
    repo.add("model-00002-of-00002.safetensors", shard2)
    index = {
        "metadata": {"total_size": len(shard1) + len(shard2)},
        "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00001-of-00002.safetensors",
            "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
        },
    }
    repo.add("model.safetensors.index.json", json.dumps(index).encode())
    repo.add("consolidated.safetensors", shard1 + b"")  # the Mistral-native copy: must not be downloaded
    repo.add("params.json", b'{"dim": 256}')
    repo.add("pytorch_model.bin", b"\x80\x02pickle" * 200)
    repo.add("original/consolidated.00.pth", b"\x80\x02pickle" * 300)
    return repo


def add_gguf_repo(hub: FakeHub, repo_id: str = "bartowski/Tiny-Llama-GGUF") -> FakeRepo:
    repo = hub.add_repo(
        FakeRepo(repo_id, downloads=500, likes=5, tags=["llama"], library_name="gguf", parameters=40960)
    )
    repo.add("README.md", b"# GGUF quants\n")
    repo.add("Tiny-Llama-Q4_K_M.gguf", b"GGUF" + bytes(range(256)) * 40)
    repo.add("Tiny-Llama-Q8_0.gguf", b"GGUF" + bytes(range(256)) * 70)
    repo.add("Tiny-Llama-IQ4_XS-00001-of-00002.gguf", b"GGUF" + b"\1" * 3000)
    repo.add("Tiny-Llama-IQ4_XS-00002-of-00002.gguf", b"\2" * 3000)
    return repo


def add_mistral_repo(hub: FakeHub, repo_id: str = "mistralai/Tiny-Mistral") -> FakeRepo:
    """Mistral-native only: consolidated.safetensors + params.json + tokenizer.model.v3."""
    repo = hub.add_repo(FakeRepo(repo_id, downloads=2000, likes=80, tags=["mistral"], parameters=16384))
    repo.add("params.json", b'{"dim": 128, "n_layers": 1}')
    repo.add("tokenizer.model.v3", b"\x0a\x05spiece" * 300)
    repo.add(
        "consolidated.safetensors",
        safetensors_bytes({"tok_embeddings.weight": (128, 128)}, np.float32, seed=3),
    )
    repo.add("README.md", b"# Tiny Mistral\n")
    return repo


def add_pickle_repo(hub: FakeHub, repo_id: str = "someone/pickled-llama") -> FakeRepo:
    repo = hub.add_repo(FakeRepo(repo_id, downloads=3, tags=["llama"]))
    repo.add("config.json", b"{}")
    repo.add("pytorch_model.bin", b"\x80\x02pickle" * 500)
    return repo


def add_adapter_repo(
    hub: FakeHub,
    adapter: Path,
    repo_id: str = "someone/Tiny-Mistral-LoRA",
    base: str = "mistralai/Tiny-Mistral",
) -> FakeRepo:
    """A PEFT adapter repo as `save_pretrained` + `push_to_hub` leave it: the adapter folder's files, a card
    naming the base, the tokenizer and training arguments (which conversion does not need)."""
    repo = hub.add_repo(
        FakeRepo(
            repo_id,
            downloads=40,
            tags=["lora", f"base_model:adapter:{base}"],
            library_name="peft",
            card_data={"base_model": base, "library_name": "peft"},
        )
    )
    for f in sorted(adapter.iterdir()):
        repo.add(f.name, f.read_bytes())
    repo.add("README.md", f"---\nbase_model: {base}\nlibrary_name: peft\n---\n# A LoRA adapter\n".encode())
    repo.add("tokenizer.json", b'{"model": {"type": "BPE", "vocab": {"a": 0}}}')
    repo.add("training_args.bin", b"\x80\x02pickle" * 50)
    return repo


BIG = "model.safetensors"


def add_big_repo(hub: FakeHub, repo_id: str = "test/big", size: int = 400_000) -> FakeRepo:
    """One sizeable random weight file (many 64 KiB chunks) for interruption, resume and cancel tests."""
    repo = hub.add_repo(FakeRepo(repo_id, tags=["llama"]))
    repo.add("config.json", b'{"architectures": ["LlamaForCausalLM"]}')
    repo.add(BIG, np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes())
    return repo


@pytest.fixture(name="hub_env")
def hub_env_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated HF home (no token, online, no proxy); returns the hub cache folder."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    return home / "hub"


@pytest.fixture(name="fake_hub")
def fake_hub_fixture(hub_env: Path) -> Iterator[FakeHub]:
    """A running fake hub with the Llama, GGUF, Mistral-native and pickle-only repos."""
    hub = FakeHub({TOKEN: USER})
    add_llama_repo(hub)
    add_gguf_repo(hub)
    add_mistral_repo(hub)
    add_pickle_repo(hub)
    add_big_repo(hub)
    with hub:
        yield hub
    from huggingface_hub.utils import close_session

    close_session()  # no pooled connection outlives this hub
