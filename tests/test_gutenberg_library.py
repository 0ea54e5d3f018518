"""Book libraries on disk, and filling them from a Gutenberg mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charpoet.corpus import load_library
from charpoet.corpus.gutenberg import (
    BookLibrary, LibraryBook, language_code, libraries_root, list_libraries, open_library,
)
from charpoet.errors import CorpusError


def _put(shelf: BookLibrary, book_id: int, text: str, **kw) -> LibraryBook:
    return shelf.put(LibraryBook(id=book_id, title=f"Book {book_id}", **kw), text, f"report {book_id}")


def test_names_and_paths(tmp_path: Path, isolated_home: Path) -> None:
    named = open_library("verne")
    assert named.path == isolated_home / "libraries" / "verne" and named.name == "verne"
    assert open_library(None).name == "gutenberg"
    at_path = open_library(str(tmp_path / "mine"))
    assert at_path.path == tmp_path / "mine" and at_path.name == "mine"
    for bad in ("", "a b", "-x", "x" * 65):
        with pytest.raises(CorpusError, match="library name"):
            open_library(bad)


def test_put_load_remove_round_trip(isolated_home: Path) -> None:
    shelf = open_library("shelf")
    assert shelf.books() == [] and not shelf.exists()
    _put(shelf, 84, "It was on a dreary night of November.\n", author="Mary Shelley", languages=("en",))
    _put(shelf, 1342, "It is a truth universally acknowledged.\n", author="Jane Austen")
    stored = shelf.get(84)
    assert stored is not None and stored.file == "texts/84.txt" and stored.num_chars == 38
    assert len(stored.sha256) == 64 and stored.added > 0
    assert shelf.report(stored) == "report 84"

    library = load_library(library="shelf")
    assert library.name == "shelf" and library.names == ["pg84", "pg1342"]
    assert library.sources[0].title == "Book 84" and library.sources[0].author == "Mary Shelley"
    assert library.sources[1].text == "It is a truth universally acknowledged.\n"

    # replacing keeps one entry per id; the manifest is valid JSON, written without temp files left
    _put(shelf, 84, "Replaced.\n")
    assert [b.id for b in shelf.books()] == [1342, 84] and shelf.text(shelf.get(84)) == "Replaced.\n"
    assert not [p for p in shelf.path.rglob("*") if p.name.endswith(".tmp")]
    assert json.loads(shelf.manifest_path.read_text())["format"] == "charpoet.book-library"

    # temp files a killed `corpus add` left behind go at the next write
    left = [shelf.path / ".library.json.x1.tmp", shelf.path / "texts" / ".84.txt.x2.tmp",
            shelf.path / "reports" / ".84.txt.x3.tmp"]
    for tmp in left:
        tmp.write_bytes(b"half a file")
    assert shelf.remove([84, 5]) == [84]
    assert not any(tmp.exists() for tmp in left)
    assert not (shelf.path / "texts" / "84.txt").exists()
    assert [s.name for s in list_libraries()] == ["shelf"]
    assert open_library(str(shelf.path)).load().names == ["pg1342"]


def test_load_errors(isolated_home: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no library 'nothing'.*charpoet corpus add"):
        load_library(library="nothing")
    empty = open_library("empty")
    empty._write_manifest([])
    with pytest.raises(CorpusError, match="has no books"):
        empty.load()
    shelf = open_library("shelf")
    _put(shelf, 1, "text\n")
    shelf.manifest_path.write_text("{not json")
    with pytest.raises(CorpusError, match="corrupt library manifest"):
        shelf.books()
    _put(open_library("other"), 2, "text\n")
    (libraries_root() / "other" / "texts" / "2.txt").unlink()
    with pytest.raises(CorpusError, match="text of book 2 is missing"):
        load_library(library="other")
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("x")
    with pytest.raises(CorpusError, match="not a charpoet library"):
        open_library(str(stray)).books()
    with pytest.raises(CorpusError, match="only one of"):
        load_library(["a.txt"], library="shelf")


def test_language_codes() -> None:
    assert language_code("EN") == "en"
    assert language_code("French") == "fr"
    assert language_code(" german ") == "de"
    with pytest.raises(CorpusError, match="unknown language"):
        language_code("Klingonese")


# --- add_books against a fake mirror ----------------------------------------------------------

def _client(server, **policy):
    from charpoet.corpus.gutenberg_fetch import FetchPolicy, GutenbergClient

    return GutenbergClient(server.url, policy=FetchPolicy(min_interval=0.01, backoff=0.01, **policy))


def test_add_books_cleans_and_records(gutenberg_server) -> None:
    from charpoet.corpus.gutenberg import add_books

    client = _client(gutenberg_server)
    catalog = client.catalog()
    shelf = open_library("classics")
    outcomes = list(add_books(shelf, client, [84, 800, 1342], catalog=catalog))
    assert [(o.id, o.status) for o in outcomes] == [(84, "added"), (800, "added"), (1342, "added")]
    frankenstein = shelf.get(84)
    assert frankenstein.title == "Frankenstein; Or, The Modern Prometheus"
    assert frankenstein.author == "Mary Wollstonecraft Shelley" and frankenstein.languages == ("en",)
    assert frankenstein.detected_language == "en" and frankenstein.era == "modern"
    assert frankenstein.raw_file == "pg84.txt" and frankenstein.removed_lines > 300
    verne = shelf.get(800)
    assert verne.raw_file == "800-8.txt" and verne.raw_encoding == "ISO-8859-1"
    text = shelf.text(verne)
    assert "Phileas Fogg" in text and "\ufffd" not in text and "é" in text
    assert "Project Gutenberg" not in text and "PROJECT GUTENBERG" not in text
    assert "lines" in shelf.report(verne)

    library = shelf.load()
    assert library.names == ["pg84", "pg800", "pg1342"]
    assert [s.author for s in library] == ["Mary Wollstonecraft Shelley", "Jules Verne", "Jane Austen"]

    # a second add of the same books: nothing downloaded, nothing changed
    requests = len(gutenberg_server.log)
    again = list(add_books(shelf, client, [84, 1342], catalog=catalog))
    assert [o.status for o in again] == ["present", "present"] and len(gutenberg_server.log) == requests


def test_add_books_language_filter(gutenberg_server) -> None:
    from charpoet.corpus.gutenberg import add_books

    client = _client(gutenberg_server)
    shelf = open_library("english")
    # by the catalog: 800 is French, nothing is downloaded for it
    outcomes = list(add_books(shelf, client, [800, 84], language="English", catalog=client.catalog()))
    assert [(o.id, o.status) for o in outcomes] == [(800, "skipped"), (84, "added")]
    assert "language fr, not en" in outcomes[0].detail
    assert not any("800" in p for p in gutenberg_server.paths())
    # without a catalog: the file header's Language line decides
    outcomes = list(add_books(open_library("french"), client, [800, 1342], language="fr"))
    assert [(o.id, o.status) for o in outcomes] == [(800, "added"), (1342, "skipped")]


def test_add_books_without_metadata_checks_the_text(gutenberg_server) -> None:
    from charpoet.corpus.gutenberg import add_books

    german = (b"Als Gregor Samsa eines Morgens aus unruhigen Tr\xc3\xa4umen erwachte, fand er sich in seinem"
              b" Bett zu einem ungeheueren Ungeziefer verwandelt. Er lag auf dem panzerartig harten"
              b" R\xc3\xbccken und sah, wenn er den Kopf ein wenig hob, seinen gew\xc3\xb6lbten Bauch.\n" * 5)
    gutenberg_server.add("/files/22367/22367-0.txt",
                         german + b"\nEnd of the Project Gutenberg EBook of Die Verwandlung, by Franz Kafka\n")
    client = _client(gutenberg_server)
    outcomes = list(add_books(open_library("en"), client, [22367], language="en"))
    assert outcomes[0].status == "skipped" and "looks like de" in outcomes[0].detail
    outcomes = list(add_books(open_library("de"), client, [22367], language="de"))
    assert outcomes[0].status == "added" and outcomes[0].book.title == "Project Gutenberg #22367"


def test_add_books_failures_do_not_stop_the_rest(gutenberg_server) -> None:
    from charpoet.corpus.gutenberg import add_books

    client = _client(gutenberg_server, retries=0)
    shelf = open_library("mixed")
    outcomes = list(add_books(shelf, client, [999999, 5]))
    assert [(o.id, o.status) for o in outcomes] == [(999999, "failed"), (5, "added")]
    assert "no plain-text file" in outcomes[0].detail
    assert [b.id for b in shelf.books()] == [5]


def test_add_books_download_limit_keeps_what_was_added(gutenberg_server) -> None:
    from charpoet.corpus.gutenberg import add_books

    client = _client(gutenberg_server, max_downloads=1)
    shelf = open_library("limited")
    seen = []
    with pytest.raises(CorpusError, match="download limit reached"):
        for outcome in add_books(shelf, client, [5, 84, 1342]):
            seen.append(outcome.status)
    assert seen == ["added", "failed"] and [b.id for b in shelf.books()] == [5]


def test_concurrent_adds_lose_no_book(isolated_home: Path) -> None:
    import threading

    def add(start: int) -> None:
        shelf = open_library("busy")  # each writer has its own handle, as two processes would
        for i in range(start, start + 10):
            _put(shelf, i, f"text {i}\n")

    threads = [threading.Thread(target=add, args=(start,)) for start in (1, 101)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(b.id for b in open_library("busy").books()) == [*range(1, 11), *range(101, 111)]
