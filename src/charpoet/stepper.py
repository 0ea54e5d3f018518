"""The generation core's model half: a trained ``RNNLM`` prepared once to advance streams token by token.

    stepper = Stepper(model)                        # a snapshot of the weights, rearranged once
    logits, state = stepper.feed(prime_ids)         # one stream: (1, V) logits after the prime
    state = stepper.repeat(state, 8)                # the same state for 8 streams
    logits, state = stepper.step(next_ids, state)   # (8,) ids -> (8, V) logits and the next state

Logits are float32 numpy arrays on the host, ready for ``charpoet.sampling.Sampler``; a state is a
tuple like ``RNNLM``'s, ``(h, c)`` for an LSTM and ``(h,)`` for a GRU, each (L, N, H): numpy
float32 on the CPU, torch tensors on an accelerator. ``step`` never changes the state it is given,
so a caller may keep old states (chat's undo) without copying. A stepper holds no other mutable
state, so threads may share one.

Backends, chosen by measurement (README, "Generation speed"):
- ``compiled`` (CPU with numba): ``charpoet.kernels.run`` reads each weight once per stream, with
  the embedding folded into layer 0's input projection (a (V, G*H) table, when it is at most 64 MiB);
  ``decode`` runs its whole loop, sampling included, in compiled code. That is for up to
  ``COMPILED_MAX_STREAMS`` streams, where matrix-vector products are bound by memory, so a model
  of ``UNITS_PER_THREAD`` units or more per layer has each layer's units shared among threads
  (``kernels.run_threads``: each core reads its part of the weights; the same numbers); for more,
  each layer is one multi-threaded matrix product (numpy's BLAS) for all streams, feature-major,
  then compiled cells (``_FeatureMajor``).
- ``torch``: ``torch.lstm_cell``/``torch.gru_cell`` per layer; for accelerators and without numba.
Primes are fed without computing logits until the last token: by the compiled kernel in constant
memory, or by the torch layers over chunks of ``FEED_CHUNK`` tokens.
"""

from __future__ import annotations

import importlib
import os
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charpoet.model import RNNLM
from charpoet.sampling import Sampler, kernels

