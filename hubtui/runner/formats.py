"""Chat prompts: the model's own Jinja template, or a named fallback format when the GGUF has none.

Both paths render through llama-cpp-python's `Jinja2ChatFormatter`, which uses Jinja's
`ImmutableSandboxedEnvironment`: a template from a downloaded file can format text but cannot
call into Python or mutate our objects.

A GGUF's template may also be the *name* of one of llama.cpp's built-in templates (llama.cpp's converter
writes `mistral-v3-tekken` and the like for Mistral-layout checkpoints without a chat_template.jinja);
those are rendered by llama.cpp itself (`llama_chat_apply_template`), as llama.cpp's own tools do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hubtui.runner.errors import RunnerError

# Our own short templates for the families hubtui targets, used only when a GGUF carries no template.
FALLBACK_TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "mistral-instruct": (
        "{{ bos_token }}{% set sys = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' %}"
        "{% for m in messages if m['role'] != 'system' %}"
        "{% if m['role'] == 'user' %}[INST] {% if loop.first and sys %}{{ sys }}\n\n{% endif %}{{ m['content'] }} [/INST]"
        "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
    "llama-2": (
        "{% set sys = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' %}"
        "{% for m in messages if m['role'] != 'system' %}"
        "{% if m['role'] == 'user' %}{{ bos_token }}[INST] {% if loop.first and sys %}<<SYS>>\n{{ sys }}\n<</SYS>>\n\n{% endif %}"
        "{{ m['content'] }} [/INST]{% else %} {{ m['content'] }} {{ eos_token }}{% endif %}{% endfor %}"
    ),
}

# A marker token that identifies each family's format in the vocabulary.
_MARKERS = (("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama-3"), ("[INST]", "mistral-instruct"))


def builtin_templates() -> frozenset[str]:
    """The names of llama.cpp's built-in chat templates (`llama_chat_builtin_templates`)."""
    import ctypes

    import llama_cpp

    n = llama_cpp.llama_chat_builtin_templates((ctypes.c_char_p * 0)(), 0)
    names = (ctypes.c_char_p * max(n, 0))()
    llama_cpp.llama_chat_builtin_templates(names, n)
    return frozenset(name.decode() for name in names[:n])


def render_builtin(name: str, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """`messages` through llama.cpp's built-in template `name`."""
    import ctypes

    import llama_cpp

    chat = (llama_cpp.llama_chat_message * len(messages))(
        *(llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages)
    )
    size = 2 * sum(len(m["content"]) + len(m["role"]) for m in messages) + 256
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(
            name.encode(), chat, len(messages), add_generation_prompt, buf, size
        )
        if n < 0:
            raise RunnerError(f"llama.cpp's built-in chat template {name!r} failed to render")
        if n <= size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n
    raise RunnerError(f"llama.cpp's built-in chat template {name!r} failed to render")


@dataclass
class ChatFormat:
    """A renderer for one model: `source` is "gguf" or the fallback name; `builtin`: `template` names one of
    llama.cpp's built-in templates."""

    source: str
    template: str
    bos_token: str
    eos_token: str
    _cache: Any = field(default=None, repr=False, compare=False)
    builtin: bool = False

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self.builtin:
            return render_builtin(self.template, messages, add_generation_prompt)

        try:
            key = (self.template, add_generation_prompt)
            if self._cache is None or self._cache[0] != key:
                formatter = Jinja2ChatFormatter(
                    template=self.template,
                    eos_token=self.eos_token,
                    bos_token=self.bos_token,
                    add_generation_prompt=add_generation_prompt,
                )
                self._cache = (key, formatter)
            return self._cache[1](messages=messages).prompt
        except Exception as exc:  # jinja2 errors, raise_exception() in templates, sandbox violations
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RunnerError(f"chat template ({self.source}) failed to render: {first}") from None


def guess_fallback(token_texts: set[str]) -> str:
    """The fallback format whose marker token the vocabulary has; chatml when none does."""
    for marker, name in _MARKERS:
        if marker in token_texts:
            return name
    return "chatml"


def chat_format_for(llm: Any, fallback: str | None = None, force: str | None = None) -> ChatFormat:
    """The model's template from its GGUF metadata, else `fallback` (guessed from the vocabulary if None).

    `force` names a fallback format to use even when the GGUF has a template.
    """
    from hubtui.runner import llama_text

    vocab = llama_text.vocab_of(llm)
    bos_id, eos_id = llm.token_bos(), llm.token_eos()
    bos = llama_text.piece(vocab, bos_id, special=True).decode("utf-8", "replace") if bos_id >= 0 else ""
    eos = llama_text.piece(vocab, eos_id, special=True).decode("utf-8", "replace") if eos_id >= 0 else ""
    template = (llm.metadata or {}).get("tokenizer.chat_template")
    if force is None and template:
        return ChatFormat("gguf", template, bos, eos, builtin=template in builtin_templates())
    name = force or fallback
    if name is None:
        markers = {m for m, _ in _MARKERS}
        present = set()
        for tid in range(llm.n_vocab()):
            text = llama_text.piece(vocab, tid, special=True).decode("utf-8", "replace")
            if text in markers:
                present.add(text)
        name = guess_fallback(present)
    if name not in FALLBACK_TEMPLATES:
        raise RunnerError(f"unknown chat format {name!r} (choose from {', '.join(FALLBACK_TEMPLATES)})")
    return ChatFormat(name, FALLBACK_TEMPLATES[name], bos, eos)
