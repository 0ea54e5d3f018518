"""The training loop: stateful truncated BPTT with AdamW, a warm-up + cosine schedule,
global-norm clipping, periodic evaluation and atomic checkpoints.

``train(config, run_dir)`` starts a run; ``train(..., restore=True)`` continues one
exactly where it stopped (weights, optimizer, schedule, data cursor, carried hidden
state and random generators all come back). Progress is reported through ``on_event``
callbacks; nothing here prints. SIGINT/SIGTERM stop the loop after the current step and
save the last state, so Ctrl-C never loses work.
"""

from __future__ import annotations

import logging
import math
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

from charpoet.checkpoint import BEST, LAST, RunDir, TrainingState, load_training_state, save_training_state
from charpoet.config import RunConfig, TrainConfig
from charpoet.corpus import Library, load_library
from charpoet.data import StreamBatches, encode_library, eval_layout
from charpoet.errors import CharpoetWarning, CheckpointError
from charpoet.model import RNNLM, State, detach_state, sequence_loss
from charpoet.tokenizer import Tokenizer, build_tokenizer
from charpoet.tuning import tune_allocator

log = logging.getLogger("charpoet")
LN2 = math.log(2.0)


@dataclass
class TrainEvent:
    """What the loop reports: kind is start | step | eval | end."""

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
    """auto: bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX), else fp32.

    On such CPUs oneDNN's bf16 LSTM kernels train about 1.3x faster; weights, optimizer
    state and the loss stay fp32. Evaluation and generation always run in fp32.
    """
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
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


@torch.no_grad()
def estimate_loss(model: RNNLM, rows: torch.Tensor, chars_per_token: float, chunk: int = 256) -> dict[str, float]:
    """Stateful pass over (B, L) validation rows: loss (nats/token), bpc, accuracy."""
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    rows = rows.to(device)
    state: State | None = None
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for start in range(0, rows.shape[1] - 1, chunk):
        x = rows[:, start : start + chunk]
        y = rows[:, start + 1 : start + chunk + 1]
        x = x[:, : y.shape[1]]  # (B, t)
        logits, state = model(x, state)  # (B, t, V)
        flat = logits.reshape(-1, logits.shape[-1])
        total_loss += torch.nn.functional.cross_entropy(flat, y.reshape(-1), reduction="sum").double()
        correct += (flat.argmax(-1) == y.reshape(-1)).sum()
        count += y.numel()
    model.train(was_training)
    loss = total_loss.item() / count
    return {
        "val_loss": loss,
        "val_bpc": loss / LN2 / chars_per_token,
        "val_accuracy": correct.item() / count,
        "val_tokens": count,
    }


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
    """Library and tokenizer of a new run, or the stored ones of a run being restored."""
    if restore:
        run.require()
        stored_library = run.read_library()
        if library is not None and library.fingerprint() != stored_library.fingerprint():
            raise CheckpointError(
                f"the run in {run.path} was trained on other texts ({stored_library.name}); restore "
                "it without --text-path, or start a new run in another --checkpoint-path"
            )
        return config, stored_library, run.read_vocab()
    if run.exists():
        raise CheckpointError(
            f"{run.path} already holds a run; pass --restore to continue it, "
            "or choose another --checkpoint-path"
        )
    if library is None:
        data = config.data
        if data.text_path or data.library:
            library = load_library(data.text_path or None, library=data.library or None)
        else:
            library = load_library(corpus=data.corpus)
    # The vocabulary covers the whole library (as nanoGPT and word_language_model do), so
    # a character that only occurs in a validation part can still be evaluated.
    tokenizer = build_tokenizer(config.data.tokenizer, (s.text for s in library), config.data.max_vocab)
    config = replace(config, model=replace(config.model, vocab_size=tokenizer.vocab_size))
    return config, library, tokenizer


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    restore: bool = False,
    library: Library | None = None,
    on_event: Callable[[TrainEvent], None] | None = None,
    stop_after_steps: int | None = None,
    log_every: int = 10,
) -> TrainResult:
    """Train (or continue) the run in ``run_dir``; returns when a stopping rule fires.

    ``config`` is the full configuration (for a restore: the stored one with allowed
    overrides applied). ``stop_after_steps`` ends this session early without changing
    the schedule, as if interrupted; the run can be continued with ``restore=True``.
    """
    config.validate()
    run = RunDir(run_dir)
    config, library, tokenizer = prepare_run(config, run, restore, library)
    session = _Session(config, run, library, tokenizer, on_event or (lambda event: None))
    if restore and (run.path / LAST).exists():
        session.restore()
    elif restore:
        warnings.warn(f"{run.path} has no checkpoint yet; starting it from step 0", CharpoetWarning, stacklevel=2)
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_library(library)
        run.write_vocab(tokenizer)
    run.write_config(session.config)
    return session.run(stop_after_steps, log_every)


