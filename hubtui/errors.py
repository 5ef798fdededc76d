"""Errors that the CLI and the app show as one readable line (never a traceback)."""


class HubtuiError(Exception):
    """Base for user-facing failures raised by the hub client, the runner and the app layer."""
