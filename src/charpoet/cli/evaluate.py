"""``charpoet evaluate``: loss, bits per character and accuracy of a run on any texts."""

from __future__ import annotations

import json
import math
import sys
import warnings
from typing import Annotated, Any

import typer

from charpoet.cli import app
from charpoet.config import DEVICES
from charpoet.errors import CharpoetWarning, ConfigError

STDIN_NAME = "<stdin>"
HEADER = ("source", "characters", "tokens", "OOV", "loss", "bpc", "accuracy")


@app.command()
def evaluate(
    texts: Annotated[list[str] | None, typer.Argument(help="Text files, directories, globs or URLs, or - for standard input [default: the run's test texts (--test-path)].", show_default=False)] = None,
    checkpoint_path: Annotated[str, typer.Option(help="Run directory (or fsspec URL) to evaluate.")] = "runs/default",
    weights: Annotated[str, typer.Option(help="best (lowest validation loss) or last.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: every source and the total.")] = False,
) -> None:
    """Score texts with a run: loss (nats/token), bits per character and accuracy, per source and in total.

    Each text is one stream from a zero state; its first token predicts nothing. Characters outside a char run's vocabulary are skipped and counted (OOV); a word run reads unknown words as <unk>, scores them so and counts them.
    """
    if weights not in ("best", "last"):
        raise ConfigError(f"--weights must be best or last, got {weights!r}")
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
    texts = texts or []
    if texts.count("-") > 1:
        raise ConfigError("- (standard input) is given more than once")
    from charpoet.corpus import Library, Source, library_from_paths

    paths = [t for t in texts if t != "-"]
    sources = list(library_from_paths(paths).sources) if paths else []
    if "-" in texts:  # standard input is the first row
        sources.insert(0, Source(STDIN_NAME, "standard input", text=_read_stdin()))
    library = Library("texts", tuple(sources))
    from charpoet.evaluate import OOV_EXAMPLES, evaluate_texts
    from charpoet.sample import load
    from charpoet.storage import readable_run

    run = readable_run(checkpoint_path)
    if not texts:  # the run's own test texts, given with --test-path when it was trained
        from charpoet.checkpoint import RunDir

        if not RunDir(run).has_library("test"):
            raise ConfigError("give the texts to evaluate (files, directories, globs, or - for standard input); "
                              f"the run in {checkpoint_path} has no test texts of its own (train --test-path)")
        library = RunDir(run).read_library("test")
    lm = load(run, weights=weights, device=device)
    result = evaluate_texts(lm, library)
    for s in result.sources:
        if s.oov:
            shown = ", ".join(repr(e) for e in s.oov_examples) + (" ..." if len(s.oov_examples) == OOV_EXAMPLES else "")
            what = ("characters not in the run's vocabulary were skipped" if result.tokenizer == "char"
                    else "words not in the run's vocabulary were scored as <unk>")
            warnings.warn(f"{s.name}: {s.oov:,} {what}: {shown}", CharpoetWarning, stacklevel=2)
    if as_json:
        print(json.dumps(_finite(result.to_dict() | {"run": checkpoint_path}), ensure_ascii=False, indent=2))
        return
    rows = [_cells(s) for s in (*result.sources, result.total)]
    widths = [max(len(r[i]) for r in (HEADER, *rows)) for i in range(len(HEADER))]
    for row in (HEADER, *rows):  # aligned columns, one source per line, never wrapped
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())


def _cells(s: Any) -> tuple[str, ...]:
    return (_printable(s.name), f"{s.characters:,}", f"{s.tokens:,}", f"{s.oov:,}", f"{s.loss:.4f}", f"{s.bpc:.4f}",
            f"{s.accuracy:.2%}")


def _read_stdin() -> str:
    """Standard input, decoded and checked as a text file is (empty, binary, legacy encodings)."""
    from charpoet.corpus import decode_text
    from charpoet.corpus.files import max_file_bytes
    from charpoet.resources import format_bytes

    limit = max_file_bytes()
    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode("utf-8")
    if len(data) > limit:
        raise ConfigError(f"standard input is more than charpoet reads at once on this machine "
                          f"({format_bytes(limit)}); save it to a file")
    return decode_text(data, "standard input")


def _printable(text: str) -> str:
    """Control characters in a name as escapes, so a source stays on one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _finite(value: Any) -> Any:
    """NaN (nothing scored) as null: the output stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
