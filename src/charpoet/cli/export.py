"""``charpoet export``: a run's model as a standalone ONNX generation step."""

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
    format: Annotated[str, typer.Option("--format", help="onnx: one generation step as an ONNX model.")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write [default: model.onnx].", show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="best (lowest validation loss) or last.")] = "best",
    force: Annotated[bool, typer.Option(help="Replace the output if it exists.")] = False,
) -> None:
    """Export a trained run: one generation step (tokens and state in, logits and state out) as a
    single ONNX file with the config and vocabulary in its metadata, for onnxruntime anywhere."""
    from charpoet.export import FORMATS

    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    if weights not in ("best", "last"):
        raise ConfigError(f"--weights must be best or last, got {weights!r}")
    from charpoet.export import export_onnx
    from charpoet.storage import readable_run

    info = export_onnx(readable_run(run), output or Path("model.onnx"), weights=weights, force=force)
    print(f"wrote {info.path} ({info.bytes / 1e6:.2f} MB): one step of the {info.num_layers}x{info.rnn_size} "
          f"{info.cell}, vocabulary {info.vocab_size:,}; inputs tokens (B,) and the state, outputs logits and the state",
          file=sys.stderr)
