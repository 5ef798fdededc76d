"""The `hubtui` command line: a click group whose default (no subcommand) opens the TUI.

Library code raises `QuantError`/`HubtuiError` with one-line messages; `main` turns them into
`hubtui: error: ...` on stderr with exit status 1 (a traceback only with `--debug`). Ctrl-C exits 130,
SIGTERM 143 and SIGHUP 129, each after the same clean-up (`hubtui.signals`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import sys
import traceback
from typing import NoReturn

import click

from hubtui import __version__

SUBCOMMANDS = (
    "convert",
    "imatrix",
    "plan",
    "hw",
    "search",
    "download",
    "cache",
    "smoke",
    "chat",
    "inspect",
    "demo",
    "bundle",
)


_RAN_TUI: list[bool] = []  # set once the terminal app has run in this process: `entry` then ends it at once


class _Notices(logging.Handler):
    """Library notices (logger "hubtui", warnings and up) as `hubtui: warning: ...` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"hubtui: warning: {record.getMessage()}", err=True)


def _show_notices() -> None:
    logger = logging.getLogger("hubtui")
    if not any(isinstance(h, _Notices) for h in logger.handlers):
        logger.addHandler(_Notices(logging.WARNING))


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hubtui")
@click.option("--debug", is_flag=True, envvar="HUBTUI_DEBUG", help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """hubtui: browse, download, quantise, size and chat with Llama and Mistral models.

    Run without a command to open the terminal app.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:
        os.environ["HUBTUI_DEBUG"] = "1"
    if ctx.invoked_subcommand is not None:  # the TUI shows problems itself
        _show_notices()
    if ctx.invoked_subcommand is None:
        from hubtui.app.app import run_app
        from hubtui.signals import Terminated

        _RAN_TUI.append(True)
        notes, code = run_app()
        for note in notes:
            click.echo(f"hubtui: {note}", err=True)
        if code is not None and code > 128:  # a SIGTERM/SIGHUP closed it
            raise Terminated(code - 128)


for _name in SUBCOMMANDS:
    cli.add_command(importlib.import_module(f"hubtui.commands.{_name}").command, _name)


def _user_errors() -> tuple[type[BaseException], ...]:
    from hubtui.errors import HubtuiError
    from quant.errors import QuantError

    return (QuantError, HubtuiError)


def _os_error_line(exc: OSError) -> str:
    """An OSError the user's system caused (disk full, permission, a vanished file) as one line."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from hubtui.signals import Terminated, terminate_on_signals

    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(os.environ.get("HUBTUI_DEBUG"))
    try:
        with terminate_on_signals():
            cli.main(args=argv, prog_name="hubtui", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("hubtui: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("hubtui: interrupted", err=True)
        sys.exit(130)
    except Terminated as exc:
        click.echo(f"hubtui: {exc}", err=True)
        sys.exit(exc.exit_code)
    except _user_errors() as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"hubtui: error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # the system said no (full disk, permissions, a file removed under us)
        if debug:
            traceback.print_exc()
        click.echo(f"hubtui: error: {_os_error_line(exc)}", err=True)
        sys.exit(1)
    except MemoryError:
        if debug:
            traceback.print_exc()
        click.echo(
            "hubtui: error: out of memory (the input needs more memory than this process may use)", err=True
        )
        sys.exit(1)
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            click.echo(
                f"hubtui: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
                err=True,
            )
        sys.exit(1)


def entry() -> None:
    """The `hubtui` console script (and `python -m hubtui`): `main` in a process set up for it.

    OpenMP workers (numba's kernels, llama.cpp) sleep between parallel regions instead of spinning, unless the
    user chose a policy: spinning burned a core that our writer thread or another job needed, and on a 2-core
    machine with one other busy process a Q8_0 conversion took 2.6 s instead of 1.8 s (llama.cpp's generation
    speed did not change). The process ends right after `main`; freezing the heap first spares the
    interpreter's final garbage collection a walk over numba's object graph (0.15 s). Tests call `main`
    in-process and are not affected.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        gc.freeze()
        if _RAN_TUI:
            _exit_after_tui(code)


def _exit_after_tui(code: int | str | None) -> NoReturn:
    """End the process once the app has quit: the atexit handlers run (logging, temporary folders), but no
    thread is joined and no module torn down. The app has already stopped and awaited the work that must
    clean up; what may still run are a fit table's header requests, whose thread pool the interpreter would
    otherwise wait for (up to a timeout with a slow hub) after ctrl+q."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":
    entry()
