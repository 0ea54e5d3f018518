"""``charpoet runs``: a table of the runs in a directory, best validation loss first."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from charpoet.cli import app


@app.command()
def runs(
    directory: Annotated[Path, typer.Argument(help="Directory to search for runs (3 levels deep).")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per run and line.")] = False,
) -> None:
    """List the runs in DIRECTORY: corpus, architecture, steps, best validation loss, last update."""
    from charpoet.runs import HEADER, NUMBERS, format_time, list_runs

    found = list_runs(directory)
    if not found:
        print(f"no runs in {directory} (a run is a directory with a config.json)", file=sys.stderr)
        return
    if as_json:
        for run in found:
            print(json.dumps({**run.to_dict(), "updated_at": format_time(run.updated)}, ensure_ascii=False))
        return
    from rich.console import Console

    now = time.time()
    header = HEADER
    rows = [run.cells(now) for run in found]
    console = Console(highlight=False)
    if console.is_terminal:
        console.print(_table(header, rows, [bool(run.error) for run in found], NUMBERS))
    else:  # a pipe or a file: whole values in aligned columns, one run per line, never wrapped
        rows = [tuple(_printable(c) for c in row) for row in rows]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            cells = [c.rjust(w) if name in NUMBERS else c.ljust(w) for name, c, w in zip(header, row, widths)]
            print("  ".join(cells).rstrip())
    for run in found:
        if run.error:
            print(f"warning: {run.name}: {run.error}", file=sys.stderr)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], failed: list[bool], numbers: set[str]) -> Any:
    """A rich table for a terminal: long names fold, the age dims, runs that failed to read are red."""
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in header:
        if name in numbers:
            table.add_column(name, justify="right", no_wrap=True)
        else:
            table.add_column(name, overflow="fold")  # "updated" wraps before the age on narrow terminals
    for row, bad in zip(rows, failed):
        cells = [_escape(c) for c in row]
        cells[-1] = cells[-1].replace(" (", " [dim](", 1) + "[/]"
        if bad:
            cells[0] = f"[red]{cells[0]}[/]"
        table.add_row(*cells)
    return table


def _printable(text: str) -> str:
    """Control characters (a newline in a directory name) as escapes, so a run stays on one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
