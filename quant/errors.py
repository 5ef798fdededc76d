"""Exceptions of the headless core.

Every error a user can cause (bad input, a corrupt file, a type a row cannot hold) is a
`QuantError` subclass whose message is one line naming the file, tensor, key or value at fault,
so the CLI and the TUI can show it as is.
"""


class QuantError(Exception):
    """A user-facing failure in the core (kernels, conversion, sizing, hardware)."""


class ConversionError(QuantError):
    """A checkpoint cannot be converted (unsupported, inconsistent, corrupt or unsafe input)."""


class OutputExistsError(ConversionError):
    """The output file is already there and overwriting was not asked for; `path` is that file."""

    def __init__(self, path: object) -> None:
        super().__init__(f"{path}: already exists (use --force to overwrite)")
        self.path = path


class GGUFError(QuantError):
    """A file is not a readable GGUF (truncated, corrupt, wrong magic or version)."""
