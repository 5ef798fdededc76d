#!/usr/bin/env python
"""One chat turn through hubtui's runner, with the memory figures a fit check needs.

    python scripts/fit_probe.py MODEL.gguf N_CTX PROMPT_TOKENS GEN_TOKENS [--no-mmap] [--mlock] > result.json

It loads MODEL with `hubtui.runner.chat.load_model` (CPU only), sends one user message of about
PROMPT_TOKENS tokens (the opening of the smoke test's passage, repeated) through `ChatEngine` at
temperature 0, lets it generate GEN_TOKENS tokens, and prints one JSON object: prompt and generation
times, /proc/self/status after each step (RssAnon, RssFile, VmHWM), major faults, the model file's
mapping from /proc/self/smaps, and the pages referenced while generating (the per-token working set:
the referenced bits are cleared when the first token comes out, then read back at the end). Run it in a
memory cgroup to see what a cap does; scripts/bench_fit.py does that.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

_BUFFER = re.compile(
    r"(?P<dev>[\w-]+)\s+(?P<kind>model|KV|compute|output)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB"
)


def status() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "VmLck"):
                out[key] = int(rest.split()[0]) * 1024
    with open("/proc/self/stat", encoding="ascii") as fh:
        out["majflt"] = int(fh.read().rsplit(")", 1)[1].split()[9])
    out["t"] = time.perf_counter()
    return out


def smaps(path: str) -> dict[str, int]:
    """Rss and Referenced summed over the mappings of `path`, Referenced of other files (libraries, Python
    modules: the process's own code) and of everything else."""
    out = {"file_rss": 0, "file_referenced": 0, "lib_referenced": 0, "lib_rss": 0, "other_referenced": 0}
    current = None
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head = line.split()
            if not head:
                continue
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                current = head[5] if len(head) > 5 else ""
                continue
            key = head[0].rstrip(":")
            if key not in ("Rss", "Referenced"):
                continue
            kb = int(head[1]) * 1024
            if current == path:
                out["file_rss" if key == "Rss" else "file_referenced"] += kb
            elif current and current.startswith("/"):
                out["lib_rss" if key == "Rss" else "lib_referenced"] += kb
            elif key == "Referenced":
                out["other_referenced"] += kb
    return out


def prompt_text(llm, n_tokens: int) -> str:
    from hubtui.runner import llama_text
    from hubtui.runner.passage import passage_text

    base = llm.tokenize(passage_text().encode("utf-8"), add_bos=False, special=False)
    tokens = (base * (n_tokens // max(1, len(base)) + 1))[:n_tokens]
    return llama_text.detokenize(llama_text.vocab_of(llm), tokens)


def main(argv: list[str]) -> int:
    model, n_ctx, n_prompt, n_gen = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    mmap, mlock = "--no-mmap" not in argv, "--mlock" in argv
    result: dict = {"model": model, "n_ctx": n_ctx, "mmap": mmap, "mlock": mlock}
    result["after_import"] = status()
    from hubtui.runner import llama_log
    from hubtui.runner.chat import ChatEngine, load_model

    llm = load_model(model, n_ctx=n_ctx, gpu_layers=0, mmap=mmap, mlock=mlock)
    result["after_load"] = status()
    buffers: dict[str, float] = {}
    for line in llama_log.recent(200):
        m = _BUFFER.search(line)
        if m:
            kind = "REPACK" if "REPACK" in m.group("dev") else m.group("kind")
            buffers[kind] = buffers.get(kind, 0.0) + float(m.group("mib"))
    result["logged_mib"] = buffers
    text = prompt_text(llm, n_prompt)
    engine = ChatEngine(llm, temperature=0.0, max_tokens=n_gen)
    marks: dict = {}

    def on_token(_chunk: str) -> None:
        if "first_token" not in marks:
            marks["first_token"] = status()
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("1")

    reply = engine.send(text, on_token=on_token)
    result["after_generation"] = status()
    result["first_token"] = marks.get("first_token")
    result["smaps"] = smaps(os.path.realpath(model))
    s = reply.stats
    result["reply"] = {
        "prompt_tokens": s.prompt_tokens,
        "prompt_seconds": s.prompt_seconds,
        "tokens": s.tokens,
        "seconds": s.seconds,
        "tokens_per_s": s.tokens_per_s,
        "stop": s.stop,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
