"""The child process of the smoke test: everything that touches llama.cpp runs here.

A crash or hang in native code then kills only this process; the parent reports it as a verdict.
Protocol: `python -m hubtui.runner.smoke_worker REQUEST.json RESULT.json`; progress goes to stdout
as JSON lines `{"stage": ..., "message": ...}`, the measurements to RESULT.json.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from typing import Any

# Fixed inputs, so every quant of a model is judged on the same text.
ROUND_TRIP_SAMPLES = (
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "In 1905, Einstein published 4 papers; E = mc^2.",
    "def add(a, b):\n    return a + b\n",
    "Café, naïve, Zürich: ünïcödé façade.",
)
CHAT_PROMPT = "What is the capital of France? Answer in one short sentence."
MAX_NEW_TOKENS = 48


def emit(stage: str, message: str) -> None:
    sys.stdout.write(json.dumps({"stage": stage, "message": message}) + "\n")
    sys.stdout.flush()


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent
    across fork+exec, so a child of a big process would report the parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def resolve_gpu_layers(
    requested: int | str, path: str, n_ctx: int, *, mmap: bool = True, mlock: bool = False
) -> tuple[int, bool, str]:
    """(layers to offload, whether this llama.cpp build can offload at all, why that many)."""
    import llama_cpp

    from hubtui.runner.offload import auto_gpu_layers

    supported = bool(llama_cpp.llama_supports_gpu_offload())
    if requested == "auto":
        ngl, why = auto_gpu_layers(path, n_ctx, mmap=mmap, mlock=mlock)
        return ngl, supported, why
    return int(requested), supported, "as requested"


def load(
    path: str,
    n_ctx: int,
    n_gpu_layers: int,
    lora: str | None = None,
    lora_scale: float = 1.0,
    *,
    mmap: bool = True,
    mlock: bool = False,
) -> Any:
    from llama_cpp import Llama

    lora_args: dict[str, Any] = {"lora_path": lora, "lora_scale": lora_scale} if lora else {}
    return Llama(
        model_path=path,
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        use_mmap=mmap,
        use_mlock=mlock,
        logits_all=True,
        verbose=False,
        seed=0,
        **lora_args,
    )


def memory_status() -> dict[str, int]:
    """Resident anonymous and file-backed memory, and what is locked, from /proc/self/status."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmLck"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def log_softmax_rows(logits: Any) -> Any:
    import numpy as np

    x = logits.astype(np.float32, copy=True)
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


def passage_logprobs(llm: Any, tokens: list[int]) -> Any:
    """Log-probabilities of the next token at each position of `tokens` (all but the last)."""
    import numpy as np

    llm.reset()
    llm.eval(tokens)
    scores = np.array(llm.scores[: len(tokens) - 1], dtype=np.float32)
    return scores


def round_trip(llm: Any) -> list[dict[str, Any]]:
    from hubtui.runner import llama_text

    vocab = llama_text.vocab_of(llm)
    out = []
    for text in ROUND_TRIP_SAMPLES:
        toks = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        back = llama_text.detokenize(vocab, toks)
        out.append({"text": text, "tokens": len(toks), "decoded": back, "ok": back == text})
    return out


def greedy_chat(llm: Any) -> dict[str, Any]:
    """Greedy reply to a fixed chat prompt, checking every step's logits for NaN/inf."""
    import llama_cpp
    import numpy as np

    from hubtui.runner import llama_text
    from hubtui.runner.chat import prompt_tokens
    from hubtui.runner.formats import chat_format_for

    vocab = llama_text.vocab_of(llm)
    fmt = chat_format_for(llm)
    tokens = prompt_tokens(llm, fmt, [{"role": "user", "content": CHAT_PROMPT}])
    n_vocab = llm.n_vocab()
    llm.reset()
    llm.eval(tokens)
    generated: list[int] = []
    stopped_at_eog = False
    non_finite_at: int | None = None
    t0 = time.perf_counter()
    for step in range(MAX_NEW_TOKENS):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        if not np.isfinite(logits).all():
            non_finite_at = step
            break
        tok = int(np.argmax(logits))
        if llama_text.is_eog(vocab, tok):
            stopped_at_eog = True
            break
        generated.append(tok)
        if llm.n_tokens >= llm.n_ctx():
            break
        llm.eval([tok])
    seconds = time.perf_counter() - t0
    text = llama_text.detokenize(vocab, generated)
    return {
        "format": fmt.source,
        "prompt": CHAT_PROMPT,
        "prompt_tokens": len(tokens),
        "tokens": len(generated),
        "text": text,
        "stopped_at_eog": stopped_at_eog,
        "non_finite_at_step": non_finite_at,
        "seconds": seconds,
        "tokens_per_s": len(generated) / seconds if generated and seconds > 0 else None,
    }


