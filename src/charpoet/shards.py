"""Training steps split over the CPU's cores: the rows of a batch in shards, one thread each.

    batch (B, T)                thread  computes (with cores / S intra-op threads)
    rows [0, B/S)          ->   0       loss_0 = sum of cross-entropies / (B T), grads_0, state_0
    rows [B/S, 2B/S)       ->   1       loss_1, grads_1, state_1
    ...                                 ...
    loss = loss_0 + loss_1 + ...,  grads = grads_0 + grads_1 + ...   (in this order: deterministic)

Why: PyTorch runs one op over its OpenMP threads, and oneDNN's LSTM kernel makes them meet
at a barrier every time step, hundreds of times per training step. When another process
takes a core now and then (any shared machine, or a laptop doing something else), every
barrier waits for the thread that lost its core: on a 2-core EPYC VM with other jobs running,
one step of the seeds' 2 x 128 model took 5 s with 2 OpenMP threads and 0.1 s with one. Shards
meet once per step, so S shards on S cores keep their pace on a busy machine, and on an idle
one lose little to the smaller matrix products.

Each shard draws its dropout masks from its own generator, seeded every step from torch's
global one, so a seeded (or resumed) run draws the same masks whatever the threads' timing.
The shard count follows the core count (one per core, at least ``MIN_ROWS`` rows each), so a
run is bit-for-bit reproducible on one machine and equal within float rounding on another.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor

from charpoet.model import RNNLM, State, sequence_loss

T, R = TypeVar("T"), TypeVar("R")
MIN_ROWS = 16  # fewer rows per shard make the recurrent matrix products inefficient


def shard_count(batch_size: int, threads: int) -> int:
    """Shards for a batch on ``threads`` cores: one per core, each of at least MIN_ROWS rows."""
    return max(1, min(threads, batch_size // MIN_ROWS))


def shard_bounds(batch_size: int, shards: int) -> list[tuple[int, int]]:
    """Row ranges [a, b) of the shards; sizes differ by at most one row."""
    base, extra = divmod(batch_size, shards)
    bounds, start = [], 0
    for k in range(shards):
        end = start + base + (1 if k < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


class ShardedStep:
    """Forward and backward of one batch over its shards; sets the parameters' ``.grad``.

    ``step(x, y, state, dtype)`` returns the batch's mean loss (nats/token, detached) and the
    detached fp32 state. On the CPU with S > 1 shards the process's intra-op threads are set
    to cores / S while the object lives (so no op spreads over cores a shard is using);
    ``close()`` gives the count back. Other devices run one shard in the calling thread.
    """

    def __init__(self, model: RNNLM, batch_size: int, device: torch.device, cores: int | None = None,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = sequence_loss,
                 forward: Callable[..., tuple[Tensor, State]] | None = None):
        self.model, self.loss_fn = model, loss_fn  # loss_fn: mean loss of (b, T, V) logits and (b, T) targets
        self.forward = forward if forward is not None else model  # the model, or torch.compile of it
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.cpu = device.type == "cpu"
        self.saved_threads = torch.get_num_threads()
        cores = cores or self.saved_threads  # default: torch's intra-op threads (one per core)
        self.shards = shard_count(batch_size, cores) if self.cpu else 1
        self.threads = max(1, cores // self.shards)
        self.bounds = shard_bounds(batch_size, self.shards)
        self.generators = [torch.Generator() for _ in range(self.shards)] if self.cpu else None
        self.pool: ThreadPoolExecutor | None = None
        if self.shards > 1:
            torch.set_num_threads(self.threads)
            self.pool = ThreadPoolExecutor(self.shards, thread_name_prefix="charpoet-shard",
                                           initializer=torch.set_num_threads, initargs=(self.threads,))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
            torch.set_num_threads(self.saved_threads)

    def map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        """``[fn(item) for item in items]``, on the shards' threads when there are several."""
        if self.pool is None:
            return [fn(item) for item in items]
        return list(self.pool.map(fn, items))

    def step(self, x: Tensor, y: Tensor, state: State | None, dtype: torch.dtype) -> tuple[Tensor, State]:
        if state is None:
            state = self.model.init_state(x.shape[0])
        scale = 1.0 / y.numel()
        # one draw from the global generator per step seeds every shard's dropout masks
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64)) if self.generators else 0
        jobs = [(k, x[a:b], y[a:b], tuple(s[:, a:b] for s in state), dtype, scale, seed)
                for k, (a, b) in enumerate(self.bounds)]  # x, y (b - a, T); state (L, b - a, H)
        results = self.map(lambda job: self._shard(*job), jobs)
        loss = results[0][0]
        for r in results[1:]:
            loss = loss + r[0]
        for i, p in enumerate(self.params):
            grad = results[0][1][i]
            for r in results[1:]:
                grad = grad + r[1][i]
            p.grad = grad
        if len(results) == 1:
            return loss, results[0][2]
        return loss, tuple(torch.cat(parts, dim=1) for parts in zip(*(r[2] for r in results)))  # (L, B, H)

    def _shard(self, k: int, x: Tensor, y: Tensor, state: State, dtype: torch.dtype, scale: float,
               seed: int) -> tuple[Tensor, list[Tensor], State]:
        generator = None
        if self.generators is not None:
            generator = self.generators[k]
            generator.manual_seed(seed + k)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits, state = self.forward(x, state, generator=generator)  # (b, T, V)
        loss = self.loss_fn(logits.float(), y) * (y.numel() * scale)  # this shard's share of the batch mean
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        return loss.detach(), grads, tuple(s.detach().float() for s in state)
