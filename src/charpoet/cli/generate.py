"""``charpoet generate``: sample text from a trained run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from charpoet.cli import app
from charpoet.errors import ConfigError, CorpusError


@app.command()
def generate(
    checkpoint_path: Annotated[Path, typer.Option(help="Run directory to generate from.")] = Path("runs/default"),
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
    options = SampleOptions(length, temperature, top_k, top_p, num_samples, seed).validate()
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise ConfigError(f"--device must be one of auto, cpu, cuda, mps; got {device!r}")
    lm = load(checkpoint_path, weights=weights, device=device)
    prime = prime if prime is not None else "\n"
    stream = lm.stream(prime, options)
    out = sys.stdout
    if num_samples == 1:
        out.write(prime)
        for pieces in stream:
            out.write(pieces[0])
            out.flush()
        out.write("\n")
        return
    samples = [[] for _ in range(num_samples)]
    for pieces in stream:
        for sample, piece in zip(samples, pieces):
            sample.append(piece)
    for i, sample in enumerate(samples, 1):
        out.write(f"--- sample {i} ---\n{prime}{''.join(sample)}\n")
    out.flush()
