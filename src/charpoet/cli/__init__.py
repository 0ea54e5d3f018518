"""Command-line interface: ``charpoet train | generate | chat | attribute | evaluate | corpus | runs | serve | export``.

Thin typer commands over the library. ``CharpoetCLI.main`` is the one place where errors
become output: a user error (bad option, missing file, corrupt run) prints ``error: ...``
on one line and exits with status 2; library warnings print as ``warning: ...`` lines.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from charpoet.errors import CharpoetError, CharpoetWarning


class CharpoetCLI(TyperGroup):
    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        with warnings.catch_warnings():
            warnings.simplefilter("always", CharpoetWarning)
            warnings.showwarning = _show_warning
            try:
                # without standalone mode, a command's ``raise typer.Exit(n)`` comes back as n
                code = super().main(args, prog_name or "charpoet", standalone_mode=False, **extra)
            except CharpoetError as exc:
                from charpoet.errors import ConfigError, PeerError

                # under torchrun every rank meets the same bad option, and when rank 0 stops the others
                # lose it: rank 0 alone says why
                _fail(str(exc), 2, quiet=isinstance(exc, ConfigError | PeerError) and not _main_rank())
            except click_exceptions.NoArgsIsHelpError:
                sys.exit(0)  # a command group run bare: its help is already on the screen
            except click_exceptions.UsageError as exc:
                _fail(exc.format_message(), 2)
            except click_exceptions.ClickException as exc:
                _fail(exc.format_message(), exc.exit_code)
            except typer.Abort:
                _fail("aborted", 130)
            except typer.Exit as exc:
                sys.exit(exc.exit_code)
            except KeyboardInterrupt:
                _fail("interrupted", 130)
            except OSError as exc:  # a path the user gave that cannot be written or read
                where = f"{exc.filename}: " if exc.filename else ""
                _fail(f"{where}{exc.strerror or exc or type(exc).__name__}", 2)
        sys.exit(code if isinstance(code, int) else 0)


def check_output_file(path: Any, flag: str) -> None:
    """Before any work: ``ConfigError`` if ``path`` (a file to write, given with ``flag``) cannot be
    created there, so a long generation never ends in an error about its output."""
    from pathlib import Path

    from charpoet.errors import ConfigError

    path = Path(path).expanduser()
    parent = path.parent
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file name")
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ConfigError(f"{flag} {path}: the directory {parent} {what}")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {path}: the directory {parent} is not writable")
    from charpoet.checkpoint import CONFIG, RUN_FILES

    if path.name in RUN_FILES and (parent / CONFIG).is_file():
        raise ConfigError(f"{flag} {path}: that is a file of the run in {parent}; choose another name")
    if path.name == "library.json":
        raise ConfigError(f"{flag} {path}: that name is a book library's manifest; choose another name")


def _fail(message: str, code: int, quiet: bool = False) -> None:
    first, *rest = message.strip().splitlines() or [""]
    if not quiet:
        prefix = "" if _main_rank() else f"rank {os.environ.get('RANK')}: "
        print(f"error: {prefix}{first}", file=sys.stderr)
    sys.exit(code)


def _main_rank() -> bool:
    """True unless this process is a rank other than 0 of a torchrun group (see charpoet.distributed)."""
    return os.environ.get("WORLD_SIZE", "1") in ("", "1") or os.environ.get("RANK", "0") in ("", "0")


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    if issubclass(category, CharpoetWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


app = typer.Typer(
    cls=CharpoetCLI,
    help="Train character- and word-level LSTM/GRU language models on texts and generate from them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from charpoet.cli import attribute as _attribute  # noqa: E402,F401  (registers commands)
from charpoet.cli import chat as _chat  # noqa: E402,F401
from charpoet.cli import corpus as _corpus  # noqa: E402,F401
from charpoet.cli import evaluate as _evaluate  # noqa: E402,F401
from charpoet.cli import export as _export  # noqa: E402,F401
from charpoet.cli import generate as _generate  # noqa: E402,F401
from charpoet.cli import runs as _runs  # noqa: E402,F401
from charpoet.cli import serve as _serve  # noqa: E402,F401
from charpoet.cli import train as _train  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    # PyTorch's C++ core logs a failed connection with a native stack trace before Python sees the
    # error; the command reports it in one line instead (set TORCH_CPP_LOG_LEVEL to see them).
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
    app(args=argv)
