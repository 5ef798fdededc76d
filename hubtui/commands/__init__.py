"""One module per CLI subcommand; each exposes a click command named `command`.

Modules import their heavy dependencies inside the command body so `hubtui --help` stays fast.
"""
