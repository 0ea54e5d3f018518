"""Scoring texts with a trained run: loss, bits per character and accuracy, per source and in total.

    lm = charpoet.load("runs/books")
    result = charpoet.evaluate_texts(lm, ["books/test.txt"])   # files, directories, globs, a Library or Sources
    print(result.total.bpc, [(s.name, s.bpc) for s in result.sources])
    charpoet.evaluate_texts("runs/books", ["test/"], weights="last")   # a run path loads it first

Each source is one stream from a zero state, fed to the model in chunks of ``chunk_tokens`` with
the hidden state carried between chunks (in float32, eval mode, no gradients)::

    stream  : t0   t1   t2   ...  t(n-2)  t(n-1)        n tokens of the source
    inputs  : t0   t1   t2   ...  t(n-2)                fed chunk by chunk, state carried
    targets :      t1   t2   ...  t(n-2)  t(n-1)        n - 1 scored tokens (t0 predicts nothing)

as training's stateful validation scores each of its rows, so a run's own validation text, short
enough to be one row there (fewer than 2 x 2,048 tokens), gives its recorded ``val_loss``. The text
is read through ``source.chunks()`` and re-cut by ``piece_safe_chunks``: a large file is never held
whole, and words tokenize exactly as in the whole text.

Out of vocabulary, counted and never fatal:
- char runs: characters outside the vocabulary are dropped from the stream before scoring;
  ``oov`` counts them and ``oov_examples`` lists the first 10 distinct ones;
- word runs: pieces outside the vocabulary are ``<unk>`` (as in training) and scored as such;
  ``oov`` counts them.

Numbers (training's ``estimate_loss`` formulas, with ``TokenSplit.chars_per_token``):
- ``loss`` = summed cross-entropy (nats) / scored tokens;
- ``bpc`` = loss / ln 2 / (covered characters / tokens), where the covered characters are those
  of the scored stream (char runs: the text without its out-of-vocabulary characters, so
  bpc = loss / ln 2) and, for word runs, every character of the text;
- ``accuracy`` = share of scored tokens whose most likely prediction is the target;
- ``total``: the same over the sums of all sources (token-weighted).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from charpoet.corpus import Library, Source, library_from_paths
from charpoet.errors import ConfigError, CorpusError
from charpoet.model import RNNLM, State
from charpoet.sample import LanguageModel, load
from charpoet.data import OOV_EXAMPLES, encode_known
from charpoet.tokenizer import Tokenizer

LN2 = math.log(2.0)
CHUNK_TOKENS = 4096  # tokens per forward call (logits: chunk x vocabulary floats)
TEXT_CHUNK_CHARS = 1 << 20  # characters read and tokenized at a time


@dataclass(frozen=True)
class SourceScore:
    """The scores of one source (or, as ``Evaluation.total``, of all of them)."""

    name: str
    characters: int  # characters of the text, out-of-vocabulary ones included
    tokens: int  # tokens of the scored stream
    scored: int  # tokens predicted: tokens - 1 per source
    oov: int  # out-of-vocabulary characters (char run, dropped) or words (word run, scored as <unk>)
    oov_examples: tuple[str, ...]  # the first distinct ones, at most OOV_EXAMPLES
    covered: int  # characters the bpc is per: the stream's (char run) or all of the text's (word run)
    nats: float  # summed cross-entropy
    correct: int  # scored tokens whose argmax is the target

    @property
    def loss(self) -> float:
        """Mean cross-entropy, nats per scored token."""
        return self.nats / self.scored if self.scored else math.nan

    @property
    def bpc(self) -> float:
        """Bits per character: ``loss / ln 2 / (covered / tokens)``, as training's ``val_bpc``."""
        return self.loss / LN2 * self.tokens / self.covered if self.covered else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["oov_examples"] = list(self.oov_examples)
        return d | {"loss": self.loss, "bpc": self.bpc, "accuracy": self.accuracy}


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate_texts`` returns: a score per source, their total, and what was evaluated."""

    sources: tuple[SourceScore, ...]
    total: SourceScore
    tokenizer: str  # char or word
    run: str | None  # the run directory, when the model was loaded from one
    weights: str | None  # best or last
    step: int | None  # the training step of those weights, when known

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what ``charpoet evaluate --json`` prints."""
        return {"run": self.run, "weights": self.weights, "step": self.step, "tokenizer": self.tokenizer,
                "sources": [s.to_dict() for s in self.sources], "total": self.total.to_dict()}


def evaluate_texts(lm: LanguageModel | str | os.PathLike[str],
                   texts: Library | Sequence[Source] | Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *,
                   weights: str = "best", device: str = "auto", chunk_tokens: int = CHUNK_TOKENS) -> Evaluation:
    """Loss, bpc and accuracy of ``lm`` (a ``LanguageModel``, or a run directory loaded with
    ``weights`` on ``device``) on ``texts``: paths (files, directories, globs, URLs), a ``Library``
    or ``Source``s; each source is scored as one stream (see the module docstring)."""
    if not isinstance(chunk_tokens, int) or isinstance(chunk_tokens, bool) or chunk_tokens < 1:
        raise ConfigError(f"chunk_tokens must be an integer >= 1, got {chunk_tokens!r}")
    sources = _sources(texts)
    if not isinstance(lm, LanguageModel):
        lm = load(lm, weights=weights, device=device)
    model = lm.model if lm.model.head.weight.dtype == torch.float32 else copy.deepcopy(lm.model).float()
    scores = [_score_source(model, lm.tokenizer, source, chunk_tokens) for source in sources]
    trainer = lm.meta.get("trainer") if isinstance(lm.meta.get("trainer"), dict) else {}  # last weights
    step = lm.meta.get("step", trainer.get("step"))
    return Evaluation(tuple(scores), _total(scores), lm.tokenizer.kind,
                      str(lm.run_dir) if lm.run_dir is not None else None, lm.weights,
                      step if isinstance(step, int) else None)


