"""Project Gutenberg libraries: books found in the catalog, downloaded, cleaned and kept.

A *book library* is a directory of cleaned texts with a manifest::

    LIBRARY/
      library.json        name, and per book: id, title, author, languages, file, size,
                          checksum, where the raw file came from, what the cleaner removed
      texts/84.txt        the cleaned body of book 84 (UTF-8, LF)
      reports/84.txt      the cleaner's report for book 84 (which lines went, and why)

Named libraries live in ``$CHARPOET_HOME/libraries/NAME``; any directory path works too.
``add_books`` fills a library (download through ``GutenbergClient``, which caches the raw
files, then ``clean_gutenberg``, then an optional language check); ``BookLibrary.load``
turns it into a ``Library`` for training, one source per book with its title and author.
Every file is written atomically and the manifest last, so an interrupted ``add`` keeps
the books finished so far.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from charpoet.corpus.cache import atomic_write_bytes, charpoet_home, remove_temp_files
from charpoet.corpus.files import decode_file_bytes
from charpoet.corpus.gutenberg_catalog import LANGUAGE_NAMES, BookInfo, Catalog
from charpoet.corpus.gutenberg_clean import CleanedText, CleanOptions, clean_gutenberg
from charpoet.corpus.gutenberg_fetch import GutenbergClient, RawBook
from charpoet.corpus.language import UNDETERMINED, detect_language
from charpoet.corpus.library import Library, Source
from charpoet.errors import CorpusError

__all__ = [
    "AddOutcome", "BookLibrary", "LibraryBook", "add_books", "clean_raw_book",
    "language_code", "list_libraries", "open_library",
]

_FORMAT = "charpoet.book-library"
_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_LIBRARY = "gutenberg"


def libraries_root() -> Path:
    """Where named libraries live: ``$CHARPOET_HOME/libraries``."""
    return charpoet_home() / "libraries"


def open_library(spec: str | os.PathLike[str] | None = None) -> BookLibrary:
    """The library named ``spec`` (a plain name) or at ``spec`` (a path); not created here."""
    spec = os.fspath(spec) if spec is not None else DEFAULT_LIBRARY
    if not spec.strip():
        raise CorpusError("library name is empty")
    looks_like_path = os.sep in spec or "/" in spec or spec.startswith((".", "~"))
    if looks_like_path or Path(spec).is_dir() and (Path(spec) / "library.json").is_file():
        path = Path(spec).expanduser()
        return BookLibrary(path, name=Path(os.path.abspath(path)).name)
    if not _NAME.fullmatch(spec):
        raise CorpusError(
            f"bad library name {spec!r}: use letters, digits, '.', '_' or '-' (or give a directory path)"
        )
    return BookLibrary(libraries_root() / spec, name=spec)


def list_libraries() -> list[BookLibrary]:
    """The named libraries in ``$CHARPOET_HOME/libraries``, sorted by name."""
    root = libraries_root()
    if not root.is_dir():
        return []
    return [BookLibrary(p, name=p.name) for p in sorted(root.iterdir())
            if (p / "library.json").is_file()]


def language_code(language: str) -> str:
    """``"en"``, ``"EN"`` or ``"English"`` -> ``"en"``; ``CorpusError`` for unknown names."""
    value = language.strip().lower()
    if value in LANGUAGE_NAMES:
        return value
    by_name = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
    if value in by_name:
        return by_name[value]
    if re.fullmatch(r"[a-z]{2,3}", value):
        return value
    raise CorpusError(f"unknown language {language!r}: give a code such as en, fr, de, or an English name")


@dataclass(frozen=True)
class LibraryBook:
    """One book of a library, as its manifest records it."""

    id: int
    title: str
    author: str = ""
    authors: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # from the catalog or the file's header
    detected_language: str = UNDETERMINED  # from the text itself
    file: str = ""  # relative to the library directory
    num_chars: int = 0
    sha256: str = ""  # of the cleaned text (UTF-8)
    raw_file: str = ""  # the downloaded file's name, e.g. "84-0.txt"
    raw_url: str = ""
    raw_encoding: str = ""
    era: str = ""  # the Gutenberg header era the cleaner recognised
    removed_lines: int = 0
    clean_options: dict[str, bool] = field(default_factory=dict)
    added: float = 0.0  # Unix time

    @property
    def name(self) -> str:
        """Source name in a ``Library``: ``pg84``."""
        return f"pg{self.id}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["authors"], d["languages"] = list(self.authors), list(self.languages)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LibraryBook:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in d.items() if k in known}
        values["authors"] = tuple(values.get("authors", ()))
        values["languages"] = tuple(values.get("languages", ()))
        return cls(**values)


class BookLibrary:
    """A directory of cleaned books with a JSON manifest."""

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.name

    def __repr__(self) -> str:
        return f"BookLibrary({self.name!r}, {str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / "library.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def books(self) -> list[LibraryBook]:
        """Books in the order they were added; empty for a library that does not exist yet."""
        if not self.exists():
            if self.path.exists() and any(not p.name.startswith(".") for p in self.path.iterdir()):
                raise CorpusError(f"{self.path} is not a charpoet library (no library.json)")
            return []
        try:
            d = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            if d.get("format") != _FORMAT:
                raise ValueError("format")
            if d.get("version") != _VERSION:
                raise CorpusError(f"{self.manifest_path}: unsupported library version {d.get('version')!r}")
            return [LibraryBook.from_dict(b) for b in d["books"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CorpusError(f"{self.manifest_path}: corrupt library manifest ({type(e).__name__})") from None

    def get(self, book_id: int) -> LibraryBook | None:
        return next((b for b in self.books() if b.id == book_id), None)

    def __contains__(self, book_id: int) -> bool:
        return self.get(book_id) is not None

    def text(self, book: LibraryBook) -> str:
        """The cleaned text of ``book``."""
        path = self.path / book.file
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CorpusError(f"{self.name}: text of book {book.id} is missing ({path})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CorpusError(f"{self.name}: cannot read {path} ({type(e).__name__})") from None

    def report(self, book: LibraryBook) -> str | None:
        """The cleaner's report for ``book``, if kept."""
        path = self.path / "reports" / f"{book.id}.txt"
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def put(self, book: LibraryBook, text: str, report: str = "") -> LibraryBook:
        """Store ``text`` as ``book`` (replacing a book with the same id); returns the stored record."""
        data = text.encode("utf-8")
        book = replace(book, file=f"texts/{book.id}.txt", num_chars=len(text),
                       sha256=hashlib.sha256(data).hexdigest(), added=book.added or time.time())
        with self._locked():  # another `corpus add` may be updating the same library
            others = [b for b in self.books() if b.id != book.id]  # also checks the directory is a library
            atomic_write_bytes(self.path / book.file, data)
            if report:
                atomic_write_bytes(self.path / "reports" / f"{book.id}.txt", report.encode("utf-8"))
            self._write_manifest(others + [book])
        return book

    def remove(self, book_ids: Iterable[int]) -> list[int]:
        """Drop books from the library; returns the ids that were present."""
        ids = set(book_ids)
        with self._locked():
            books = self.books()
            gone = [b for b in books if b.id in ids]
            if gone:
                self._write_manifest([b for b in books if b.id not in ids])
                for b in gone:
                    (self.path / b.file).unlink(missing_ok=True)
                    (self.path / "reports" / f"{b.id}.txt").unlink(missing_ok=True)
        return [b.id for b in gone]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the library's manifest (POSIX; elsewhere a no-op)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as handle:
            try:
                import fcntl
            except ImportError:  # Windows: no advisory locks here
                yield
                return
            fcntl.flock(handle, fcntl.LOCK_EX)
            if self.exists():  # every write holds the lock: temp files now are from killed processes
                for folder in (self.path, self.path / "texts", self.path / "reports"):
                    remove_temp_files(folder)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def discard_if_empty(self) -> bool:
        """Remove what a first ``add`` that added nothing made (manifest, lock, empty folders) and
        the directory if that leaves it empty; never anything else. True if no book is there."""
        with self._locked():
            if self.books():
                return False
            for folder in (self.path / "texts", self.path / "reports"):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            self.manifest_path.unlink(missing_ok=True)
        (self.path / ".lock").unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass  # something of the user's is there: keep it
        return True

    def _write_manifest(self, books: list[LibraryBook]) -> None:
        d = {"format": _FORMAT, "version": _VERSION, "name": self.name,
             "books": [b.to_dict() for b in books]}
        atomic_write_bytes(self.manifest_path, json.dumps(d, ensure_ascii=False, indent=1).encode("utf-8"))

    def load(self) -> Library:
        """The library's books as sources for training (``pg84``, title, author), in order."""
        if not self.exists():
            hint = "; add books with `charpoet corpus add`" if self.path.parent == libraries_root() else ""
            raise CorpusError(f"no library {self.name!r} at {self.path}{hint}")
        books = self.books()
        if not books:
            raise CorpusError(f"library {self.name!r} has no books; add some with `charpoet corpus add`")
        missing = [b for b in books if not (self.path / b.file).is_file()]
        if missing:
            self.text(missing[0])  # the error that names it
        # streamed: a library of thousands of books is read a piece at a time, never held whole
        sources = [Source(name=b.name, title=b.title, path=str((self.path / b.file).resolve()), author=b.author,
                          reader=self._reader(b), num_chars=b.num_chars or None, sha256=b.sha256 or None)
                   for b in books]
        return Library(name=self.name, sources=tuple(sources))

    def _reader(self, book: LibraryBook) -> Callable[[], Iterator[str]]:
        path = self.path / book.file

        def read() -> Iterator[str]:
            decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                with open(path, "rb") as f:
                    while block := f.read(1 << 22):
                        yield decoder.decode(block)
                yield decoder.decode(b"", final=True)
            except FileNotFoundError:
                raise CorpusError(f"{self.name}: text of book {book.id} is missing ({path})") from None
            except (OSError, UnicodeDecodeError) as e:
                raise CorpusError(f"{self.name}: cannot read {path} ({type(e).__name__})") from None

        return read