class _Session:
    """One training session of a run: the model, optimizer, data and counters."""

    def __init__(self, config: RunConfig, run: RunDir, library: Library, tokenizer: Tokenizer,
                 emit: Callable[[TrainEvent], None]):
        tune_allocator()
        self.run_dir, self.library, self.tokenizer, self.emit = run, library, tokenizer, emit
        self.device = resolve_device(config.train.device)
        self.dtype = resolve_precision(config.train.precision, self.device)
        torch.manual_seed(config.train.seed)
        self.data = encode_library(library, tokenizer, config.data.valid_fraction)
        self.batches = StreamBatches(self.data.train.ids, config.data.batch_size, config.data.seq_len, self.device)
        if self.batches.batch_size != config.data.batch_size:  # shrunk to fit a small corpus
            config = replace(config, data=replace(config.data, batch_size=self.batches.batch_size))
        self.config, self.tc = config, config.train
        self.valid_rows = eval_layout(self.data.valid.ids, config.data.batch_size)
        self.model = RNNLM(config.model).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.tc.learning_rate,
                                           weight_decay=self.tc.weight_decay)
        self.budget = self.tc.max_minutes * 60.0
        # Counters: optimizer steps, completed epochs, batch index within the epoch, training seconds.
        self.step, self.epoch, self.cursor, self.elapsed = 0, 0, 0, 0.0
        self.best: float | None = None
        self.state: State | None = None
        self.history: list[dict[str, Any]] = []

    # --- progress -----------------------------------------------------------------------
    @property
    def epoch_float(self) -> float:
        return self.epoch + self.cursor / self.batches.steps_per_epoch

    @property
    def progress(self) -> float:
        """Fraction of the run done: epochs, or the time budget if that binds first."""
        done = self.epoch_float / self.tc.num_epochs
        return max(done, self.elapsed / self.budget) if self.budget > 0 else done

    def event(self, kind: str, loss: float | None = None, **kwargs: Any) -> TrainEvent:
        return TrainEvent(kind, self.step, self.epoch_float, min(self.progress, 1.0), loss,
                          self.optimizer.param_groups[0]["lr"], elapsed=self.elapsed, **kwargs)

    # --- the loop -----------------------------------------------------------------------
    def run(self, stop_after_steps: int | None, log_every: int) -> TrainResult:
        self.emit(self.event("start", info=self.describe()))
        log.info("training %s on %s (%d sources, %d tokens) from step %d", self.run_dir.path,
                 self.library.name, len(self.library), len(self.data.train), self.step)
        self.model.train()
        session_steps, reason = 0, "epochs"
        loss_sum, loss_count = torch.zeros((), device=self.device), 0
        last_loss: float | None = None
        log_time, log_step = time.perf_counter(), self.step
        with _stop_requests() as stop:
            clock = time.perf_counter()
            while True:
                if self.epoch_float >= self.tc.num_epochs:
                    reason = "epochs"
                elif self.budget > 0 and self.elapsed >= self.budget:
                    reason = "time"
                elif stop_after_steps is not None and session_steps >= stop_after_steps:
                    reason = "steps"
                elif stop.is_set():
                    reason = "interrupted"
                else:
                    reason = ""
                if reason:
                    break
                loss_sum += self.train_step()
                loss_count += 1
                session_steps += 1
                now = time.perf_counter()
                self.elapsed += now - clock
                clock = now
                at_eval = self.step % self.tc.eval_every == 0
                if self.step % log_every == 0 or at_eval:
                    last_loss = loss_sum.item() / loss_count
                    rate = (self.step - log_step) * self.batches.tokens_per_step * self.data.train.chars_per_token
                    self.emit(self.event("step", last_loss, chars_per_sec=rate / max(now - log_time, 1e-9)))
                    loss_sum.zero_()
                    loss_count, log_time, log_step = 0, now, self.step
                if at_eval:
                    self.emit(self.event("eval", last_loss, metrics=self.evaluate_and_save(last_loss)))
                    clock = time.perf_counter()  # evaluation time is not training time
        if loss_count:
            last_loss = loss_sum.item() / loss_count
        if reason == "interrupted":  # save at once, without a validation pass: the user wants to stop
            self.save_last()
            metrics = None
        elif not self.history or self.history[-1]["step"] != self.step:
            metrics = self.evaluate_and_save(last_loss)
        else:
            metrics = self.history[-1]
        self.emit(self.event("end", last_loss, metrics=metrics, info={"stop_reason": reason}))
        log.info("stopped at step %d (%s)", self.step, reason)
        return TrainResult(self.run_dir.path, self.step, self.epoch_float, self.best, self.history,
                           reason == "interrupted", reason)

    def train_step(self) -> torch.Tensor:
        """One TBPTT step on the batch at the cursor; returns the detached loss."""
        lr = get_lr(self.step, self.progress, self.tc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.batches.batch(self.cursor)  # (B, T) each
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            logits, state = self.model(x, self.state)  # (B, T, V)
        loss = sequence_loss(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.tc.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.clip_norm)
        self.optimizer.step()
        self.state = tuple(s.float() for s in detach_state(state))
        self.step += 1
        self.cursor += 1
        if self.cursor == self.batches.steps_per_epoch:  # epoch boundary: the streams restart
            self.epoch, self.cursor, self.state = self.epoch + 1, 0, None
        return loss.detach()

    def evaluate_and_save(self, train_loss: float | None) -> dict[str, Any]:
        metrics: dict[str, Any] = {"step": self.step, "epoch": round(self.epoch_float, 4),
                                   "elapsed": round(self.elapsed, 2), "lr": self.optimizer.param_groups[0]["lr"]}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        if self.valid_rows is not None:
            metrics.update(estimate_loss(self.model, self.valid_rows, self.data.valid.chars_per_token))
        val = metrics.get("val_loss")
        if val is None or self.best is None or val < self.best:
            self.best = val if val is not None else self.best
            self.run_dir.save_tensors(BEST, self.model.state_dict(), {"step": self.step, "metrics": metrics})
        self.history.append(metrics)
        self.save_last()
        self.run_dir.write_metrics(self.history)
        log.info("eval %s", metrics)
        return metrics

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": str(self.dtype).removeprefix("torch."),
                "parameters": self.model.num_parameters(), "train_tokens": len(self.data.train),
                "valid_tokens": len(self.data.valid), "vocab_size": self.tokenizer.vocab_size,
                "batch_size": self.batches.batch_size, "steps_per_epoch": self.batches.steps_per_epoch,
                "sources": len(self.library), "library": self.library.name, "restored": self.step > 0}

    # --- checkpoints --------------------------------------------------------------------
    def save_last(self) -> None:
        b = self.batches
        trainer = {"step": self.step, "epoch": self.epoch, "cursor": self.cursor, "elapsed": self.elapsed,
                   "best_val_loss": self.best, "batch_size": b.batch_size, "seq_len": b.seq_len,
                   "steps_per_epoch": b.steps_per_epoch}
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        save_training_state(self.run_dir, TrainingState(self.model.state_dict(), self.optimizer.state_dict(),
                                                        torch.get_rng_state(), cuda, self.state, trainer))

    def restore(self) -> None:
        ts = load_training_state(self.run_dir)
        trainer = ts.trainer
        try:
            self.model.load_state_dict(ts.model)
            self.optimizer.load_state_dict(ts.optimizer)
            step, epoch, cursor = int(trainer["step"]), int(trainer["epoch"]), int(trainer["cursor"])
            layout = (trainer["batch_size"], trainer["seq_len"], trainer["steps_per_epoch"])
            elapsed, best = float(trainer["elapsed"]), trainer["best_val_loss"]
            torch.set_rng_state(ts.rng_cpu)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.run_dir.path / LAST} does not match the run's configuration: {exc}") from None
        for group in self.optimizer.param_groups:  # options that may change on restore
            group["weight_decay"] = self.tc.weight_decay
        if ts.rng_cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ts.rng_cuda[: torch.cuda.device_count()])
        self.state = tuple(h.to(self.device) for h in ts.hidden) if ts.hidden else None
        if layout != (self.batches.batch_size, self.batches.seq_len, self.batches.steps_per_epoch):
            # A new batch layout: continue at the same fraction of the epoch with a fresh state.
            cursor = round(cursor / layout[2] * self.batches.steps_per_epoch) % self.batches.steps_per_epoch
            self.state = None
        self.step, self.epoch, self.cursor, self.elapsed, self.best = step, epoch, cursor, elapsed, best
        self.history = [h for h in self.run_dir.read_metrics() if h.get("step", 0) <= step]