State = tuple[Any, ...]
FEED_CHUNK = 2048  # prime tokens per torch forward pass: bounds the (1, chunk, H) activations
COMPILED_MAX_STREAMS = 2  # above this, one matrix product per weight (torch) is faster on the CPU
TABLE_MAX_BYTES = 64 << 20  # fold the embedding into layer 0 when the (V, G*H) table is at most this
UNITS_PER_THREAD = 128  # the compiled step shares a layer among threads with at least this many units each
MAX_THREADS = 4  # ... and among at most this many (each parallel section costs a few microseconds)
_NO_DRAW = (0.0, 0, 1.0, np.zeros(0, np.bool_))  # kernels.run's sampling arguments when tokens are given
_forked = False  # in a child made by fork(), where GNU OpenMP's threads cannot be used (numba aborts)


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Stepper:
    """A ``RNNLM`` prepared for generation; see the module docstring."""

    def __init__(self, model: RNNLM, backend: str = "auto", threads: int | None = None):
        """``threads``: how many threads the compiled step of one or two streams may use (None:
        as many as ``compiled_threads`` allows for this model's size)."""
        if backend not in ("auto", "compiled", "torch"):
            raise ValueError(f"backend must be auto, compiled or torch, got {backend!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        weight = model.head.weight
        self.device = weight.device
        on_cpu = self.device.type == "cpu"
        if backend == "compiled" and (kernels is None or not on_cpu):
            raise ValueError("the compiled backend needs numba and a model on the CPU")
        self.backend = "compiled" if backend != "torch" and kernels is not None and on_cpu else "torch"
        cfg = model.config
        self.cell, self.num_layers, self.rnn_size, self.vocab_size = cfg.cell, cfg.num_layers, cfg.rnn_size, cfg.vocab_size
        self.state_size = model.state_size
        with torch.no_grad():  # a snapshot: later changes to the model's weights do not reach it
            params = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
        self._torch = params  # float32, on the model's device
        if self.backend == "compiled":
            self._arrays = _compiled_weights(params, cfg)
        if self.backend != "compiled":
            self.threads = 1
        else:
            self.threads = auto_threads(self.rnn_size) if threads is None else min(threads, compiled_threads())

    # --- states ------------------------------------------------------------------------------
    def init_state(self, streams: int) -> State:
        """Zeros for ``streams`` streams."""
        shape = (self.num_layers, streams, self.rnn_size)
        if self.device.type == "cpu":
            return tuple(np.zeros(shape, np.float32) for _ in range(self.state_size))
        return tuple(torch.zeros(shape, device=self.device) for _ in range(self.state_size))

    def repeat(self, state: State, streams: int) -> State:
        """A one-stream state copied for ``streams`` streams."""
        if isinstance(state[0], np.ndarray):
            return tuple(np.repeat(s, streams, axis=1) for s in state)
        return tuple(s.expand(-1, streams, -1).contiguous() for s in state)

    # --- stepping ----------------------------------------------------------------------------
    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """(N,) token ids and a state of N streams -> (N, V) logits and the new state."""
        tokens = self._tokens(tokens)
        if self.backend == "torch":
            return self._step_torch(tokens, state)
        if len(tokens) <= COMPILED_MAX_STREAMS:
            return self._run_given(tokens[None], state)
        return self._step_batched(tokens, state)

    def decode(self, sampler: Sampler, logits: np.ndarray, state: State, length: int,
               finish: bool = True) -> tuple[np.ndarray, np.ndarray, State]:
        """``length`` rounds of drawing a token per stream with ``sampler`` and stepping with it
        (not after the last draw when ``finish``) -> ids (length, N), the logits and the state after.

        The same tokens as alternating ``sampler.pick`` and ``step``. On the compiled backend the
        whole loop runs in compiled code for a few streams; for more, the state stays feature-major
        (``_FeatureMajor``) from one step to the next.
        """
        n = logits.shape[0]
        if self.fused(n) and sampler.compiled:
            out = np.empty((length, n), np.int64)
            logits = np.array(logits, dtype=np.float32, order="C")  # updated in place
            h, c = self._state_arrays(state, copy=True)
            if not self._run(out, True, finish, logits, h, c, *sampler.kernel_args(), sampler.uniforms((length, n))):
                sampler.pick(logits)  # the logits are not finite: raises the sampler's error
            return out, logits, self._pack(h, c)
        out = np.empty((length, n), np.int64)
        batch = _FeatureMajor(self, state) if self.backend == "compiled" and n > COMPILED_MAX_STREAMS else None
        for t in range(length):
            out[t] = sampler.pick(logits)
            if finish and t == length - 1:
                break
            if batch is not None:  # many streams: the state stays feature-major between steps
                logits = batch.step(out[t])
            else:
                logits, state = self.step(out[t], state)
        return out, logits, batch.state() if batch is not None else state

    def feed(self, tokens: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """Run one stream through ``tokens`` (T >= 1,) from ``state`` (zeros if None) -> (1, V) logits
        after the last token, and the state."""
        tokens = self._tokens(tokens)
        if len(tokens) == 0:
            raise ValueError("feed needs at least one token")
        state = self.init_state(1) if state is None else state
        if self.backend == "compiled":
            return self._run_given(tokens[:, None], state)
        return self._feed_torch(tokens, state)

    def fused(self, streams: int) -> bool:
        """Whether ``decode`` runs its whole loop in compiled code for this many streams."""
        return self.backend == "compiled" and streams <= COMPILED_MAX_STREAMS

    def _tokens(self, tokens: Any) -> np.ndarray:
        """A fresh, writable int64 copy of ``tokens``, each a valid id (compiled code does not check)."""
        tokens = np.array(tokens, dtype=np.int64, copy=True, ndmin=1)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {tokens.min()}..{tokens.max()}")
        return tokens

    def _state_arrays(self, state: State, copy: bool = False) -> tuple[np.ndarray, np.ndarray]:
        h = np.array(state[0], dtype=np.float32, copy=copy or None, order="C")
        c = np.array(state[1], dtype=np.float32, copy=copy or None, order="C") if len(state) > 1 else h
        return h, c

    def _pack(self, h: np.ndarray, c: np.ndarray) -> State:
        return (h, c) if self.state_size == 2 else (h,)

    def _run_given(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """``kernels.run`` over given tokens (T, N): the logits (N, V) after the last and the state."""
        h, c = self._state_arrays(state, copy=True)
        logits = np.empty((tokens.shape[1], self.vocab_size), np.float32)
        self._run(tokens, False, False, logits, h, c, *_NO_DRAW, np.empty((0, 0)))
        return logits, self._pack(h, c)

    def _run(self, tokens: np.ndarray, draw: bool, finish: bool, logits: np.ndarray, h: np.ndarray,
             c: np.ndarray, *sampling: Any) -> bool:
        """``kernels.run``, or ``kernels.run_threads`` with ``self.threads`` threads (the same numbers)."""
        args = (tokens, draw, finish, logits, h, c, *self._arrays, *sampling)
        if self.threads == 1 or _forked:
            return kernels.run(*args, self.threads)
        import numba

        before = numba.get_num_threads()  # this thread's count, for the parallel sections it starts
        numba.set_num_threads(self.threads)
        try:
            return kernels.run_threads(*args, self.threads)
        finally:
            numba.set_num_threads(before)

    def _step_batched(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        batch = _FeatureMajor(self, state)
        return batch.step(tokens), batch.state()

    @cached_property
    def _batched_weights(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """For the batched path: layer 0's input table transposed to (G*H or E, V), and [W_ih W_hh]
        (G*H, 2H) of each LSTM layer after the first (one matrix product for input and state)."""
        _, table, _, w_ih, w_hh = self._arrays[:5]
        stacked = [np.concatenate([w_ih[i - 1], w_hh[i]], axis=1) for i in range(1, self.num_layers)]
        return np.ascontiguousarray(table.T), stacked if self.cell == "lstm" else []

    @torch.no_grad()
    def _step_torch(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        p, on_host = self._torch, isinstance(state[0], np.ndarray)
        hs = [torch.as_tensor(s, device=self.device) for s in state]  # each (L, N, H), no copy on the CPU
        x = F.embedding(torch.as_tensor(tokens, device=self.device), p["embedding.weight"])  # (N, E)
        new: list[list[torch.Tensor]] = [[] for _ in hs]
        for i in range(self.num_layers):
            w = [p[f"layers.{i}.{name}_l0"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if self.cell == "lstm":
                h, c = torch.lstm_cell(x, (hs[0][i], hs[1][i]), *w)  # each (N, H)
                new[0].append(h)
                new[1].append(c)
            else:
                h = torch.gru_cell(x, hs[0][i], *w)
                new[0].append(h)
            x = h
            if f"norms.{i}.weight" in p:
                x = F.layer_norm(x, (self.rnn_size,), p[f"norms.{i}.weight"], p[f"norms.{i}.bias"])
        logits = F.linear(x, p["head.weight"], p["head.bias"])  # (N, V)
        out = tuple(torch.stack(parts) for parts in new)  # each (L, N, H)
        if on_host:
            return logits.numpy(), tuple(s.numpy() for s in out)
        return logits.float().cpu().numpy(), out

    @torch.no_grad()
    def _feed_torch(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        p, on_host = self._torch, isinstance(state[0], np.ndarray)
        ids = torch.as_tensor(tokens, device=self.device).unsqueeze(0)  # (1, T)
        state = tuple(torch.as_tensor(s, device=self.device) for s in state)  # each (L, 1, H)
        layers = [tuple(s[i:i + 1].contiguous() for s in state) for i in range(self.num_layers)]  # (1, 1, H)
        for start in range(0, ids.shape[1], FEED_CHUNK):  # the fused sequence kernels, chunk by chunk
            x = F.embedding(ids[:, start:start + FEED_CHUNK], p["embedding.weight"])  # (1, t, E)
            for i in range(self.num_layers):
                weights = [p[f"layers.{i}.{name}_l0"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                if self.cell == "lstm":  # torch.lstm/gru: what nn.LSTM/nn.GRU call, here on the snapshot
                    x, h, c = torch.lstm(x, layers[i], weights, True, 1, 0.0, False, False, True)
                    layers[i] = (h, c)
                else:
                    x, h = torch.gru(x, layers[i][0], weights, True, 1, 0.0, False, False, True)
                    layers[i] = (h,)
                if f"norms.{i}.weight" in p:
                    x = F.layer_norm(x, (self.rnn_size,), p[f"norms.{i}.weight"], p[f"norms.{i}.bias"])
        logits = F.linear(x[:, -1], p["head.weight"], p["head.bias"])  # (1, V): the last token only
        out = tuple(torch.cat([ls[k] for ls in layers]) for k in range(self.state_size))  # (L, 1, H)
        if on_host:
            return logits.numpy(), tuple(s.numpy() for s in out)
        return logits.cpu().numpy(), out


class _FeatureMajor:
    """Many streams' state on the compiled backend's batched path, laid out (features, N).

    Each layer's products are then W @ [x; h] with the streams along the rows' inner dimension
    (the faster orientation for BLAS here), and the cells run along the streams. Layer i keeps two
    (2H, N) buffers, [x; h]: its input x (written by the layer below in this step) over its state
    h; a step reads one and writes the new h into the other, so nothing is copied between layers
    or steps. The state converts back to (L, N, H) only when asked for.
    """

    def __init__(self, stepper: Stepper, state: State):
        self.s = stepper
        h, c = stepper._state_arrays(state)
        L, N, H = h.shape
        self.H = H
        self.xh = np.empty((L, 2, 2 * H, N), np.float32)  # [layer, buffer]: rows :H input x, rows H: state h
        self.c = np.empty((L, 2, H, N), np.float32)  # an LSTM's cell state
        self.xh[:, 0, H:] = h.transpose(0, 2, 1)
        if stepper.state_size == 2:
            self.c[:, 0] = c.transpose(0, 2, 1)
        self.top = np.empty((H, N), np.float32)  # the last layer's output
        self.now = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Advance every stream by ``tokens`` (N,) -> (N, V) logits."""
        st, H, now, nxt = self.s, self.H, self.now, 1 - self.now
        cell, _, w_ih0, w_ih, w_hh, b_in, b_hh, ln_w, ln_b, head_w, head_b = st._arrays
        table_t, stacked = st._batched_weights
        lstm, none = st.cell == "lstm", np.zeros(0, np.float32)
        for i in range(st.num_layers):
            xh, h = self.xh[i, now], self.xh[i, now, H:]
            if i == 0:
                inputs = np.take(table_t, tokens, axis=1)  # (G*H, N) folded projection (bias in), or (E, N)
                gi = np.matmul(w_ih0, inputs) if w_ih0.shape[0] else inputs
                b_i = b_in[0] if w_ih0.shape[0] else none
                if lstm:
                    gi += np.matmul(w_hh[0], h)
            elif lstm:
                gi, b_i = np.matmul(stacked[i - 1], xh), b_in[i]  # [W_ih W_hh] @ [x; h]
            else:
                gi, b_i = np.matmul(w_ih[i - 1], xh[:H]), b_in[i]
            gh, b_h = (gi, none) if lstm else (np.matmul(w_hh[i], h), b_hh[i])
            out = self.xh[i + 1, now, :H] if i + 1 < st.num_layers else self.top  # the next layer's input
            norm = (ln_w[i], ln_b[i]) if ln_w.shape[0] else (none, none)
            kernels.cells(cell, gi, gh, b_i, b_h, h, self.c[i, now], self.xh[i, nxt, H:], self.c[i, nxt], *norm, out)
        self.now = nxt
        logits = np.matmul(head_w, self.top).T  # (N, V), a view of (V, N)
        return np.add(logits, head_b, order="C")

    def state(self) -> State:
        """The (L, N, H) state, copied out."""
        h = np.ascontiguousarray(self.xh[:, self.now, self.H:].transpose(0, 2, 1))
        c = np.ascontiguousarray(self.c[:, self.now].transpose(0, 2, 1))
        return self.s._pack(h, c)


def _compiled_weights(p: dict[str, torch.Tensor], cfg: Any) -> tuple[Any, ...]:
    """The kernels' weight arguments, from ``cell`` on; see ``charpoet.kernels._step``."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return np.array(t.cpu().numpy(), dtype=np.float32, order="C", copy=True)

    L, H = cfg.num_layers, cfg.rnn_size
    gates = 4 if cfg.cell == "lstm" else 3
    lstm = cfg.cell == "lstm"
    b_ih = [p[f"layers.{i}.bias_ih_l0"] for i in range(L)]
    b_hh = [p[f"layers.{i}.bias_hh_l0"] for i in range(L)]
    b_in = torch.stack([bi + bh if lstm else bi for bi, bh in zip(b_ih, b_hh)])  # (L, G*H)
    emb, w_ih0 = p["embedding.weight"], p["layers.0.weight_ih_l0"]  # (V, E), (G*H, E)
    if cfg.vocab_size * gates * H * 4 <= TABLE_MAX_BYTES:
        table, w_ih0 = emb @ w_ih0.T + b_in[0], w_ih0[:0]  # (V, G*H): every token's input projection
    else:
        table = emb
    w_ih = torch.stack([p[f"layers.{i}.weight_ih_l0"] for i in range(1, L)]) if L > 1 else torch.zeros(0, gates * H, H)
    w_hh = torch.stack([p[f"layers.{i}.weight_hh_l0"] for i in range(L)])  # (L, G*H, H)
    if cfg.layer_norm:
        ln_w = torch.stack([p[f"norms.{i}.weight"] for i in range(L)])
        ln_b = torch.stack([p[f"norms.{i}.bias"] for i in range(L)])
    else:
        ln_w = ln_b = torch.zeros(0, H)
    cell = kernels.LSTM if lstm else kernels.GRU
    return (cell, arr(table), arr(w_ih0), arr(w_ih), arr(w_hh), arr(b_in), arr(torch.stack(b_hh)),
            arr(ln_w), arr(ln_b), arr(p["head.weight"]), arr(p["head.bias"]))


def auto_threads(rnn_size: int) -> int:
    """The threads a compiled step of one stream uses by default: as many as ``compiled_threads``
    allows, with ``UNITS_PER_THREAD`` units or more each (a smaller share is slower than one core)."""
    return max(1, min(compiled_threads(), rnn_size // UNITS_PER_THREAD))


@lru_cache(maxsize=None)
def compiled_threads() -> int:
    """How many threads the compiled step may share a layer among: the cores this process may run
    on (at most numba's thread count and ``MAX_THREADS``), or 1 where numba has no thread-safe
    threading layer (OpenMP or TBB; its fallback, the work queue, costs far more than it saves)."""
    if kernels is None:
        return 1
    import numba

    layer = str(numba.config.THREADING_LAYER).lower()
    if layer not in ("default", "safe", "threadsafe", "omp", "tbb"):
        return 1
    usable = []
    for pool in ("omp", "tbb") if layer in ("default", "threadsafe") else (("tbb",) if layer == "safe" else (layer,)):
        try:
            importlib.import_module(f"numba.np.ufunc.{pool}pool")
            usable.append(pool)
        except ImportError:
            pass
    if not usable:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, numba.config.NUMBA_NUM_THREADS, MAX_THREADS))


def warm_up() -> str:
    """Compile every kernel for this machine now (or load them from numba's cache) with a tiny model,
    so the first generation does not wait; returns the backend (``make install`` runs this)."""
    from charpoet.config import ModelConfig
    from charpoet.sampling import SamplingOptions

    stepper_model = RNNLM(ModelConfig(vocab_size=3, rnn_size=8, num_layers=2, embedding_size=2))
    stepper = Stepper(stepper_model)
    logits, state = stepper.feed(np.array([0, 1]))
    sampler = Sampler(SamplingOptions(seed=0), 3)
    stepper.decode(sampler, logits, state, 2)
    sampler.pick(logits)
    stepper.step(np.zeros(COMPILED_MAX_STREAMS + 1, np.int64), stepper.repeat(state, COMPILED_MAX_STREAMS + 1))
    if stepper.backend == "compiled" and compiled_threads() > 1:
        threaded = Stepper(stepper_model, threads=2)
        threaded.decode(sampler, *threaded.feed(np.array([0, 1])), 2)
    return stepper.backend


if __name__ == "__main__":
    print(f"generation kernels ready: {warm_up()} backend")