def clean_raw_book(raw: RawBook, options: CleanOptions = CleanOptions()) -> tuple[CleanedText, str]:
    """Decode a downloaded file (UTF-8, or 8-bit for ``-8.txt``) and clean it; -> (result, encoding)."""
    text, encoding = decode_file_bytes(raw.data, f"book {raw.id} ({raw.filename})")
    cleaned = clean_gutenberg(text, options)
    if not cleaned.text.strip():
        raise CorpusError(f"book {raw.id}: nothing left after removing the Project Gutenberg boilerplate")
    return cleaned, encoding


@dataclass(frozen=True)
class AddOutcome:
    """What happened to one requested book."""

    id: int
    status: str  # "added" | "present" | "skipped" | "failed"
    title: str = ""
    detail: str = ""  # why skipped or failed; what was removed when added
    book: LibraryBook | None = None
    from_cache: bool = False


def add_books(
    library: BookLibrary,
    client: GutenbergClient,
    book_ids: Iterable[int],
    *,
    language: str | None = None,
    clean: CleanOptions = CleanOptions(),
    replace_existing: bool = False,
    catalog: Catalog | None = None,
) -> Iterator[AddOutcome]:
    """Download, clean and store each book; yields one ``AddOutcome`` per id, as it goes.

    ``language`` keeps only books in that language: by the catalog's metadata, else the
    file header's ``Language:`` line, else the language detected in the text. A book that
    cannot be fetched is reported as failed and the others go on; reaching the client's
    download limit stops with ``CorpusError`` (books added so far are kept).
    """
    wanted = language_code(language) if language else None
    present = {b.id for b in library.books()}
    for book_id in book_ids:
        info = _catalog_entry(catalog, book_id)
        title = info.title if info else ""
        if book_id in present and not replace_existing:
            yield AddOutcome(book_id, "present", title, "already in the library")
            continue
        if wanted and info and info.languages and wanted not in info.languages:
            yield AddOutcome(book_id, "skipped", title, f"language {', '.join(info.languages)}, not {wanted}")
            continue
        try:
            raw = client.fetch(book_id)
            cleaned, encoding = clean_raw_book(raw, clean)
        except CorpusError as e:
            yield AddOutcome(book_id, "failed", title, str(e))
            if client.downloads >= client.policy.max_downloads:
                raise CorpusError(
                    f"download limit reached ({client.policy.max_downloads} books this run); "
                    "raise --max-downloads to fetch more"
                ) from None
            continue
        detected = detect_language(cleaned.text).code
        header_language = _header_language(cleaned.metadata.get("language", ""))
        languages = (info.languages if info and info.languages else
                     (header_language,) if header_language else ())
        title = title or " ".join(cleaned.metadata.get("title", "").split())
        if wanted and languages and wanted not in languages:  # by the file's header
            yield AddOutcome(book_id, "skipped", title, f"language {', '.join(languages)}, not {wanted}")
            continue
        if wanted and not languages and detected != wanted:
            yield AddOutcome(book_id, "skipped", title, f"text looks like {detected}, not {wanted}")
            continue
        record = _record(book_id, info, cleaned, raw, encoding, languages, detected, clean)
        stored = library.put(record, cleaned.text, cleaned.report())
        removed = sum(r.last_line - r.first_line + 1 for r in cleaned.removals)
        yield AddOutcome(book_id, "added", stored.title,
                         f"{stored.num_chars:,} chars; {cleaned.era} boilerplate, {removed} lines removed",
                         stored, raw.from_cache)


def _catalog_entry(catalog: Catalog | None, book_id: int) -> BookInfo | None:
    return catalog.get(book_id) if catalog is not None and book_id in catalog else None


def _header_language(value: str) -> str:
    first = re.split(r"[;,/]| and ", value)[0].strip() if value else ""
    try:
        return language_code(first) if first else ""
    except CorpusError:
        return ""


def _record(book_id: int, info: BookInfo | None, cleaned: CleanedText, raw: RawBook, encoding: str,
            languages: tuple[str, ...], detected: str, clean: CleanOptions) -> LibraryBook:
    meta = cleaned.metadata
    title = " ".join((info.title if info else meta.get("title", "")).split())  # catalog titles may wrap
    return LibraryBook(
        id=book_id,
        title=title or f"Project Gutenberg #{book_id}",
        author=info.author if info else meta.get("author", ""),
        authors=info.authors if info else ((meta["author"],) if meta.get("author") else ()),
        languages=languages,
        detected_language=detected,
        raw_file=raw.filename,
        raw_url=raw.url,
        raw_encoding=encoding,
        era=cleaned.era,
        removed_lines=sum(r.last_line - r.first_line + 1 for r in cleaned.removals),
        clean_options=asdict(clean),
    )
