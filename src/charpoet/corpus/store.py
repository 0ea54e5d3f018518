"""A library stored in pieces: a JSON manifest and one file of texts, written and read as streams.

    sources.json   {"format": "charpoet.library", "version": 2, "name", "fingerprint", "texts": "sources.bin",
                    "sources": [{"name", "title", "author", "path", "num_chars", "offset", "num_bytes", "sha256"}]}
    sources.bin    source 0's UTF-8 text, 0xFF, source 1's text, 0xFF, ...   (0xFF never occurs in UTF-8)

This is how a run keeps its sources (``charpoet.checkpoint.RunDir.write_library``): the texts
are copied from the original files once, in bounded chunks, so a library larger than memory
is never held as one string, and the run no longer depends on the originals. A stored
library's sources stream from ``sources.bin`` (``Source.chunks``), and every full pass checks
the source's SHA-256, so a damaged file is reported rather than trained on. Both files are
written to temporary files and renamed, the manifest last: a crash leaves either no new
manifest (and so no library a reader accepts, for a new run) or the whole new library; a
texts file that does not match its manifest is an error, never read as sources.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from charpoet.corpus.cache import atomic_write_bytes, remove_temp_files
from charpoet.corpus.library import Library, Source
from charpoet.errors import CheckpointError, CorpusError
from charpoet.integrity import seal_json, unseal_json

FORMAT, VERSION = "charpoet.library", 2
SEP = b"\xff"
READ_BLOCK = 1 << 22  # bytes read at a time from sources.bin


def write_library_store(library: Library, manifest: str | Path, texts: str | Path) -> Library:
    """Write ``library`` as ``manifest`` (JSON) and ``texts`` (bytes), streaming each source once.

    Returns the stored library, whose sources read from ``texts``.
    """
    manifest, texts = Path(manifest), Path(texts)
    entries: list[dict[str, Any]] = []
    temp = texts.with_name(f".{texts.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as out:
            offset = 0
            for source in library.sources:
                digest, chars, size = hashlib.sha256(), 0, 0
                for chunk in source.chunks():
                    data = chunk.encode("utf-8")
                    out.write(data)
                    digest.update(data)
                    chars += len(chunk)
                    size += len(data)
                out.write(SEP)
                entries.append({"name": source.name, "title": source.title, "author": source.author,
                                 "path": source.path, "num_chars": chars, "offset": offset, "num_bytes": size,
                                 "sha256": digest.hexdigest()})
                offset += size + len(SEP)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, texts)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    stored = _stored_library(library.name, entries, texts)
    document = {"format": FORMAT, "version": VERSION, "name": library.name, "fingerprint": stored.fingerprint(),
                "texts": texts.name, "num_bytes": offset, "sources": entries}
    data = json.dumps(seal_json(document), ensure_ascii=False, indent=1) + "\n"  # with a checksum
    atomic_write_bytes(manifest, data.encode("utf-8"))
    return stored


def read_library_store(manifest: str | Path) -> Library:
    """The library stored by ``write_library_store``; ``CorpusError`` if a file is missing or damaged."""
    manifest = Path(manifest)
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"{manifest}: library file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{manifest}: corrupt library file ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise CorpusError(f"{manifest}: not a charpoet library (version {VERSION})")
    document = unseal_json(document, manifest)
    try:
        texts = manifest.parent / document["texts"]
        entries = document["sources"]
        expected = int(document["num_bytes"])
        library = _stored_library(document["name"], entries, texts)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorpusError(f"{manifest}: corrupt library file (missing or bad {exc})") from None
    try:
        size = texts.stat().st_size
    except OSError:
        raise CorpusError(f"{texts}: the library's texts are missing") from None
    if size != expected:
        raise CorpusError(f"{texts}: corrupt library texts ({size:,} bytes, expected {expected:,})")
    if library.fingerprint() != document.get("fingerprint"):
        raise CorpusError(f"{manifest}: library fingerprint mismatch (data is corrupt)")
    return library


def remove_library_store(manifest: str | Path, texts: str | Path) -> None:
    for path in (Path(manifest), Path(texts)):
        path.unlink(missing_ok=True)
    remove_temp_files(Path(texts).parent)


def _stored_library(name: Any, entries: list[dict[str, Any]], texts: Path) -> Library:
    if not isinstance(name, str) or not isinstance(entries, list):
        raise TypeError("name or sources")
    sources = []
    for e in entries:
        offset, size, chars, digest = int(e["offset"]), int(e["num_bytes"]), int(e["num_chars"]), e["sha256"]
        fields = (e["name"], e["title"], e.get("author", ""), digest)
        if not all(isinstance(v, str) for v in fields) or not isinstance(e.get("path"), str | None):
            raise TypeError(f"source {e.get('name')!r}")
        reader = _Reader(texts, offset, size, digest, e["name"])
        sources.append(Source(e["name"], e["title"], path=e.get("path"), author=e.get("author", ""),
                              reader=reader, num_chars=chars, sha256=digest))
    return Library(name, tuple(sources))


class _Reader:
    """Streams one source's text from ``sources.bin``; a full pass checks its SHA-256."""

    def __init__(self, texts: Path, offset: int, size: int, sha256: str, name: str):
        self.texts, self.offset, self.size, self.sha256, self.name = texts, offset, size, sha256, name

    def __call__(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        digest, left = hashlib.sha256(), self.size
        try:
            with open(self.texts, "rb") as f:
                f.seek(self.offset)
                while left > 0:
                    data = f.read(min(READ_BLOCK, left))
                    if not data:
                        break
                    left -= len(data)
                    digest.update(data)
                    yield decoder.decode(data)
        except OSError as exc:
            raise CheckpointError(f"{self.texts}: cannot read the library's texts ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.texts} is corrupt: source {self.name!r} is not UTF-8") from None
        if left or digest.hexdigest() != self.sha256:
            raise CheckpointError(f"{self.texts} is corrupt: source {self.name!r} does not match its digest")
        yield decoder.decode(b"", final=True)
