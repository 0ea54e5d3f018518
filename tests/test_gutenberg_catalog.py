"""Tests for charpoet.corpus.gutenberg_catalog: pg_catalog.csv and RDF parsing, search."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from charpoet.corpus.gutenberg_catalog import (
    LANGUAGE_NAMES,
    BookInfo,
    Catalog,
    display_author,
    language_codes,
    parse_rdf,
)
from charpoet.errors import CharpoetWarning, CorpusError

SAMPLE = "gutenberg/catalog/pg_catalog.head2000.csv"
RDF = "gutenberg/catalog/rdf"


@pytest.fixture(scope="module")
def sample_text(shared_corpora: Path) -> str:
    return (shared_corpora / SAMPLE).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def catalog(sample_text: str) -> Catalog:
    return Catalog.from_csv(sample_text)


def ids(books: list[BookInfo]) -> list[int]:
    return [b.id for b in books]


# -- pg_catalog.csv ---------------------------------------------------------------------------

def test_csv_sample_keeps_only_text_records(catalog: Catalog, sample_text: str) -> None:
    rows = list(csv.DictReader(io.StringIO(sample_text, newline="")))
    assert len(rows) == 2000
    texts = [r for r in rows if r["Type"] == "Text"]
    assert len(catalog) == len(texts) == 1982
    for dropped in (50, 114, 116, 576):   # Dataset, StillImage, MovingImage, Collection
        assert dropped not in catalog
    assert list(catalog) == sorted(catalog, key=lambda b: b.id)


def test_csv_record_fields(catalog: Catalog) -> None:
    book = catalog.get(84)
    assert book.title == "Frankenstein; Or, The Modern Prometheus"
    assert book.authors == ("Shelley, Mary Wollstonecraft, 1797-1851",)
    assert book.author == "Mary Wollstonecraft Shelley"
    assert book.languages == ("en",)
    assert book.subjects[:3] == ("Science fiction", "Horror tales", "Gothic fiction")
    assert "Gothic Fiction" in book.bookshelves and "Browsing: Fiction" in book.bookshelves
    assert (book.issued, book.locc, book.type) == ("1993-10-01", "PR", "Text")
    assert catalog.get(800).languages == ("fr",)
    assert catalog.get(2000).title == "Don Quijote"
    assert catalog.get(2000).author == "Miguel de Cervantes Saavedra"
    assert catalog.get(1013).author == "H. G. Wells"


def test_csv_multiline_titles_and_multivalued_fields(catalog: Catalog) -> None:
    assert catalog.get(2).title == (
        "The United States Bill of Rights\n"
        "The Ten Original Amendments to the Constitution of the United States")
    assert catalog.get(5).locc == "JK; KF"
    aesop = catalog.get(21)
    assert aesop.authors == ("Aesop, 621? BCE-565? BCE",
                             "Townsend, George Fyler, 1814-1900 [Translator]")
    assert aesop.author == "Aesop"
    multi = [b for b in catalog if len(b.languages) > 1]
    assert {b.languages for b in multi} >= {("de", "en"), ("en", "fr")}
    assert catalog.get(7).authors == () and catalog.get(7).author == ""


def test_csv_errors_and_tolerance() -> None:
    with pytest.raises(CorpusError, match="not a Project Gutenberg catalog.*Text#"):
        Catalog.from_csv("id,name\n1,foo\n")
    with pytest.raises(CorpusError, match="missing column"):
        Catalog.from_csv("")
    with pytest.raises(CorpusError, match="missing column"):
        Catalog.from_csv("<html><body>Not found</body></html>\n")
    # a BOM, Windows line ends, a non-numeric id and extra columns are fine
    text = ("\ufeffText#,Type,Issued,Title,Language,Authors,Subjects,LoCC,Bookshelves,Extra\r\n"
            "12,Text,2000-01-01,A Title,EN,\"Doe, Jane, 1900-1990\",A; B,PR,S1; S2,x\r\n"
            "oops,Text,,Bad,en,,,,,\r\n")
    cat = Catalog.from_csv(text)
    assert len(cat) == 1
    book = cat.get(12)
    assert (book.languages, book.subjects, book.bookshelves) == (("en",), ("A", "B"), ("S1", "S2"))
    assert book.author == "Jane Doe"


def test_get_unknown_book(catalog: Catalog) -> None:
    with pytest.raises(CorpusError, match=r"^book 99999 is not in the Project Gutenberg catalog$"):
        catalog.get(99999)
    assert 99999 not in catalog and 84 in catalog and "84" not in catalog


def test_book_info_dict_round_trip(catalog: Catalog) -> None:
    book = catalog.get(21)
    d = json.loads(json.dumps(book.to_dict()))
    assert d["authors"][1].endswith("[Translator]")
    assert BookInfo.from_dict(d) == book
    minimal = BookInfo.from_dict({"id": 3, "title": "T"})
    assert (minimal.authors, minimal.type, minimal.author) == ((), "Text", "")
    with pytest.raises(CorpusError, match="bad book record"):
        BookInfo.from_dict({"title": "no id"})


# -- search ---------------------------------------------------------------------------------

def test_search_by_author(catalog: Catalog) -> None:
    austen = ids(catalog.search(author="austen"))
    assert 1342 in austen and all(
        any("Austen" in a for a in catalog.get(i).authors) for i in austen)
    assert ids(catalog.search(author="SHELLEY, MARY")) == [84]
    assert ids(catalog.search(author="mary shelley")) == [84]       # words in any order
    assert ids(catalog.search(author="Mary Wollstonecraft Shelley")) == [84]
    assert catalog.search(author="nobody-at-all") == []


def test_search_by_title_subject_bookshelf(catalog: Catalog) -> None:
    assert ids(catalog.search(title="pride and prej")) == [1342]
    assert 2 in ids(catalog.search(title="ten original amendments"))  # second title line
    scifi = ids(catalog.search(subject="science fiction"))
    assert {84, 1013} <= set(scifi)
    assert 1342 not in scifi
    assert 84 in ids(catalog.search(bookshelf="gothic fiction"))
    # subjects only, not the LoCC class
    assert catalog.get(84).locc == "PR" and 84 not in ids(catalog.search(subject="PR"))


def test_search_by_language(catalog: Catalog) -> None:
    french = ids(catalog.search(language="fr"))
    assert 800 in french and 84 not in french
    assert ids(catalog.search(language="French")) == french
    assert ids(catalog.search(language="FRENCH")) == french
    assert ids(catalog.search(language="Français")) == french
    spanish = ids(catalog.search(language="Spanish"))
    assert 2000 in spanish and spanish == ids(catalog.search(language="es"))
    # multi-language books match each of their languages
    german = ids(catalog.search(language="German"))
    assert german and all("de" in catalog.get(i).languages for i in german)
    assert any(len(catalog.get(i).languages) > 1 for i in german)
    assert catalog.search(language="f") == []           # codes match exactly
    assert catalog.search(language="Klingon") == []


def test_search_and_semantics_ids_and_order(catalog: Catalog) -> None:
    verne = ids(catalog.search(author="verne"))
    verne_fr = ids(catalog.search(author="verne", language="French"))
    assert verne_fr == [799, 800]
    assert set(verne_fr) < set(verne) and 164 in verne
    assert ids(catalog.search(author="verne", title="quatre-vingts")) == [800]
    assert catalog.search(author="austen", language="fr") == []
    assert ids(catalog.search(ids=[2701, 1342, 84, 99999])) == [84, 1342]
    assert ids(catalog.search(author="shelley", ids={84, 1342})) == [84]
    assert catalog.search(ids=[]) == []
    everything = catalog.search()
    assert len(everything) == len(catalog) and ids(everything) == sorted(ids(everything))
    assert ids(catalog.search(author="", title=None)) == ids(everything)


def test_search_ignores_accents(catalog: Catalog) -> None:
    bronte = ids(catalog.search(author="bronte"))
    assert {767, 768} <= set(bronte)
    assert ids(catalog.search(author="Brontë")) == bronte
    assert 2027 in ids(catalog.search(author="moliere"))
    assert 800 in ids(catalog.search(bookshelf="FR litterature"))


def test_language_names() -> None:
    assert len(LANGUAGE_NAMES) >= 15
    for code, name in {"en": "English", "fr": "French", "de": "German", "es": "Spanish",
                       "nl": "Dutch", "it": "Italian", "la": "Latin", "pt": "Portuguese"}.items():
        assert LANGUAGE_NAMES[code] == name
        assert code in language_codes(name) and code in language_codes(code.upper())


@pytest.mark.parametrize(("raw", "shown"), [
    ("Shelley, Mary Wollstonecraft, 1797-1851", "Mary Wollstonecraft Shelley"),
    ("Wells, H. G. (Herbert George), 1866-1946", "H. G. Wells"),
    ("Townsend, George Fyler, 1814-1900 [Translator]", "George Fyler Townsend"),
    ("Aesop, 621? BCE-565? BCE", "Aesop"),
    ("Molière, 1622-1673", "Molière"),
    ("United States", "United States"),
    ("Alger, Horatio, Jr., 1832-1899", "Horatio Alger Jr."),
    ("Osler, William, Sir, 1849-1919", "Sir William Osler"),
    ("Tolstoy, Leo, graf, 1828-1910", "Leo Tolstoy"),
    ("Tennyson, Alfred Tennyson, Baron, 1809-1892", "Alfred Tennyson"),
    ("Fairfax, Edward, -1635 [Translator]", "Edward Fairfax"),
    ("Sunzi, active 6th century B.C.", "Sunzi"),
    ("Louis XIV, King of France, 1638-1715", "Louis XIV, King of France"),
])
def test_display_author(raw: str, shown: str) -> None:
    assert display_author(raw) == shown


# -- RDF ------------------------------------------------------------------------------------

EXPECTED_RDF = {
    84: ("Frankenstein; Or, The Modern Prometheus", "Mary Wollstonecraft Shelley", ("en",)),
    800: ("Le tour du monde en quatre-vingts jours", "Jules Verne", ("fr",)),
    1342: ("Pride and Prejudice", "Jane Austen", ("en",)),
    2701: ("Moby Dick; Or, The Whale", "Herman Melville", ("en",)),
}


@pytest.mark.parametrize(("vintage", "books"), [
    ("2015-cw-sample", (2701,)),
    ("2018-gitenberg", (84, 800, 1342, 2701)),
    ("2025", (84, 800, 1342, 2701)),
])
def test_rdf_vintages(shared_corpora: Path, vintage: str, books: tuple[int, ...]) -> None:
    catalog = Catalog.from_rdf_tree(shared_corpora / RDF / vintage)
    for book_id in books:
        book = catalog.get(book_id)
        title, author, languages = EXPECTED_RDF[book_id]
        assert (book.title, book.author, book.languages) == (title, author, languages)
        assert book.type == "Text"
        assert book.subjects and book.issued[:2] in ("19", "20")
    frank = catalog.get(84) if 84 in catalog else None
    if frank is not None:
        assert frank.authors == ("Shelley, Mary Wollstonecraft, 1797-1851",)
        assert frank.locc == "PR" and frank.issued == "1993-10-01"
        assert "Gothic Fiction" in frank.bookshelves
        assert "Frankenstein, Victor (Fictitious character) -- Fiction" in frank.subjects
        assert "PR" not in frank.subjects


def test_rdf_matches_csv_fields(shared_corpora: Path, catalog: Catalog) -> None:
    rdf = Catalog.from_rdf_tree(shared_corpora / RDF / "2025")
    for book_id in (84, 800, 1342, 2000, 1013):
        a, b = rdf.get(book_id), catalog.get(book_id)
        assert (a.title, a.authors, a.languages, a.issued, a.locc) == (
            b.title, b.authors, b.languages, b.issued, b.locc)
        assert set(a.subjects) == set(b.subjects)


def test_rdf_details(shared_corpora: Path) -> None:
    rdf = Catalog.from_rdf_tree(shared_corpora / RDF / "2025")
    assert len(rdf) == 28
    assert rdf.get(39397).authors == ("Gautier, Théophile, 1811-1872",
                                      "Hearn, Lafcadio, 1850-1904 [Translator]")
    assert rdf.get(10028).authors[0].endswith("[Editor]")
    assert rdf.get(21000).languages == ("de",)
    assert "\r" not in rdf.get(38003).title and "\n" in rdf.get(38003).title
    old = Catalog.from_rdf_tree(shared_corpora / RDF / "2015-cw-sample")
    assert old.get(5).locc == "JK; KF" and old.get(5).author == "United States"
    assert old.get(23962).languages == ("zh",)
    assert ids(old.search(author="jules verne")) == [14287, 30929]
    everything = Catalog.from_rdf_tree(shared_corpora / RDF)   # *.rdf found anywhere below
    assert len(everything) == 33 and {5, 84, 972, 24675, 71062} <= set(ids(list(everything)))


def test_rdf_edge_cases(tmp_path: Path, shared_corpora: Path) -> None:
    src = shared_corpora / RDF / "2025/cache/epub/84/pg84.rdf"
    data = src.read_bytes()
    # a non-Text type is dropped by Catalog, kept by parse_rdf
    sound = data.replace(b"<rdf:value>Text</rdf:value>", b"<rdf:value>Sound</rdf:value>")
    assert parse_rdf(sound).type == "Sound"
    assert parse_rdf(b"<?xml version='1.0'?><rdf:RDF xmlns:rdf="
                     b"'http://www.w3.org/1999/02/22-rdf-syntax-ns#'/>") is None
    with pytest.raises(CorpusError, match="not valid XML"):
        parse_rdf(b"<rdf:RDF", "broken.rdf")
    (tmp_path / "cache/epub/84").mkdir(parents=True)
    shutil.copyfile(src, tmp_path / "cache/epub/84/pg84.rdf")
    (tmp_path / "cache/epub/85").mkdir(parents=True)
    (tmp_path / "cache/epub/85/pg85.rdf").write_bytes(b"garbage")
    (tmp_path / "cache/epub/86").mkdir(parents=True)
    (tmp_path / "cache/epub/86/pg86.rdf").write_bytes(sound.replace(b"ebooks/84", b"ebooks/86"))
    with pytest.warns(CharpoetWarning, match="skipped 1 unreadable RDF file.*pg85.rdf"):
        catalog = Catalog.from_rdf_tree(tmp_path)
    assert ids(list(catalog)) == [84]
    with pytest.raises(CorpusError, match="no such directory"):
        Catalog.from_rdf_tree(tmp_path / "missing")
