"""Project Gutenberg's machine-readable catalog: which books exist, by whom, in what language.

Two sources are understood:

* ``pg_catalog.csv`` (``{mirror}/cache/epub/feeds/pg_catalog.csv``), one record per
  book with the columns ``Text#, Type, Issued, Title, Language, Authors, Subjects, LoCC,
  Bookshelves``; multi-valued fields are separated by ``"; "``, titles may hold newlines.
* the per-book RDF/XML files (``cache/epub/N/pgN.rdf``, pgterms vocabulary), of any
  vintage since 2015; authors are rendered as in the CSV (``"Shelley, Mary, 1797-1851"``,
  contributors with a ``[Role]`` suffix).

``Catalog.search`` matches case- and accent-insensitively ("bronte" finds "Brontë").
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charpoet.errors import CharpoetWarning, CorpusError

__all__ = ["LANGUAGE_NAMES", "BookInfo", "Catalog", "display_author", "language_codes", "parse_rdf"]

# ISO 639 codes used by Project Gutenberg -> English names (for display and search).
LANGUAGE_NAMES: dict[str, str] = {
    "af": "Afrikaans", "ang": "Old English", "ar": "Arabic", "bg": "Bulgarian", "br": "Breton",
    "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "enm": "Middle English", "eo": "Esperanto",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish",
    "fr": "French", "fy": "Frisian", "ga": "Irish", "gl": "Galician", "grc": "Ancient Greek",
    "he": "Hebrew", "hu": "Hungarian", "ia": "Interlingua", "is": "Icelandic",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "la": "Latin", "lt": "Lithuanian",
    "nap": "Neapolitan", "nl": "Dutch", "no": "Norwegian", "oc": "Occitan", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit", "sl": "Slovenian",
    "sr": "Serbian", "sv": "Swedish", "tl": "Tagalog", "yi": "Yiddish", "zh": "Chinese",
}
# Other names a user may type for a language (compared accent- and case-insensitively).
_LANGUAGE_ALIASES: dict[str, str] = {
    "deutsch": "de", "francais": "fr", "espanol": "es", "castellano": "es", "italiano": "it",
    "nederlands": "nl", "flemish": "nl", "portugues": "pt", "latina": "la", "svenska": "sv",
    "dansk": "da", "suomi": "fi", "polski": "pl", "norsk": "no", "russkij": "ru",
    "greek, ancient": "grc", "anglo-saxon": "ang",
}

_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_DCTERMS = "{http://purl.org/dc/terms/}"
_PGTERMS = "{http://www.gutenberg.org/2009/pgterms/}"
_DCAM = "{http://purl.org/dc/dcam/}"
_MARCREL = "{http://id.loc.gov/vocabulary/relators/}"
# MARC relator codes PG uses for contributors, as the CSV names the role.
_ROLES: dict[str, str] = {
    "adp": "Adapter", "ann": "Annotator", "arr": "Arranger", "art": "Artist",
    "aui": "Author of introduction, etc.", "aft": "Author of afterword, colophon, etc.",
    "cmm": "Commentator", "com": "Compiler", "cmp": "Composer", "ctb": "Contributor",
    "dub": "Dubious author", "edc": "Editor of compilation", "edt": "Editor",
    "egr": "Engraver", "ill": "Illustrator", "lbt": "Librettist", "oth": "Other",
    "pbl": "Publisher", "pht": "Photographer", "prf": "Performer", "prt": "Printer",
    "res": "Researcher", "trc": "Transcriber", "trl": "Translator", "unk": "Unknown role",
}
_CSV_COLUMNS = ("Text#", "Type", "Issued", "Title", "Language", "Authors", "Subjects", "LoCC",
                "Bookshelves")
_REQUIRED_COLUMNS = ("Text#", "Title", "Language", "Authors")
_TITLES = ("King", "Queen", "Emperor", "Empress", "Saint", "Pope", "Prince", "Princess",
           "Duke", "Duchess", "Earl", "Count", "Countess", "Baron", "Lord", "Lady", "Sir")
_SUFFIXES = ("Jr.", "Sr.", "Jr", "Sr", "II", "III", "IV")
_HONORIFICS = ("Sir", "Dame", "Lady", "Lord", "Mrs.", "Mr.", "Dr.", "Rev.")


def _split(value: str | None) -> tuple[str, ...]:
    """A ``"; "``-separated catalog field as a tuple of non-empty values."""
    return tuple(v.strip() for v in (value or "").split("; ") if v.strip())


def _clean_title(title: str | None) -> str:
    """A title with its line breaks as ``\\n`` and no surrounding blanks."""
    return re.sub(r"\r\n?", "\n", title or "").strip()


def _fold(text: str) -> str:
    """Text for matching: accents dropped (NFKD minus combining marks), case folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def display_author(name: str) -> str:
    """``"Shelley, Mary Wollstonecraft, 1797-1851"`` -> ``"Mary Wollstonecraft Shelley"``.

    Drops a ``[Role]`` suffix, dates, parenthesized fuller forms and peerage titles
    ("Tolstoy, Leo, graf" -> "Leo Tolstoy"); puts "Last, First" in reading order, keeps
    "Jr." and "Sir", and leaves "Louis XIV, King of France" as it is.
    """
    name = re.sub(r"\s*\[[^\]]*\]\s*$", "", name)
    name = re.sub(r"\s*\([^)]*\)", "", name)
    parts = [p.strip() for p in name.split(",") if p.strip()]
    while len(parts) > 1 and any(c.isdigit() for c in parts[-1]):
        parts.pop()
    if len(parts) == 3:  # "Last, First, Jr." / "Last, First, Sir" / "Last, First Last, Baron"
        first, last, extra = parts[1], parts[0], parts[2]
        if extra in _SUFFIXES:
            return f"{first} {last} {extra}"
        if extra in _HONORIFICS:
            return f"{extra} {first} {last}"
        if not first.startswith(_TITLES) and not extra.startswith(("Saint", "Pope")):
            return first if first.endswith(f" {last}") else f"{first} {last}"
    if len(parts) == 2 and not parts[1].startswith(_TITLES):
        return f"{parts[1]} {parts[0]}"
    return ", ".join(parts)


