"""``charpoet attribute``: highlight the verbatim copies of a library's sources in any text."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from charpoet.cli import app, check_output_file
from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import ConfigError

# Shared by ``generate`` and ``chat``, where an index over the limit only turns highlighting off.
ForceIndex = Annotated[bool, typer.Option(
    "--force-index", help="Build the attribution index even for a library above the size limit (256 MiB of "
                          "text: building needs about 13 bytes of memory per byte of text, and as much disk).")]


@app.command()
def attribute(
    file: Annotated[str, typer.Argument(help="Text file to check, or - for standard input.")] = "-",
    checkpoint_path: Annotated[str | None, typer.Option(help="Run (directory or fsspec URL) whose sources to check against.", show_default=False)] = None,
    text_path: Annotated[list[str] | None, typer.Option(help="Source files, directories or globs instead of a run (repeatable).", show_default=False)] = None,
    min_quote: Annotated[int, typer.Option(help="Shortest verbatim copy to highlight, in characters.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print spans (start, end, source, offset) and metrics as JSON.")] = False,
    html: Annotated[Path | None, typer.Option(help="Also write a standalone HTML page.", show_default=False)] = None,
    force_index: ForceIndex = False,
) -> None:
    """Find the passages of a text that occur verbatim in a run's sources (or in --text-path files)."""
    from charpoet.attribution import CorpusIndex, check_min_quote, index_for_run
    from charpoet.corpus import library_from_paths, read_text_file

    if (checkpoint_path is None) == (not text_path):
        raise ConfigError("give either --checkpoint-path RUN or --text-path SOURCES to check against")
    check_min_quote(min_quote)
    if html is not None:
        check_output_file(html, "--html")
    text = sys.stdin.read() if file == "-" else read_text_file(file)
    if checkpoint_path is not None:
        from charpoet.checkpoint import RunDir

        from charpoet.storage import readable_run

        run_path = readable_run(checkpoint_path)
        RunDir(run_path).require()
        index = index_for_run(run_path, force=force_index)  # IndexTooLargeError: exit 2
    else:
        index = CorpusIndex.build(library_from_paths(text_path or []), force=force_index)
    result = index.attribute(text, min_quote)
    if html is not None:
        from charpoet.render import to_html

        atomic_write_bytes(html, to_html(result).encode("utf-8"))
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    from charpoet.render import to_rich

    Console(highlight=False, soft_wrap=True).print(to_rich(result))
