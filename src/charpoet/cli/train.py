"""``charpoet train``: build a run configuration from the flags and train."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charpoet.checkpoint import TRAIN_LOG, RunDir, RunLogHandler, check_compatible
from charpoet.cli import _main_rank, app
from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from charpoet.errors import CharpoetError, CharpoetWarning, ConfigError
from charpoet.runs import JOB, corpus_name, expand_job
from charpoet.storage import RunLocation

if TYPE_CHECKING:
    from charpoet.train import TrainEvent

DATA, MODEL, OPTIM, OUTPUT = "Data", "Model", "Optimisation", "Run and output"


def _opt(help: str, panel: str, *names: str) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False)


@app.command()
def train(
    text_path: Annotated[list[str] | None, _opt("Text file, directory or glob, or an fsspec URL of one (s3://, gs://, memory://); repeatable. Default: the built-in corpus.", DATA)] = None,
    valid_path: Annotated[list[str] | None, _opt("Validation texts (repeatable): the training texts are then used whole.", DATA)] = None,
    test_path: Annotated[list[str] | None, _opt("Test texts (repeatable), scored at the end of training: loss, bpc, accuracy in metrics.json and `charpoet runs`.", DATA)] = None,
    data_prefix: Annotated[str | None, _opt("DIR/NAME: train on NAME.train.txt, validate on NAME.valid.txt, test on NAME.test.txt (if there), as `corpus split` writes them.", DATA)] = None,
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
    stats_every: Annotated[str | None, _opt("Validation pass and statistics line every DURATION (20s, 3m, 1h) or N steps (500steps) [default: 3m].", OUTPUT)] = None,
    snapshot_every: Annotated[str | None, _opt("Save the state to resume from every DURATION or N steps [default: 3m].", OUTPUT)] = None,
    sample_every: Annotated[str | None, _opt("Highlighted samples every DURATION or N steps, once the loss is below --sample-below-loss [default: 10m].", OUTPUT)] = None,
    sample_below_loss: Annotated[float | None, _opt("Start sampling when the training loss is below this [default: 1.5].", OUTPUT)] = None,
    sample_temperatures: Annotated[str | None, _opt("Comma-separated sampling temperatures [default: 0.6,0.8,1.0].", OUTPUT)] = None,
    sample_length: Annotated[int | None, _opt("Tokens per sample [default: 400].", OUTPUT)] = None,
    early_stop_patience: Annotated[int | None, _opt("Stop after this many evaluations without a better validation loss; 0 = off [default: 0].", OPTIM)] = None,
    nan_lr_factor: Annotated[float | None, _opt("After a NaN/Inf loss, roll back to the last snapshot and scale the learning rate by this [default: 0.5].", OPTIM)] = None,
    max_rollbacks: Annotated[int | None, _opt("Consecutive rollbacks before giving up [default: 3].", OPTIM)] = None,
    eval_every: Annotated[int | None, typer.Option(hidden=True)] = None,
    seed: Annotated[int | None, _opt("Random seed [default: 1234].", OPTIM)] = None,
    device: Annotated[str | None, _opt("auto, cpu, cuda or mps [default: auto].", OPTIM)] = None,
    precision: Annotated[str | None, _opt("auto, fp32 or bf16 training steps; auto = bf16 on GPUs that support it and CPUs with native bf16 [default: auto].", OPTIM)] = None,
    compile: Annotated[bool | None, _opt("torch.compile the training step: faster on GPUs, after a start-up of a minute or so [default: off].", OPTIM, "--compile/--no-compile")] = None,
    checkpoint_path: Annotated[str, _opt("Run directory or fsspec URL (s3://, gs://, memory://); %JOB% becomes a name made of the corpus and the architecture [default: runs/default].", OUTPUT)] = "runs/default",
    restore: Annotated[bool, _opt("Require an existing run to continue (the default continues one if it exists).", OUTPUT)] = False,
    fresh: Annotated[bool, _opt("Start over even if --checkpoint-path holds a run (the old run is moved aside).", OUTPUT)] = False,
    tensorboard: Annotated[bool | None, _opt("Write TensorBoard logs to RUN/tensorboard [default: on when tensorboard is installed].", OUTPUT, "--tensorboard/--no-tensorboard")] = None,
    log_path: Annotated[Path | None, _opt("Log file [default: RUN/train.log].", OUTPUT)] = None,
    summary_dir: Annotated[str | None, _opt("TensorBoard logs in DIR/RUN-NAME instead of RUN/tensorboard, so many runs share one TensorBoard root (a DIR with %JOB% is used as it is).", OUTPUT)] = None,
) -> None:
    """Train a model, or continue the run in --checkpoint-path; Ctrl-C stops cleanly and keeps the last state."""
    given = {k: v for k, v in locals().items() if v is not None}
    if "eval_every" in given:  # the old name of --stats-every N steps
        given.setdefault("stats_every", f"{given.pop('eval_every')}steps")
    if "sample_temperatures" in given:
        given["sample_temperatures"] = _floats("sample-temperatures", given["sample_temperatures"])
    named = [f"--{k.replace('_', '-')}" for k in ("text_path", "library", "corpus") if given.get(k)]
    if len(named) > 1:
        raise ConfigError(f"give only one of {' and '.join(named)}")
    if restore and fresh:
        raise ConfigError("give --restore or --fresh, not both")
    if "valid_fraction" in given and ("valid_path" in given or "data_prefix" in given):
        raise ConfigError("--valid-fraction holds out part of the training texts; with --valid-path (or --data-prefix) "
                          "the validation texts are given apart: give one or the other")
    if "data_prefix" in given:
        from charpoet.config import resolve_prefix

        if {"text_path", "library", "corpus", "valid_path", "test_path"} & given.keys():
            raise ConfigError("--data-prefix names the training, validation and test files itself: give it without "
                              "--text-path, --library, --corpus, --valid-path and --test-path")
        resolved = resolve_prefix(DataConfig(data_prefix=given.pop("data_prefix")))
        given.update(text_path=resolved.text_path, valid_path=resolved.valid_path, test_path=resolved.test_path)
    overrides = _overrides(given)
    new_run_overrides = _new_run(overrides, given)
    if JOB in checkpoint_path:
        new = _apply(RunConfig(), new_run_overrides).validate()
        checkpoint_path = expand_job(checkpoint_path, new, corpus_name(new.data))
    location = RunLocation(checkpoint_path)
    if not _main_rank():
        _follow(location, overrides, new_run_overrides, fresh)
        return
    location.pull()
    run = RunDir(location.local)
    run.check_writable()  # a read-only or misplaced run fails here, before any work
    resume = run.exists() and not fresh
    texts = None  # texts named when continuing a run (checked against the run's own), or for --fresh
    if restore or resume:
        stored = run.require().read_config()
        check_compatible(stored, overrides)
        sources = {k: overrides["data"].pop(k) for k in ("text_path", "corpus", "library") if k in overrides["data"]}
        for part in ("valid_path", "test_path"):  # the run keeps copies of these texts: only the same paths pass
            if overrides["data"].get(part) and overrides["data"][part] != getattr(stored.data, part):
                flag = "--" + part.replace("_", "-")
                raise ConfigError(f"the run in {run.path} was trained with other {flag} texts "
                                  f"({', '.join(getattr(stored.data, part)) or 'none'}); continue it without {flag} "
                                  "(it keeps its own copies), or start a new run with --fresh")
        if sources:
            from charpoet.corpus import load_library

            texts = load_library(sources.get("text_path"), sources.get("corpus"), sources.get("library"))
        config = _apply(stored, overrides)
    else:
        config = _apply(RunConfig(), new_run_overrides)
    config.validate()
    if fresh and run.exists():  # only once the new run's options and texts are known to be good
        from charpoet.corpus import load_data_library

        texts = load_data_library(config.data)
        _move_aside(location, run)

    from charpoet.cli.progress import TrainDisplay
    from charpoet.monitor import TrainingMonitor
    from charpoet.train import train as train_run

    board = _summary_dir(summary_dir, config, run.path) if summary_dir else None
    created = not run.path.exists()
    run.path.mkdir(parents=True, exist_ok=True)
    handler = _log_to(log_path or run.path / TRAIN_LOG)
    try:
        with TrainDisplay() as display, TrainingMonitor(run.path, tensorboard=tensorboard, tensorboard_dir=board,
                                                        on_samples=display.show_samples) as monitor:
            def on_event(event: TrainEvent) -> None:
                display(event)
                monitor(event)
                if location.remote and event.kind in ("eval", "snapshot", "end"):
                    try:
                        location.push()
                    except CharpoetError as exc:  # a network blip must not end a long run
                        warnings.warn(f"{exc}; training goes on, the next snapshot retries the upload",
                                      CharpoetWarning, stacklevel=2)

            if location.remote:
                display.console.print(f"run {location.url} (staged in {location.local})")
            result = train_run(config, run.path, restore=resume, library=texts, on_event=on_event,
                               on_prepared=location.push if location.remote else None)
    except BaseException:
        if location.remote and run.exists():  # upload what there is, but report the error that stopped training
            with contextlib.suppress(CharpoetError):
                location.push()
        raise
    finally:
        logging.getLogger("charpoet").removeHandler(handler)
        handler.close()
        if created and not run.exists():  # a new run that failed before it began leaves nothing behind
            shutil.rmtree(run.path, ignore_errors=True)
    if location.remote:
        try:
            location.push()  # the log and anything the last event did not carry
        except CharpoetError as exc:
            raise CharpoetError(f"{exc}; the run is kept in {location.local}, and the next "
                                f"`charpoet train --checkpoint-path {location.url}` uploads it") from None
    if result.stop_reason == "diverged":
        raise CharpoetError(
            f"training diverged: the loss stayed NaN/Inf after {config.train.max_rollbacks} rollbacks; "
            f"the last good state is kept in {checkpoint_path} (try a lower --learning-rate)"
        )
    if result.interrupted:
        raise typer.Exit(130)


def _summary_dir(summary_dir: str, config: RunConfig, run: Path) -> Path:
    """--summary-dir: DIR/<run name>, or DIR itself with %JOB% expanded; a local directory that can be made."""
    from charpoet.storage import is_remote

    if is_remote(summary_dir):
        raise ConfigError(f"--summary-dir must be a local directory, not {summary_dir}")
    if JOB in summary_dir:
        board = Path(expand_job(summary_dir, config, corpus_name(config.data)))
    else:
        board = Path(summary_dir) / Path(os.path.abspath(run)).name
    board = board.expanduser()
    if board.exists() and not board.is_dir():
        raise ConfigError(f"--summary-dir {board}: is a file, not a directory")
    return board


def _follow(location: RunLocation, overrides: dict[str, dict[str, Any]], new_run_overrides: dict[str, dict[str, Any]],
            fresh: bool) -> None:
    """A rank other than 0 under torchrun: rank 0 pulls, prepares, writes, shows and uploads the run; this
    process trains its share of every batch, quietly (``charpoet.distributed``)."""
    from charpoet.train import train as train_run

    run = RunDir(location.local)
    try:  # the options as rank 0 sees them, for the checks every rank makes before it joins
        existing = run.read_config() if run.exists() and not fresh else None
    except CharpoetError:
        existing = None  # rank 0 is starting it over
    sources = ("text_path", "corpus", "library")
    if existing is not None:
        config = _apply(existing, {k: {f: v for f, v in d.items() if f not in sources} for k, d in overrides.items()})
    else:
        config = _apply(RunConfig(), new_run_overrides)
    result = train_run(config.validate(), run.path, on_node=location.pull if location.remote else None)
    if result.interrupted:
        raise typer.Exit(130)


def _floats(flag: str, text: str) -> list[float]:
    try:
        return [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ConfigError(f"--{flag} must be comma-separated numbers, got {text!r}") from None


def _move_aside(location: RunLocation, run: RunDir) -> None:
    """--fresh: keep the old run next to the new one (locally), or delete it (remote)."""
    if location.remote:
        location.remove()
        shutil.rmtree(run.path, ignore_errors=True)
        warnings.warn(f"--fresh: deleted the old run at {location.url}", CharpoetWarning, stacklevel=2)
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(os.path.abspath(run.path))  # a symlink is moved itself, not its target
    aside = path.with_name(f"{path.name}.old-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.old-{stamp}-{n}")
    path.rename(aside)
    warnings.warn(f"--fresh: moved the old run to {aside}", CharpoetWarning, stacklevel=2)


def _overrides(given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort the flags that were given into config sections by field name."""
    sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
    out: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            if f.name in given:
                out[section][f.name] = given[f.name]
    return out


def _new_run(overrides: dict[str, dict[str, Any]], given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A new run's overrides: with --max-minutes and no model size, the size is chosen from the
    budget, and the dropout with it unless --drop-rate is given (``charpoet.sizing``)."""
    if "max_minutes" not in given or {"rnn_size", "num_layers", "embedding_size"} & given.keys():
        return overrides
    model = {"auto_size": True, **({} if "drop_rate" in given else {"auto_dropout": True})}
    return {**overrides, "model": {**overrides["model"], **model}}


def _apply(config: RunConfig, overrides: dict[str, dict[str, Any]]) -> RunConfig:
    d = config.to_dict()
    for section, values in overrides.items():
        d[section].update(values)
    return RunConfig.from_dict(d)


def _log_to(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RunLogHandler(path)  # whole lines; a full disk stops training with one line
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("charpoet")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler
