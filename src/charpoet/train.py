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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from charpoet.checkpoint import (
    BEST,
    LAST,
    RunDir,
    optimizer_from_tensors,
    optimizer_to_tensors,
)
from charpoet.config import RunConfig, TrainConfig
from charpoet.corpus import Library, load_library
from charpoet.data import StreamBatches, encode_library, eval_layout
from charpoet.errors import CheckpointError
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
    total_steps: int
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
        library = load_library(config.data.text_path or None, None if config.data.text_path else config.data.corpus)
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
    emit = on_event or (lambda event: None)
    tune_allocator()
    device = resolve_device(config.train.device)
    dtype = resolve_precision(config.train.precision, device)
    torch.manual_seed(config.train.seed)

    dataset = encode_library(library, tokenizer, config.data.valid_fraction)
    batches = StreamBatches(dataset.train.ids, config.data.batch_size, config.data.seq_len, device)
    if batches.batch_size != config.data.batch_size:
        config = replace(config, data=replace(config.data, batch_size=batches.batch_size))
    valid_rows = eval_layout(dataset.valid.ids, config.data.batch_size)
    valid_chars = sum(len(s.text) - int(len(s.text) * (1 - config.data.valid_fraction)) for s in library)
    chars_per_token = 1.0 if tokenizer.kind == "char" else valid_chars / max(1, len(dataset.valid))
    train_chars_per_token = 1.0 if tokenizer.kind == "char" else library.num_chars / max(1, len(dataset.train) + len(dataset.valid))

    model = RNNLM(config.model).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay
    )
    tc = config.train
    total_steps = max(1, math.ceil(tc.num_epochs * batches.steps_per_epoch))
    budget = tc.max_minutes * 60.0

    step, cursor, elapsed, best = 0, 0, 0.0, None
    state: State | None = None
    history: list[dict[str, Any]] = []
    if restore:
        step, cursor, elapsed, best, state, history = _restore(run, model, optimizer, batches, device)
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_library(library)
        run.write_vocab(tokenizer)
    run.write_config(config)
    for group in optimizer.param_groups:  # options that may change on restore
        group["weight_decay"] = tc.weight_decay

    def progress() -> float:
        done = step / total_steps
        return max(done, elapsed / budget) if budget > 0 else done

    def epoch_float() -> float:
        return step / batches.steps_per_epoch

    def evaluate_and_save(train_loss: float | None) -> dict[str, Any]:
        nonlocal best
        metrics: dict[str, Any] = {"step": step, "epoch": round(epoch_float(), 4), "elapsed": round(elapsed, 2)}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        metrics["lr"] = optimizer.param_groups[0]["lr"]
        if valid_rows is not None:
            metrics.update(estimate_loss(model, valid_rows, chars_per_token))
        val = metrics.get("val_loss")
        if val is None or best is None or val < best:
            best = val if val is not None else best
            run.save_tensors(BEST, model.state_dict(), {"step": step, "metrics": metrics})
        history.append(metrics)
        _save_last(run, model, optimizer, state, step, cursor, elapsed, best, batches)
        run.write_metrics(history)
        log.info("eval %s", metrics)
        return metrics

    emit(TrainEvent("start", step, epoch_float(), total_steps, progress(),
                    info={"device": str(device), "precision": str(dtype).removeprefix("torch."), "parameters": model.num_parameters(),
                          "train_tokens": len(dataset.train), "valid_tokens": len(dataset.valid),
                          "vocab_size": tokenizer.vocab_size, "batch_size": batches.batch_size,
                          "steps_per_epoch": batches.steps_per_epoch, "sources": len(library),
                          "library": library.name, "restored": restore}))
    log.info("training %s on %s (%d sources, %d tokens) from step %d",
             run.path, library.name, len(library), len(dataset.train), step)

    model.train()
    session_steps, stop_reason = 0, "epochs"
    loss_sum = torch.zeros((), device=device)
    loss_count, last_log_time, last_log_step = 0, time.perf_counter(), step
    last_train_loss: float | None = None
    with _stop_requests() as stop:
        clock = time.perf_counter()
        while True:
            if step >= total_steps:
                stop_reason = "epochs"
                break
            if budget > 0 and elapsed >= budget:
                stop_reason = "time"
                break
            if stop_after_steps is not None and session_steps >= stop_after_steps:
                stop_reason = "steps"
                break
            if stop.is_set():
                stop_reason = "interrupted"
                break
            lr = get_lr(step, progress(), tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = batches.batch(cursor)  # (B, T) each
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                logits, state = model(x, state)  # (B, T, V)
            loss = sequence_loss(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_norm)
            optimizer.step()
            state = tuple(s.float() for s in detach_state(state))
            loss_sum += loss.detach()
            loss_count += 1
            step, cursor, session_steps = step + 1, cursor + 1, session_steps + 1
            if cursor == batches.steps_per_epoch:  # epoch boundary: streams restart
                cursor, state = 0, None
            now = time.perf_counter()
            elapsed += now - clock
            clock = now
            if step % log_every == 0 or step % tc.eval_every == 0:
                last_train_loss = loss_sum.item() / loss_count
                rate = (step - last_log_step) * batches.tokens_per_step * train_chars_per_token
                emit(TrainEvent("step", step, epoch_float(), total_steps, progress(), last_train_loss, lr,
                                rate / max(now - last_log_time, 1e-9), elapsed))
                loss_sum.zero_()
                loss_count, last_log_time, last_log_step = 0, now, step
            if step % tc.eval_every == 0:
                metrics = evaluate_and_save(last_train_loss)
                emit(TrainEvent("eval", step, epoch_float(), total_steps, progress(), last_train_loss, lr,
                                elapsed=elapsed, metrics=metrics))
                clock = time.perf_counter()  # evaluation time is not training time
    if loss_count:
        last_train_loss = loss_sum.item() / loss_count
    if stop_reason == "interrupted":
        # Save at once, without a validation pass: the user wants to stop now.
        _save_last(run, model, optimizer, state, step, cursor, elapsed, best, batches)
        metrics = None
    elif not history or history[-1]["step"] != step:
        metrics = evaluate_and_save(last_train_loss)
    else:
        metrics = history[-1]
    emit(TrainEvent("end", step, epoch_float(), total_steps, progress(), last_train_loss,
                    optimizer.param_groups[0]["lr"], elapsed=elapsed, metrics=metrics,
                    info={"stop_reason": stop_reason}))
    log.info("stopped at step %d (%s)", step, stop_reason)
    return TrainResult(run.path, step, epoch_float(), best, history, stop_reason == "interrupted", stop_reason)


def _save_last(run: RunDir, model: RNNLM, optimizer: torch.optim.Optimizer, state: State | None,
               step: int, cursor: int, elapsed: float, best: float | None, batches: StreamBatches) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = optimizer_to_tensors(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    if state is not None:
        tensors.update({f"hidden.{i}": s for i, s in enumerate(state)})
    trainer = {"step": step, "cursor": cursor, "elapsed": elapsed, "best_val_loss": best,
               "batch_size": batches.batch_size, "seq_len": batches.seq_len,
               "steps_per_epoch": batches.steps_per_epoch}
    run.save_tensors(LAST, tensors, {"trainer": trainer, "optimizer": optim_meta})


def _restore(run: RunDir, model: RNNLM, optimizer: torch.optim.Optimizer, batches: StreamBatches,
             device: torch.device) -> tuple[int, int, float, float | None, State | None, list[dict[str, Any]]]:
    tensors, meta = run.load_tensors(LAST)
    try:
        trainer = meta["trainer"]
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{run.path / LAST} does not match the run's configuration: {exc}") from None
    torch.set_rng_state(tensors["rng.cpu"])
    if torch.cuda.is_available() and "rng.cuda.0" in tensors:
        n = torch.cuda.device_count()
        torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(n) if f"rng.cuda.{i}" in tensors])
    step, cursor = int(trainer["step"]), int(trainer["cursor"])
    hidden = [tensors[k] for k in sorted(k for k in tensors if k.startswith("hidden."))]
    state: State | None = tuple(h.to(device) for h in hidden) if hidden else None
    same_layout = (trainer["batch_size"], trainer["seq_len"], trainer["steps_per_epoch"]) == (
        batches.batch_size, batches.seq_len, batches.steps_per_epoch)
    if not same_layout:
        # New batch layout: continue at the same fraction of the epoch with a fresh state.
        cursor = round(cursor / trainer["steps_per_epoch"] * batches.steps_per_epoch) % batches.steps_per_epoch
        step = round(step / trainer["steps_per_epoch"] * batches.steps_per_epoch)
        state = None
    history = [h for h in run.read_metrics() if h.get("step", 0) <= int(trainer["step"])]
    return step, cursor, float(trainer["elapsed"]), trainer["best_val_loss"], state, history
