"""search() and details() against the fake hub: presets, sorting, filters, range-read parameters, gating, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubtui.hub.details import details
from hubtui.hub.errors import HubOfflineError, RepoNotFoundError, RevisionNotFoundError
from hubtui.hub.search import SearchFilters, search
from tests.fakehub import FakeHub, FakeRepo
from tests.fakehub.fixtures import TOKEN, USER, add_llama_repo


def test_family_preset_puts_the_official_org_first(fake_hub: FakeHub) -> None:
    fake_hub.add_repo(FakeRepo("community/Llama-Finetune", downloads=10**9, tags=["llama", "safetensors"]))
    results = search(family="llama", endpoint=fake_hub.url)
    ids = [r.id for r in results]
    assert ids[0] == "meta-llama/Tiny-Llama" and results[0].official
    # community repos follow, by downloads, including GGUF repos of the architecture; no Mistral repos
    assert ids[1:] == [
        "community/Llama-Finetune",
        "bartowski/Tiny-Llama-GGUF",
        "someone/pickled-llama",
        "test/big",
    ]
    assert not any(r.official for r in results[1:])
    first = results[0]
    assert (first.author, first.downloads, first.likes, first.license, first.library) == (
        "meta-llama",
        1000,
        50,
        "llama3.2",
        "transformers",
    )
    assert first.parameters == 40960 and first.has_safetensors and not first.has_gguf
    assert first.last_modified is not None and first.last_modified.year == 2025


def test_free_search_sorting_limit_and_filters(fake_hub: FakeHub) -> None:
    ids = [r.id for r in search("tiny", sort="likes", endpoint=fake_hub.url)]
    assert ids == ["mistralai/Tiny-Mistral", "meta-llama/Tiny-Llama", "bartowski/Tiny-Llama-GGUF"]
    assert len(search("tiny", limit=2, endpoint=fake_hub.url)) == 2
    gguf = search(filters=SearchFilters(has_gguf=True), endpoint=fake_hub.url)
    assert [r.id for r in gguf] == ["bartowski/Tiny-Llama-GGUF"]
    small = search(filters=SearchFilters(max_params=20000), endpoint=fake_hub.url)
    assert [r.id for r in small] == ["mistralai/Tiny-Mistral"]
    fake_hub.repos["meta-llama/Tiny-Llama"].gated = "manual"
    gated = search(filters=SearchFilters(gated=True), endpoint=fake_hub.url)
    assert [(r.id, r.gated) for r in gated] == [("meta-llama/Tiny-Llama", "manual")]


def test_search_follows_pagination(fake_hub: FakeHub) -> None:
    for i in range(7):
        fake_hub.add_repo(FakeRepo(f"community/llama-ft-{i}", downloads=i, tags=["llama"]))
    fake_hub.page_size = 3
    results = search(family="llama", limit=10, endpoint=fake_hub.url)
    assert len(results) == 10
    assert sum(1 for r in fake_hub.requests if r["path"].startswith("/api/models?")) > 2


def test_details_reads_parameters_from_headers_by_range(fake_hub: FakeHub) -> None:
    d = details("meta-llama/Tiny-Llama", endpoint=fake_hub.url)
    assert d.layout.kind == "hf" and d.layout.convertible
    assert d.dtypes == {"F16": 64 * 256 + 256, "F32": 96 * 256}
    assert d.parameters == 64 * 256 + 256 + 96 * 256
    assert d.license == "llama3.2" and d.access and d.card is not None and "Tiny Llama" in d.card
    files = {f.name: f for f in d.files}
    shard = fake_hub.repos["meta-llama/Tiny-Llama"].files["model-00001-of-00002.safetensors"]
    assert files[shard.path].size == shard.size and files[shard.path].sha256 == shard.sha256
    assert files["config.json"].sha256 is None and files["config.json"].blob_id
    # the weights were not downloaded: only ranged GETs touched the shards
    shard_gets = [r for r in fake_hub.requests if "model-0000" in r["path"] and r["method"] == "GET"]
    assert shard_gets and all(r["range"] for r in shard_gets)


def test_details_of_gguf_mistral_and_pickle_repos(fake_hub: FakeHub) -> None:
    g = details("bartowski/Tiny-Llama-GGUF", endpoint=fake_hub.url)
    assert g.layout.kind == "gguf" and not g.layout.convertible
    assert sorted((f.name, f.quant) for f in g.gguf_files) == [
        ("Tiny-Llama-IQ4_XS-00001-of-00002.gguf", "IQ4_XS"),
        ("Tiny-Llama-IQ4_XS-00002-of-00002.gguf", "IQ4_XS"),
        ("Tiny-Llama-Q4_K_M.gguf", "Q4_K_M"),
        ("Tiny-Llama-Q8_0.gguf", "Q8_0"),
    ]
    m = details("mistralai/Tiny-Mistral", endpoint=fake_hub.url)
    assert m.layout.kind == "mistral" and m.dtypes == {"F32": 128 * 128}
    p = details("someone/pickled-llama", endpoint=fake_hub.url)
    assert p.layout.kind == "pickle" and not p.layout.convertible and "not convertible" in p.layout.note


def test_details_of_a_gated_repo_with_and_without_access(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_llama_repo(fake_hub, "meta-llama/Gated-Llama", gated="manual")
    anon = details("meta-llama/Gated-Llama", endpoint=fake_hub.url)
    assert (
        not anon.access
        and "HF_TOKEN" in anon.access_note
        and f"{fake_hub.url}/meta-llama/Gated-Llama" in anon.access_note
    )
    assert anon.parameters == 40960  # the hub's own count; the headers are not readable without access
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake_hub.grant("meta-llama/Gated-Llama", USER)
    d = details("meta-llama/Gated-Llama", endpoint=fake_hub.url)
    assert d.access and d.parameters == 64 * 256 + 256 + 96 * 256
    assert TOKEN not in repr(d.to_json())


def test_details_unknown_repo_and_revision(fake_hub: FakeHub) -> None:
    with pytest.raises(RepoNotFoundError, match="repo nobody/nothing not found"):
        details("nobody/nothing", endpoint=fake_hub.url)
    with pytest.raises(RevisionNotFoundError, match="revision 'v9' not found in meta-llama/Tiny-Llama"):
        details("meta-llama/Tiny-Llama", "v9", endpoint=fake_hub.url)


def test_offline_mode_refuses_without_touching_the_network(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, hub_env: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOfflineError, match="offline mode"):
        search("llama", endpoint=fake_hub.url)
    with pytest.raises(HubOfflineError, match="cache ls"):
        details("meta-llama/Tiny-Llama", endpoint=fake_hub.url)
    assert fake_hub.requests == []


def test_hf_endpoint_is_read_at_call_time(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url + "/")
    assert [r.id for r in search(family="mistral")] == ["mistralai/Tiny-Mistral"]


def test_whoami(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hubtui.hub import whoami
    from hubtui.hub.errors import InvalidTokenError

    assert whoami(endpoint=fake_hub.url) is None
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert whoami(endpoint=fake_hub.url) == USER
    with pytest.raises(InvalidTokenError):
        whoami(endpoint=fake_hub.url, token="hf_notAValidToken999")
