"""The training loop: stateful truncated BPTT with AdamW, a warm-up + cosine schedule,
global-norm clipping, and on their own cadences (a duration or a step count) evaluation,
snapshots and samples.

``train(config, run_dir)`` starts a run; ``train(..., restore=True)`` continues one
exactly where it stopped (weights, optimizer, schedule, data cursor, carried hidden
state and random generators all come back); a killed process loses at most one snapshot
interval. A non-finite loss or gradient never reaches the weights: the run rolls back to
its last snapshot with a lower learning rate. Progress is reported through ``on_event``
callbacks and ``metrics.jsonl``; nothing here prints. SIGINT/SIGTERM stop the loop after
the current step and save the last state, so Ctrl-C never loses work.

On the CPU a step (and an evaluation) runs in shards of the batch, one per core
(``charpoet.shards``); with ``ModelConfig.auto_size`` a new run sizes its model to the time
budget and the measured speed first (``charpoet.sizing``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from charpoet.cadence import Cadence
from charpoet.checkpoint import (
    BEST, LAST, LIBRARY_MANIFEST, LIBRARY_TEXTS, TEST_MANIFEST, TEST_TEXTS, TOKENS_DIR, VALID_MANIFEST, VALID_TEXTS,
    VOCAB, RunDir, RunWriteError, TrainingState,
    check_compatible, load_training_state, save_training_state,
)
from charpoet.config import ARCHITECTURE_KEYS, RunConfig, TrainConfig, resolve_prefix
from charpoet.corpus import Library, library_from_paths, load_data_library
from charpoet.corpus.cache import remove_temp_files
from charpoet.data import (
    Dataset, EvalRows, StreamBatches, encode_apart, encode_known, fit_tokenizer, tokenize_library,
)
from charpoet.distributed import DistributedStep, Group, join, split_rows
from charpoet.errors import CharpoetWarning, CheckpointError, ConfigError, CorpusError, PeerError
from charpoet.model import RNNLM, State, count_parameters, sequence_loss
from charpoet.resources import require_memory
from charpoet.shards import ShardedStep, shard_bounds
from charpoet.sizing import auto_size
from charpoet.tokenizer import Tokenizer
from charpoet.tuning import tune_allocator

log = logging.getLogger("charpoet")
LN2 = math.log(2.0)


@dataclass
class TrainEvent:
    """What the loop reports; ``kind`` is one of:

    start     ``info``: the run's description, ``run_dir``, ``start_step``
    step      every ``log_every`` steps: ``loss``, ``lr``, ``chars_per_sec``; ``info["grad_norm"]``
    eval      the statistics cadence: ``metrics`` (validation loss, bpc, accuracy, remaining
              time ...); ``info["preview"]``: a training window ``y`` over the argmax ``yp``
    snapshot  the last state was written (``info["path"]``)
    sample    the sample cadence: ``info`` holds the live model, tokenizer, config, library,
              temperatures, length and seed, for a callback to generate from (in eval mode,
              restoring train mode, with its own random generator)
    rollback  a non-finite loss or gradient: back to the last snapshot, learning rate scaled
    end       ``info["stop_reason"]``: epochs, time, steps, interrupted, early-stop or diverged
    """

    kind: str
    step: int
    epoch: float
    progress: float  # 0..1 towards the stopping point (epochs or time budget)
    loss: float | None = None  # mean training loss since the previous step event
    lr: float = 0.0
    chars_per_sec: float = 0.0
    elapsed: float = 0.0  # training seconds of the run, across restores
    metrics: dict[str, Any] | None = None  # evaluation results (eval and end events)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: float
    best_val_loss: float | None
    history: list[dict[str, Any]]
    interrupted: bool
    stop_reason: str  # epochs | time | steps | interrupted


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("--device cuda was asked for but no CUDA device is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CheckpointError("--device mps was asked for but MPS is not available")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 autocast on a GPU that supports it or a CPU with native bf16 (AVX512-BF16/AMX), else fp32.

    On such CPUs oneDNN's bf16 LSTM kernels train about 1.3x faster (cuDNN's on GPUs more); weights,
    optimizer state and the loss stay fp32. Evaluation and generation always run in fp32.
    """
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
        except (AttributeError, RuntimeError):
            pass
    return torch.float32


