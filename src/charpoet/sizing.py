"""Choosing the model's size from the time budget and the measured speed (``auto_size``).

The rule: a budget of S seconds at r(H) training tokens per second buys
N(H) = min(r(H) x S, epochs x training tokens) tokens. The chosen ``rnn_size`` is the
largest H on ``LADDER`` whose parameter count P(H) is at most N(H) / K, with
K = ``TOKENS_PER_PARAMETER``. A bigger model learns more from each token but sees fewer of
them in the same time; below about K tokens per parameter it is still far from what it could
reach when the budget ends, above it a bigger one would have done better. When the data runs
out first (a fast machine, a small corpus), the size is at least the largest H that still
makes all ``epochs`` passes in S seconds with K / 2 tokens per parameter, so the budget is
used rather than left over.

r(H) is measured, not assumed: a few training steps of a probe model with the run's batch
layout, precision and threads (after a warm-up step; random tokens, torch's generator
untouched). Other sizes are extrapolated by the multiply-adds per token of the recurrent and
output layers, which set a recurrent model's step time; the size this picks is probed in turn
and the rule applied once more with its own speed. So a CPU that trains twice as fast gets
the size that twice the tokens allow.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace
from typing import Any

import torch

from charpoet.config import ModelConfig, RunConfig
from charpoet.model import RNNLM, count_parameters
from charpoet.shards import ShardedStep

LADDER = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024)
TOKENS_PER_PARAMETER = 20.0  # K: measured on tiny shakespeare with 10-minute budgets (README)
PROBE_SIZE = 256  # first probe; the size it points to is probed next
TIME_LIMITED_DROP_RATE = 0.1  # auto_dropout for a model the budget stops: it ends under-fitted


def matmul_work(config: RunConfig) -> int:
    """Multiply-adds per token of the recurrent and output layers' weight products (forward)."""
    m = config.model
    gates = 4 if m.cell == "lstm" else 3
    E, H, L, V = m.embedding_size, m.rnn_size, m.num_layers, m.vocab_size
    return gates * H * (E + H) + (L - 1) * gates * H * 2 * H + H * V


def tokens_allowed(config: RunConfig, rate: float, rate_config: RunConfig, train_tokens: int) -> float:
    """Tokens ``config`` trains on in the budget, given ``rate`` tokens/s measured for ``rate_config``."""
    budget = config.train.max_minutes * 60.0
    by_time = rate * budget * matmul_work(rate_config) / matmul_work(config)
    return min(by_time, config.train.num_epochs * train_tokens)


def pick_size(config: RunConfig, rate: float, rate_config: RunConfig, train_tokens: int) -> int:
    """The largest ladder size whose parameters are at most the tokens it gets / K, or, if larger,
    the largest that still makes all its passes over the data within the budget with at least
    K / 2 tokens per parameter (where the data runs out before the time, a smaller model would
    stop early and leave the budget unused)."""
    chosen = LADDER[0]
    passes = config.train.num_epochs * train_tokens
    for size in LADDER:
        candidate = replace(config, model=replace(config.model, rnn_size=size))
        tokens = tokens_allowed(candidate, rate, rate_config, train_tokens)
        by_time = tokens_allowed(replace(candidate, train=replace(candidate.train, num_epochs=math.inf)),
                                 rate, rate_config, train_tokens)
        params = count_parameters(candidate.model)
        if tokens >= TOKENS_PER_PARAMETER * params or (by_time >= passes >= TOKENS_PER_PARAMETER / 2 * params):
            chosen = size
    return chosen


def measure_rate(config: RunConfig, device: torch.device, dtype: torch.dtype, seconds: float = 1.5,
                 max_steps: int = 8) -> float:
    """Training tokens per second of ``config.model`` with the run's batch layout (random tokens)."""
    B, T, V = config.data.batch_size, config.data.seq_len, config.model.vocab_size
    with torch.random.fork_rng(devices=[]):
        model = RNNLM(config.model).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda") or None)
        stepper = ShardedStep(model, B, device)
        try:
            ids = torch.randint(0, V, (B, T + 1), device=device)
            state = None

            def step() -> None:
                nonlocal state
                _, state = stepper.step(ids[:, :-1], ids[:, 1:], state, dtype)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            for _ in range(2):  # warm-up: first-call allocations, kernel selection, the allocator's pools
                step()
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < 3 or (len(times) < max_steps and time.perf_counter() - start < seconds):
                began = time.perf_counter()
                step()
                times.append(time.perf_counter() - began)
        finally:
            stepper.close()
    return B * T / max(statistics.median(times), 1e-9)  # the median step: a stall elsewhere does not count


def auto_size(config: RunConfig, train_tokens: int, device: torch.device,
              dtype: torch.dtype, processes: int = 1) -> tuple[RunConfig, dict[str, Any]]:
    """``config`` with the rule's ``rnn_size``, and what it was based on (for the log).

    Under torchrun the probe runs in rank 0 alone with one rank's share of the batch, and the group
    of ``processes`` ranks is taken to train that many times as fast (each with a GPU or core of its own).
    """
    share = max(1, config.data.batch_size // processes)
    base = replace(config, data=replace(config.data, batch_size=share))  # what one rank steps
    probe = replace(base, model=replace(base.model, rnn_size=PROBE_SIZE))
    rate = measure_rate(probe, device, dtype) * processes
    size = pick_size(config, rate, probe, train_tokens)
    if size != PROBE_SIZE:
        probe = replace(base, model=replace(base.model, rnn_size=size))
        rate = measure_rate(probe, device, dtype) * processes
        size = pick_size(config, rate, probe, train_tokens)
    chosen = replace(config, model=replace(config.model, rnn_size=size))
    tokens = tokens_allowed(chosen, rate, probe, train_tokens)
    data_limited = tokens >= config.train.num_epochs * train_tokens  # all passes made before the time is up
    if config.model.auto_dropout:
        drop = ModelConfig.drop_rate if data_limited else TIME_LIMITED_DROP_RATE
        chosen = replace(chosen, model=replace(chosen.model, drop_rate=drop))
    info = {"rnn_size": size, "parameters": count_parameters(chosen.model),
            "probe_size": probe.model.rnn_size, "probe_tokens_per_sec": round(rate, 1),
            "tokens": round(tokens), "data_limited": data_limited, "drop_rate": chosen.model.drop_rate,
            "processes": processes}
    return chosen, info
