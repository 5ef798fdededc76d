"""A stand-in for a hub repo that sizing can read without downloading weights (`hubtui plan OWNER/NAME`,
the TUI's fit tables and badges on Browse)."""

from __future__ import annotations

import functools
from pathlib import Path


def headers_only_checkpoint(repo_id: str, dest: Path, endpoint: str | None = None) -> Path:
    """A stand-in checkpoint of a hub repo: its config, tokenizer and card, and each safetensors shard as a
    sparse file holding only the real header (read with HTTP Range requests), so no weight is downloaded."""
    import json
    import struct

    from hubtui.hub.client import connect
    from hubtui.hub.details import fetch_small
    from hubtui.hub.files import select_for_conversion

    ctx = connect(endpoint, need_network="sizing a hub repo")
    info = ctx.call(lambda: ctx.api.model_info(repo_id, files_metadata=True), repo_id=repo_id)
    commit = info.sha or "main"
    names = select_for_conversion([s.rfilename for s in info.siblings or []], repo_id)
    out = dest / repo_id.split("/")[-1]  # the converter names the model after its directory
    out.mkdir(parents=True)
    for name in names:
        if name.endswith(".safetensors"):
            meta = ctx.call(
                functools.partial(ctx.api.parse_safetensors_file_metadata, repo_id, name, revision=commit),
                repo_id=repo_id,
                filename=name,
            )
            header: dict = {"__metadata__": meta.metadata} if meta.metadata else {}
            end = 0
            for tname, t in meta.tensors.items():
                header[tname] = {
                    "dtype": t.dtype,
                    "shape": list(t.shape),
                    "data_offsets": list(t.data_offsets),
                }
                end = max(end, t.data_offsets[1])
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            with (out / name).open("wb") as fh:
                fh.write(struct.pack("<Q", len(raw)) + raw)
                fh.truncate(8 + len(raw) + end)  # sparse: the weights' bytes are never fetched
        else:
            (out / name).write_bytes(fetch_small(ctx, repo_id, commit, name))
    return out