def _sources(texts: Any) -> list[Source]:
    if isinstance(texts, Library):
        sources = list(texts.sources)
    elif isinstance(texts, Source):
        sources = [texts]
    elif isinstance(texts, str | os.PathLike):
        sources = list(library_from_paths([texts]).sources)
    else:
        texts = list(texts)
        if texts and all(isinstance(t, Source) for t in texts):
            sources = list(Library("texts", tuple(texts)).sources)  # (names must be unique)
        elif all(isinstance(t, str | os.PathLike) for t in texts):
            sources = list(library_from_paths(texts).sources) if texts else []
        else:
            raise ConfigError("give the texts as paths, a Library or Sources, not a mixture")
    if not sources:
        raise CorpusError("no texts to evaluate")
    return sources


def _total(scores: list[SourceScore]) -> SourceScore:
    examples: list[str] = []
    for s in scores:
        examples += [e for e in s.oov_examples if e not in examples]
    return SourceScore("total", *(sum(getattr(s, f) for s in scores) for f in ("characters", "tokens", "scored", "oov")),
                       tuple(examples[:OOV_EXAMPLES]), sum(s.covered for s in scores), sum(s.nats for s in scores),
                       sum(s.correct for s in scores))


def _score_source(model: RNNLM, tokenizer: Tokenizer, source: Source, chunk_tokens: int) -> SourceScore:
    stream = _Stream(model, chunk_tokens)
    characters = oov = 0
    examples: dict[str, None] = {}  # ordered set
    vocab = tokenizer.kind == "char" or None
    was_training = model.training
    model.eval()
    try:
        for chunk in encode_known(tokenizer, source, TEXT_CHUNK_CHARS):  # skipped (char) or <unk> (word)
            characters += chunk.characters
            oov += chunk.oov
            for example in chunk.examples:
                if len(examples) < OOV_EXAMPLES:
                    examples.setdefault(example)
            stream.add(chunk.ids)
        stream.finish()
    finally:
        model.train(was_training)
    if stream.scored == 0:
        if characters == 0:
            why = "it is empty"
        elif stream.tokens == 0:
            why = f"all {characters:,} of its characters are outside the run's vocabulary"
        else:
            why = f"it has {stream.tokens} {'character' if vocab is not None else 'token'} in the run's vocabulary; at least 2 are needed"
        raise CorpusError(f"{source.name}: nothing to score: {why}")
    covered = stream.tokens if vocab is not None else characters
    return SourceScore(source.name, characters, stream.tokens, stream.scored, oov, tuple(examples), covered,
                       stream.nats, stream.correct)


class _Stream:
    """One source's token ids fed to the model ``chunk`` inputs at a time, the state carried.

    ``pending`` holds the ids not yet fed as inputs; a forward call takes ``chunk`` of them as
    inputs and the ``chunk`` after the first as targets, and keeps the last one as the next input.
    """

    def __init__(self, model: RNNLM, chunk: int):
        self.model, self.chunk = model, chunk
        self.device = model.head.weight.device
        self.pending = np.zeros(0, dtype=np.int64)
        self.state: State | None = None
        self.tokens = self.scored = 0
        self._sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # nats, correct: read once, at the end

    def add(self, ids: Iterable[int] | np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.tokens += len(ids)
        self.pending = np.concatenate([self.pending, ids])
        start = 0
        while len(self.pending) - start > self.chunk:  # chunk inputs and their targets
            self._score(self.pending[start : start + self.chunk + 1])
            start += self.chunk
        self.pending = self.pending[start:].copy()

    def finish(self) -> None:
        if len(self.pending) >= 2:
            self._score(self.pending)
        self.pending = self.pending[-1:]

    @torch.no_grad()
    def _score(self, window: np.ndarray) -> None:
        ids = torch.from_numpy(np.ascontiguousarray(window)).to(self.device)[None]  # (1, t + 1)
        x, y = ids[:, :-1], ids[:, 1:]  # (1, t) each
        with torch.autocast(self.device.type, enabled=False):
            logits, self.state = self.model(x, self.state)  # (1, t, V)
        flat = logits.reshape(-1, logits.shape[-1]).float()  # (t, V)
        target = y.reshape(-1)
        self._sums[0] += torch.nn.functional.cross_entropy(flat, target, reduction="sum").double()
        self._sums[1] += (flat.argmax(-1) == target).sum()
        self.scored += len(target)

    @property
    def nats(self) -> float:
        return float(self._sums[0])

    @property
    def correct(self) -> int:
        return int(self._sums[1])