def get_lr(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay by progress."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.learning_rate
    low = cfg.learning_rate * cfg.min_lr_ratio
    ratio = min(max(progress, 0.0), 1.0)
    return low + 0.5 * (cfg.learning_rate - low) * (1.0 + math.cos(math.pi * ratio))


def estimate_loss(model: RNNLM, rows: EvalRows | torch.Tensor, chars_per_token: float, chunk: int = 256,
                  shards: ShardedStep | DistributedStep | None = None, group: Group | None = None) -> dict[str, float]:
    """Stateful pass over (B, L) validation rows: loss (nats/token), bpc, accuracy.

    ``shards`` spreads the rows over its threads (each row is an independent stream); with a
    ``group`` of several processes each rank takes its share of the rows and the sums are added up.
    """
    if isinstance(rows, torch.Tensor):
        rows = EvalRows(rows.cpu().numpy())
    group = group or Group()
    first, last = shard_bounds(rows.shape[0], group.world)[group.rank] if rows.shape[0] >= group.world else (0, 0)
    mine = rows.part(first, last) if group.distributed else rows
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    parts = [mine.part(a, b) for a, b in shard_bounds(mine.shape[0], shards.shards if shards else 1) if b > a]
    try:
        sums = shards.map(lambda part: _eval_rows(model, part, chunk, device), parts) if shards else \
            [_eval_rows(model, part, chunk, device) for part in parts]
    finally:
        model.train(was_training)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # summed loss, correct guesses, tokens
    for part_sums in sums:
        totals += part_sums
    if rows.shape[0] < group.world and group.main:  # fewer rows than ranks: rank 0 evaluates them all
        totals += sum((_eval_rows(model, rows.part(a, b), chunk, device)
                       for a, b in shard_bounds(rows.shape[0], 1) if b > a), torch.zeros_like(totals))
    total_loss, correct, count = group.all_reduce_sum(totals).tolist()
    loss = total_loss / count
    return {
        "val_loss": loss,
        "val_bpc": loss / LN2 / chars_per_token,
        "val_accuracy": correct / count,
        "val_tokens": int(count),
    }


@torch.no_grad()  # (in the calling thread: a shard's thread runs it too)
def _eval_rows(model: RNNLM, rows: EvalRows, chunk: int, device: torch.device) -> torch.Tensor:
    """Summed loss, correct guesses and tokens (float64, (3,)) of a stateful pass over (b, L) rows."""
    state: State | None = None
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for x, y in rows.windows(chunk, device):  # (b, t) each, int64
        logits, state = model(x, state)  # (b, t, V)
        flat = logits.reshape(-1, logits.shape[-1])
        total_loss += torch.nn.functional.cross_entropy(flat, y.reshape(-1), reduction="sum").double()
        correct += (flat.argmax(-1) == y.reshape(-1)).sum()
        count += y.numel()
    return torch.stack([total_loss, correct.double(), torch.tensor(float(count), dtype=torch.float64, device=device)])


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """Turn SIGINT/SIGTERM into a flag checked between steps; a second SIGINT aborts."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def prepare_run(
    config: RunConfig, run: RunDir, restore: bool, library: Library | None
) -> tuple[RunConfig, Library, Tokenizer]:
    """Library and tokenizer of a new run, or the stored ones of a run being restored.

    Checks first that the run directory can be written, before the slow parts.
    """
    if restore:
        run.require().check_writable()
        stored = run.read_config()
        config_given = config.data
        if config.model.auto_size:  # the size was chosen when the run was created
            config = replace(config, model=replace(config.model, rnn_size=stored.model.rnn_size))
        check_compatible(stored, {section: {key: getattr(getattr(config, section), key) for key in keys}
                                  for section, keys in ARCHITECTURE_KEYS.items()})
        config = replace(config, model=replace(config.model, vocab_size=stored.model.vocab_size),
                         data=replace(config.data, eval_max_tokens=stored.data.eval_max_tokens,  # comparable losses
                                      valid_path=stored.data.valid_path, test_path=stored.data.test_path))
        for part, given in (("valid", config_given.valid_path), ("test", config_given.test_path)):
            if given and given != getattr(stored.data, f"{part}_path"):
                flag = f"--{part}-path"
                raise CheckpointError(f"the run in {run.path} was trained with other {flag} texts "
                                      f"({', '.join(getattr(stored.data, f'{part}_path')) or 'none'}); continue it "
                                      f"without {flag} (it keeps its own copies), or start a new run")
        stored_library = run.read_library()
        if library is not None and library.fingerprint() != stored_library.fingerprint():
            raise CheckpointError(
                f"the run in {run.path} was trained on other texts ({stored_library.name}); continue "
                "it without --text-path, start over with --fresh, or use another --checkpoint-path"
            )
        return config, stored_library, run.read_vocab()
    if run.exists():
        raise CheckpointError(
            f"{run.path} already holds a run; continue it (the default), start over with --fresh, "
            "or choose another --checkpoint-path"
        )
    run.check_writable()
    if library is None:
        library = load_data_library(config.data)
    # validation and test sources given apart (checked before anything is written): the run keeps copies too
    apart = {part: _texts_apart(f"--{part}-path", paths) for part, paths in (("valid", config.data.valid_path),
                                                                              ("test", config.data.test_path)) if paths}
    run.path.mkdir(parents=True, exist_ok=True)
    library = run.write_library(library)  # copied in once, streamed: from now on the run reads its own copy
    for part, texts in apart.items():
        run.write_library(texts, part)
    # The vocabulary covers the whole library (as nanoGPT and word_language_model do), so a character
    # that only occurs in a validation part can still be evaluated; texts given apart with --valid-path
    # and --test-path do not shape it (what they hold beyond it is counted: data.encode_known).
    tokenizer = fit_tokenizer(config.data.tokenizer, library, config.data.max_vocab)
    config = replace(config, model=replace(config.model, vocab_size=tokenizer.vocab_size))
    return config, library, tokenizer


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    restore: bool | None = None,
    library: Library | None = None,
    on_event: Callable[[TrainEvent], None] | None = None,
    stop_after_steps: int | None = None,
    log_every: int = 10,
    on_prepared: Callable[[], None] | None = None,
    on_node: Callable[[], None] | None = None,
) -> TrainResult:
    """Train (or continue) the run in ``run_dir``; returns when a stopping rule fires.

    ``restore=None`` continues the run in ``run_dir`` if there is one, else starts it;
    ``True`` requires a run, ``False`` refuses to touch one. ``config`` is the full
    configuration (for a restore: the stored one with allowed overrides applied).
    ``stop_after_steps`` ends this session early without changing the schedule, as if
    interrupted; the run can then be continued. A file of the run that cannot be written (a
    full disk) stops training with ``RunWriteError``, whose message says which snapshot is intact.

    Under torchrun (``charpoet.distributed``) rank 0 prepares the run and the others read it.
    When ``run_dir`` is a local copy of remote storage, ``on_prepared`` (rank 0) uploads the
    prepared run and ``on_node`` (the first rank of every other machine) downloads it.
    """
    config.validate()
    config = replace(config, data=resolve_prefix(config.data))  # --data-prefix: the paths it names, stored
    run = RunDir(run_dir)
    if restore is None:
        restore = run.exists()
    group = join()  # a group of one outside torchrun
    session: _Session | None = None
    created = not run.path.exists()
    existed = {name for name in NEW_RUN_FILES if (run.path / name).exists()}
    try:
        if group.distributed and group.main:  # (the others wait for the run rank 0 prepares, options and all)
            split_rows(config.data.batch_size, group.world, group.rank)
        if group.main:
            config, library, tokenizer = prepare_run(config, run, restore, library)
            session = _Session(config, run, library, tokenizer, on_event or (lambda event: None),
                               new_run=not restore, group=group)
            _open_run(session, run, restore, library, tokenizer)
            if on_prepared is not None and group.distributed:
                on_prepared()
            group.barrier()  # the run is on disk: the other ranks may read it
            group.barrier()  # ... and the other machines have fetched it
        else:
            group.barrier()  # rank 0 prepares the run (library, tokens, vocabulary, first snapshot)
            if group.first_on_node and on_node is not None:
                on_node()
                prepare_tokens(run.path)  # this machine's token files, before its other ranks read them
            group.barrier()
            if not run.exists():
                raise CheckpointError(f"rank {group.rank} cannot see the run rank 0 prepared in {run.path}: on "
                                      "several machines, give a --checkpoint-path on a shared file system or an "
                                      "fsspec URL (s3://, gs://...)")
            follower = _ReadOnlyRun(run.path)
            session = _Session(follower.read_config(), follower, follower.read_library(), follower.read_vocab(),
                               lambda event: None, new_run=False, group=group)
            session.on_node = on_node
            session.restore()
        session.start_group()
        result = session.run(stop_after_steps, log_every)
        group.barrier()  # every rank is done with the collectives before any leaves the group
        return result
    except RunWriteError as exc:  # never train on without snapshots: stop, and say what is safe
        if session is None:
            raise  # before any work (an unwritable run): the message says all
        saved = run.snapshot_step()
        kept = f"the last good snapshot (step {saved}) is intact" if saved is not None else "no snapshot was written yet"
        fix = "free some space" if exc.disk_full else "fix that"
        raise RunWriteError(f"{exc}; training stopped at step {session.step} and {kept} in {run.path}: "
                            f"{fix} and run the same command again to continue", exc.errno) from None
    except RuntimeError as exc:  # with several processes: another rank is gone (killed, or its machine)
        if not group.distributed or not isinstance(exc, torch.distributed.DistError) and not any(
                word in str(exc) for word in ("gloo", "NCCL", "nccl", "Connection")):
            raise
        saved = run.snapshot_step()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        kept = f"the last snapshot (step {saved}) is intact" if saved is not None else "no snapshot was written yet"
        raise PeerError(f"rank {group.rank} lost contact with the other ranks ({first}); {kept}: torchrun "
                        "--max-restarts continues from it") from None
    finally:
        if session is not None:
            session.stepper.close()  # the thread pool and the intra-op thread count, or DDP (before the group goes)
        if not restore and group.main and not run.exists():  # a new run that failed before it began
            _discard(run, created, existed)
        group.close()


NEW_RUN_FILES = (LIBRARY_MANIFEST, LIBRARY_TEXTS, VALID_MANIFEST, VALID_TEXTS, TEST_MANIFEST, TEST_TEXTS, VOCAB,
                 TOKENS_DIR)  # what a new run writes before config.json


def _discard(run: RunDir, created: bool, existed: set[str]) -> None:
    """Remove what a new run wrote before it failed (its sources, vocabulary and tokens), never a
    file that was there before it began, and its directory if it made it and it is empty."""
    if not run.path.is_dir():
        return
    for name in set(NEW_RUN_FILES) - existed:
        path = run.path / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        remove_temp_files(run.path, name)  # a write it left half done
    if created:
        with contextlib.suppress(OSError):
            run.path.rmdir()  # only if empty: nothing else of the user's is touched


def prepare_tokens(run_dir: str | Path) -> None:
    """Make (or check) the token files of a stored run in ``RUN/tokens``."""
    run = RunDir(run_dir)
    config = run.read_config()
    tokenize_library(run.read_library(), run.read_vocab(), config.data.valid_fraction, run.path / TOKENS_DIR)


def _texts_apart(flag: str, paths: list[str]) -> Library:
    """The validation or test texts given apart; an error names the flag they came with."""
    try:
        return library_from_paths(paths)
    except CorpusError as exc:
        raise CorpusError(f"{flag}: {exc}") from None


def _check_scorable(library: Library, tokenizer: Tokenizer) -> None:
    """Before training: every test source has at least two tokens in the vocabulary to score."""
    for source in library.sources:
        known = 0
        for chunk in encode_known(tokenizer, source):
            known += len(chunk.ids)
            if known >= 2:
                break
        if known < 2:
            raise ConfigError(f"test text {source.name}: nothing to score: {known} of its tokens are in the "
                              "training texts' vocabulary (at least 2 are needed)")


def _open_run(session: _Session, run: RunDir, restore: bool, library: Library, tokenizer: Tokenizer) -> None:
    """Rank 0 (or the only process): restore the snapshot, or write a new run's files and first snapshot."""
    if restore:
        run.remove_stale_temp_files()  # a killed process may have left half-written temp files
    if restore and (run.path / LAST).exists():
        session.restore()
    elif restore:
        warnings.warn(f"{run.path} has no checkpoint yet; starting it from step 0", CharpoetWarning, stacklevel=3)
    else:
        run.write_vocab(tokenizer)
    run.write_config(session.config)
    run.cut_metrics_log(session.step)  # records written after the snapshot belong to a lost future
    if not (run.path / LAST).exists():
        session.save_last()  # a snapshot to roll back to from the very first step


class _ReadOnlyRun(RunDir):
    """The run as ranks other than 0 see it: they read it, rank 0 writes it."""

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        pass

    def write_config(self, config: RunConfig) -> None:
        pass

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        pass

    def append_metrics_log(self, record: dict[str, Any], sync: bool = False) -> None:
        pass

    def cut_metrics_log(self, step: int) -> None:
        pass


STOP_REASONS = ("epochs", "time", "steps", "interrupted", "early-stop", "diverged")


class _Session:
    """One training session of a run: the model, optimizer, data and counters."""

    def __init__(self, config: RunConfig, run: RunDir, library: Library, tokenizer: Tokenizer,
                 emit: Callable[[TrainEvent], None], new_run: bool = True, group: Group | None = None):
        tune_allocator()
        self.run_dir, self.library, self.tokenizer, self.emit = run, library, tokenizer, emit
        self.group = group or Group()
        self.device = self.group.place(resolve_device(config.train.device))
        self.dtype = resolve_precision(config.train.precision, self.device)
        torch.manual_seed(config.train.seed)
        # the token ids live in RUN/tokens, memory-mapped (encoded once, streamed; reused on a restart)
        self.valid_oov = 0  # validation characters (char) or words (word) outside the vocabulary
        if run.has_library("valid"):  # --valid-path: the training sources whole, the validation ones apart
            train_split = tokenize_library(library, tokenizer, 0.0, run.path / TOKENS_DIR).train
            valid_split, self.valid_oov = encode_apart(run.read_library("valid"), tokenizer)
            self.data = Dataset(train_split, valid_split)
            if len(valid_split) < 2:
                raise ConfigError(f"the validation texts have nothing to score: {len(valid_split)} of their "
                                  "tokens are in the training texts' vocabulary (at least 2 are needed)")
            if new_run and run.has_library("test"):
                _check_scorable(run.read_library("test"), tokenizer)
            if self.valid_oov and new_run:
                what = "characters" if tokenizer.kind == "char" else "words"
                rule = "skipped" if tokenizer.kind == "char" else "read as <unk>"
                warnings.warn(f"{self.valid_oov:,} {what} of the validation texts are not in the training texts' "
                              f"vocabulary: {rule} (counted as valid_oov in metrics.json)", CharpoetWarning, stacklevel=3)
        else:
            self.data = tokenize_library(library, tokenizer, config.data.valid_fraction, run.path / TOKENS_DIR)
        rows = None
        if self.group.distributed:
            most = len(self.data.train) // (config.data.seq_len + 1)
            if config.data.batch_size > most:
                raise ConfigError(f"the training split ({len(self.data.train):,} tokens) is too small for --batch-size "
                                  f"{config.data.batch_size} with --seq-len {config.data.seq_len}: use at most {most} "
                                  f"streams (a multiple of the {self.group.world} ranks)")
            rows = split_rows(config.data.batch_size, self.group.world, self.group.rank)
        self.batches = StreamBatches(self.data.train.ids, config.data.batch_size, config.data.seq_len, self.device,
                                     rows=rows)
        if self.batches.batch_size != config.data.batch_size:  # shrunk to fit a small corpus
            config = replace(config, data=replace(config.data, batch_size=self.batches.batch_size))
        self.sizing: dict[str, Any] | None = None
        if new_run and config.model.auto_size and config.train.max_minutes > 0:  # a continued run keeps its size
            config, self.sizing = auto_size(config, len(self.data.train), self.device, self.dtype,
                                            processes=self.group.world)
            log.info("auto size: %s", self.sizing)
        self.config, self.tc = config, config.train
        self.valid_rows = EvalRows.of(self.data.valid.ids, config.data.eval_max_tokens)  # a view, read a chunk at a time
        require_memory(training_memory(config), "training this model with this batch layout",
                       "use a smaller model (--rnn-size, --num-layers, --embedding-size) or batch (--batch-size, --seq-len)",
                       device=self.device)
        self.model = RNNLM(config.model).to(self.device)
        # fused AdamW: one kernel for all the updates (8x faster than the loop for 2 x 384 on one core)
        self.fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.tc.learning_rate,
                                           weight_decay=self.tc.weight_decay, fused=self.fused or None)
        # --compile: the training forward pass through torch.compile (the checkpoints keep the plain module)
        self.forward = torch.compile(self.model) if self.tc.compile else None
        # one process: the batch in shards over the cores (one shard when compiled); several (torchrun):
        # DDP, set up by start_group
        self.stepper: ShardedStep | DistributedStep = ShardedStep(
            self.model, self.batches.local_rows, self.device, cores=1 if self.tc.compile else None,
            loss_fn=sequence_loss, forward=self.forward)
        # The non-finite guard: on the CPU each step's loss and gradient norm are checked at once (a
        # sync costs nothing there); on a GPU with fused AdamW the check stays on the device, the
        # optimizer skips a bad step itself (found_inf) and the host looks every few steps.
        self.guard_every = guard_interval(self.device, self.fused)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)  # first non-finite step
        self.synced_stop = False  # a stop requested on any rank (several processes)
        self.step_seconds = 0.0  # rank 0's duration of the last step (several processes)
        self.failed_at: int | None = None  # the non-finite step the guard found, when it looks later
        self.on_node: Callable[[], None] | None = None  # fetches the run onto this machine (see train)
        self.budget = self.tc.max_minutes * 60.0
        # Counters: optimizer steps, completed epochs, batch index within the epoch, training seconds.
        self.step, self.epoch, self.cursor, self.elapsed = 0, 0, 0, 0.0
        self.best: float | None = None  # lowest validation loss on the way to this state (early stopping)
        self.best_saved: float | None = None  # validation loss of best.safetensors (may be newer)
        self.bad_evals = 0  # evaluations since the best one (early stopping)
        self.lr_scale = 1.0  # lowered by every rollback after a non-finite loss
        self.rollbacks = 0  # consecutive rollbacks (reset by the next good snapshot)
        self.grad_norm: float | torch.Tensor = 0.0
        self.last_rate = 0.0  # training characters per second, at the last step event
        self.bad_value = ""  # what was not finite, for the rollback message
        self.state: State | None = None
        self.history: list[dict[str, Any]] = []
        self.start_step = 0
        # (step, training seconds) of the last evaluation and sample, kept in snapshots so that
        # time cadences continue across a restart as in an uninterrupted run
        self.last_stats: tuple[int, float] = (0, 0.0)
        self.last_sample: tuple[int, float] = (0, 0.0)

    def start_group(self) -> None:
        """With several processes: wrap the model in DDP (every rank at once: it is a collective)."""
        if self.group.distributed:
            self.check_agreement()
            self.stepper.close()
            self.stepper = DistributedStep(self.model, self.group, sequence_loss, compile=self.tc.compile)

    def check_agreement(self) -> None:
        """With several processes: every rank holds the same snapshot (step, data cursor, weights), or a
        one-line error; a machine that read an older copy of the run must not train on."""
        with torch.no_grad():
            weights = sum(float(p.double().sum()) for p in self.model.parameters())
        mine = torch.tensor([self.step, self.epoch, self.cursor, weights, self.lr_scale], dtype=torch.float64,
                            device=self.device)
        if not self.group.same_everywhere(mine):
            raise CheckpointError(f"rank {self.group.rank} holds another snapshot of the run than rank 0 (step "
                                  f"{self.step}): every machine must see the same --checkpoint-path")

    def sync(self, loss: torch.Tensor, seconds: float, stop: bool) -> tuple[torch.Tensor, float]:
        """One all-reduce per step: the global mean loss, rank 0's step time, and whether any rank
        was asked to stop, so every rank takes the same decisions."""
        values = torch.stack([loss.double() / self.group.world,
                              torch.tensor(seconds if self.group.main else 0.0, dtype=torch.float64, device=loss.device),
                              torch.tensor(float(stop), dtype=torch.float64, device=loss.device)])
        values = self.group.all_reduce_sum(values)
        self.synced_stop = bool(values[2] > 0)
        return values[0].float(), float(values[1])

    # --- progress -----------------------------------------------------------------------
    @property
    def epoch_float(self) -> float:
        return self.epoch + self.cursor / self.batches.steps_per_epoch

    @property
    def progress(self) -> float:
        """Fraction of the run done: epochs, or the time budget if that binds first."""
        done = self.epoch_float / self.tc.num_epochs
        return max(done, self.elapsed / self.budget) if self.budget > 0 else done

    def remaining(self) -> float | None:
        """Estimated training seconds left, from the progress so far."""
        if self.progress <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, self.elapsed / self.progress * (1.0 - min(self.progress, 1.0)))

    def event(self, kind: str, loss: float | None = None, **kwargs: Any) -> TrainEvent:
        return TrainEvent(kind, self.step, self.epoch_float, min(self.progress, 1.0), loss,
                          self.optimizer.param_groups[0]["lr"], elapsed=self.elapsed, **kwargs)

    # --- the loop -----------------------------------------------------------------------
    def run(self, stop_after_steps: int | None, log_every: int) -> TrainResult:
        self.start_step = self.step
        self.emit(self.event("start", info={**self.describe(), "run_dir": self.run_dir.path,
                                            "start_step": self.step}))
        log.info("training %s on %s (%d sources, %d tokens) from step %d", self.run_dir.path,
                 self.library.name, len(self.library), len(self.data.train), self.step)
        stats, snapshot, sample = (Cadence.parse(self.tc.stats_every, "stats-every"),
                                   Cadence.parse(self.tc.snapshot_every, "snapshot-every"),
                                   Cadence.parse(self.tc.sample_every, "sample-every"))
        last = {"stats": self.last_stats, "snapshot": (self.step, self.elapsed), "sample": self.last_sample}
        self.model.train()
        session_steps, reason = 0, ""
        loss_sum, loss_count = torch.zeros((), device=self.device), 0
        last_loss: float | None = None
        log_time, log_step = time.perf_counter(), self.step
        with _stop_requests() as stop:
            clock = time.perf_counter()
            while not reason:
                reason = self.stop_reason(stop_after_steps, session_steps, stop)
                if reason:
                    break
                loss = self.train_step(clock, stop)
                now = time.perf_counter()
                if loss is not None:
                    self.elapsed += self.step_seconds if self.group.distributed else now - clock
                    if self.guard_every > 1 and self.guard_due(stop_after_steps, session_steps + 1, stop, log_every,
                                                               {"stats": stats, "snapshot": snapshot, "sample": sample},
                                                               last) and self.guard_tripped():
                        loss = None
                if loss is None:  # non-finite loss or gradient: nothing reached the weights
                    if not self.roll_back():
                        reason = "diverged"
                    loss_sum.zero_()
                    loss_count, log_time, log_step = 0, time.perf_counter(), self.step
                    last = {"stats": self.last_stats, "snapshot": (self.step, self.elapsed),
                            "sample": self.last_sample}
                    clock = time.perf_counter()
                    continue
                loss_sum += loss
                loss_count += 1
                session_steps += 1
                clock = now
                at_stats = stats.due(self.step, self.elapsed, *last["stats"])
                if self.step % log_every == 0 or at_stats:
                    last_loss = loss_sum.item() / loss_count
                    rate = (self.step - log_step) * self.batches.tokens_per_step * self.data.train.chars_per_token
                    rate /= max(now - log_time, 1e-9)
                    self.log_step(last_loss, rate)
                    loss_sum.zero_()
                    loss_count, log_time, log_step = 0, now, self.step
                if at_stats:
                    last["stats"] = self.last_stats = (self.step, self.elapsed)
                    metrics = self.evaluate(last_loss)
                    self.emit(self.event("eval", last_loss, metrics=metrics, info={"preview": self.preview()}))
                    if self.tc.early_stop_patience and self.bad_evals >= self.tc.early_stop_patience:
                        reason = "early-stop"
                if snapshot.due(self.step, self.elapsed, *last["snapshot"]) and not reason:
                    last["snapshot"] = (self.step, self.elapsed)
                    self.snapshot()
                if (sample.due(self.step, self.elapsed, *last["sample"]) and last_loss is not None
                        and last_loss < self.tc.sample_below_loss and not reason):
                    last["sample"] = self.last_sample = (self.step, self.elapsed)
                    self.emit(self.event("sample", last_loss, info=self.sample_request()))
                clock = time.perf_counter()  # evaluation, snapshots and samples are not training time
                log_time += clock - now  # ... nor part of the next throughput figure
        if loss_count:
            last_loss = loss_sum.item() / loss_count
        metrics = self.finish(reason, last_loss)
        self.emit(self.event("end", last_loss, metrics=metrics, info={"stop_reason": reason}))
        log.info("stopped at step %d (%s)", self.step, reason)
        return TrainResult(self.run_dir.path, self.step, self.epoch_float, _lowest(self.best, self.best_saved), self.history,
                           reason == "interrupted", reason)

    def guard_due(self, stop_after_steps: int | None, session_steps: int, stop: threading.Event, log_every: int,
                  cadences: dict[str, Cadence], last: dict[str, tuple[int, float]]) -> bool:
        """With the guard on the device: whether the host looks now. Every ``guard_every`` steps, and
        before anything reads the model or its state (a log line, an evaluation, snapshot, sample, the end)."""
        if self.step % self.guard_every == 0 or self.step % log_every == 0:
            return True
        if any(cadence.due(self.step, self.elapsed, *last[name]) for name, cadence in cadences.items()):
            return True
        return bool(self.stop_reason(stop_after_steps, session_steps, stop))

    def stop_reason(self, stop_after_steps: int | None, session_steps: int, stop: threading.Event) -> str:
        if self.epoch_float >= self.tc.num_epochs:
            return "epochs"
        if self.budget > 0 and self.elapsed >= self.budget:
            return "time"
        if stop_after_steps is not None and session_steps >= stop_after_steps:
            return "steps"
        if self.synced_stop if self.group.distributed else stop.is_set():  # several ranks: only what all agreed on
            return "interrupted"
        return ""

    def finish(self, reason: str, last_loss: float | None) -> dict[str, Any] | None:
        """Save the final state; evaluate unless interrupted (the user wants out) or diverged."""
        if reason == "diverged":  # the snapshot on disk is the last good state: keep it
            return None
        if self.guard_every > 1 and self.guard_tripped():  # a bad step the host has not seen: keep the snapshot
            log.warning("stopped at step %d after a non-finite %s; the snapshot before it is kept", self.step,
                        self.bad_value)
            return None
        if reason == "interrupted":
            self.snapshot(emit=False)
            return None
        # (several ranks decide from the counters they share; the history may be a machine's older copy)
        evaluated = self.last_stats[0] == self.step if self.group.distributed else \
            bool(self.history) and self.history[-1]["step"] == self.step
        if not evaluated:
            metrics = self.evaluate(last_loss, scheduled=False)
        else:
            metrics = self.history[-1]
        self.snapshot(emit=False)  # first: the session's training is safe whatever the test texts hold
        if self.group.main and self.run_dir.has_library("test"):
            metrics.update(self.test_scores())
            self.run_dir.write_metrics(self.history)
            self.run_dir.append_metrics_log({"kind": "test", "step": self.step, **{k: v for k, v in metrics.items()
                                             if k.startswith("test_")}, "time": time.time()}, sync=True)
        return metrics

    def test_scores(self) -> dict[str, Any]:
        """The model as it ends on the run's test sources (``--test-path``), as ``charpoet evaluate`` scores them."""
        from charpoet.evaluate import evaluate_texts
        from charpoet.sample import LanguageModel

        scores = evaluate_texts(LanguageModel(self.model, self.tokenizer, self.config, meta={}),
                                self.run_dir.read_library("test")).total
        self.model.train()
        log.info("test: loss %.4f, bpc %.4f, accuracy %.4f (%d tokens, %d out of vocabulary)", scores.loss,
                 scores.bpc, scores.accuracy, scores.scored, scores.oov)
        return {"test_loss": scores.loss, "test_bpc": scores.bpc, "test_accuracy": scores.accuracy,
                "test_tokens": scores.scored, "test_oov": scores.oov}

    def train_step(self, clock: float | None = None, stop: threading.Event | None = None) -> torch.Tensor | None:
        """One TBPTT step on the batch at the cursor; the detached loss, or None if not finite.

        With several processes the loss is the global batch's, and the step's duration on rank 0
        (from ``clock``) goes to ``step_seconds``.
        """
        lr = get_lr(self.step, self.progress, self.tc) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.batches.batch(self.cursor)  # (B, T) each
        loss, state = self.stepper.step(x, y, self.state, self.dtype)  # sets the gradients
        norm = grad_norm(self.model.parameters(), self.tc.clip_norm)  # the same on every rank (averaged gradients)
        if self.group.distributed:
            loss, self.step_seconds = self.sync(loss, time.perf_counter() - (clock or 0.0), bool(stop and stop.is_set()))
        finite = torch.isfinite(loss) & torch.isfinite(norm)
        if self.guard_every > 1:  # no sync: a bad step changes nothing, and the host hears of it later
            self.optimizer.found_inf = (~finite).float()  # fused AdamW skips the update on the device
            self.first_bad = torch.where(finite | (self.first_bad >= 0), self.first_bad, self.step)
        elif not bool(finite):  # one sync per step
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_value = f"loss {loss.item()}, gradient norm {norm.item()}"
            return None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_norm = norm
        self.state = state
        self.step += 1
        self.cursor += 1
        if self.cursor == self.batches.steps_per_epoch:  # epoch boundary: the streams restart
            self.epoch, self.cursor, self.state = self.epoch + 1, 0, None
        return loss

    def guard_tripped(self) -> bool:
        """With the guard on the device: whether a step since the last look was not finite (one sync)."""
        first = int(self.first_bad)
        if first < 0:
            return False
        self.bad_value = f"loss or gradient norm (step {first + 1}, seen at step {self.step})"
        self.failed_at = first + 1
        return True

    def roll_back(self) -> bool:
        """Back to the last snapshot with a lower learning rate; False when out of rollbacks."""
        failed_at, count = self.failed_at or self.step + 1, self.rollbacks + 1
        self.failed_at = None
        scale = self.lr_scale * self.tc.nan_lr_factor
        if count > self.tc.max_rollbacks:
            log.error("non-finite %s at step %d; giving up after %d rollbacks", self.bad_value,
                      failed_at, self.rollbacks)
            return False
        if self.group.distributed:  # rank 0's last snapshot is on disk (and uploaded): fetch it on every machine
            self.group.barrier()
            if self.group.first_on_node and self.on_node is not None:
                self.on_node()
            self.group.barrier()
        self.restore()
        if self.group.distributed:
            self.check_agreement()
        self.first_bad.fill_(-1)
        self.lr_scale, self.rollbacks = scale, count
        self.save_last()  # the lower learning rate survives a crash
        self.run_dir.cut_metrics_log(self.step)
        record = {"kind": "rollback", "step": self.step, "failed_at": failed_at, "lr_scale": scale,
                  "rollbacks": count, "reason": self.bad_value, "time": time.time()}
        self.run_dir.append_metrics_log(record, sync=True)
        log.warning("non-finite %s at step %d: rolled back to step %d, learning rate x%g (rollback %d of %d)",
                    self.bad_value, failed_at, self.step, scale, count, self.tc.max_rollbacks)
        self.emit(self.event("rollback", info={"reason": self.bad_value, "failed_at": failed_at,
                                               "to_step": self.step, "lr_scale": scale, "rollbacks": count,
                                               "max_rollbacks": self.tc.max_rollbacks}))
        return True

    def log_step(self, loss: float, chars_per_sec: float) -> None:
        norm = float(self.grad_norm)
        self.run_dir.append_metrics_log({
            "kind": "train", "step": self.step, "epoch": round(self.epoch_float, 4), "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"], "chars_per_sec": round(chars_per_sec, 1),
            "grad_norm": norm, "elapsed": round(self.elapsed, 2), "time": time.time(),
        })
        self.emit(self.event("step", loss, chars_per_sec=chars_per_sec, info={"grad_norm": norm}))
        self.last_rate = chars_per_sec

    def evaluate(self, train_loss: float | None, scheduled: bool = True) -> dict[str, Any]:
        """Validation pass; keeps the best weights and the history (metrics.json, metrics.jsonl).

        Only ``scheduled`` evaluations (the statistics cadence) count towards early stopping, so a
        run continued after a stop behaves as an uninterrupted one.
        """
        metrics: dict[str, Any] = {"step": self.step, "epoch": round(self.epoch_float, 4),
                                   "elapsed": round(self.elapsed, 2), "lr": self.optimizer.param_groups[0]["lr"],
                                   "chars_per_sec": round(self.last_rate, 1),
                                   "grad_norm": float(self.grad_norm), "remaining": self.remaining()}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        if self.run_dir.has_library("valid"):
            metrics["valid_oov"] = self.valid_oov
        if self.valid_rows is not None:
            metrics.update(estimate_loss(self.model, self.valid_rows, self.data.valid.chars_per_token,
                                         shards=self.stepper, group=self.group))
        val = metrics.get("val_loss")
        if scheduled:  # the end-of-session evaluation is not one an uninterrupted run would make
            if _improves(val, self.best):
                self.best = val if val is not None else self.best
                self.bad_evals = 0
            else:
                self.bad_evals += 1
        if _improves(val, self.best_saved):
            self.best_saved = val
            self.run_dir.save_tensors(BEST, self.model.state_dict(), {"step": self.step, "metrics": metrics})
        self.history.append(metrics)
        self.run_dir.write_metrics(self.history)
        self.run_dir.append_metrics_log({"kind": "eval", **metrics, "time": time.time()}, sync=True)
        log.info("eval %s", metrics)
        return metrics

    @torch.no_grad()
    def preview(self, width: int = 80) -> dict[str, str]:
        """The next training window of stream 0 (``y``) over the model's argmax guess (``yp``)."""
        x, y = self.batches.batch(self.cursor)  # (B, T)
        x, y = x[:1, :width], y[:1, :width]
        state = tuple(s[:, :1].contiguous() for s in self.state) if self.state is not None else None
        was_training = self.model.training
        self.model.eval()
        try:
            logits, _ = self.model(x, state)  # (1, t, V)
        finally:
            self.model.train(was_training)

        def text(ids: torch.Tensor) -> str:
            return "".join(self.tokenizer.token_text(int(i)) for i in ids.tolist()).replace("\n", "⏎")

        return {"y": text(y[0]), "yp": text(logits[0].argmax(-1))}

    def sample_request(self) -> dict[str, Any]:
        return {"model": self.model, "tokenizer": self.tokenizer, "config": self.config,
                "library": self.library, "temperatures": list(self.tc.sample_temperatures),
                "length": self.tc.sample_length, "seed": self.tc.seed + self.step, "run_dir": self.run_dir.path}

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": str(self.dtype).removeprefix("torch."),
                "parameters": self.model.num_parameters(), "train_tokens": len(self.data.train),
                "valid_tokens": len(self.data.valid), "valid_oov": self.valid_oov, "vocab_size": self.tokenizer.vocab_size,
                "batch_size": self.batches.batch_size, "steps_per_epoch": self.batches.steps_per_epoch,
                "sources": len(self.library), "library": self.library.name, "restored": self.step > 0,
                "model": dataclasses.asdict(self.config.model), "auto_size": self.sizing}

    # --- checkpoints --------------------------------------------------------------------
    def snapshot(self, emit: bool = True) -> None:
        """Write the last state; a good snapshot ends a streak of rollbacks."""
        self.save_last()
        self.rollbacks = 0
        if emit:
            self.emit(self.event("snapshot", info={"path": str(self.run_dir.path / LAST)}))

    def save_last(self) -> None:
        b = self.batches
        trainer = {"step": self.step, "epoch": self.epoch, "cursor": self.cursor, "elapsed": self.elapsed,
                   "best_val_loss": self.best, "bad_evals": self.bad_evals, "lr_scale": self.lr_scale,
                   "last_stats": list(self.last_stats), "last_sample": list(self.last_sample),
                   "batch_size": b.batch_size, "seq_len": b.seq_len, "steps_per_epoch": b.steps_per_epoch}
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        state = self.group.gather_rows(self.state) if self.state is not None else None  # (L, B, H): every rank's rows
        save_training_state(self.run_dir, TrainingState(self.model.state_dict(), self.optimizer.state_dict(),
                                                        torch.get_rng_state(), cuda, state, trainer))

    def restore(self) -> None:
        ts = load_training_state(self.run_dir)
        trainer = ts.trainer
        try:
            self.model.load_state_dict(ts.model)
            self.optimizer.load_state_dict(ts.optimizer)
            step, epoch, cursor = int(trainer["step"]), int(trainer["epoch"]), int(trainer["cursor"])
            layout = (trainer["batch_size"], trainer["seq_len"], trainer["steps_per_epoch"])
            elapsed, best = float(trainer["elapsed"]), trainer["best_val_loss"]
            best = None if best is None else float(best)
            bad_evals, lr_scale = int(trainer.get("bad_evals", 0)), float(trainer.get("lr_scale", 1.0))
            last_stats = tuple(trainer.get("last_stats", (step, elapsed)))
            last_sample = tuple(trainer.get("last_sample", (step, elapsed)))
            torch.set_rng_state(ts.rng_cpu)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.run_dir.path / LAST} does not match the run's configuration: {exc}") from None
        for group in self.optimizer.param_groups:  # options that may change on restore
            group["weight_decay"] = self.tc.weight_decay
            group["fused"], group["foreach"] = self.fused or None, None  # older runs stored none
        if ts.rng_cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ts.rng_cuda[: torch.cuda.device_count()])
        self.state = tuple(h.to(self.device) for h in ts.hidden) if ts.hidden else None  # (L, B, H)
        if self.group.distributed and layout[0] != self.batches.batch_size:
            raise ConfigError(f"the run in {self.run_dir.path} trains a global batch of {layout[0]} streams; continue it "
                              f"with --batch-size {layout[0]} (split across the ranks) or start a new run")
        if self.state is not None and self.batches.row_range != (0, self.batches.batch_size):
            a, b = self.batches.row_range  # this rank's streams, whatever the world size that saved them
            self.state = tuple(h[:, a:b].contiguous() for h in self.state)
        if layout != (self.batches.batch_size, self.batches.seq_len, self.batches.steps_per_epoch):
            # A new batch layout: continue at the same fraction of the epoch with a fresh state.
            cursor = round(cursor / layout[2] * self.batches.steps_per_epoch) % self.batches.steps_per_epoch
            self.state = None
        self.step, self.epoch, self.cursor, self.elapsed, self.best = step, epoch, cursor, elapsed, _lowest(best, None)
        self.bad_evals, self.lr_scale = bad_evals, lr_scale
        self.last_stats = (int(last_stats[0]), float(last_stats[1]))
        self.last_sample = (int(last_sample[0]), float(last_sample[1]))
        self.history = [h for h in self.run_dir.read_metrics() if h.get("step", 0) <= step]
        self.run_dir.write_metrics(self.history)  # evaluations after the snapshot belong to a lost future
        # best.safetensors may come from an evaluation after the snapshot (a killed process, or a
        # rolled-back path): keep it unless something better comes; early stopping counts from the snapshot
        self.best_saved = _lowest(self.best, self.run_dir.best_loss())


