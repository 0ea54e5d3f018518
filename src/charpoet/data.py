"""Token arrays with provenance, train/validation splits and stateful TBPTT batches.

Every source of a library is split on its own: its first ``1 - valid_fraction`` of
characters go to training and the rest to validation, so each split is contiguous within
each source (for a single file this is nanoGPT's 90/10 split of tiny shakespeare). The
parts of all sources are concatenated; ``TokenSplit.locate`` maps any token index back to
``(source index, character offset in that source)``.

A run keeps its token ids in files (``tokenize_library``), so a library larger than memory
can be trained on: the sources are streamed in chunks of ``ENCODE_CHUNK_CHARS`` characters,
the ids written as raw little-endian arrays of the smallest unsigned type that holds the
vocabulary, and read back as read-only memory maps::

    directory/tokens.json         format, key (library, vocabulary, valid_fraction), dtype, layout
    directory/train.bin           (N_train,) ids        valid.bin          (N_valid,) ids
    directory/train.offsets.bin   (N_train,) word tokens only: char offset within the source part

``StreamBatches`` and ``EvalRows`` read one window of those maps at a time and convert only
that window to int64. Memory is bounded by a chunk, whatever the size of the library.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import json
import logging
import mmap
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charpoet.config import DataConfig
from charpoet.corpus import Library, Source
from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CharpoetWarning, ConfigError, CorpusError, TokenizerError
from charpoet.tokenizer import Tokenizer, build_tokenizer, piece_safe_chunks

log = logging.getLogger("charpoet")

ENCODE_CHUNK_CHARS = 1 << 20  # characters tokenized at a time (~1 Mi: tens of MiB while encoding)
TOKENS_FILE = "tokens.json"
_TOKENS_FORMAT, _TOKENS_VERSION = "charpoet.tokens", 1
_SPLITS = ("train", "valid")
_ID_TYPES = ("uint8", "uint16", "uint32")


@dataclass(frozen=True)
class TokenSplit:
    """The tokens of one split (train or valid) of every source, concatenated."""

    ids: np.ndarray  # (N,) token ids: uint8/16/32 (a read-only np.memmap from tokenize_library)
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


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest of uint8, uint16 and uint32 that holds every id below ``vocab_size``."""
    for name in _ID_TYPES:
        if vocab_size - 1 <= np.iinfo(name).max:
            return np.dtype(name)
    raise TokenizerError(f"a vocabulary of {vocab_size} tokens is too large")


