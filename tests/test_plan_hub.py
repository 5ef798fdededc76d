"""`hubtui plan OWNER/NAME`: a repo not yet downloaded is sized from its safetensors headers (HTTP Range)
and small files only; the exact GGUF size matches the local checkpoint's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fakehub.server import FakeRepo
from tests.support.cli_helpers import Cli


def test_plan_a_hub_repo_from_headers_only(
    fake_hub, mistral_tiny_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quant.convert import file_layout

    repo = fake_hub.add_repo(FakeRepo("someone/mistral-tiny"))
    for f in sorted(mistral_tiny_dir.iterdir()):
        repo.add(f.name, source=f)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.delenv("HUBTUI_DEBUG", raising=False)
    code, out, err = cli(
        "plan",
        "someone/mistral-tiny",
        "--target",
        "laptop-8g",
        "--type",
        "Q8_0",
        "--type",
        "Q4_K_M",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    sizes = {row["type"]: row["file_size"] for row in data["types"]}
    # the stand-in directory has the repo's name, like a local clone: same general.name, same bytes
    assert sizes == {q: file_layout(mistral_tiny_dir, q).file_size for q in ("Q8_0", "Q4_K_M")}
    shards = [f for f in mistral_tiny_dir.iterdir() if f.suffix == ".safetensors"]
    assert shards
    for shard in shards:
        served = fake_hub.served("someone/mistral-tiny", shard.name)
        assert 0 < served < min(1 << 20, shard.stat().st_size // 10), (shard.name, served)
    cache = Path(os.environ["HF_HUB_CACHE"])
    assert not list(
        cache.glob("models--someone--mistral-tiny/blobs/*")
    )  # nothing was downloaded to the cache


def test_plan_an_unknown_hub_repo_is_one_line(fake_hub, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.delenv("HUBTUI_DEBUG", raising=False)
    code, out, err = cli("plan", "nobody/nothing", "--target", "laptop-8g")
    assert code == 1 and out == ""
    assert (
        err.startswith("hubtui: error: ") and "nobody/nothing" in err and len(err.strip().splitlines()) == 1
    )
