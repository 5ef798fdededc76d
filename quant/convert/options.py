"""llama-quantize's per-tensor options: --tensor-type, --output-tensor-type, --token-embedding-type, --pure,
--leave-output-tensor, parsed and applied as `tools/quantize/quantize.cpp` and `src/llama-quant.cpp` do.

A --tensor-type pattern is lower-cased, then searched for anywhere in the GGUF tensor name (a partial match
counts, as with std::regex_search); the first pattern that matches decides the tensor and skips the mixture
rules. llama.cpp compiles patterns as ECMAScript regular expressions; Python's `re` reads the common syntax the
same way, and the constructs the two read differently (inline flags, look-behind, named groups, atomic groups
and possessive quantifiers) are refused rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quant.errors import OptionError
from quant.filetypes import FileType, resolve_tensor_type

# "(?" may only open what ECMAScript has: a non-capturing group or a look-ahead
_NOT_ECMASCRIPT = re.compile(r"\(\?(?![:=!])|[*+?}]\+")


@dataclass(frozen=True)
class TensorTypeRule:
    """One --tensor-type PATTERN=TYPE."""

    text: str  # as given, for messages
    pattern: re.Pattern[str]
    type: str  # ggml type name

    def matches(self, tensor_name: str) -> bool:
        return self.pattern.search(tensor_name) is not None


def parse_tensor_type(text: str) -> TensorTypeRule:
    """PATTERN=TYPE, split at the first "="; a bad pattern or type raises OptionError naming it."""
    pattern, sep, type_name = text.partition("=")
    if not sep:
        raise OptionError(f"--tensor-type {text!r}: expected PATTERN=TYPE, e.g. attn_v=q8_0")
    if not pattern:
        raise OptionError(f"--tensor-type {text!r}: missing tensor name pattern before '='")
    if not type_name:
        raise OptionError(f"--tensor-type {text!r}: missing ggml type after '='")
    pattern = pattern.lower()  # llama-quantize lower-cases the pattern (so \D reads as \d there too)
    bad = _NOT_ECMASCRIPT.search(pattern)
    if bad:
        raise OptionError(
            f"--tensor-type {text!r}: {bad.group()!r} is not ECMAScript regex syntax, which llama.cpp uses"
        )
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise OptionError(f"--tensor-type {text!r}: bad regular expression: {exc}") from None
    return TensorTypeRule(text, compiled, resolve_tensor_type(type_name, f"--tensor-type {text!r}"))


@dataclass(frozen=True)
class TensorOptions:
    """The per-tensor choices llama-quantize lets a user make on top of a file type's mixture."""

    tensor_types: tuple[TensorTypeRule, ...] = ()
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    pure: bool = False  # every quantisable tensor gets the default type (the shape fallback still applies)
    leave_output_tensor: bool = False  # output.weight stays as the F32 conversion has it

    @classmethod
    def parse(
        cls,
        tensor_types: tuple[str, ...] | list[str] = (),
        *,
        output_tensor_type: str | None = None,
        token_embedding_type: str | None = None,
        pure: bool = False,
        leave_output_tensor: bool = False,
    ) -> TensorOptions:
        """Options from their command-line spellings; OptionError names the first bad one."""
        return cls(
            tuple(parse_tensor_type(t) for t in tensor_types),
            resolve_tensor_type(output_tensor_type, "--output-tensor-type") if output_tensor_type else None,
            resolve_tensor_type(token_embedding_type, "--token-embedding-type")
            if token_embedding_type
            else None,
            pure,
            leave_output_tensor,
        )

    @property
    def active(self) -> bool:
        return bool(
            self.tensor_types
            or self.output_tensor_type
            or self.token_embedding_type
            or self.pure
            or self.leave_output_tensor
        )

    def flags(self) -> list[str]:
        """The options as command-line flags (for messages)."""
        out = [f"--tensor-type {r.text}" for r in self.tensor_types]
        if self.output_tensor_type:
            out.append(f"--output-tensor-type {self.output_tensor_type}")
        if self.token_embedding_type:
            out.append(f"--token-embedding-type {self.token_embedding_type}")
        if self.pure:
            out.append("--pure")
        if self.leave_output_tensor:
            out.append("--leave-output-tensor")
        return out

    def check_file_type(self, ft: FileType) -> None:
        """The options need a quantised file type: llama-quantize ignores most of them for F32/F16/BF16."""
        if self.active and not ft.quantized:
            raise OptionError(
                f"{self.flags()[0]}: per-tensor options apply to quantised types, not {ft.name} "
                "(use --type Q8_0 or smaller)"
            )
