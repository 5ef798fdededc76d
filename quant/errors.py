"""Exceptions of the headless core.

Every error a user can cause (bad input, a corrupt file, a type a row cannot hold) is a
`QuantError` subclass whose message is one line naming the file, tensor, key or value at fault,
so the CLI and the TUI can show it as is.
"""


class QuantError(Exception):
    """A user-facing failure in the core (kernels, conversion, sizing, hardware)."""


class ConversionError(QuantError):
    """A checkpoint cannot be converted (unsupported, inconsistent, corrupt or unsafe input)."""


class OutputError(QuantError):
    """An output cannot be written where asked (not a regular file, would replace an input, no room, busy)."""


class OutputBusyError(OutputError):
    """Another process is writing the same output right now; `path` is that output."""

    def __init__(self, path: object, holder: str = "") -> None:
        who = f" (pid {holder})" if holder else ""
        super().__init__(
            f"{path}: another hubtui process{who} is writing this output right now; "
            "wait for it to finish or choose another output"
        )
        self.path = path


class OutputExistsError(ConversionError, OutputError):
    """The output file is already there and overwriting was not asked for; `path` is that file."""

    def __init__(self, path: object) -> None:
        super().__init__(f"{path}: already exists (use --force to overwrite)")
        self.path = path


class GGUFError(QuantError):
    """A file is not a readable GGUF (truncated, corrupt, wrong magic or version)."""


class OptionError(ConversionError):
    """A per-tensor option (--tensor-type, --output-tensor-type, ...) is malformed or cannot apply to this
    checkpoint; the CLI reports it as a usage error (exit 2) naming the option."""


class ImatrixError(QuantError):
    """An importance matrix file is unreadable, inconsistent, or does not fit the model it is applied to."""
