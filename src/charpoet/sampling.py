"""Choosing the next token: the sampler shared by generate, chat and the training samples.

    sampler = Sampler(SamplingOptions(temperature=0.8, top_p=0.95, seed=1), banned=[unk_id])
    ids = sampler.pick(logits)              # logits (N, V) -> token ids (N,)
    saved = sampler.get_state(); ...; sampler.set_state(saved)   # replay exactly

Logits are divided by the temperature T after subtracting each row's maximum (T < 1 sharpens,
T > 1 flattens; T = 0 is argmax; any tiny T acts greedy and any huge T near uniform, never NaN);
top-k keeps the k most likely tokens (and ties with the k-th); top-p keeps the smallest set, in
order of probability, whose probability reaches p; banned ids (such as ``<unk>``) are never drawn.
Each draw takes one uniform number per row from a numpy ``Generator`` (PCG64) seeded once, so a
seed gives the same text whichever backend computed the logits. The compiled kernel
(``charpoet.kernels.sample_rows``) and the numpy code here do the same float64 arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from charpoet.config import check_seed
from charpoet.errors import ConfigError


@dataclass(frozen=True)
class SamplingOptions:
    """How tokens are drawn; the base of ``SampleOptions`` (generate) and ``ChatOptions`` (chat)."""

    temperature: float = 0.8  # logits divided by T; 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None  # None = fresh entropy

    def validate(self, names: Mapping[str, str] | None = None) -> Any:
        """Check every value; messages name the option as ``names[field]`` (default ``--kebab-case``)."""
        name = option_namer(names)
        if not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature):
            raise ConfigError(f"{name('temperature')} must be a finite number, got {self.temperature}")
        if self.temperature < 0:
            raise ConfigError(f"{name('temperature')} must be > 0 (or 0 for greedy), got {self.temperature:g}")
        if self.top_k < 0:
            raise ConfigError(f"{name('top_k')} must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"{name('top_p')} must be in (0, 1], got {self.top_p:g}")
        check_seed(self.seed, name("seed"))
        return self


def option_namer(names: Mapping[str, str] | None):
    """``name(field)``: ``names[field]`` or the command-line spelling ``--field-name``."""
    return lambda field: (names or {}).get(field) or "--" + field.replace("_", "-")


def filtered_probabilities(logits: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0,
                           banned: np.ndarray | None = None) -> np.ndarray:
    """The distribution a draw follows: (N, V) logits -> (N, V) float64 probabilities, rows summing to 1.

    Temperature 0 puts all the mass on the first maximum. The reference for the compiled kernel.
    """
    x = np.array(logits, dtype=np.float64, ndmin=2)  # (N, V), a copy
    if banned is not None and not banned.all():
        x[:, banned] = -np.inf
    best = x.argmax(-1)  # (N,)
    if temperature == 0:
        probs = np.zeros_like(x)
        probs[np.arange(len(x)), best] = 1.0
        return probs
    with np.errstate(over="ignore"):  # a tiny temperature sends all but the best to -inf
        x = (x - x[np.arange(len(x)), best][:, None]) / temperature  # <= 0, -inf where banned
    vocab = x.shape[-1]
    if 0 < top_k < vocab:
        kth = -np.sort(-x, axis=-1)[:, top_k - 1:top_k]  # (N, 1)
        x[x < kth] = -np.inf
    p = np.exp(x)
    if top_p < 1.0:
        order = np.argsort(-x, axis=-1, kind="stable")  # (N, V), most likely first
        sorted_p = np.take_along_axis(p, order, -1)
        share = sorted_p / sorted_p.sum(-1, keepdims=True)
        before = np.cumsum(share, -1) - share  # probability of the tokens ranked above
        np.put_along_axis(p, order, np.where(before >= top_p, 0.0, sorted_p), -1)
    return p / p.sum(-1, keepdims=True)


def _draw(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse CDF: for each row, the first token whose cumulative probability exceeds the uniform."""
    cumulative = np.cumsum(probs, -1)  # (N, V)
    chosen = (cumulative <= (uniforms * cumulative[:, -1])[:, None]).sum(-1)
    last_possible = probs.shape[-1] - 1 - (probs[:, ::-1] > 0).argmax(-1)  # should rounding reach the end
    return np.minimum(chosen, last_possible)


try:  # the compiled kernels (charpoet.kernels); without a usable numba, the numpy and torch paths
    from charpoet import kernels
except Exception:  # noqa: BLE001 - ImportError, or numba unable to set up its cache
    kernels = None


class Sampler:
    """Draws token ids from logits with fixed options, a seeded generator and banned ids."""

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
        self._rng = np.random.Generator(np.random.PCG64(seed))

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
        return float(o.temperature), int(o.top_k), float(o.top_p), self.banned

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, V) logits -> (N, V) probabilities of the next draw."""
        o = self.options
        return filtered_probabilities(logits, o.temperature, o.top_k, o.top_p, self.banned)

    def pick(self, logits: np.ndarray) -> np.ndarray:
        """(N, V) float logits -> (N,) int64 token ids; one uniform number per row."""
        uniforms = self.uniforms(logits.shape[0])  # drawn even when greedy: the same stream either way
        if self.compiled:
            out = np.empty(logits.shape[0], dtype=np.int64)
            kernels.draw_rows(np.ascontiguousarray(logits, dtype=np.float32), *self.kernel_args(), uniforms, out)
            return out
        return _draw(self.probabilities(logits), uniforms)