def vocabulary_digest(tokenizer: Tokenizer) -> str:
    """SHA-256 hex of the tokenizer's ``to_dict`` JSON (what ``vocab.json`` holds)."""
    data = json.dumps(tokenizer.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


# --- vocabulary ---------------------------------------------------------------------------------


def library_texts(library: Library, max_chars: int | None = None) -> Iterator[str]:
    """Every source's text in bounded chunks, each tokenizing as it does within its source.

    Fitting a tokenizer on these gives the vocabulary of the whole texts (see
    ``piece_safe_chunks``), without holding any source in memory.
    """
    for source in library.sources:
        yield from piece_safe_chunks(source.chunks(max_chars or ENCODE_CHUNK_CHARS))


def fit_tokenizer(kind: str, library: Library, max_vocab: int) -> Tokenizer:
    """A tokenizer of ``kind`` ("char" or "word") fitted on the whole library, streamed."""
    return build_tokenizer(kind, library_texts(library), max_vocab)


# --- encoding -----------------------------------------------------------------------------------


OOV_EXAMPLES = 10  # distinct out-of-vocabulary characters or words named in a report


@dataclass
class KnownChunk:
    """A chunk of a text encoded with a run's vocabulary, whatever the text holds."""

    characters: int  # characters of the chunk
    ids: np.ndarray  # token ids: out-of-vocabulary characters left out (char), unknown words as <unk> (word)
    oov: int  # those characters or words
    examples: list[str]  # the distinct ones, in order of appearance


def encode_known(tokenizer: Tokenizer, source: Source, max_chars: int | None = None) -> Iterator[KnownChunk]:
    """A source of any text (a validation, test or evaluated one) in bounded, piece-safe chunks: characters a
    char vocabulary lacks are skipped and counted; a word vocabulary reads unknown words as ``<unk>``
    (scored as such) and counts them."""
    vocab = set(tokenizer.chars) if tokenizer.kind == "char" else None  # type: ignore[attr-defined]
    unk = getattr(tokenizer, "unk_id", None)
    for text in piece_safe_chunks(source.chunks(max_chars or ENCODE_CHUNK_CHARS)):
        examples: list[str] = []
        if vocab is not None:
            unknown = set(text) - vocab
            oov = 0
            if unknown:
                examples = sorted(unknown, key=text.index)[:OOV_EXAMPLES]
                oov = sum(text.count(c) for c in unknown)
                ids = tokenizer.encode(text.translate(dict.fromkeys(map(ord, unknown))))
            else:
                ids = tokenizer.encode(text)
            yield KnownChunk(len(text), ids, oov, examples)
        else:
            pieces = tokenizer.pieces(text)
            ids = tokenizer.encode_pieces(pieces)  # type: ignore[attr-defined]
            missing = np.flatnonzero(ids == unk)
            for i in missing:
                if len(examples) >= OOV_EXAMPLES:
                    break
                if pieces[i] not in examples:
                    examples.append(pieces[i])
            yield KnownChunk(len(text), ids, len(missing), examples)


def encode_apart(library: Library, tokenizer: Tokenizer) -> tuple[TokenSplit, int]:
    """Validation sources given apart (``--valid-path``), all of each as the validation split: the
    split and its out-of-vocabulary count (``encode_known``'s rule). Held in memory (small dtype)."""
    arrays, starts, covered, oov = [], [0], 0, 0
    for source in library.sources:
        count = 0
        for chunk in encode_known(tokenizer, source):
            arrays.append(chunk.ids.astype(ids_dtype(tokenizer.vocab_size)))
            count += len(chunk.ids)
            covered += len(chunk.ids) if tokenizer.kind == "char" else chunk.characters  # as evaluate's bpc
            oov += chunk.oov
        starts.append(starts[-1] + count)
    ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=ids_dtype(tokenizer.vocab_size))
    split = TokenSplit(ids, np.array(starts, dtype=np.int64), np.zeros(len(library), dtype=np.int64), None, covered)
    return split, oov




def encode_library(library: Library, tokenizer: Tokenizer, valid_fraction: float) -> Dataset:
    """Tokenize every source's train and validation parts in memory, keeping provenance.

    The same ids as ``tokenize_library`` (of the same small dtype), for tests and small scripts.
    """
    outs = [_MemoryOut() for _ in _SPLITS]
    offsets = [_MemoryOut() for _ in _SPLITS] if tokenizer.kind != "char" else None
    layouts = _encode_splits(library, tokenizer, valid_fraction, outs, offsets)
    dtype, offsets_dtype = ids_dtype(tokenizer.vocab_size), _offsets_dtype(library, valid_fraction)
    return Dataset(*(
        _token_split(layout, outs[i].array(dtype), offsets[i].array(offsets_dtype) if offsets else None)
        for i, layout in enumerate(layouts)
    ))


