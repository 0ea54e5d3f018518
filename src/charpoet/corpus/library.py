"""Sources and libraries: named texts that keep their identity for provenance.

A ``Library`` is an ordered tuple of ``Source``s. Token positions are later traced back
to ``(source name, offset in source.text)``, so texts are stored unchanged once read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CorpusError

_FORMAT = "charpoet.library"
_VERSION = 1


@dataclass(frozen=True)
class Source:
    """One named text (a file or a book)."""

    name: str
    title: str
    text: str
    path: str | None = None
    author: str = ""

    def __len__(self) -> int:
        return len(self.text)

    @property
    def sha256(self) -> str:
        """SHA-256 hex digest of the UTF-8 text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


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
        """SHA-256 hex over every source's (name, text), length-prefixed, in order."""
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
        if expected is not None and expected != library.fingerprint():
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
