"""Runner failures shown to the user as one line."""

from hubtui.errors import HubtuiError


class RunnerError(HubtuiError):
    """A model cannot be smoke-tested, chatted with or bundled (bad file, crash, timeout, bad input)."""
