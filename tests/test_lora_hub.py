"""LoRA adapters on the hub and in the cache: `search`, `search --details`, `download`, `cache ls`.

Against the fake hub: a PEFT adapter repo (adapter_config.json, adapter_model.safetensors, a card naming the base,
plus files conversion does not need) publishing its adapter GGUF too, beside a plain model repo.
"""

from __future__ import annotations

import json
from pathlib import Path

from quant.convert.lora_gguf import convert_adapter
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import add_adapter_repo, add_gguf_repo, add_mistral_repo
from tests.fixtures.adapters import write_adapter
from tests.support.cli_helpers import Cli

BASE = "mistralai/Tiny-Mistral"
ADAPTER = "someone/Tiny-Mistral-LoRA"


def test_adapter_repo_search_details_download_and_cache_ls(
    fake_hub: FakeHub,
    hub_env: Path,
    mistral_tiny_dir: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    def ok(*args: str) -> str:
        res = cli(*args)
        assert res.code == 0, res.err
        return res.out

    ad = write_adapter(tmp_path / "Tiny-Mistral-LoRA", mistral_tiny_dir, r=8, alpha=16)
    (ad / "README.md").write_text(f"---\nbase_model: {BASE}\n---\n")
    gguf_name = "Tiny-Mistral-LoRA-F16-LoRA.gguf"
    adapter_gguf = convert_adapter(ad, mistral_tiny_dir, tmp_path / gguf_name, "F16").path
    repo = add_adapter_repo(fake_hub, ad, ADAPTER, BASE)
    repo.add(gguf_name, adapter_gguf.read_bytes())
    add_mistral_repo(fake_hub, BASE)
    add_gguf_repo(fake_hub)  # its "GGUF" files are not valid GGUF: listed by name, never as adapters
    url = ("--endpoint", fake_hub.url)

    # search: the adapter is marked and names its base (from cardData); the model is not an adapter
    found = {r["id"]: r for r in json.loads(ok("search", "tiny", "--json", *url))["results"]}
    assert (found[ADAPTER]["adapter"], found[ADAPTER]["base_model"]) == (True, BASE)
    assert (found[BASE]["adapter"], found[BASE]["base_model"]) == (False, None)
    table = ok("search", "tiny", *url).splitlines()
    assert table[0].split()[-2:] == ["FORMATS", "BASE"]
    row = next(line for line in table if line.startswith(ADAPTER))
    assert row.split()[-2:] == ["lora,safetensors,gguf", BASE]

    # details: adapter layout, base model, the adapter's rank and alpha from adapter_config.json
    info = json.loads(ok("search", ADAPTER, "--details", "--json", *url))
    assert (info["layout"], info["convertible"], info["base_model"]) == ("adapter", True, BASE)
    assert (info["adapter"]["r"], info["adapter"]["lora_alpha"]) == (8, 16)
    text = ok("search", ADAPTER, "--details", *url)
    assert f"base model: {BASE}" in text and "LORA r=8 alpha=16 on " in text and "PEFT LoRA adapter" in text
    plain = json.loads(ok("search", BASE, "--details", "--json", *url))
    assert (plain["layout"], plain["adapter"], plain["base_model"]) == ("mistral", None, None)

    # download: the adapter's config, weights and card, not the tokenizer, pickles or the GGUF
    got = json.loads(ok("download", ADAPTER, "--json", *url))
    assert sorted(f["name"] for f in got["files"]) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    for f in got["files"]:
        assert Path(f["path"]).read_bytes() == repo.files[f["name"]].data
    ok("download", ADAPTER, "--gguf", "F16", "--json", *url)
    ok("download", BASE, "--json", *url)
    ok("download", "bartowski/Tiny-Llama-GGUF", "--gguf", "Q4_K_M", "--json", *url)

    # the downloaded snapshot converts as an adapter folder
    out = tmp_path / "from-cache.gguf"
    ok("convert", got["path"], "--base", str(mistral_tiny_dir), "-o", str(out))
    assert out.is_file()

    # cache ls: the PEFT repo and the adapter GGUF are recognised and name their base; the rest are not adapters
    listed = {r["repo_id"]: r for r in json.loads(ok("cache", "ls", "--json"))["repos"]}
    assert listed[ADAPTER]["adapter"] == {"r": 8, "alpha": 16.0, "base": BASE}
    (g,) = listed[ADAPTER]["gguf_files"]
    assert (g["name"], g["adapter"], g["base"], g["quant"]) == (gguf_name, True, BASE, None)
    assert listed[BASE]["adapter"] is None
    (q4,) = listed["bartowski/Tiny-Llama-GGUF"]["gguf_files"]
    assert (q4["adapter"], q4["base"], q4["quant"]) == (False, None, "Q4_K_M")
    text = ok("cache", "ls")
    assert f"adapter     {ADAPTER}  PEFT LoRA r=8 alpha=16  base {BASE}" in text
    assert f"gguf        {ADAPTER}/{gguf_name}  LoRA adapter, base {BASE}" in text
    assert "Tiny-Llama-Q4_K_M.gguf  Q4_K_M" in text
