"""Choosing the next token: the sampler shared by generate, chat and the training samples.

    sampler = Sampler(SamplingOptions(temperature=0.8, top_p=0.95, seed=1), banned=[unk_id])
    ids = sampler.pick(logits)              # logits (N, V) -> token ids (N,)
    saved = sampler.get_state(); ...; sampler.set_state(saved)   # replay exactly

Logits are divided by the temperature T after subtracting each row's maximum (T < 1 sharpens,
T > 1 flattens; T = 0 is argmax; any tiny T acts greedy and any huge T near uniform, never NaN);
top-k keeps the k most likely tokens (and ties with the k-th); top-p keeps the smallest set, in
order of probability, whose probability reaches p; banned ids (such as ``<unk>``) are never drawn.
Each draw takes one uniform number per row from a numpy ``Generator`` (PCG64) seeded once, so a
seed gives the same text whichever backend computed the logits (up to float32 near-ties between
backends). The compiled kernel (``charpoet.kernels.draw_rows``) and the numpy code here do the
same float64 arithmetic in the same order, so they draw the same tokens.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from charpoet.config import check_seed
from charpoet.errors import CheckpointError, ConfigError


@dataclass(frozen=True, kw_only=True)
class SamplingOptions:
    """How tokens are drawn; the base of ``SampleOptions`` (generate) and ``ChatOptions`` (chat).
    Keyword-only, like its subclasses, so a field's position never matters."""

    temperature: float = 0.8  # logits divided by T; 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None  # None = fresh entropy

    def validate(self, names: Mapping[str, str] | None = None) -> Any:
        """Check every value; messages name the option as ``names[field]`` (default ``--kebab-case``)."""
        name = option_namer(names)
        t, k, p = self.temperature, self.top_k, self.top_p
        if not _real(t) or not math.isfinite(t):
            raise ConfigError(f"{name('temperature')} must be a finite number, got {t}")
        if t < 0:
            raise ConfigError(f"{name('temperature')} must be > 0 (or 0 for greedy), got {t:g}")
        if not isinstance(k, numbers.Integral) or isinstance(k, bool):
            raise ConfigError(f"{name('top_k')} must be a whole number, got {k}")
        if k < 0:
            raise ConfigError(f"{name('top_k')} must be >= 0 (0 = off), got {k}")
        if not _real(p) or not 0.0 < p <= 1.0:
            raise ConfigError(f"{name('top_p')} must be in (0, 1], got {f'{p:g}' if _real(p) else p}")
        check_seed(self.seed, name("seed"))
        return self


def _real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def option_namer(names: Mapping[str, str] | None):
    """``name(field)``: ``names[field]`` or the command-line spelling ``--field-name``."""
    return lambda field: (names or {}).get(field) or "--" + field.replace("_", "-")


def filtered_weights(logits: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0,
                     banned: np.ndarray | None = None) -> np.ndarray:
    """Unnormalised weights of the next draw: (N, V) logits -> (N, V) float64, 0 for excluded tokens.

    The reference for the compiled kernel (``charpoet.kernels.draw_rows``), with its float64
    arithmetic in the same order (sums run from the first token to the last). Temperature 0 puts
    all the weight on the first maximum. Raises ``CheckpointError`` for NaN or infinite logits.
    """
    x = np.array(logits, dtype=np.float64, ndmin=2)  # (N, V), a copy
    if banned is not None and not banned.all():
        x[:, banned] = -np.inf
    rows = np.arange(len(x))
    best = x.argmax(-1)  # (N,)
    top = x[rows, best]
    if not np.isfinite(top).all() or np.isnan(x).any():
        raise CheckpointError("the model's outputs are not finite numbers (NaN or inf): its weights are "
                              "damaged; try the other weights (--weights last or best) or train again")
    if temperature == 0:
        weights = np.zeros_like(x)
        weights[rows, best] = 1.0
        return weights
    with np.errstate(over="ignore"):  # a tiny temperature sends all but the best to -inf
        x = (x - top[:, None]) / temperature  # <= 0, -inf where banned
    vocab = x.shape[-1]
    order = np.argsort(-x, axis=-1, kind="stable")  # (N, V), most likely first, ties by index
    if 0 < top_k < vocab:
        kth = np.take_along_axis(x, order[:, top_k - 1:top_k], -1)  # (N, 1)
        x[x < kth] = -np.inf
    weights = np.exp(x)
    if top_p < 1.0:
        total = np.cumsum(weights, -1)[:, -1:]  # (N, 1), summed in index order
        share = np.take_along_axis(weights, order, -1) / total  # (N, V) in order of probability
        # probability of the tokens ranked above each: an exclusive running sum
        before = np.concatenate([np.zeros_like(share[:, :1]), np.cumsum(share, -1)[:, :-1]], -1)
        np.put_along_axis(weights, order, np.where(before >= top_p, 0.0, np.take_along_axis(weights, order, -1)), -1)
    return weights