def perplexity(llm: Any, text: str, n_ctx: int) -> tuple[dict[str, Any], Any, list[int]]:
    import numpy as np

    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)[:n_ctx]
    t0 = time.perf_counter()
    scores = passage_logprobs(llm, tokens)
    seconds = time.perf_counter() - t0
    finite = bool(np.isfinite(scores).all())
    logp = log_softmax_rows(scores) if finite else None
    if logp is not None:
        targets = np.asarray(tokens[1:])
        nll = -logp[np.arange(len(targets)), targets].astype(np.float64)
        ppl = float(math.exp(nll.mean()))
    else:
        ppl = float("nan")
    info = {
        "tokens": len(tokens),
        "perplexity": ppl,
        "finite_logits": finite,
        "prompt_seconds": seconds,
        "prompt_tokens_per_s": len(tokens) / seconds if seconds > 0 else None,
    }
    return info, logp, tokens


def kl_against(base_logp: Any, logp: Any) -> dict[str, float]:
    """Mean KL(base || model) of next-token distributions, and top-1 agreement."""
    import numpy as np

    kl_rows = []
    agree = 0
    for i in range(0, logp.shape[0], 64):  # in slices: rows x vocab in float64 can be large
        b = base_logp[i : i + 64].astype(np.float64)
        q = logp[i : i + 64].astype(np.float64)
        kl_rows.append((np.exp(b) * (b - q)).sum(axis=1))
        agree += int((b.argmax(axis=1) == q.argmax(axis=1)).sum())
    kl = np.concatenate(kl_rows)
    return {"mean_kl": float(kl.mean()), "max_kl": float(kl.max()), "top1_agreement": agree / logp.shape[0]}


def run(req: dict[str, Any]) -> dict[str, Any]:
    from hubtui.runner import llama_log

    t_import = time.perf_counter()
    import llama_cpp  # noqa: F401

    llama_log.install()
    result: dict[str, Any] = {"import_seconds": time.perf_counter() - t_import}
    n_ctx = int(req["n_ctx"])
    mode: dict[str, Any] = {"mmap": bool(req.get("mmap", True)), "mlock": bool(req.get("mlock", False))}
    ngl, supported, why = resolve_gpu_layers(req["gpu_layers"], req["path"], n_ctx, **mode)
    result["load_mode"] = mode  # what llama.cpp is asked for: the parent's (or the plan's) choice
    result["gpu_layers"] = ngl
    result["gpu_layers_reason"] = why
    result["gpu_offload_supported"] = supported

    emit("load", f"loading {req['path']}")
    t0 = time.perf_counter()
    try:
        llm = load(req["path"], n_ctx, ngl, req.get("lora"), float(req.get("lora_scale", 1.0)), **mode)
    except Exception as exc:
        result["error"] = {"stage": "load", "message": llama_log.last_error() or str(exc)}
        return result
    result["load_seconds"] = time.perf_counter() - t0
    result["rss_after_load_bytes"] = peak_rss_bytes()
    result["memory_after_load"] = memory_status()

    import llama_cpp as lc

    result["model"] = {
        "n_vocab": llm.n_vocab(),
        "n_ctx": llm.n_ctx(),
        "n_ctx_train": int(lc.llama_model_n_ctx_train(llm.model)),
        "n_params": int(lc.llama_model_n_params(llm.model)),
        "bos": llm.token_bos(),
        "eos": llm.token_eos(),
        "chat_template": bool((llm.metadata or {}).get("tokenizer.chat_template")),
    }

    emit("tokenizer", "tokenizer round trip")
    result["round_trip"] = round_trip(llm)

    emit("generate", "greedy chat reply")
    result["generation"] = greedy_chat(llm)
    # Peak after load + generation: the model's own footprint, before the perplexity pass adds
    # full-vocabulary logit matrices that only the smoke test needs.
    result["peak_rss_bytes"] = peak_rss_bytes()

    emit("perplexity", "perplexity on the shipped passage")
    ppl, logp, tokens = perplexity(llm, req["passage"], n_ctx)
    result["perplexity"] = ppl
    result["peak_rss_with_perplexity_bytes"] = peak_rss_bytes()
    llm.close()
    del llm

    if req.get("baseline"):
        emit("baseline", f"baseline {req['baseline']}")
        try:
            base = load(req["baseline"], n_ctx, ngl, **mode)
        except Exception as exc:
            result["baseline"] = {"error": llama_log.last_error() or str(exc)}
            return result
        base_ppl, base_logp, base_tokens = perplexity(base, req["passage"], n_ctx)
        base.close()
        entry: dict[str, Any] = {"perplexity": base_ppl["perplexity"], "tokens": base_ppl["tokens"]}
        if base_tokens != tokens:
            entry["error"] = "the baseline tokenises the passage differently: not the same model"
        elif logp is None or base_logp is None:
            entry["error"] = "non-finite logits: KL divergence undefined"
        else:
            entry["perplexity_ratio"] = ppl["perplexity"] / base_ppl["perplexity"]
            entry.update(kl_against(base_logp, logp))
        result["baseline"] = entry
    return result


def main(argv: list[str]) -> int:
    req_path, out_path = argv[1], argv[2]
    with open(req_path, encoding="utf-8") as fh:
        req = json.load(fh)
    result = run(req)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