def language_codes(language: str) -> frozenset[str]:
    """Codes a user's ``language`` may mean: itself as a code, or a language name."""
    key = _fold(language.strip())
    codes = {key} if key else set()
    codes |= {code for code, name in LANGUAGE_NAMES.items() if _fold(name) == key}
    if key in _LANGUAGE_ALIASES:
        codes.add(_LANGUAGE_ALIASES[key])
    return frozenset(codes)


@dataclass(frozen=True)
class BookInfo:
    """One catalog record."""

    id: int
    title: str
    authors: tuple[str, ...]      # as in the catalog: "Shelley, Mary Wollstonecraft, 1797-1851"
    languages: tuple[str, ...]    # lower-case codes: ("en",), ("de", "en")
    subjects: tuple[str, ...]
    bookshelves: tuple[str, ...]
    issued: str = ""
    locc: str = ""
    type: str = "Text"

    @property
    def author(self) -> str:
        """The first author in reading order without dates ("" if none)."""
        return display_author(self.authors[0]) if self.authors else ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {"id": self.id, "title": self.title, "authors": list(self.authors),
                "languages": list(self.languages), "subjects": list(self.subjects),
                "bookshelves": list(self.bookshelves), "issued": self.issued,
                "locc": self.locc, "type": self.type}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BookInfo:
        """Inverse of ``to_dict``; missing optional fields take their defaults."""
        try:
            return cls(id=int(d["id"]), title=str(d.get("title", "")),
                       authors=tuple(d.get("authors", ())), languages=tuple(d.get("languages", ())),
                       subjects=tuple(d.get("subjects", ())),
                       bookshelves=tuple(d.get("bookshelves", ())),
                       issued=str(d.get("issued", "")), locc=str(d.get("locc", "")),
                       type=str(d.get("type", "Text")))
        except (KeyError, TypeError, ValueError) as e:
            raise CorpusError(f"bad book record {d!r:.80} ({type(e).__name__}: {e})") from None


