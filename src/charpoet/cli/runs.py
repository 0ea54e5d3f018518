"""``charpoet runs``: a table of the runs in a directory, best validation loss first."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from charpoet.cli import app


@app.command()
def runs(
    directory: Annotated[Path, typer.Argument(help="Directory to search for runs (3 levels deep).")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per run and line.")] = False,
) -> None:
    """List the runs in DIRECTORY: corpus, architecture, steps, best validation loss, last update."""
    from charpoet.runs import list_runs

    found = list_runs(directory)
    if not found:
        print(f"no runs in {directory} (a run is a directory with a config.json)", file=sys.stderr)
        return
    if as_json:
        for run in found:
            print(json.dumps({**run.to_dict(), "updated_at": format_time(run.updated)}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("run", overflow="fold")
    table.add_column("corpus", overflow="fold")
    table.add_column("architecture", overflow="fold")
    for column in ("steps", "val loss", "bpc"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("updated", overflow="fold")  # wraps before the age on narrow terminals
    for run in found:
        table.add_row(
            f"[red]{_escape(run.name)}[/]" if run.error else _escape(run.name),
            _escape(run.corpus or "?"), run.architecture or "?",
            "?" if run.steps is None else f"{run.steps:,}",
            "-" if run.best_val_loss is None else f"{run.best_val_loss:.4f}",
            "-" if run.best_val_bpc is None else f"{run.best_val_bpc:.3f}",
            f"{format_time(run.updated)} [dim]({format_age(now - run.updated)})[/]",
        )
    Console(highlight=False).print(table)
    for run in found:
        if run.error:
            print(f"warning: {run.name}: {run.error}", file=sys.stderr)


def format_time(timestamp: float) -> str:
    """Local time to the minute: ``2026-11-22 17:03``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def format_age(seconds: float) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``."""
    if seconds < 60:
        return "just now"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {'day' if unit == 'days' and count == 1 else unit} ago"
    return "just now"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
