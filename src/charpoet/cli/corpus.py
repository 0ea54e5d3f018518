"""``charpoet corpus ...``: find, download, clean and organise Project Gutenberg books."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charpoet.cli import app, check_output_file
from charpoet.errors import ConfigError, CorpusError

if TYPE_CHECKING:
    from charpoet.corpus.gutenberg_catalog import BookInfo, Catalog
    from charpoet.corpus.gutenberg_fetch import GutenbergClient

corpus_app = typer.Typer(
    help="Build libraries of Project Gutenberg books: search the catalog, download, clean, split.",
    no_args_is_help=True,
)
app.add_typer(corpus_app, name="corpus")

SEARCH, NETWORK, CLEANING = "Search the catalog", "Downloads", "Cleaning"


def _opt(help: str, panel: str | None = None, *names: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False, **kw)


# Option bundles shared by several commands.
Author = Annotated[str | None, _opt("Author contains this (case- and accent-insensitive).", SEARCH)]
Title = Annotated[str | None, _opt("Title contains this.", SEARCH)]
Language = Annotated[str | None, _opt("Language code or name: en, fr, German ...", SEARCH)]
Subject = Annotated[str | None, _opt("A subject contains this, e.g. 'science fiction'.", SEARCH)]
Bookshelf = Annotated[str | None, _opt("A bookshelf contains this, e.g. 'Gothic'.", SEARCH)]
Mirror = Annotated[str | None, _opt("Gutenberg site or mirror URL, or a local mirror directory "
                                    "[default: $CHARPOET_GUTENBERG_MIRROR or https://www.gutenberg.org].", NETWORK)]
MinInterval = Annotated[float, _opt("Seconds between requests (Project Gutenberg asks robots for >= 2).", NETWORK)]
MaxDownloads = Annotated[int, _opt("Most books to download in this command (cached books do not count).", NETWORK)]
Retries = Annotated[int, _opt("Retries after a server error, time-out or cut connection.", NETWORK)]
Timeout = Annotated[float, _opt("Seconds before a request times out.", NETWORK)]
CatalogAge = Annotated[float, _opt("Download the catalog again when the cached copy is older (days).", NETWORK)]
Refresh = Annotated[bool, _opt("Download the catalog again now.", NETWORK)]
LibraryOpt = Annotated[str | None, _opt("Library name, or a directory [default: gutenberg].", None)]
KeepNotes = Annotated[bool, _opt("Keep transcriber's notes and 'Produced by' credits.", CLEANING)]
DropIllustrations = Annotated[bool, _opt("Remove [Illustration] markers and their captions.", CLEANING)]
Unwrap = Annotated[bool, _opt("Join hard-wrapped prose paragraphs into single lines (verse and indented text stay).", CLEANING)]


def _client(mirror: str | None, min_interval: float = 2.0, max_downloads: int = 50, retries: int = 3,
            timeout: float = 30.0, catalog_max_age: float = 30.0) -> GutenbergClient:
    from charpoet.corpus.gutenberg_fetch import FetchPolicy, GutenbergClient

    policy = FetchPolicy(min_interval=min_interval, retries=retries, timeout=timeout,
                         max_downloads=max_downloads, catalog_max_age_days=catalog_max_age)
    return GutenbergClient(mirror, policy=policy.validate())


def _search(catalog: Catalog, text: str | None, **fields: str | None) -> list[BookInfo]:
    from charpoet.corpus.gutenberg import language_code

    if fields.get("language"):
        fields["language"] = language_code(fields["language"] or "")
    books = catalog.search(**{k: v for k, v in fields.items() if v})
    if text:  # a bare word: in the title or an author's name, or a book number
        from charpoet.corpus.gutenberg_catalog import Catalog as _Catalog

        found = _Catalog(books)
        anywhere = {b.id for b in found.search(title=text)} | {b.id for b in found.search(author=text)}
        if _is_number(text):
            anywhere.add(int(text))
        books = [b for b in books if b.id in anywhere]
    return books


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=not stderr, markup=False)  # titles may hold [brackets]


@corpus_app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="Words in the title or the author's name, or a book number.", show_default=False)] = None,
    author: Author = None, title: Title = None, language: Language = None, subject: Subject = None,
    bookshelf: Bookshelf = None,
    limit: Annotated[int, _opt("Show at most this many books (0 = all).")] = 25,
    as_json: Annotated[bool, _opt("Print one JSON object per book.", None, "--json")] = False,
    mirror: Mirror = None, refresh: Refresh = False, catalog_max_age: CatalogAge = 30.0,
) -> None:
    """Search the Project Gutenberg catalog (downloaded once, then cached)."""
    if limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    if language:
        from charpoet.corpus.gutenberg import language_code

        language_code(language)  # an unknown language fails before the catalog is fetched
    catalog = _client(mirror, catalog_max_age=catalog_max_age).catalog(refresh=refresh)
    books = _search(catalog, text, author=author, title=title, language=language,
                    subject=subject, bookshelf=bookshelf)
    shown = books[:limit] if limit else books
    if as_json:
        for book in shown:
            print(json.dumps(book.to_dict(), ensure_ascii=False))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column, justify in (("id", "right"), ("title", "left"), ("author", "left"), ("lang", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for book in shown:
        table.add_row(*map(Text, (str(book.id), _one_line(book.title), book.author, ",".join(book.languages))))
    out = _console()
    if shown:
        out.print(table)
    more = f"; showing {len(shown)} (raise --limit to see more)" if len(shown) < len(books) else ""
    _console(stderr=True).print(f"{len(books)} book{'s' * (len(books) != 1)} found in {len(catalog):,}{more}")


@corpus_app.command()
def add(
    books: Annotated[list[str] | None, typer.Argument(help="Project Gutenberg book numbers, e.g. 84 1342.", show_default=False)] = None,
    author: Author = None, title: Title = None, language: Language = None, subject: Subject = None,
    bookshelf: Bookshelf = None,
    limit: Annotated[int, _opt("Add at most this many books (0 = every match).", SEARCH)] = 0,
    library: LibraryOpt = None,
    replace: Annotated[bool, _opt("Download and clean books that are already in the library again.")] = False,
    keep_notes: KeepNotes = False, drop_illustrations: DropIllustrations = False, unwrap: Unwrap = False,
    mirror: Mirror = None, min_interval: MinInterval = 2.0, max_downloads: MaxDownloads = 50,
    retries: Retries = 3, timeout: Timeout = 30.0, catalog_max_age: CatalogAge = 30.0,
    refresh: Refresh = False,
) -> None:
    """Download books into a library, cleaned of Gutenberg's headers, licences and notes.

    Give book numbers, or search fields to add every match (up to --limit); --language
    also drops books in other languages. Train on the result with
    `charpoet train --library NAME`.
    """
    from charpoet.corpus.gutenberg import add_books, open_library
    from charpoet.corpus.gutenberg_clean import CleanOptions

    searching = any((author, title, subject, bookshelf))
    book_ids = [_book_number(b) for b in books or []]
    if not book_ids and not searching and not language:
        raise ConfigError("give book numbers, or search fields (--author, --title, --subject, --bookshelf, --language)")
    if limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    if any(i <= 0 for i in book_ids or []):
        raise ConfigError("book numbers must be positive")
    shelf = open_library(library)
    client = _client(mirror, min_interval, max_downloads, retries, timeout, catalog_max_age)
    catalog = _catalog_for_add(client, refresh, required=not book_ids)
    if book_ids:
        ids = list(dict.fromkeys(book_ids))
        if searching:  # ids and fields: the ids that match
            assert catalog is not None
            matching = {b.id for b in _search(catalog, None, author=author, title=title,
                                               subject=subject, bookshelf=bookshelf)}
            ids = [i for i in ids if i in matching]
    else:
        assert catalog is not None
        ids = [b.id for b in _search(catalog, None, author=author, title=title, language=language,
                                     subject=subject, bookshelf=bookshelf)]
    if not ids:
        raise CorpusError("no book in the catalog matches")
    clean = CleanOptions(strip_notes=not keep_notes, drop_illustrations=drop_illustrations, unwrap=unwrap)
    from rich.text import Text

    out, err = _console(), _console(stderr=True)
    added, failures, existed = 0, [], shelf.path.exists()
    with err.status("") as status:
        outcomes = add_books(shelf, client, ids, language=language, clean=clean,
                             replace_existing=replace, catalog=catalog)
        for done, outcome in enumerate(outcomes, 1):
            status.update(f"{done}/{len(ids)} books looked at, {added} added; working ...")
            label = _one_line(outcome.title) or f"book {outcome.id}"
            if outcome.book is not None and outcome.book.author:
                label += f" — {outcome.book.author}"
            out.print(Text.assemble(f"{outcome.status:<8} {outcome.id:>6}  {label}  ", (f"({outcome.detail})", "dim")))
            added += outcome.status == "added"
            if outcome.status == "failed":
                failures.append(outcome)
            if limit and added >= limit:
                break
    if existed or not shelf.discard_if_empty():  # a new library that got no book leaves nothing behind
        books = shelf.books()
        chars = sum(b.num_chars for b in books)
        err.print(f"library {shelf.name}: {len(books)} book{'s' * (len(books) != 1)}, {chars:,} characters "
                  f"({shelf.path}); {added} added this time")
    if failures:
        first = failures[0]
        others = f" ({len(failures) - 1} more, see above)" if len(failures) > 1 else ""
        raise CorpusError(f"{len(failures)} book{'s' * (len(failures) != 1)} could not be added: "
                          f"{first.detail}{others}")


def _is_number(text: str) -> bool:
    """Plain ASCII digits (``str.isdigit`` alone accepts ``²``, which ``int`` refuses)."""
    text = text.strip()
    return text.isascii() and text.isdigit()


def _book_number(text: str) -> int:
    """A Project Gutenberg book number given on the command line (``84``, ``#84``, ``pg84``)."""
    digits = text.strip().lower().removeprefix("#").removeprefix("pg")
    if not _is_number(digits):
        raise ConfigError(f"{text!r} is not a book number (e.g. 84 for Frankenstein); to find books by "
                          "title or author, use --title or --author")
    return int(digits)


def _catalog_for_add(client: GutenbergClient, refresh: bool, required: bool) -> Catalog | None:
    """The catalog; when only ids were given, a missing catalog is a warning, not an error."""
    if required:
        return client.catalog(refresh=refresh)
    try:
        return client.catalog(refresh=refresh)
    except CorpusError as e:
        import warnings

        from charpoet.errors import CharpoetWarning

        warnings.warn(f"{e}; titles and authors come from the files' headers", CharpoetWarning, stacklevel=2)
        return None


@corpus_app.command("list")
def list_(library: Annotated[str | None, typer.Option(help="Show the books of this library (name or directory).", show_default=False)] = None) -> None:
    """List the libraries, or the books of one library."""
    from charpoet.corpus.gutenberg import list_libraries, open_library

    out = _console()
    if library is None:
        shelves = list_libraries()
        if not shelves:
            _console(stderr=True).print("no libraries yet; add books with e.g. `charpoet corpus add 84 1342`")
            return
        for shelf in shelves:
            books = shelf.books()
            chars = sum(b.num_chars for b in books)
            out.print(f"{shelf.name:<20} {len(books):>5} book{'s' * (len(books) != 1)} {chars:>14,} chars  {shelf.path}")
        return
    shelf = open_library(library)
    if not shelf.exists():
        raise CorpusError(f"no library {shelf.name!r} at {shelf.path}")
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column, justify in (("id", "right"), ("title", "left"), ("author", "left"), ("lang", "left"),
                            ("chars", "right"), ("removed", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    books = shelf.books()
    for b in books:
        table.add_row(*map(Text, (str(b.id), b.title, b.author, ",".join(b.languages) or b.detected_language,
                                  f"{b.num_chars:,}", f"{b.removed_lines} lines")))
    out.print(table)
    _console(stderr=True).print(f"library {shelf.name}: {len(books)} books, "
                                f"{sum(b.num_chars for b in books):,} characters ({shelf.path})")


@corpus_app.command()
def show(
    book: Annotated[str, typer.Argument(help="Project Gutenberg book number, or a library (name or directory).")],
    library: Annotated[str | None, typer.Option(help="Also show this library's copy (default: every library that has it).", show_default=False)] = None,
    report: Annotated[bool, _opt("Print the cleaner's report (which lines were removed, and why).")] = False,
    mirror: Mirror = None, catalog_max_age: CatalogAge = 30.0,
) -> None:
    """Show a book's catalog entry and where it is in your libraries, or the books of a library."""
    from charpoet.corpus.gutenberg import list_libraries, open_library

    if not _is_number(book):  # a library: its books, as `corpus list --library`
        if library is not None:
            raise CorpusError(f"{book!r} is not a book number; give a book number with --library")
        try:
            shelf = open_library(book)
        except CorpusError:
            shelf = None
        if shelf is None or not shelf.exists():
            names = ", ".join(s.name for s in list_libraries()) or "none yet"
            raise CorpusError(f"{book!r} is neither a book number nor a library (libraries: {names})")
        return list_(str(shelf.path))
    book_id = int(book)
    shelves = [open_library(library)] if library else list_libraries()
    copies = [(s, s.get(book_id)) for s in shelves]
    copies = [(s, b) for s, b in copies if b is not None]
    info = None
    try:
        catalog = _client(mirror, catalog_max_age=catalog_max_age).catalog()
        info = catalog.get(book_id) if book_id in catalog else None
    except CorpusError:
        if not copies:
            raise
    if info is None and not copies:
        raise CorpusError(f"book {book_id} is not in the Project Gutenberg catalog")
    out = _console()
    if info is not None:
        rows = [("title", _one_line(info.title)), ("authors", "; ".join(info.authors)),
                ("language", ", ".join(info.languages)), ("issued", info.issued),
                ("subjects", "; ".join(info.subjects)), ("bookshelves", "; ".join(info.bookshelves)),
                ("LoC class", info.locc)]
        out.print(f"#{book_id}", style="bold")
        for key, value in rows:
            if value:
                out.print(f"  {key + ':':<13}{value}")
    else:
        out.print(f"#{book_id} (not in the catalog)", style="bold")
    for shelf, book in copies:
        out.print(f"  in library {shelf.name}: {book.title} — {book.num_chars:,} chars, "
                  f"{book.era} boilerplate, {book.removed_lines} lines removed, from {book.raw_file} "
                  f"({book.raw_encoding}); text in {shelf.path / book.file}")
        if report:
            out.print(shelf.report(book) or "  (no report kept)")
    if not copies:
        out.print("  not in any library; add it with "
                  f"`charpoet corpus add {book_id}`")


@corpus_app.command()
def remove(
    book_ids: Annotated[list[int], typer.Argument(help="Book numbers to remove.")],
    library: LibraryOpt = None,
) -> None:
    """Remove books from a library."""
    from charpoet.corpus.gutenberg import open_library

    shelf = open_library(library)
    if not shelf.exists():
        raise CorpusError(f"no library {shelf.name!r} at {shelf.path}")
    gone = shelf.remove(book_ids)
    missing = sorted(set(book_ids) - set(gone))
    if gone:
        _console().print(f"removed {', '.join(map(str, gone))} from {shelf.name}")
    if missing:
        raise CorpusError(f"not in library {shelf.name}: {', '.join(map(str, missing))}")


@corpus_app.command()
def clean(
    file: Annotated[str, typer.Argument(help="A Project Gutenberg text file, or - for standard input.")],
    output: Annotated[Path | None, _opt("Write the cleaned text here instead of standard output.", None, "--output", "-o")] = None,
    explain: Annotated[bool, _opt("Report every removed line range and why (on standard error).")] = False,
    keep_notes: KeepNotes = False, drop_illustrations: DropIllustrations = False, unwrap: Unwrap = False,
) -> None:
    """Strip a Gutenberg file's header, footer, licence and notes; the text goes to stdout or -o."""
    from charpoet.corpus.files import decode_file_bytes, read_file_bytes
    from charpoet.corpus.gutenberg_clean import CleanOptions, clean_gutenberg

    if output is not None:
        check_output_file(output, "-o")
    if file == "-":
        data, origin = sys.stdin.buffer.read(), "standard input"
    else:
        data, origin = read_file_bytes(file), file
    text, encoding = decode_file_bytes(data, origin)
    options = CleanOptions(strip_notes=not keep_notes, drop_illustrations=drop_illustrations, unwrap=unwrap)
    result = clean_gutenberg(text, options)
    if output is not None:
        from charpoet.corpus.cache import atomic_write_bytes

        atomic_write_bytes(output, result.text.encode("utf-8"))
    else:
        sys.stdout.write(result.text)
        sys.stdout.flush()
    removed = sum(r.last_line - r.first_line + 1 for r in result.removals)
    if explain:
        print(result.report(), file=sys.stderr)
    else:
        print(f"{origin}: {encoding}, {result.era} boilerplate; removed {removed} lines in "
              f"{len(result.removals)} blocks, kept {len(result.text):,} characters (--explain for details)",
              file=sys.stderr)
    if result.era == "unknown":
        import warnings

        from charpoet.errors import CharpoetWarning

        warnings.warn(f"{origin}: no Project Gutenberg header or footer found; text left as it was",
                      CharpoetWarning, stacklevel=2)


@corpus_app.command()
def split(
    library: Annotated[str | None, _opt("Library to split (name or directory).")] = None,
    text_path: Annotated[list[str] | None, _opt("Or: text files, directories or globs (repeatable).")] = None,
    out_dir: Annotated[Path, _opt("Directory for the output files.", None, "--out-dir", "-o")] = Path("."),
    prefix: Annotated[str | None, _opt("File name prefix [default: the library's name].")] = None,
    valid: Annotated[float, _opt("Share of characters for validation [default: 0.1].")] = 0.1,
    test: Annotated[float, _opt("Share of characters for testing [default: 0.1].")] = 0.1,
    by: Annotated[str, _opt("book: whole books per part; text: the end of every book [default: book].")] = "book",
    seed: Annotated[int, _opt("Shuffle seed for --by book [default: 0].")] = 0,
) -> None:
    """Write PREFIX.train.txt, PREFIX.valid.txt and PREFIX.test.txt for other tools."""
    from charpoet.corpus import library_from_paths
    from charpoet.corpus.gutenberg import open_library
    from charpoet.corpus.split import split_library, write_split

    if (library is None) == (not text_path):
        raise ConfigError("give either --library or --text-path")
    texts = library_from_paths(text_path or []) if text_path else open_library(library).load()
    parts = split_library(texts, valid, test, by=by, seed=seed)
    paths = write_split(parts, out_dir, prefix or texts.name)
    out = _console()
    total = sum(p.num_chars for p in parts.values()) or 1
    for path, part in zip(paths, (p for p in parts.values() if p.pieces), strict=True):
        books = len({name for name, _ in part.pieces})
        out.print(f"{part.name:<6} {part.num_chars:>12,} chars {part.num_chars / total:>6.1%}  "
                  f"{books} source{'s' * (books != 1)}  {path}")