def _agent_name(agent: ET.Element) -> str:
    """An agent as the CSV writes it: ``"Name, birth-death"``."""
    name = (agent.findtext(f"{_PGTERMS}name") or "").strip()
    dates = [_year(agent.findtext(f"{_PGTERMS}{tag}")) for tag in ("birthdate", "deathdate")]
    if not any(dates):
        return name
    return f"{name}, {dates[0]}-{dates[1]}"


def _year(value: str | None) -> str:
    value = (value or "").strip()
    if value.lstrip("-").isdigit() and value.startswith("-"):
        return f"{value[1:]} BCE"
    return value


def _values(element: ET.Element) -> list[str]:
    return [v.text.strip() for v in element.iter(f"{_RDF}value") if v.text and v.text.strip()]


def parse_rdf(data: bytes, source: str = "RDF") -> BookInfo | None:
    """The book described by one ``pgN.rdf`` file, or ``None`` if it describes none."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise CorpusError(f"{source}: not valid XML ({e})") from None
    ebook = root.find(f"{_PGTERMS}ebook")
    if ebook is None:
        return None
    about = ebook.get(f"{_RDF}about", "")
    match = re.search(r"(\d+)$", about)
    if match is None:
        raise CorpusError(f"{source}: ebook without a number ({about!r})")
    agents = {a.get(f"{_RDF}about"): a for a in root.iter(f"{_PGTERMS}agent")}
    creators: list[str] = []
    contributors: list[str] = []
    languages: list[str] = []
    subjects: list[str] = []
    locc: list[str] = []
    shelves: list[str] = []
    kind = "Text"
    for child in ebook:
        tag = child.tag
        if tag == f"{_DCTERMS}creator" or tag.startswith(_MARCREL):
            agent = child.find(f"{_PGTERMS}agent")
            if agent is None:
                agent = agents.get(child.get(f"{_RDF}resource"))
            if agent is None:
                continue
            if tag == f"{_DCTERMS}creator":
                creators.append(_agent_name(agent))
            else:
                code = tag[len(_MARCREL):]
                contributors.append(f"{_agent_name(agent)} [{_ROLES.get(code, code)}]")
        elif tag == f"{_DCTERMS}language":
            languages += [v.lower() for v in _values(child)]
        elif tag == f"{_DCTERMS}subject":
            member = child.find(f".//{_DCAM}memberOf")
            scheme = member.get(f"{_RDF}resource", "") if member is not None else ""
            (locc if scheme.endswith("/LCC") else subjects).extend(_values(child))
        elif tag == f"{_PGTERMS}bookshelf":
            shelves += _values(child)
        elif tag == f"{_DCTERMS}type":
            kind = next(iter(_values(child)), kind)
    issued = (ebook.findtext(f"{_DCTERMS}issued") or "").strip()
    return BookInfo(
        id=int(match.group(1)),
        title=_clean_title(ebook.findtext(f"{_DCTERMS}title")),
        authors=tuple(creators + contributors),
        languages=tuple(dict.fromkeys(languages)),
        subjects=tuple(subjects),
        bookshelves=tuple(shelves),
        issued="" if issued == "None" else issued,
        locc="; ".join(sorted(set(locc))),
        type=kind,
    )


class Catalog:
    """The Project Gutenberg books of type ``Text``, by id."""

    def __init__(self, books: Iterable[BookInfo]):
        by_id = {b.id: b for b in books if b.type.strip().lower() == "text"}
        self._books = dict(sorted(by_id.items()))
        self._folded: dict[int, tuple[tuple[str, ...], ...]] | None = None

    @classmethod
    def from_csv(cls, text: str) -> Catalog:
        """Parse ``pg_catalog.csv``; a file without its columns is a ``CorpusError``."""
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
        columns = [c.strip() for c in reader.fieldnames or ()]
        missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise CorpusError("not a Project Gutenberg catalog: missing column(s) "
                              + ", ".join(missing) + f" (expected {','.join(_CSV_COLUMNS)})")
        reader.fieldnames = columns
        books = []
        try:
            for row in reader:
                number = (row.get("Text#") or "").strip()
                if not number.isdigit():
                    continue
                books.append(BookInfo(
                    id=int(number), title=_clean_title(row.get("Title")),
                    authors=_split(row.get("Authors")),
                    languages=tuple(v.lower() for v in _split(row.get("Language"))),
                    subjects=_split(row.get("Subjects")),
                    bookshelves=_split(row.get("Bookshelves")),
                    issued=(row.get("Issued") or "").strip(), locc=(row.get("LoCC") or "").strip(),
                    type=(row.get("Type") or "Text").strip() or "Text"))
        except csv.Error as e:
            raise CorpusError(f"Project Gutenberg catalog: bad CSV ({e})") from None
        return cls(books)

    @classmethod
    def from_rdf_files(cls, paths: Iterable[Path]) -> Catalog:
        """Parse RDF files; later files win for the same id. Unreadable files are skipped
        with one ``CharpoetWarning``."""
        books: list[BookInfo] = []
        bad: list[str] = []
        for path in paths:
            try:
                book = parse_rdf(Path(path).read_bytes(), str(path))
            except (OSError, CorpusError) as e:
                bad.append(str(e) if isinstance(e, CorpusError) else f"{path}: {e.strerror or e}")
                continue
            if book is not None:
                books.append(book)
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable RDF file(s); first: {bad[0]}",
                          CharpoetWarning, stacklevel=3)
        return cls(books)

    @classmethod
    def from_rdf_tree(cls, root: Path) -> Catalog:
        """Every ``cache/epub/*/pg*.rdf`` below ``root``, or else every ``*.rdf`` below it."""
        root = Path(root)
        if not root.is_dir():
            raise CorpusError(f"{root}: no such directory")
        paths = sorted(root.glob("cache/epub/*/pg*.rdf"))
        if not paths:
            paths = sorted(root.rglob("*.rdf"))
        return cls.from_rdf_files(paths)

    def __len__(self) -> int:
        return len(self._books)

    def __contains__(self, book_id: object) -> bool:
        return book_id in self._books

    def __iter__(self) -> Iterator[BookInfo]:
        return iter(self._books.values())

    def get(self, book_id: int) -> BookInfo:
        """The record of ``book_id``; ``CorpusError`` if the catalog has none."""
        try:
            return self._books[book_id]
        except (KeyError, TypeError):
            raise CorpusError(f"book {book_id} is not in the Project Gutenberg catalog") from None

    def _folded_fields(self) -> dict[int, tuple[tuple[str, ...], ...]]:
        """Per book: folded (authors + display names, title, subjects, bookshelves)."""
        if self._folded is None:
            self._folded = {}
            for b in self._books.values():
                names = b.authors + tuple(display_author(a) for a in b.authors)
                self._folded[b.id] = (
                    tuple(map(_fold, names)), (_fold(b.title),),
                    tuple(map(_fold, b.subjects)), tuple(map(_fold, b.bookshelves)))
        return self._folded

    def search(self, *, author: str | None = None, title: str | None = None,
               language: str | None = None, subject: str | None = None,
               bookshelf: str | None = None, ids: Iterable[int] | None = None) -> list[BookInfo]:
        """Books matching every given field, sorted by id.

        Fields match case- and accent-insensitively as substrings of any of a book's values;
        ``author`` also matches when every word of it occurs in one author's name, in any
        order ("mary shelley"). ``language`` is a code ("fr") or a name ("French").
        Empty or ``None`` fields do not filter; ``ids`` restricts to those ids.
        """
        wanted = {int(i) for i in ids} if ids is not None else None
        codes = language_codes(language) if language and language.strip() else None
        needles = [(_fold(v).strip() if v else "") for v in (author, title, subject, bookshelf)]
        folded = self._folded_fields() if any(needles) else {}
        found = []
        for book in self._books.values():
            if wanted is not None and book.id not in wanted:
                continue
            if codes is not None and not codes.intersection(book.languages):
                continue
            if any(needles) and not all(
                    _matches(needle, values, words=(i == 0))
                    for i, (needle, values) in enumerate(zip(needles, folded[book.id]))):
                continue
            found.append(book)
        return found


def _matches(needle: str, values: tuple[str, ...], *, words: bool = False) -> bool:
    """Whether folded ``needle`` is in one of ``values`` (with ``words``: all its words are)."""
    if not needle:
        return True
    if any(needle in value for value in values):
        return True
    parts = needle.split()
    return words and len(parts) > 1 and any(all(w in value for w in parts) for value in values)