def tokenize_library(library: Library, tokenizer: Tokenizer, valid_fraction: float,
                     directory: str | Path) -> Dataset:
    """The library's ids in files under ``directory``, read back as read-only memory maps.

    Files written for the same library, vocabulary and ``valid_fraction`` are reused without
    encoding anything (checked by their key and sizes); otherwise the library is streamed
    chunk by chunk into temporary files, renamed into place, ``tokens.json`` last, so a crash
    never leaves files that look complete.
    """
    directory = Path(directory)
    key = {"library": library.fingerprint(), "vocabulary": vocabulary_digest(tokenizer),
           "valid_fraction": valid_fraction}
    found = _load_tokens(directory, key)
    if found is not None:
        log.debug("reusing the token files in %s", directory)
        return found
    log.debug("tokenizing library %s into %s", library.name, directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = ids_dtype(tokenizer.vocab_size)
    offsets_dtype = _offsets_dtype(library, valid_fraction) if tokenizer.kind != "char" else None
    everything: list[_FileOut] = []
    try:
        for name in _SPLITS:
            everything.append(_FileOut(directory / f"{name}.bin", dtype))
        outs, offsets = everything[:], None
        if offsets_dtype is not None:
            for name in _SPLITS:
                everything.append(_FileOut(directory / f"{name}.offsets.bin", offsets_dtype))
            offsets = everything[len(outs):]
        layouts = _encode_splits(library, tokenizer, valid_fraction, outs, offsets)
        for out in everything:
            out.finish()
        # The old key goes first: bins renamed under it could otherwise pass for the old ones.
        with contextlib.suppress(FileNotFoundError):
            (directory / TOKENS_FILE).unlink()
        for out in everything:
            out.commit()
    except BaseException:
        for out in everything:  # (a committed one has no temporary file left to remove)
            out.discard()
        raise
    if offsets is None:
        for name in _SPLITS:
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{name}.offsets.bin").unlink()
    meta = {"format": _TOKENS_FORMAT, "version": _TOKENS_VERSION, "key": key, "dtype": dtype.name,
            "offsets_dtype": offsets_dtype.name if offsets_dtype else None,
            "splits": dict(zip(_SPLITS, layouts))}
    atomic_write_bytes(directory / TOKENS_FILE, json.dumps(meta).encode("utf-8"))
    loaded = _load_tokens(directory, key)
    if loaded is None:  # another process replaced them meanwhile, or the disk lies
        raise CorpusError(f"{directory}: the token files just written cannot be read back")
    return loaded


def _offsets_dtype(library: Library, valid_fraction: float) -> np.dtype:
    """uint32 for word-token offsets unless a source part reaches 2**32 characters."""
    longest = max((max(split_point(len(s), valid_fraction), len(s) - split_point(len(s), valid_fraction))
                   for s in library.sources), default=0)
    return np.dtype(np.uint32 if longest < 2**32 else np.uint64)


def _encode_splits(library: Library, tokenizer: Tokenizer, valid_fraction: float,
                   outs: list[Any], offsets: list[Any] | None) -> list[dict[str, Any]]:
    """Stream every source's two parts into ``outs`` (and ``offsets``); the splits' layouts."""
    layouts: list[dict[str, Any]] = [
        {"tokens": 0, "num_chars": 0, "source_starts": [], "char_starts": []} for _ in _SPLITS
    ]
    for source in library.sources:
        n = len(source)
        cut = split_point(n, valid_fraction)
        for layout, (start, size) in zip(layouts, ((0, cut), (cut, n - cut))):
            layout["source_starts"].append(layout["tokens"])
            layout["char_starts"].append(start)
            layout["num_chars"] += size
        for split, ids, token_offsets in _encode_source(source, cut, tokenizer):
            outs[split].append(ids)
            if offsets is not None:
                offsets[split].append(token_offsets)
            layouts[split]["tokens"] += len(ids)
    for layout in layouts:
        layout["source_starts"].append(layout["tokens"])
    return layouts


def _encode_source(source: Source, cut: int, tokenizer: Tokenizer
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(split: 0 train / 1 valid, int64 ids, char offsets within the part or None) per chunk.

    The two parts are tokenized apart (a word cut by the split point makes two pieces), each
    chunk by chunk; ``piece_safe_chunks`` keeps word pieces whole across chunk boundaries.
    """
    consumed = [0, 0]  # characters of each part encoded so far
    for split, group in itertools.groupby(_part_chunks(source, cut), key=lambda item: item[0]):
        texts = (text for _, text in group)
        if tokenizer.kind != "char":
            texts = piece_safe_chunks(texts)
        for text in texts:
            try:
                if tokenizer.kind == "char":
                    ids, offsets = tokenizer.encode(text), None
                else:
                    pieces = tokenizer.pieces(text)
                    ids = tokenizer.encode_pieces(pieces)  # type: ignore[attr-defined]
                    ends = np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)))
                    offsets = consumed[split] + np.concatenate(([0], ends[:-1])) if len(ends) else ends
            except TokenizerError as exc:
                raise TokenizerError(f"source {source.name!r}: {exc} (has the library changed since its "
                                     "vocabulary was built?)") from None
            consumed[split] += len(text)
            yield split, ids, offsets
    if consumed[0] + consumed[1] != len(source):
        raise CorpusError(f"source {source.name!r} gave {consumed[0] + consumed[1]} characters, not the "
                          f"{len(source)} it was measured at: it changed while being read")


def _part_chunks(source: Source, cut: int) -> Iterator[tuple[int, str]]:
    """(0, chunk) for the first ``cut`` characters of ``source``, then (1, chunk) for the rest."""
    pos = 0
    for chunk in source.chunks(ENCODE_CHUNK_CHARS):
        end = pos + len(chunk)
        if pos < cut < end:
            yield 0, chunk[: cut - pos]
            yield 1, chunk[cut - pos :]
        else:
            yield (0 if end <= cut else 1), chunk
        pos = end


class _MemoryOut:
    """Arrays appended in memory, joined at the end."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def append(self, array: np.ndarray) -> None:
        self.parts.append(array)

    def array(self, dtype: np.dtype) -> np.ndarray:
        if not self.parts:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([part.astype(dtype, copy=False) for part in self.parts])


class _FileOut:
    """Arrays appended to a temporary file in ``path``'s directory, renamed to ``path`` by commit."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype).newbyteorder("<")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "wb")

    def append(self, array: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(array, dtype=self.dtype).data)

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())  # a full disk may only show here
        self.file.close()

    def commit(self) -> None:
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def _token_split(layout: dict[str, Any], ids: np.ndarray, offsets: np.ndarray | None) -> TokenSplit:
    return TokenSplit(ids, np.array(layout["source_starts"], dtype=np.int64),
                      np.array(layout["char_starts"], dtype=np.int64), offsets, int(layout["num_chars"]))


def _load_tokens(directory: Path, key: dict[str, Any]) -> Dataset | None:
    """The dataset of ``directory``'s token files if they are complete and made for ``key``."""
    try:
        meta = json.loads((directory / TOKENS_FILE).read_text("utf-8"))
        if (meta.get("format"), meta.get("version"), meta.get("key")) != (_TOKENS_FORMAT, _TOKENS_VERSION, key):
            return None
        if meta["dtype"] not in _ID_TYPES or meta["offsets_dtype"] not in (None, "uint32", "uint64"):
            return None
        splits = []
        for name in _SPLITS:
            layout = meta["splits"][name]
            n, starts = int(layout["tokens"]), layout["source_starts"]
            if len(starts) != len(layout["char_starts"]) + 1 or starts[-1] != n:
                return None
            ids = _map(directory / f"{name}.bin", meta["dtype"], n)
            offsets = _map(directory / f"{name}.offsets.bin", meta["offsets_dtype"], n) if meta["offsets_dtype"] else None
            if ids is None or (meta["offsets_dtype"] and offsets is None):
                return None
            splits.append(_token_split(layout, ids, offsets))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return Dataset(*splits)


def _map(path: Path, dtype: str, n: int) -> np.ndarray | None:
    """A read-only map of ``n`` little-endian ``dtype`` values in ``path``; None if its size differs."""
    dt = np.dtype(dtype).newbyteorder("<")
    if path.stat().st_size != n * dt.itemsize:
        return None
    if n == 0:  # an empty file cannot be mapped
        empty = np.zeros(0, dtype=dt)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=dt, mode="r", shape=(n,))


# --- batches ------------------------------------------------------------------------------------


def _to_device(window: np.ndarray, device: torch.device) -> torch.Tensor:
    """An int64 copy of a (small) window of ids on ``device``; through pinned memory to a GPU."""
    if device.type == "cuda" and torch.cuda.is_available():
        host = torch.empty(window.shape, dtype=torch.int64, pin_memory=True)
        host.numpy()[...] = window  # the one conversion copy; the allocator keeps it until the copy is done
        return host.to(device, non_blocking=True)
    return torch.from_numpy(window.astype(np.int64)).to(device)


RELEASE_BYTES = 64 << 20  # ids read from a memory map between releases of its pages (bounds RSS)


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

    The layout is a view of ``ids`` (a memory map or any 1-D array): each batch reads its
    (B, T + 1) window and converts only that to int64. ``rows=(a, b)`` keeps rows a..b-1 of
    the layout (a rank's share); ``batch`` then gives (b - a, T) tensors, ``batch_size``
    stays the global B.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, device: torch.device | str = "cpu",
                 rows: tuple[int, int] | None = None):
        ids = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
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
        self.row_len = n // batch_size
        self.steps_per_epoch = (self.row_len - 1) // seq_len
        first, last = (0, batch_size) if rows is None else rows
        if not 0 <= first < last <= batch_size:
            raise ConfigError(f"rows [{first}, {last}) are not within the batch of {batch_size} rows")
        self.row_range = (first, last)
        self.device = torch.device(device)
        self._grid = ids[: batch_size * self.row_len].reshape(batch_size, self.row_len)[first:last]  # a view
        # the pages of a read-only map can be dropped and read again (never those of a private "c" map)
        self._mmap = ids._mmap if isinstance(ids, np.memmap) and ids.mode == "r" else None
        self._unreleased = 0

    @property
    def local_rows(self) -> int:
        """Rows this object yields: B, or b - a with ``rows=(a, b)``."""
        return self.row_range[1] - self.row_range[0]

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of batch ``k`` of the epoch, each (B, T) (or (b - a, T))."""
        if not 0 <= k < self.steps_per_epoch:
            raise IndexError(k)
        start = k * self.seq_len
        view = self._grid[:, start : start + self.seq_len + 1]  # (B, T + 1), still in the map
        window = _to_device(view, self.device)
        self._release(view.size * view.itemsize)
        return window[:, :-1], window[:, 1:]

    def _release(self, nbytes: int) -> None:
        """Drop the map's pages from this process now and then: they stay in the page cache, but
        an epoch over a large split would otherwise count the whole file in the resident set."""
        self._unreleased += nbytes
        if self._unreleased < RELEASE_BYTES or self._mmap is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        self._unreleased = 0
        with contextlib.suppress(OSError, ValueError):  # read-only shared map: pages refault from the file
            self._mmap.madvise(mmap.MADV_DONTNEED)


EVAL_STREAMS = 64  # most rows of an evaluation pass
EVAL_MIN_ROW = 2048  # fewest tokens per row (each row starts from a zero state)
EVAL_MAX_TOKENS = DataConfig.eval_max_tokens  # most tokens of an evaluation pass (4 Mi): the head of each row's stretch


class EvalRows:
    """A validation split laid out as (rows, row_len) streams for a stateful pass.

    The layout depends on the split alone, never on the training batch size, so losses stay
    comparable when a run continues with another ``--batch-size``: up to ``EVAL_STREAMS`` rows
    of at least ``EVAL_MIN_ROW`` tokens (one row for a short split), row r over its stretch
    [rS, (r+1)S) of the split, S = N // rows. A split longer than ``EVAL_MAX_TOKENS`` keeps the
    first ``EVAL_MAX_TOKENS // rows`` tokens of each stretch, so every part of the library is
    still sampled::

        split : |row 0 ....... |row 1 ....... | ... |row 63 ...... |
        kept  : |####          |####          | ... |####          |     #: row_len tokens

    The rows are a view of the split's ids; ``windows`` converts a chunk at a time to int64.
    """

    def __init__(self, grid: np.ndarray):
        self.grid = grid  # (rows, row_len) view of the ids

    @classmethod
    def of(cls, ids: np.ndarray, max_tokens: int | None = None) -> EvalRows | None:
        """The layout of a split's ids (at most ``max_tokens`` of them, default ``EVAL_MAX_TOKENS``; 0: all);
        None if it has fewer than two."""
        max_tokens = EVAL_MAX_TOKENS if max_tokens is None else max_tokens
        n = len(ids)
        if n < 2:
            return None
        rows = max(1, min(EVAL_STREAMS, n // EVAL_MIN_ROW))
        stretch = n // rows
        row_len = min(stretch, max(2, max_tokens // rows)) if max_tokens > 0 else stretch
        return cls(ids[: rows * stretch].reshape(rows, stretch)[:, :row_len])

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape  # type: ignore[return-value]

    def part(self, first: int, last: int) -> EvalRows:
        """Rows first..last-1 (a shard's or a rank's share)."""
        return EvalRows(self.grid[first:last])

    def window(self, start: int, length: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (columns [s, s+t)) and targets ([s+1, s+t+1)) as int64 (rows, t), cut at the row end."""
        view = self.grid[:, start : start + length + 1]
        window = _to_device(view, torch.device(device))
        return window[:, :-1], window[:, 1:]

    def windows(self, length: int, device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every ``window`` of a pass, in order: the chunks of a stateful evaluation."""
        for start in range(0, self.shape[1] - 1, length):
            yield self.window(start, length, device)

    def tensor(self) -> torch.Tensor:
        """The whole layout as one int64 (rows, row_len) tensor (at most EVAL_MAX_TOKENS ids)."""
        return torch.from_numpy(self.grid.astype(np.int64))


def eval_layout(ids: np.ndarray) -> torch.Tensor | None:
    """``EvalRows.of(ids)`` as one int64 (rows, row_len) tensor; None if too short."""
    rows = EvalRows.of(ids)
    return rows.tensor() if rows is not None else None
