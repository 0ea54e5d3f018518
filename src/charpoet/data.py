"""Token arrays with provenance, train/validation splits and stateful TBPTT batches.

Every source of a library is split on its own: its first ``1 - valid_fraction`` of
characters go to training and the rest to validation, so each split is contiguous within
each source (for a single file this is nanoGPT's 90/10 split of tiny shakespeare). The
parts of all sources are concatenated; ``TokenSplit.locate`` maps any token index back to
``(source index, character offset in that source)``.
"""

from __future__ import annotations

import bisect
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from charpoet.corpus import Library
from charpoet.errors import CharpoetWarning, ConfigError
from charpoet.tokenizer import Tokenizer


@dataclass(frozen=True)
class TokenSplit:
    """The tokens of one split (train or valid) of every source, concatenated."""

    ids: np.ndarray  # (N,) int64 token ids
    source_starts: np.ndarray  # (S + 1,) token index where each source's part begins; last = N
    char_starts: np.ndarray  # (S,) character offset in the source where its part begins
    token_offsets: np.ndarray | None  # (N,) char offset of each token within its part; None = char
    num_chars: int  # characters of text these tokens cover

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def chars_per_token(self) -> float:
        return self.num_chars / max(1, len(self.ids))

    def locate(self, index: int) -> tuple[int, int]:
        """(source index, character offset in that source) of token ``index``."""
        if not 0 <= index < len(self.ids):
            raise IndexError(index)
        source = bisect.bisect_right(self.source_starts, index) - 1
        within = index - int(self.source_starts[source])
        if self.token_offsets is not None:
            within = int(self.token_offsets[index])
        return source, int(self.char_starts[source]) + within


@dataclass(frozen=True)
class Dataset:
    train: TokenSplit
    valid: TokenSplit


def split_point(num_chars: int, valid_fraction: float) -> int:
    """Characters of a source that go to training: ``int(n * (1 - valid_fraction))``."""
    return int(num_chars * (1.0 - valid_fraction))


def encode_library(library: Library, tokenizer: Tokenizer, valid_fraction: float) -> Dataset:
    """Tokenize every source's train and validation parts, keeping provenance."""
    train_parts, valid_parts = [], []
    for source in library.sources:
        cut = split_point(len(source.text), valid_fraction)
        train_parts.append((source.text[:cut], 0))
        valid_parts.append((source.text[cut:], cut))
    return Dataset(_encode_parts(train_parts, tokenizer), _encode_parts(valid_parts, tokenizer))


def _encode_parts(parts: list[tuple[str, int]], tokenizer: Tokenizer) -> TokenSplit:
    arrays, offsets, starts = [], [], [0]
    for text, _ in parts:
        if tokenizer.kind == "char":
            ids = tokenizer.encode(text)
        else:
            pieces = tokenizer.pieces(text)
            ids = tokenizer.encode_pieces(pieces)  # type: ignore[attr-defined]
            lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
            offsets.append(np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths)
        arrays.append(ids)
        starts.append(starts[-1] + len(ids))
    ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    token_offsets = np.concatenate(offsets).astype(np.int64) if offsets else None
    char_starts = np.array([start for _, start in parts], dtype=np.int64)
    num_chars = sum(len(text) for text, _ in parts)
    return TokenSplit(ids.astype(np.int64), np.array(starts, dtype=np.int64), char_starts, token_offsets, num_chars)


class StreamBatches:
    """Stateful truncated-BPTT batches over one split.

    The N tokens are laid out as B parallel contiguous streams (the tail that does not fill
    a row is dropped)::

        row 0    : t[0]        t[1]        ...  t[L-1]
        row 1    : t[L]        t[L+1]      ...  t[2L-1]
        ...
        row B-1  : t[(B-1)L]   ...              t[BL-1]          L = N // B

    Batch k takes columns [kT, kT+T) as inputs x and [kT+1, kT+T+1) as targets y, both
    (B, T). Row b of batch k+1 continues row b of batch k, so the trainer carries the
    hidden state from one batch to the next (detached) and one epoch is one pass.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, device: torch.device | str = "cpu"):
        n = len(ids)
        if n < seq_len + 1:
            raise ConfigError(
                f"the training split has {n} tokens but --seq-len {seq_len} needs at least "
                f"{seq_len + 1}; use a smaller --seq-len or more text"
            )
        largest = n // (seq_len + 1)  # each row needs at least seq_len + 1 tokens
        if batch_size > largest:
            warnings.warn(
                f"the training split ({n} tokens) is too small for --batch-size {batch_size} with "
                f"--seq-len {seq_len}; using --batch-size {largest}",
                CharpoetWarning,
                stacklevel=2,
            )
            batch_size = largest
        self.batch_size = batch_size
        self.seq_len = seq_len
        row_len = n // batch_size
        self.rows = torch.from_numpy(ids[: batch_size * row_len].reshape(batch_size, row_len)).to(device)
        self.steps_per_epoch = (row_len - 1) // seq_len

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of batch ``k`` of the epoch, each (B, T)."""
        if not 0 <= k < self.steps_per_epoch:
            raise IndexError(k)
        start = k * self.seq_len
        window = self.rows[:, start : start + self.seq_len + 1]  # (B, T + 1)
        return window[:, :-1], window[:, 1:]


EVAL_STREAMS = 64  # most rows of an evaluation pass
EVAL_MIN_ROW = 2048  # fewest tokens per row (each row starts from a zero state)


def eval_layout(ids: np.ndarray) -> torch.Tensor | None:
    """Lay a validation split out as (B, L) rows for a stateful pass; None if too short.

    The layout depends on the split alone, never on the training batch size, so losses stay
    comparable when a run continues with another ``--batch-size``: up to ``EVAL_STREAMS`` rows
    of at least ``EVAL_MIN_ROW`` tokens (one row for a short split).
    """
    n = len(ids)
    if n < 2:
        return None
    rows = max(1, min(EVAL_STREAMS, n // EVAL_MIN_ROW))
    row_len = n // rows
    return torch.from_numpy(ids[: rows * row_len].reshape(rows, row_len))
