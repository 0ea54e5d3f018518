"""Train / validation / test files from a library, for users of other tools.

Two ways to split, as the char-RNN seeds do:

- ``by="book"``: whole books go to one part (shuffled with a seed, then test and
  validation take books until they hold their share of characters). Measures how well a
  model writes books it has never seen; needs at least one book per non-empty part.
- ``by="text"``: every book contributes its beginning to train and its end to validation
  and test, cut at paragraph breaks. Every author and style is in every part.

Parts join their pieces with a blank line. ``write_split`` writes ``PREFIX.train.txt``,
``PREFIX.valid.txt``, ``PREFIX.test.txt`` atomically.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from charpoet.corpus.cache import atomic_write_bytes
from charpoet.corpus.library import Library
from charpoet.errors import CorpusError

PARTS = ("train", "valid", "test")
SPLIT_MODES = ("book", "text")
_SNAP = 2000  # a cut moves at most this many characters to reach a paragraph break


@dataclass(frozen=True)
class SplitPart:
    """One output part: its text and which sources gave how many characters."""

    name: str
    text: str
    pieces: tuple[tuple[str, int], ...]  # (source name, characters), in order; a blank line between

    @property
    def num_chars(self) -> int:
        return len(self.text)


def split_library(library: Library, valid: float = 0.1, test: float = 0.1, *,
                  by: str = "book", seed: int = 0) -> dict[str, SplitPart]:
    """Split ``library`` into train/valid/test parts holding about the given shares of characters."""
    if by not in SPLIT_MODES:
        raise CorpusError(f"--by must be one of {', '.join(SPLIT_MODES)}, got {by!r}")
    for flag, value in (("valid", valid), ("test", test)):
        if not 0.0 <= value < 1.0:
            raise CorpusError(f"--{flag} must be in [0, 1), got {value}")
    if valid + test >= 1.0:
        raise CorpusError(f"--valid + --test must leave something to train on, got {valid + test:g}")
    if not len(library):
        raise CorpusError("the library has no sources to split")
    shares = {"train": 1.0 - valid - test, "valid": valid, "test": test}
    chosen = _by_book(library, shares, seed) if by == "book" else _by_text(library, shares)
    parts = {}
    for name, pieces in chosen.items():
        texts = [(src, text.rstrip("\n") + "\n") for src, text in pieces]  # one final newline each
        parts[name] = SplitPart(name, "\n".join(t for _, t in texts), tuple((src, len(t)) for src, t in texts))
    return parts


def _by_book(library: Library, shares: dict[str, float], seed: int) -> dict[str, list[tuple[str, str]]]:
    needed = sum(1 for share in shares.values() if share > 0)
    if len(library) < needed:
        raise CorpusError(
            f"splitting by book needs at least {needed} books, the library has {len(library)}; "
            "use --by text to split inside each book"
        )
    order = list(library.sources)
    random.Random(seed).shuffle(order)
    total = library.num_chars
    parts: dict[str, list[tuple[str, str]]] = {name: [] for name in PARTS}
    for name in ("test", "valid"):
        if shares[name] <= 0:
            continue
        taken = 0
        # keep at least one book for every part still to fill (valid after test, then train)
        still_needed = 1 + (name == "test" and shares["valid"] > 0)
        while len(order) > still_needed and (not parts[name] or taken < shares[name] * total):
            source = order.pop()
            parts[name].append((source.name, source.text))
            taken += len(source)
    parts["train"] = [(s.name, s.text) for s in order]
    return parts


def _by_text(library: Library, shares: dict[str, float]) -> dict[str, list[tuple[str, str]]]:
    parts: dict[str, list[tuple[str, str]]] = {name: [] for name in PARTS}
    for source in library:
        text = source.text
        first = _cut(text, round(len(text) * shares["train"]))
        second = first if shares["valid"] == 0 else (
            len(text) if shares["test"] == 0 else
            _cut(text, round(len(text) * (shares["train"] + shares["valid"])), low=first))
        for name, piece in zip(PARTS, (text[:first], text[first:second], text[second:]), strict=True):
            if piece.strip():
                parts[name].append((source.name, piece))
    return parts


def _cut(text: str, at: int, low: int = 0) -> int:
    """``at`` moved to the nearest paragraph break (else line break) within ``_SNAP`` characters."""
    at = max(low, min(at, len(text)))
    if at in (0, len(text)):
        return at
    for sep in ("\n\n", "\n"):
        candidates = [i + len(sep) for i in (text.rfind(sep, max(low, at - _SNAP), at),
                                             text.find(sep, at, at + _SNAP)) if i >= 0]
        if candidates:
            return min(candidates, key=lambda i: abs(i - at))
    return at


def write_split(parts: dict[str, SplitPart], out_dir: str | Path, prefix: str) -> list[Path]:
    """Write ``OUT/PREFIX.{train,valid,test}.txt`` (non-empty parts only); returns the paths."""
    out = Path(out_dir)
    written = []
    for name in PARTS:
        part = parts.get(name)
        if part is not None and part.pieces:
            written.append(atomic_write_bytes(out / f"{prefix}.{name}.txt", part.text.encode("utf-8")))
    return written
