"""``charpoet train``: build a run configuration from the flags and train."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from charpoet.checkpoint import RunDir, check_compatible
from charpoet.cli import app
from charpoet.cli.progress import TrainDisplay
from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from charpoet.errors import ConfigError

DATA, MODEL, OPTIM, OUTPUT = "Data", "Model", "Optimisation", "Run and output"


def _opt(help: str, panel: str, *names: str) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False)


@app.command()
def train(
    text_path: Annotated[list[str] | None, _opt("Text file, directory or glob (repeatable). Default: the built-in corpus.", DATA)] = None,
    library: Annotated[str | None, _opt("Book library built with `charpoet corpus add`: a name or a directory.", DATA)] = None,
    corpus: Annotated[str | None, _opt("Built-in corpus when neither --text-path nor --library is given [default: shakespeare].", DATA)] = None,
    tokenizer: Annotated[str | None, _opt("char or word [default: char].", DATA)] = None,
    max_vocab: Annotated[int | None, _opt("Word tokenizer: vocabulary cap, rest is <unk> [default: 10000].", DATA)] = None,
    valid_fraction: Annotated[float | None, _opt("Last fraction of every source held out [default: 0.1].", DATA)] = None,
    seq_len: Annotated[int | None, _opt("Truncated BPTT length in tokens [default: 128].", DATA)] = None,
    batch_size: Annotated[int | None, _opt("Parallel streams per batch [default: 64].", DATA)] = None,
    cell: Annotated[str | None, _opt("lstm or gru [default: lstm].", MODEL)] = None,
    num_layers: Annotated[int | None, _opt("Stacked recurrent layers [default: 2].", MODEL)] = None,
    rnn_size: Annotated[int | None, _opt("Hidden units per layer [default: 384].", MODEL)] = None,
    embedding_size: Annotated[int | None, _opt("Token embedding size [default: 64].", MODEL)] = None,
    drop_rate: Annotated[float | None, _opt("Dropout between layers and before the output [default: 0.25].", MODEL)] = None,
    layer_norm: Annotated[bool | None, _opt("Layer normalisation after each layer [default: off].", MODEL, "--layer-norm/--no-layer-norm")] = None,
    learning_rate: Annotated[float | None, _opt("Peak AdamW learning rate [default: 0.003].", OPTIM)] = None,
    min_lr_ratio: Annotated[float | None, _opt("Cosine decays to learning rate x this [default: 0.1].", OPTIM)] = None,
    warmup_steps: Annotated[int | None, _opt("Linear warm-up steps [default: 100].", OPTIM)] = None,
    schedule: Annotated[str | None, _opt("cosine or constant [default: cosine].", OPTIM)] = None,
    weight_decay: Annotated[float | None, _opt("AdamW weight decay [default: 0.01].", OPTIM)] = None,
    clip_norm: Annotated[float | None, _opt("Clip gradients to this global norm, 0 = off [default: 5.0].", OPTIM)] = None,
    num_epochs: Annotated[float | None, _opt("Stop after this many passes over the training split [default: 20].", OPTIM)] = None,
    max_minutes: Annotated[float | None, _opt("Stop after this many minutes of training; the cosine schedule spans them [default: no limit].", OPTIM)] = None,
    eval_every: Annotated[int | None, _opt("Steps between validation passes and checkpoints [default: 500].", OPTIM)] = None,
    seed: Annotated[int | None, _opt("Random seed [default: 1234].", OPTIM)] = None,
    device: Annotated[str | None, _opt("auto, cpu, cuda or mps [default: auto].", OPTIM)] = None,
    precision: Annotated[str | None, _opt("auto, fp32 or bf16 training steps; auto = bf16 on CPUs with native bf16 [default: auto].", OPTIM)] = None,
    checkpoint_path: Annotated[Path, _opt("Run directory: checkpoints, config, vocabulary, metrics.", OUTPUT)] = Path("runs/default"),
    restore: Annotated[bool, _opt("Continue the run in --checkpoint-path where it stopped.", OUTPUT)] = False,
    log_path: Annotated[Path | None, _opt("Log file [default: RUN/train.log].", OUTPUT)] = None,
) -> None:
    """Train a model; Ctrl-C stops cleanly and keeps the last state."""
    given = {k: v for k, v in locals().items() if v is not None}
    named = [f"--{k.replace('_', '-')}" for k in ("text_path", "library", "corpus") if given.get(k)]
    if len(named) > 1:
        raise ConfigError(f"give only one of {' and '.join(named)}")
    overrides = _overrides(given)
    run = RunDir(checkpoint_path)
    texts = None  # texts named on restore, to check against the run's own
    if restore:
        stored = run.require().read_config()
        check_compatible(stored, overrides)
        # Texts named on restore are only checked against the run's own stored library.
        sources = {k: overrides["data"].pop(k) for k in ("text_path", "corpus", "library") if k in overrides["data"]}
        if sources:
            from charpoet.corpus import load_library

            texts = load_library(sources.get("text_path"), sources.get("corpus"), sources.get("library"))
        config = _apply(stored, overrides)
    else:
        config = _apply(RunConfig(), overrides)
    config.validate()

    from charpoet.train import train as train_run

    handler = _log_to(log_path or run.path / "train.log")
    try:
        with TrainDisplay() as display:
            result = train_run(config, run.path, restore=restore, library=texts, on_event=display)
    finally:
        logging.getLogger("charpoet").removeHandler(handler)
        handler.close()
    if result.interrupted:
        raise typer.Exit(130)


def _overrides(given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort the flags that were given into config sections by field name."""
    sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
    out: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            if f.name in given:
                out[section][f.name] = given[f.name]
    return out


def _apply(config: RunConfig, overrides: dict[str, dict[str, Any]]) -> RunConfig:
    d = config.to_dict()
    for section, values in overrides.items():
        d[section].update(values)
    return RunConfig.from_dict(d)


def _log_to(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("charpoet")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler
