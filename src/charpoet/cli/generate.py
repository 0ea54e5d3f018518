"""``charpoet generate``: sample text from a trained run, with its verbatim copies highlighted."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from charpoet.cli import app, check_output_file
from charpoet.cli.attribute import ForceIndex
from charpoet.config import DEVICES
from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CharpoetWarning, ConfigError, CorpusError


@app.command()
def generate(
    checkpoint_path: Annotated[str, typer.Option(help="Run directory (or fsspec URL) to generate from.")] = "runs/default",
    prime: Annotated[str | None, typer.Option(help="Text the sample starts from [default: a newline].", show_default=False)] = None,
    prime_file: Annotated[Path | None, typer.Option(help="Read the priming text from a file.")] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate (characters for a char run).")] = 500,
    temperature: Annotated[float, typer.Option(help="Logits are divided by T: < 1 safer, > 1 wilder; 0 = greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", "--top-n", help="Sample only from the k most likely tokens; 0 = off.")] = 0,
    top_p: Annotated[float, typer.Option(help="Sample from the smallest set of tokens with probability >= p; 1 = off.")] = 1.0,
    num_samples: Annotated[int, typer.Option(help="Samples to generate, as one batch.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Random seed for reproducible samples.", show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="best (lowest validation loss) or last.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    highlight: Annotated[bool, typer.Option(help="Highlight verbatim copies of the training sources (on a terminal; a summary line otherwise).")] = True,
    min_quote: Annotated[int, typer.Option(help="Shortest verbatim copy to highlight, in characters.")] = 20,
    html: Annotated[Path | None, typer.Option(help="Also write the highlighted samples as a standalone HTML page.", show_default=False)] = None,
    force_index: ForceIndex = False,
) -> None:
    """Generate text from a trained run, streaming it as it is written."""
    from charpoet.sample import SampleOptions, load

    if prime is not None and prime_file is not None:
        raise ConfigError("give --prime or --prime-file, not both")
    if prime_file is not None:
        from charpoet.corpus import read_text_file

        try:
            prime = read_text_file(prime_file)
        except CorpusError as exc:
            raise ConfigError(f"--prime-file: {exc}") from None
    options = SampleOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, length=length,
                            num_samples=num_samples).validate()
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
    from charpoet.attribution import check_min_quote

    check_min_quote(min_quote)
    if html is not None:
        check_output_file(html, "--html")
    from charpoet.storage import readable_run

    run_path = readable_run(checkpoint_path)  # a remote run is read from a local copy
    lm = load(run_path, weights=weights, device=device)
    prime = prime if prime is not None else "\n"
    stream = lm.stream(prime, options)  # checks the prime before anything is printed
    index = None
    if highlight or html is not None:
        from charpoet.attribution import IndexTooLargeError, index_for_run

        try:
            index = index_for_run(run_path, force=force_index)  # built once per run, then cached there
        except IndexTooLargeError as exc:  # the text matters more than its highlighting
            warnings.warn(f"samples are not highlighted: {exc}", CharpoetWarning, stacklevel=2)

    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if highlight and console.is_terminal:
        samples = _live(console, stream, prime, num_samples, index, min_quote)
    else:
        samples = _plain(stream, prime, num_samples)
    attributions = [index.attribute(s, min_quote) for s in samples] if index is not None else []
    if highlight and not console.is_terminal:
        from charpoet.render import copy_summary

        for i, att in enumerate(attributions, 1):
            label = f"sample {i}: " if num_samples > 1 else ""
            print(f"{label}{copy_summary(att)}", file=sys.stderr)
    if html is not None:
        from charpoet.attribution_types import Attribution
        from charpoet.render import to_html

        if index is None:  # no index: the samples without highlighting
            attributions = [Attribution(s, (), (), min_quote) for s in samples]
        page = to_html(attributions, title=f"charpoet samples from {checkpoint_path}", prefix=prime)
        atomic_write_bytes(html, page.encode("utf-8"))


def _plain(stream: Any, prime: str, num_samples: int) -> list[str]:
    """Stream one sample to stdout as it is written; several are printed when done."""
    out = sys.stdout
    samples: list[list[str]] = [[] for _ in range(num_samples)]
    if num_samples == 1:
        out.write(prime)
    for pieces in stream:
        for sample, piece in zip(samples, pieces):
            sample.append(piece)
        if num_samples == 1:
            out.write(pieces[0])
            out.flush()
    texts = ["".join(s) for s in samples]
    if num_samples == 1:
        out.write("\n")
    else:
        for i, text in enumerate(texts, 1):
            out.write(f"--- sample {i} ---\n{prime}{text}\n")
    out.flush()
    return texts


def _live(console: Any, stream: Any, prime: str, num_samples: int, index: Any, min_quote: int) -> list[str]:
    """Show the samples growing on the terminal, then replace them with their highlighted versions."""
    from rich.console import Group
    from rich.live import Live
    from rich.rule import Rule
    from rich.text import Text

    from charpoet.render import to_rich

    texts = [Text(prime, style="bold") for _ in range(num_samples)]
    samples: list[list[str]] = [[] for _ in range(num_samples)]

    def view(parts: list[Any]) -> Group:
        if num_samples == 1:
            return Group(*parts)
        return Group(*[g for i, p in enumerate(parts, 1) for g in (Rule(f"sample {i}"), p)])

    with Live(view(texts), console=console, refresh_per_second=12, vertical_overflow="visible") as live:
        for pieces in stream:
            for text, sample, piece in zip(texts, samples, pieces):
                text.append(piece)
                sample.append(piece)
            live.update(view(texts))
        finals = ["".join(s) for s in samples]
        if index is not None:
            live.update(view([to_rich(index.attribute(t, min_quote), prefix=prime) for t in finals]))
    return finals
