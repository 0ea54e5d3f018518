"""``charpoet export``: a run's model as a standalone ONNX generation step, or a static site."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from charpoet.cli import app
from charpoet.errors import ConfigError


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run directory (or fsspec URL) to export.", show_default=False)],
    directory: Annotated[Path | None, typer.Argument(
        help="Where to write: the site's directory for --format web (or the file, like -o).", show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", help="onnx: one generation step as an ONNX model; "
                                        "web: a static site that writes in the browser.")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (or, for web, directory) to write "
                                                "[default: model.onnx].", show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="best (lowest validation loss) or last.")] = "best",
    force: Annotated[bool, typer.Option(help="Replace the output file, or write the site into a non-empty directory.")] = False,
    attribution: Annotated[bool | None, typer.Option("--with-attribution/--no-attribution", help="web: carry the sources and their index so the page highlights verbatim copies [default: when the sources are at most 20 MB].", show_default=False)] = None,
    min_quote: Annotated[int, typer.Option(help="web: shortest verbatim copy the page highlights, in characters.")] = 20,
) -> None:
    """Export a trained run: one generation step (tokens and state in, logits and state out) as a
    single ONNX file with the config and vocabulary in its metadata, for onnxruntime anywhere; or,
    with --format web, a static site (index.html, model.onnx, onnxruntime-web) that generates in
    the browser from any static host, with no server and no network."""
    from charpoet.export import FORMATS

    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    if weights not in ("best", "last"):
        raise ConfigError(f"--weights must be best or last, got {weights!r}")
    if directory is not None and output is not None:
        raise ConfigError(f"give the output once: {directory} or -o {output}")
    from charpoet.storage import readable_run

    if format == "web":
        from charpoet.export import export_web

        target = directory or output
        if target is None:
            raise ConfigError("--format web needs a directory for the site: charpoet export RUN --format web DIR")
        site = export_web(readable_run(run), target, weights=weights, force=force, name=Path(run.rstrip("/")).name,
                          attribution=attribution, min_quote=min_quote)
        print(f"wrote the site to {site.path} ({site.bytes / 1e6:.1f} MB, the model {site.model_bytes / 1e6:.2f} MB): "
              f"the {site.num_layers}x{site.rnn_size} {site.cell} writes in the browser"
              f"{', and highlights its copies' if (site.path / 'attribution').is_dir() else ''}; serve it from any static host, "
              f"e.g. python -m http.server -d {site.path}", file=sys.stderr)
        return
    from charpoet.export import export_onnx

    info = export_onnx(readable_run(run), output or directory or Path("model.onnx"), weights=weights, force=force)
    print(f"wrote {info.path} ({info.bytes / 1e6:.2f} MB): one step of the {info.num_layers}x{info.rnn_size} "
          f"{info.cell}, vocabulary {info.vocab_size:,}; inputs tokens (B,) and the state, outputs logits and the state",
          file=sys.stderr)
