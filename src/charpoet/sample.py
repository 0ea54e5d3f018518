"""Generation from a trained run: stateful, one forward step per token, batched samples.

    lm = charpoet.load("runs/demo")                 # best weights, device auto
    texts = lm.generate("ROMEO:", length=300, temperature=0.8, num_samples=3, seed=1)
    for pieces in lm.stream("ROMEO:", length=300):  # one list of new text per step
        print(pieces[0], end="")

Sampling: logits are divided by the temperature T (T < 1 sharpens, T > 1 flattens,
T = 0 is greedy argmax); then top-k keeps the k most likely tokens and top-p keeps the
smallest set whose probability reaches p. The prime is fed once through the network
and the hidden state is carried, so each new token costs one step, never a re-fed window.
"""

from __future__ import annotations

import math

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charpoet.checkpoint import RunDir
from charpoet.config import RunConfig, check_seed
from charpoet.errors import CharpoetWarning, CheckpointError, ConfigError
from charpoet.model import RNNLM
from charpoet.resources import require_memory
from charpoet.tokenizer import Tokenizer
from charpoet.train import resolve_device


@dataclass(frozen=True)
class SampleOptions:
    length: int = 500  # tokens to generate (characters for a char run)
    temperature: float = 0.8
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    num_samples: int = 1
    seed: int | None = None

    def validate(self) -> SampleOptions:
        if self.length < 0:
            raise ConfigError(f"--length must be >= 0, got {self.length}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"--temperature must be > 0 (or 0 for greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.num_samples < 1:
            raise ConfigError(f"--num-samples must be >= 1, got {self.num_samples}")
        check_seed(self.seed)
        return self


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Scale by temperature and mask everything outside top-k / top-p with -inf; (B, V).

    The row maximum is subtracted first, so a tiny temperature gives 0 for the best token(s)
    and -inf for the rest (the greedy limit) instead of inf - inf = NaN; below the dtype's
    smallest normal number, where the division itself fails, that limit is taken directly.
    """
    shifted = logits - logits.max(dim=-1, keepdim=True).values  # (B, V), <= 0
    if temperature >= torch.finfo(shifted.dtype).tiny:
        logits = shifted / temperature
    else:
        logits = shifted.masked_fill(shifted < 0, float("-inf"))
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


class LanguageModel:
    """A trained run loaded for generation: model, tokenizer and config together."""

    def __init__(self, model: RNNLM, tokenizer: Tokenizer, config: RunConfig, meta: dict[str, Any]):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.meta = meta  # step and metrics of the loaded weights
        self.device = model.head.weight.device

    def encode_prime(self, prime: str) -> torch.Tensor:
        """Token ids of ``prime``; unknown characters are an error, unknown words a warning."""
        ids = self.tokenizer.encode(prime)
        unk = getattr(self.tokenizer, "unk_id", None)
        if unk is not None and (ids == unk).any():
            pieces = self.tokenizer.pieces(prime)
            unknown = sorted({p for p, i in zip(pieces, ids) if i == unk})
            warnings.warn(f"words not in the model's vocabulary, read as <unk>: {', '.join(unknown[:10])}",
                          CharpoetWarning, stacklevel=3)
        return torch.as_tensor(ids, dtype=torch.long)

    def stream(self, prime: str = "\n", options: SampleOptions | None = None, **kwargs: Any) -> Iterator[list[str]]:
        """Yield, for every generated token, the list of new text of each sample.

        Options and the prime are checked at once (bad values raise before anything is
        yielded); generation itself happens as the iterator is consumed.
        """
        opts = (options or SampleOptions(**kwargs)).validate()
        if not prime:
            raise ConfigError("the priming text is empty; give at least one character")
        prime_ids = self.encode_prime(prime).to(self.device)
        n, m = opts.num_samples, self.model.config
        require_memory(n * 4 * (4 * m.vocab_size + 3 * m.num_layers * m.rnn_size), f"{n:,} samples at once",
                       "use a smaller --num-samples", device=self.device)
        return self._stream(prime_ids, opts)

    @torch.no_grad()
    def _stream(self, prime_ids: torch.Tensor, opts: SampleOptions) -> Iterator[list[str]]:
        generator = torch.Generator(device=self.device)
        if opts.seed is None:
            generator.seed()
        else:
            generator.manual_seed(opts.seed)
        logits, state = self.model(prime_ids.unsqueeze(0))  # the prime, once: logits (1, P, V)
        n = opts.num_samples
        state = tuple(s.expand(-1, n, -1).contiguous() for s in state)  # each (L, N, H)
        last = logits[:, -1].expand(n, -1)  # (N, V)
        banned = getattr(self.tokenizer, "unk_id", None)
        for _ in range(opts.length):
            next_ids = self._pick(last, opts, generator, banned)  # (N,)
            yield [self.tokenizer.token_text(int(i)) for i in next_ids.tolist()]
            logits, state = self.model(next_ids.unsqueeze(1), state)  # (N, 1, V)
            last = logits[:, -1]

    def generate(self, prime: str = "\n", options: SampleOptions | None = None, **kwargs: Any) -> list[str]:
        """Generated texts (without the prime), one per sample."""
        opts = (options or SampleOptions(**kwargs)).validate()
        stream = self.stream(prime, opts)  # checks everything before anything is allocated
        texts: list[list[str]] = [[] for _ in range(opts.num_samples)]
        for pieces in stream:
            for out, piece in zip(texts, pieces):
                out.append(piece)
        return ["".join(t) for t in texts]

    @staticmethod
    def _pick(last: torch.Tensor, opts: SampleOptions, generator: torch.Generator, banned: int | None) -> torch.Tensor:
        last = last.float()
        if banned is not None and last.shape[-1] > 1:
            last = last.clone()
            last[:, banned] = float("-inf")  # never write <unk>
        if opts.temperature == 0:
            return last.argmax(-1)
        probs = filter_logits(last, opts.temperature, opts.top_k, opts.top_p).softmax(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def load(run_dir: str | Path, weights: str = "best", device: str = "auto") -> LanguageModel:
    """Load a run directory for generation; ``weights`` is best or last."""
    run = RunDir(run_dir).require()
    config = run.read_config()
    tokenizer = run.read_vocab()
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CheckpointError(f"{run.path}: vocab.json does not match config.json (vocabulary size)")
    state_dict, meta = run.load_weights(weights)
    model = RNNLM(config.model)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{run.path}: weights do not match config.json: {first}") from None
    return LanguageModel(model.to(resolve_device(device)), tokenizer, config, meta)
