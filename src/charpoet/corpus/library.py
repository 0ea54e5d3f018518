"""Sources and libraries: named texts that keep their identity for provenance.

A ``Library`` is an ordered tuple of ``Source``s. Token positions are later traced back
to ``(source name, offset in source.text)``, so texts are stored unchanged once read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CorpusError

_FORMAT = "charpoet.library"
_VERSION = 1


CHUNK_CHARS = 1 << 22  # characters per piece when a text is streamed (4 Mi: bounded memory)


def bounded_chunks(pieces: Iterable[str], max_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Re-cut text ``pieces`` into chunks of about ``max_chars`` characters that end after a newline.

    A chunk is cut after its last newline, so no word, CRLF pair or combining sequence is split
    (a newline is a token of its own for every tokenizer, and NFC never composes across it); a
    text with no newline for ``max_chars`` characters is cut there. The chunks concatenate to
    the pieces' text; none is empty.
    """
    pending: list[str] = []
    size = 0
    for piece in pieces:
        if not piece:
            continue
        pending.append(piece)
        size += len(piece)
        if size < max_chars:
            continue
        text = "".join(pending)
        start = 0
        while len(text) - start >= max_chars:
            cut = text.rfind("\n", start, start + max_chars)
            end = cut + 1 if cut >= start else start + max_chars
            yield text[start:end]
            start = end
        pending, size = ([text[start:]], len(text) - start) if start < len(text) else ([], 0)
    if size:
        yield "".join(pending)


