"""Tokenizers: text <-> integer ids, serialised into every run as ``vocab.json``.

``CharTokenizer`` uses every character of the training library as a token.
``WordTokenizer`` splits text into words, single punctuation marks and whitespace runs,
so ``decode(encode(text)) == text`` whenever every piece is in the vocabulary; pieces
outside the ``max_vocab`` most frequent ones become ``<unk>``.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from charpoet.errors import CheckpointError, TokenizerError

UNK = "<unk>"

# A word (letters/digits, inner apostrophes kept: don't, o'er), a newline, a run of other
# whitespace, or any single other character (punctuation, symbols).
_WORD_PIECES = re.compile(r"\w+(?:['\u2019]\w+)*|\n|[^\S\n]+|[^\w\s]", re.UNICODE)


class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...

    def pieces(self, text: str) -> list[str]: ...

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def token_text(self, token_id: int) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of training characters."""

    kind = "char"

    def __init__(self, chars: Sequence[str]):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise TokenizerError("a character vocabulary must hold distinct single characters")
        self.chars = list(chars)
        self._index = {c: i for i, c in enumerate(self.chars)}
        # Sorted code points for vectorised encoding with searchsorted.
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._order = np.argsort(codes)
        self._sorted_codes = codes[self._order]

    @classmethod
    def fit(cls, texts: Iterable[str], max_vocab: int | None = None) -> CharTokenizer:
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        if not chars:
            raise TokenizerError("cannot build a vocabulary from empty text")
        return cls(sorted(chars))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def pieces(self, text: str) -> list[str]:
        return list(text)

    def encode(self, text: str) -> np.ndarray:
        """Ids as int64 array; characters outside the vocabulary are an error naming them."""
        # surrogatepass: a lone surrogate (undecodable input) becomes an unknown character, not a crash
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._sorted_codes, codes)
        pos = np.minimum(pos, len(self._sorted_codes) - 1)
        known = self._sorted_codes[pos] == codes
        if not known.all():
            unknown = sorted({chr(c) for c in codes[~known]})
            shown = ", ".join(repr(c) for c in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise TokenizerError(f"characters not in the model's vocabulary: {shown}{more}")
        return self._order[pos]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.chars[token_id]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}


class WordTokenizer:
    """Words, punctuation and whitespace runs; id 0 is ``<unk>``."""

    kind = "word"

    def __init__(self, tokens: Sequence[str]):
        if not tokens or tokens[0] != UNK or len(set(tokens)) != len(tokens):
            raise TokenizerError("a word vocabulary must start with <unk> and hold distinct tokens")
        self.tokens = list(tokens)
        self._index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def fit(cls, texts: Iterable[str], max_vocab: int | None = 10_000) -> WordTokenizer:
        counts: collections.Counter[str] = collections.Counter()
        for text in texts:
            counts.update(_WORD_PIECES.findall(text))
        if not counts:
            raise TokenizerError("cannot build a vocabulary from empty text")
        counts.pop(UNK, None)
        # Most frequent first; ties broken by the token itself so the vocabulary is deterministic.
        ranked = sorted(counts, key=lambda t: (-counts[t], t))
        keep = ranked if max_vocab is None else ranked[: max_vocab - 1]
        return cls([UNK, *keep])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int:
        return 0

    def pieces(self, text: str) -> list[str]:
        return _WORD_PIECES.findall(text)

    def encode(self, text: str) -> np.ndarray:
        return self.encode_pieces(self.pieces(text))

    def encode_pieces(self, pieces: Sequence[str]) -> np.ndarray:
        get = self._index.get
        return np.fromiter((get(p, 0) for p in pieces), dtype=np.int64, count=len(pieces))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.tokens[token_id]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": self.tokens}


def piece_safe_chunks(chunks: Iterable[str]) -> Iterator[str]:
    """Re-cut consecutive ``chunks`` of one text so that each tokenizes as it does within the text.

    No piece spans a newline and a newline is a piece of its own, so a chunk that ends after a
    newline is safe as it is. A chunk cut elsewhere (a line longer than a chunk) keeps its last
    two pieces for the next one: a word's end depends on at most the two characters after it
    ("don" + "'t"), so every earlier piece is final. The chunks concatenate to the same text;
    the pieces of the re-cut chunks, joined, are the pieces of the whole text, for both
    tokenizers (a character tokenizer needs no re-cutting, and is not harmed by it).
    """
    carry, pending = "", None
    for chunk in chunks:
        if pending is not None:
            text = carry + pending
            if text.endswith("\n"):
                carry = ""
                yield text
            else:
                cut = _last_pieces_start(text)
                carry = text[cut:]
                if cut:
                    yield text[:cut]
        pending = chunk
    text = carry + (pending or "")
    if text:
        yield text


def _last_pieces_start(text: str) -> int:
    """Where the last two pieces of ``text`` begin (pieces restart after its last newline)."""
    line = text.rfind("\n") + 1
    starts = collections.deque((m.start() for m in _WORD_PIECES.finditer(text, line)), maxlen=2)
    return starts[0] if starts else line


def build_tokenizer(kind: str, texts: Iterable[str], max_vocab: int) -> Tokenizer:
    """Fit a tokenizer of ``kind`` ("char" or "word") on the training texts."""
    classes: dict[str, Any] = {"char": CharTokenizer, "word": WordTokenizer}
    if kind not in classes:
        raise TokenizerError(f"unknown tokenizer {kind!r}; choose char or word")
    return classes[kind].fit(texts, max_vocab)


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from its ``to_dict`` form (a run's vocab.json)."""
    try:
        if d["kind"] == "char":
            return CharTokenizer(d["chars"])
        if d["kind"] == "word":
            return WordTokenizer(d["tokens"])
    except (KeyError, TypeError, TokenizerError) as exc:
        raise CheckpointError(f"invalid vocabulary: {exc}") from None
    raise CheckpointError(f"invalid vocabulary: unknown tokenizer kind {d.get('kind')!r}")