GUARD_EVERY = 16  # steps between the host's looks at the non-finite guard on a GPU


def guard_interval(device: torch.device, fused: bool) -> int:
    """Steps between host checks of the non-finite guard: 1 on the CPU (and wherever AdamW is not
    fused, so it cannot skip a bad step by itself), ``GUARD_EVERY`` on a GPU."""
    return GUARD_EVERY if fused and device.type != "cpu" else 1


def training_memory(config: RunConfig) -> int:
    """Rough bytes a training step needs: weights, gradients and AdamW's two moments (fp32), and
    the activations kept for back-propagation of one (batch, seq_len) window."""
    m, d = config.model, config.data
    gates = 4 if m.cell == "lstm" else 3
    per_token = m.embedding_size + m.num_layers * m.rnn_size * (gates + 3) + 3 * m.vocab_size
    return 16 * count_parameters(m) + 4 * d.batch_size * d.seq_len * per_token


def _improves(val: float | None, best: float | None) -> bool:
    """Whether validation loss ``val`` is a new best. Without a validation split (None) the latest
    weights are the best; a NaN or infinite loss never is, and a non-finite ``best`` (from an older
    run) is beaten by any finite loss."""
    if val is None:
        return True
    return math.isfinite(val) and (best is None or not math.isfinite(best) or val < best)


def _lowest(a: float | None, b: float | None) -> float | None:
    """The lower of two recorded best losses, ignoring missing and non-finite ones."""
    finite = [v for v in (a, b) if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def grad_norm(parameters: Iterator[torch.nn.Parameter], clip_norm: float) -> torch.Tensor:
    """Global gradient norm, clipping to ``clip_norm`` when it is > 0 (a 0-d tensor)."""
    return torch.nn.utils.clip_grad_norm_(parameters, clip_norm if clip_norm > 0 else float("inf"))
