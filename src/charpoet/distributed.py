"""Training on several processes: torchrun's environment, the process group, and the collectives
the trainer needs.

``torchrun --nproc-per-node N -m charpoet train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set (multi-node:
torchrun's usual rendezvous options). Each copy is a rank::

    global batch (B streams)   rank 0: rows [0, B/W)   rank 1: rows [B/W, 2B/W)   ...
    gradients                  averaged across ranks by DistributedDataParallel (gloo on CPU, nccl on CUDA)
    hidden state               each rank carries its own rows; a snapshot gathers all of them
    evaluation                 the validation rows split across ranks, the sums all-reduced
    control                    one small all-reduce per step: the mean loss, stop requests, rank 0's clock

Rank 0 writes the run directory (snapshots, metrics, logs, samples); the others only read it.
Everything a rank decides (stop, evaluate, snapshot, roll back) comes from values that are the
same on every rank, so the ranks never wait for each other at different collectives.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from charpoet.errors import CharpoetError, ConfigError

T, R = TypeVar("T"), TypeVar("R")
TIMEOUT_ENV = "CHARPOET_DIST_TIMEOUT"  # seconds to wait for the other ranks (rendezvous and collectives)
DEFAULT_TIMEOUT = 1800.0  # torch's own default: rank 0 may spend minutes encoding a large library first


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} and WORLD_SIZE {world} do not make sense (they are set by torchrun)")
    return rank, world, local


def is_main_process() -> bool:
    """True outside torchrun and on rank 0: the process that prints, logs and writes the run."""
    try:
        return world_from_env()[0] == 0
    except ConfigError:
        return True


def split_rows(batch_size: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [a, b) of the global batch that ``rank`` trains; the batch must divide evenly."""
    if batch_size % world:
        raise ConfigError(f"--batch-size {batch_size} does not divide across {world} ranks: the global batch is "
                          f"split evenly, so use a multiple of {world} (for example {max(world, batch_size // world * world)})")
    share = batch_size // world
    return rank * share, (rank + 1) * share


@dataclass
class Group:
    """This process's place in a (possibly one-process) training group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # this rank's device (cuda:LOCAL_RANK on GPUs)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def first_on_node(self) -> bool:
        """The first rank on a machine other than rank 0's (which has the run from rank 0 itself)."""
        return self.local_rank == 0 and self.rank != 0

    def place(self, device: torch.device) -> torch.device:
        """This rank's device for the run's ``device`` (``cuda:LOCAL_RANK`` on GPUs); kept in ``device``."""
        if self.distributed:
            if device.type == "cuda":
                device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(device)
            elif device.type != "cpu":
                raise ConfigError(f"training on several processes needs --device cpu or cuda, not {device.type}")
        self.device = device
        return device

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise sum over ranks (in place; float64 on the CPU for gloo, or the device's)."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def same_everywhere(self, values: torch.Tensor) -> bool:
        """Whether ``values`` (a float64 vector) is the same on every rank."""
        if not self.distributed:
            return True
        both = torch.cat([values, -values])
        dist.all_reduce(both, op=dist.ReduceOp.MAX)  # max of the values and minus their min
        n = values.numel()
        return bool(torch.equal(both[:n], -both[n:]))

    def gather_rows(self, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Each (L, b, H) tensor of this rank, concatenated over ranks along dim 1: (L, B, H)."""
        if not self.distributed:
            return parts
        out = []
        for part in parts:
            pieces = [torch.empty_like(part) for _ in range(self.world)]
            dist.all_gather(pieces, part.contiguous())
            out.append(torch.cat(pieces, dim=1))
        return tuple(out)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def join() -> Group:
    """Join the process group torchrun describes (a group of one outside torchrun).

    gloo for CPU tensors, and nccl for CUDA tensors where CUDA is available, so the group does not
    depend on the device a rank's options name (``Group.place`` chooses it, from the run's
    configuration as rank 0 wrote it). A rendezvous that cannot be reached within
    ``CHARPOET_DIST_TIMEOUT`` seconds (default 1800) is a one-line ``CharpoetError`` (reported by
    every rank: it may be one rank's own network).
    """
    rank, world, local = world_from_env()
    if world == 1:
        return Group()
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    timeout = _timeout()
    if not dist.is_initialized():
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            dist.init_process_group(backend, store=_store(rank, world, timeout), rank=rank, world_size=world,
                                    timeout=datetime.timedelta(seconds=timeout))
        except (RuntimeError, ValueError, OSError, dist.DistError) as exc:  # DistStoreError, DistNetworkError
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            others = f"{world - 1} other rank" + ("s" if world > 2 else "")
            raise CharpoetError(f"cannot join the {others} at {where} within {timeout:g} s ({first[:200]}); "
                                "check torchrun's --rdzv-endpoint/--master-addr and that every node was started") from None
    return Group(rank, world, local)


def _store(rank: int, world: int, timeout: float) -> dist.Store:
    """torchrun's key-value store, with keys of their own for each restart of the workers: after
    ``--max-restarts`` brings a group back, the new ranks must not read the addresses the old
    (killed) ones left there."""
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world,
                                       timeout=datetime.timedelta(seconds=timeout)))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"charpoet/attempt-{attempt}/", store)


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be > 0, got {text!r}")
    return value


class DistributedStep:
    """Forward and backward of this rank's rows under DistributedDataParallel (the same interface
    as ``charpoet.shards.ShardedStep``): after ``step`` every rank holds the gradients of the
    global batch's mean loss, averaged by DDP while the backward pass runs.

    Dropout draws from a generator seeded each step from torch's global one plus the rank, so a
    resumed run draws the same masks as an uninterrupted one.
    """

    shards = 1

    def __init__(self, model: torch.nn.Module, group: Group, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 compile: bool = False):
        from torch.nn.parallel import DistributedDataParallel

        self.model, self.group, self.loss_fn = model, group, loss_fn
        device = group.device or torch.device("cpu")
        self.ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.forward = torch.compile(self.ddp) if compile else self.ddp
        self.generator = torch.Generator(device=device)

    def step(self, x: torch.Tensor, y: torch.Tensor, state: tuple[torch.Tensor, ...] | None,
             dtype: torch.dtype) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if state is None:
            state = self.model.init_state(x.shape[0])  # type: ignore[operator]
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        self.generator.manual_seed(seed + self.group.rank)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits, state = self.forward(x, state, generator=self.generator)  # (b, T, V)
        loss = self.loss_fn(logits.float(), y)  # this rank's mean; DDP averages the gradients over ranks
        loss.backward()
        return loss.detach(), tuple(s.detach().float() for s in state)

    def map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        return [fn(item) for item in items]

    def close(self) -> None:
        """Let go of DDP before the group is destroyed: its reducer holds the process group, whose gloo
        threads would otherwise outlive it and abort the process as the interpreter shuts down."""
        import gc

        self.forward = self.ddp = None  # type: ignore[assignment]
        gc.collect()