def filtered_probabilities(logits: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0,
                           banned: np.ndarray | None = None) -> np.ndarray:
    """The distribution a draw follows: (N, V) logits -> (N, V) float64 probabilities, rows summing to 1."""
    weights = filtered_weights(logits, temperature, top_k, top_p, banned)
    return weights / weights.sum(-1, keepdims=True)


def _draw(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse CDF: per row, the first token whose running weight exceeds the uniform x the total."""
    cumulative = np.cumsum(weights, -1)  # (N, V)
    chosen = (cumulative <= (uniforms * cumulative[:, -1])[:, None]).sum(-1)
    last_possible = weights.shape[-1] - 1 - (weights[:, ::-1] > 0).argmax(-1)  # should rounding reach the end
    return np.minimum(chosen, last_possible)


try:  # the compiled kernels (charpoet.kernels); without a usable numba, the numpy and torch paths
    from charpoet import kernels
except Exception:  # noqa: BLE001 - ImportError, or numba unable to set up its cache
    kernels = None


class Sampler:
    """Draws token ids from logits with fixed options, a seeded generator and banned ids.

    ``compiled=False`` uses the numpy code even where the kernels exist (tests compare the two).
    """

    def __init__(self, options: SamplingOptions, vocab_size: int, banned: Iterable[int] = (),
                 compiled: bool | None = None):
        self.options = options
        self.banned = np.zeros(vocab_size, dtype=np.bool_)
        self.banned[list(banned)] = True
        self.compiled = kernels is not None and compiled is not False
        self.reseed(options.seed)

    @property
    def options(self) -> SamplingOptions:
        """The options of the next draws; assigning new ones validates them and keeps the generator."""
        return self._options

    @options.setter
    def options(self, value: SamplingOptions) -> None:
        self._options = value.validate()

    def reseed(self, seed: int | None) -> None:
        """A fresh generator; any seed ``check_seed`` accepts (a negative one as its 64-bit pattern, as torch does)."""
        self._rng = np.random.Generator(np.random.PCG64(None if seed is None else int(seed) % (1 << 64)))

    def get_state(self) -> dict[str, Any]:
        """The generator's state: ``set_state`` of it repeats the same draws."""
        return self._rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state

    def uniforms(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """The generator's next uniform numbers in [0, 1), one per draw, in draw order."""
        return self._rng.random(shape)

    def kernel_args(self) -> tuple[float, int, float, np.ndarray]:
        """(temperature, top_k, top_p, banned) as the compiled kernels take them."""
        o = self._options
        top_k = min(int(o.top_k), len(self.banned))  # k >= V keeps every token; the kernel takes an int64
        return float(o.temperature), top_k, float(o.top_p), self.banned

    def pick(self, logits: np.ndarray) -> np.ndarray:
        """(N, V) logits -> (N,) int64 token ids; one uniform number per row."""
        logits = self._check(logits)
        uniforms = self.uniforms(logits.shape[0])  # drawn even when greedy: the same stream either way
        if self.compiled:
            out = np.empty(logits.shape[0], dtype=np.int64)
            kernels.draw_rows(logits, *self.kernel_args(), uniforms, out)
            if (out < 0).any():
                filtered_weights(logits, 1.0, banned=self.banned)  # raises the error for non-finite logits
            return out
        o = self._options
        return _draw(filtered_weights(logits, o.temperature, o.top_k, o.top_p, self.banned), uniforms)

    def _check(self, logits: np.ndarray) -> np.ndarray:
        """Float32, C-ordered (N, V) logits for this sampler's vocabulary."""
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        if logits.ndim != 2 or logits.shape[1] != len(self.banned):
            raise ValueError(f"logits must be (N, {len(self.banned)}), got {logits.shape}")
        return logits
