"""Generation from a trained run: stateful, one step per token, batched samples.

    lm = charpoet.load("runs/demo")                 # best weights, device auto
    texts = lm.generate("ROMEO:", length=300, temperature=0.8, num_samples=3, seed=1)
    for pieces in lm.stream("ROMEO:", length=300):  # one list of new text per step
        print(pieces[0], end="")

The prime is fed once and the hidden state is carried, so each new token costs one step of
``lm.stepper`` (``charpoet.stepper``), never a re-fed window; tokens are drawn by
``charpoet.sampling.Sampler`` (temperature, top-k, top-p; ``<unk>`` is never written).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from charpoet.checkpoint import RunDir
from charpoet.config import RunConfig
from charpoet.errors import CharpoetWarning, CheckpointError, ConfigError
from charpoet.model import RNNLM
from charpoet.resources import require_memory
from charpoet.sampling import Sampler, SamplingOptions, option_namer
from charpoet.stepper import Stepper
from charpoet.tokenizer import Tokenizer
from charpoet.train import resolve_device


DECODE_CHUNK = 64  # most tokens per call into the compiled backend's decode (~5 ms for one stream of 2 x 256)


@dataclass(frozen=True, kw_only=True)
class SampleOptions(SamplingOptions):
    """``SamplingOptions`` plus how much to write: ``length`` tokens for each of ``num_samples`` streams."""

    length: int = 500  # tokens to generate (characters for a char run)
    num_samples: int = 1

    def validate(self, names: Any = None) -> SampleOptions:
        super().validate(names)
        name = option_namer(names)
        if self.length < 0:
            raise ConfigError(f"{name('length')} must be >= 0, got {self.length}")
        if self.num_samples < 1:
            raise ConfigError(f"{name('num_samples')} must be >= 1, got {self.num_samples}")
        return self


class LanguageModel:
    """A trained run loaded for generation: model, tokenizer and config together.

    ``repr(lm)`` says what it is in one line (architecture, size, vocabulary, training, run);
    in Jupyter it shows as a small table (``_repr_html_``).
    """

    def __init__(self, model: RNNLM, tokenizer: Tokenizer, config: RunConfig, meta: dict[str, Any], *,
                 run_dir: Path | None = None, weights: str | None = None, corpus: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.meta = meta  # step and metrics of the loaded weights
        self.device = model.head.weight.device
        self.run_dir = run_dir  # where it was loaded from (None: a live model, e.g. during training)
        self.weights = weights  # best or last
        self.corpus = corpus  # the name of the run's library, when known

    def describe(self) -> dict[str, str]:
        """What ``repr`` and ``_repr_html_`` show, as labelled strings; "unknown" where unknown."""
        m, d = self.config.model, self.config.data
        tokens = d.tokenizer if d.tokenizer == "char" else f"{d.tokenizer} ({d.max_vocab:,} max)"
        arch = f"{tokens} {m.cell.upper()} {m.num_layers}\u00d7{m.rnn_size}, emb {m.embedding_size}"
        if m.layer_norm:
            arch += ", layer norm"
        trainer = self.meta.get("trainer") if isinstance(self.meta.get("trainer"), dict) else {}  # last weights
        step = self.meta.get("step", trainer.get("step"))
        metrics = self.meta.get("metrics") if isinstance(self.meta.get("metrics"), dict) else {}
        loss, bpc, accuracy = (metrics.get(k) for k in ("val_loss", "val_bpc", "val_accuracy"))
        if isinstance(loss, (int, float)):
            label = "best val loss" if self.weights == "best" else "val loss"
            val = f"{label} {loss:.4g}" + (f" ({bpc:.3g} bpc)" if isinstance(bpc, (int, float)) else "")
        elif isinstance(trainer.get("best_val_loss"), (int, float)):
            val = f"val loss unknown (best so far {trainer['best_val_loss']:.4g})"
        else:
            val = "val loss unknown"
        return {
            "architecture": arch,
            "parameters": f"{self.model.num_parameters():,}",
            "vocabulary": f"{self.tokenizer.vocab_size:,}",
            "trained": f"{step:,} steps" if isinstance(step, int) else "steps unknown",
            "corpus": self.corpus or "unknown",
            "validation": val,
            "accuracy": f"{accuracy:.1%}" if isinstance(accuracy, (int, float)) else "unknown",
            "weights": self.weights or "unknown",
            "run": str(self.run_dir) if self.run_dir is not None else "not loaded from a run",
            "device": str(self.device),
        }

    def __repr__(self) -> str:
        d = self.describe()
        corpus = f"on {d['corpus']}" if self.corpus else "on an unknown corpus"
        return (f"LanguageModel({d['architecture']}, {d['parameters']} parameters, vocab {d['vocabulary']}; "
                f"trained {d['trained']} {corpus}; {d['validation']}; {d['run']})")

    def _repr_html_(self) -> str:
        import html

        d = self.describe()
        rows = "".join(f'<tr><th style="text-align:left">{html.escape(k)}</th>'
                       f'<td style="text-align:left">{html.escape(v)}</td></tr>' for k, v in d.items())
        return f'<table class="charpoet-model"><caption>LanguageModel</caption>{rows}</table>'

    def encode_prime(self, prime: str) -> np.ndarray:
        """Token ids of ``prime``; unknown characters are an error, unknown words a warning."""
        ids = self.tokenizer.encode(prime)
        unk = getattr(self.tokenizer, "unk_id", None)
        if unk is not None and (ids == unk).any():
            pieces = self.tokenizer.pieces(prime)
            unknown = sorted({p for p, i in zip(pieces, ids) if i == unk})
            warnings.warn(f"words not in the model's vocabulary, read as <unk>: {', '.join(unknown[:10])}",
                          CharpoetWarning, stacklevel=3)
        return np.asarray(ids, dtype=np.int64)

    @cached_property
    def stepper(self) -> Stepper:
        """The model prepared for generation (``charpoet.stepper``): a snapshot of the weights at
        first use; after changing ``self.model``'s weights, ``del lm.stepper`` to prepare it again."""
        return Stepper(self.model)

    def sampler(self, options: SamplingOptions) -> Sampler:
        """A ``Sampler`` with ``options`` that never draws ``<unk>``."""
        unk = getattr(self.tokenizer, "unk_id", None)
        return Sampler(options, self.tokenizer.vocab_size, banned=() if unk is None else (unk,))

    def stream(self, prime: str = "\n", options: SampleOptions | None = None, **kwargs: Any) -> Iterator[list[str]]:
        """Yield, for every generated token, the list of new text of each sample.

        Options and the prime are checked at once (bad values raise before anything is
        yielded); generation itself happens as the iterator is consumed.
        """
        opts = (options or SampleOptions(**kwargs)).validate()
        if not prime:
            raise ConfigError("the priming text is empty; give at least one character")
        prime_ids = self.encode_prime(prime)
        n, m = opts.num_samples, self.model.config
        require_memory(n * 4 * (4 * m.vocab_size + 3 * m.num_layers * m.rnn_size), f"{n:,} samples at once",
                       "use a smaller --num-samples", device=self.device)
        return self._stream(prime_ids, opts)

    def _stream(self, prime_ids: np.ndarray, opts: SampleOptions) -> Iterator[list[str]]:
        sampler, stepper, text = self.sampler(opts), self.stepper, self.tokenizer.token_text
        logits, state = stepper.feed(prime_ids)  # (1, V), the prime once
        n = opts.num_samples
        if n > 1:
            logits, state = np.repeat(logits, n, axis=0), stepper.repeat(state, n)  # (N, V)
        done, chunk = 0, 1
        most = DECODE_CHUNK if stepper.backend == "compiled" else 1  # compiled: in chunks; torch: token by token
        while done < opts.length:  # chunks of 1, 2, 4, ... 64 tokens: the first text comes at once
            k = min(chunk, opts.length - done)
            ids, logits, state = stepper.decode(sampler, logits, state, k, finish=done + k == opts.length)
            for row in ids.tolist():  # (k, N)
                yield [text(t) for t in row]
            done, chunk = done + k, min(2 * chunk, most)

    def generate(self, prime: str = "\n", options: SampleOptions | None = None, **kwargs: Any) -> list[str]:
        """Generated texts (without the prime), one per sample."""
        opts = (options or SampleOptions(**kwargs)).validate()
        stream = self.stream(prime, opts)  # checks everything before anything is allocated
        texts: list[list[str]] = [[] for _ in range(opts.num_samples)]
        for pieces in stream:
            for out, piece in zip(texts, pieces):
                out.append(piece)
        return ["".join(t) for t in texts]


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
    from charpoet.runs import run_corpus

    return LanguageModel(model.to(resolve_device(device)), tokenizer, config, meta, run_dir=run.path,
                         weights=weights, corpus=run_corpus(run.path))