class Source:
    """One named text (a file, a book or a stored part of a run's library).

    The text is either held in memory (``text=``) or streamed on demand by ``reader``, a
    callable that returns an iterable of text pieces each time it is called (a file read in
    chunks, a URL, a run's stored sources). ``chunks()`` gives the text in bounded pieces and
    is what code that may meet a library larger than memory uses; ``text`` joins them.
    """

    __slots__ = ("name", "title", "path", "author", "_text", "_reader", "_num_chars", "_sha256")

    def __init__(self, name: str, title: str, text: str | None = None, path: str | None = None,
                 author: str = "", *, reader: Callable[[], Iterable[str]] | None = None,
                 num_chars: int | None = None, sha256: str | None = None):
        if (text is None) == (reader is None):
            raise CorpusError(f"source {name!r}: give either its text or a reader")
        for attr, value in (("name", name), ("title", title), ("path", path), ("author", author),
                            ("_text", text), ("_reader", reader), ("_num_chars", num_chars), ("_sha256", sha256)):
            object.__setattr__(self, attr, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Source is immutable (cannot set {name})")

    def __repr__(self) -> str:
        size = f"{self._num_chars} chars" if self._num_chars is not None else "streamed"
        return f"Source(name={self.name!r}, title={self.title!r}, {size if self._text is None else f'{len(self._text)} chars'})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Source):
            return NotImplemented
        return ((self.name, self.title, self.path, self.author) == (other.name, other.title, other.path, other.author)
                and self.sha256 == other.sha256)

    def __hash__(self) -> int:
        return hash((self.name, self.title, self.path, self.author))

    def replace(self, **changes: Any) -> Source:
        """A copy with some of name, title, text, path and author changed."""
        fields = {"name": self.name, "title": self.title, "path": self.path, "author": self.author}
        if "text" not in changes:
            fields |= {"text": self._text, "reader": self._reader, "num_chars": self._num_chars, "sha256": self._sha256}
        return Source(**(fields | changes))

    @property
    def streamed(self) -> bool:
        """True when the text is read on demand rather than held in memory."""
        return self._text is None

    @property
    def text(self) -> str:
        """The whole text (read in full for a streamed source: prefer ``chunks()`` for big ones)."""
        return self._text if self._text is not None else "".join(self.chunks())

    def chunks(self, max_chars: int = CHUNK_CHARS) -> Iterator[str]:
        """The text in pieces of about ``max_chars`` characters, each ending after a newline where
        possible (see ``bounded_chunks``); they concatenate to ``text``."""
        if self._text is not None:
            return bounded_chunks((self._text,), max_chars)
        assert self._reader is not None
        return bounded_chunks(self._reader(), max_chars)

    def __len__(self) -> int:
        if self._text is not None:
            return len(self._text)
        if self._num_chars is None:
            self._measure()
        return self._num_chars  # type: ignore[return-value]

    @property
    def sha256(self) -> str:
        """SHA-256 hex digest of the UTF-8 text."""
        if self._sha256 is None:
            if self._text is not None:
                object.__setattr__(self, "_sha256", hashlib.sha256(self._text.encode("utf-8")).hexdigest())
            else:
                self._measure()
        return self._sha256  # type: ignore[return-value]

    def _measure(self) -> None:
        """Length and digest of a streamed text, in one pass (kept: a source does not change)."""
        digest, count = hashlib.sha256(), 0
        for chunk in self.chunks():
            digest.update(chunk.encode("utf-8"))
            count += len(chunk)
        object.__setattr__(self, "_num_chars", count)
        object.__setattr__(self, "_sha256", digest.hexdigest())


@dataclass(frozen=True)
class Library:
    """An ordered collection of uniquely named sources."""

    name: str
    sources: tuple[Source, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise CorpusError(f"library {self.name!r}: duplicate source name {source.name!r}")
            seen.add(source.name)

    def __len__(self) -> int:
        return len(self.sources)

    def __iter__(self) -> Iterator[Source]:
        return iter(self.sources)

    def __getitem__(self, index: int) -> Source:
        return self.sources[index]

    @property
    def names(self) -> list[str]:
        """Source names, in order."""
        return [s.name for s in self.sources]

    @property
    def num_chars(self) -> int:
        """Total number of characters over all sources."""
        return sum(len(s) for s in self.sources)

    def fingerprint(self) -> str:
        """SHA-256 hex over every source's name and text digest, length-prefixed, in order.

        Computed from each source's ``sha256``, so a streamed library is read once, in pieces.
        """
        h = hashlib.sha256(b"charpoet-library-v2\0")
        for source in self.sources:
            name = source.name.encode("utf-8")
            h.update(len(name).to_bytes(8, "big"))
            h.update(name)
            h.update(bytes.fromhex(source.sha256))
        return h.hexdigest()

    def fingerprint_v1(self) -> str:
        """The fingerprint that ``library.json.gz`` files written before version 2 recorded."""
        h = hashlib.sha256(b"charpoet-library-v1\0")
        for source in self.sources:
            for part in (source.name, source.text):
                data = part.encode("utf-8")
                h.update(len(data).to_bytes(8, "big"))
                h.update(data)
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with every text; inverse of ``from_dict``."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "name": self.name,
            "fingerprint": self.fingerprint(),
            "sources": [
                {"name": s.name, "title": s.title, "author": s.author, "path": s.path,
                 "text": s.text}
                for s in self.sources
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Library:
        """Rebuild a library from ``to_dict`` output; checks types and the fingerprint."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise CorpusError("not a charpoet library")
        if d.get("version") != _VERSION:
            raise CorpusError(f"unsupported library version {d.get('version')!r}")
        try:
            sources = tuple(
                Source(name=s["name"], title=s["title"], text=s["text"], path=s.get("path"),
                       author=s.get("author", ""))
                for s in d["sources"]
            )
            library = cls(name=d["name"], sources=sources)
        except (KeyError, TypeError, AttributeError) as e:
            raise CorpusError(f"malformed library data ({type(e).__name__}: {e})") from None
        if not isinstance(library.name, str):
            raise CorpusError("malformed library data (name)")
        for s in library.sources:
            fields = (s.name, s.title, s.text, s.author)
            if not all(isinstance(v, str) for v in fields) or not isinstance(s.path, str | None):
                raise CorpusError(f"malformed library data (source {s.name!r})")
        expected = d.get("fingerprint")
        if expected is not None and expected not in (library.fingerprint(), library.fingerprint_v1()):
            raise CorpusError("library fingerprint mismatch (data is corrupt)")
        return library

    def manifest(self) -> dict[str, Any]:
        """Like ``to_dict`` without the texts: names, titles, paths, sizes and checksums."""
        return {
            "name": self.name,
            "num_sources": len(self),
            "num_chars": self.num_chars,
            "fingerprint": self.fingerprint(),
            "sources": [
                {"name": s.name, "title": s.title, "author": s.author, "path": s.path,
                 "num_chars": len(s), "sha256": s.sha256}
                for s in self.sources
            ],
        }


def save_library(library: Library, path: str | Path) -> Path:
    """Write ``library`` as gzip-compressed JSON (``.json.gz``), atomically."""
    data = json.dumps(library.to_dict(), ensure_ascii=False).encode("utf-8")
    return atomic_write_bytes(path, gzip.compress(data, mtime=0))


def load_library_file(path: str | Path) -> Library:
    """Read a library written by ``save_library``; ``CorpusError`` if missing or corrupt."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: library file not found") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read library file ({e.strerror})") from None
    try:
        d = json.loads(gzip.decompress(raw).decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as e:
        raise CorpusError(f"{path}: corrupt library file ({type(e).__name__})") from None
    try:
        return Library.from_dict(d)
    except CorpusError as e:
        raise CorpusError(f"{path}: {e}") from None
