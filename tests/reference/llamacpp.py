"""llama.cpp (llama-cpp-python) as a logits oracle: last-position logits and greedy decoding by token id."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


class LlamaCpp:
    """A GGUF loaded in llama.cpp with an F32 KV cache (an F16 one would cost ~1e-5 of cosine), optionally
    with a LoRA adapter GGUF applied at run time."""

    def __init__(
        self, path: Path | str, n_ctx: int = 512, lora: Path | str | None = None, lora_scale: float = 1.0
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        f32 = llama_cpp.GGML_TYPE_F32
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_threads=2,
            type_k=f32,
            type_v=f32,
            verbose=False,
            **({"lora_path": str(lora), "lora_scale": lora_scale} if lora is not None else {}),
        )

    def logits(self, ids: list[int]) -> np.ndarray:
        """Last-position logits for `ids`, from an empty context."""
        self.llm.reset()
        self.llm.eval(ids)
        return self._last()

    def _last(self) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).copy()

    def greedy(self, ids: list[int], n: int, stop: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Up to `n` greedily decoded ids after `ids`, ending early after a token in `stop`."""
        out: list[int] = []
        logits = self.logits(ids)
        for _ in range(n):
            token = int(np.argmax(logits))
            out.append(token)
            if token in stop:
                break
            self.llm.eval([token])
            logits = self._last()
        return out


def mtmd_loads(text_model: Path | str, mmproj: Path | str) -> bool:
    """Whether llama.cpp's multimodal library (mtmd) accepts `mmproj` next to `text_model` with vision on."""
    import llama_cpp
    from llama_cpp import mtmd_cpp

    model = llama_cpp.llama_model_load_from_file(
        str(text_model).encode(), llama_cpp.llama_model_default_params()
    )
    assert model, f"{text_model}: llama.cpp cannot load the text model"
    try:
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu, params.n_threads, params.warmup = False, 2, False
        ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), model, params)
        if not ctx:
            return False
        try:
            return bool(mtmd_cpp.mtmd_support_vision(ctx))
        finally:
            mtmd_cpp.mtmd_free(ctx)
    finally:
        llama_cpp.llama_model_free(model)
