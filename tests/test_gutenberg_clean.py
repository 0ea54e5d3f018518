"""Tests for ``charpoet.corpus.gutenberg_clean``: tiny hand-written e-texts of every era, and
every raw book in the shared corpora checked against ``fixtures/gutenberg_bodies.json``."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charpoet.corpus.files import decode_text
from charpoet.corpus.gutenberg_clean import (
    CleanedText,
    CleanOptions,
    Removal,
    clean_gutenberg,
    is_gutenberg_text,
)

FIXTURE = Path(__file__).parent / "fixtures" / "gutenberg_bodies.json"
BOOKS: dict[str, dict] = json.loads(FIXTURE.read_text(encoding="utf-8"))["books"]
BODY_REASONS = {"transcriber's note", "produced-by credits", "illustration marker"}
BOILERPLATE_RE = re.compile(
    r"project\s+gutenberg|gutenberg\.org|www\.gutenberg|small print|end of the project", re.I)


# --- helpers -------------------------------------------------------------------------------

def prose(seed: int, sentences: int = 6) -> str:
    """A hard-wrapped prose paragraph (about 70 columns)."""
    words = ("the whale rose slowly from the grey water while the crew watched in a silence "
             "that none of them would afterwards be able to describe to their wives").split()
    text = " ".join(" ".join(words[(seed + i) % len(words):] + words[:(seed + i) % len(words)])
                    + "." for i in range(sentences))
    return textwrap.fill(text.capitalize(), width=70)


def book(paragraphs: int = 12, title: str = "THE TALE OF A WHALE") -> str:
    return "\n\n".join([title, "By A. Writer", "CHAPTER I"] + [prose(i) for i in range(paragraphs)])


def covered(result: CleanedText) -> set[int]:
    return {n for r in result.removals for n in range(r.first_line, r.last_line + 1)}


def check_partition(text: str, result: CleanedText) -> None:
    """Removals are sorted, disjoint, in range, have reasons, and with the output cover all."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    previous = 0
    for r in result.removals:
        assert r.reason
        assert previous < r.first_line <= r.last_line <= len(lines)
        previous = r.last_line
    gone = covered(result)
    kept = [x for n, x in enumerate(lines, 1) if n not in gone]
    assert "\n".join(kept) + "\n" == result.text
    assert result.text.endswith("\n") and not result.text.endswith("\n\n")
    assert result.text.strip() and result.text.split("\n")[0].strip()


def first_last(result: CleanedText) -> tuple[str, str]:
    out = result.text.split("\n")
    return out[0], out[-2]


LICENCE = "*** START: FULL LICENSE ***\n\nTHE FULL PROJECT GUTENBERG LICENSE\nPLEASE READ THIS\n"


# --- eras ----------------------------------------------------------------------------------

@pytest.mark.parametrize("end_marker", [
    "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
    "*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
    "**END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.08.01*END**",
    "*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.10/04/01*END*",
])
def test_small_print_era(end_marker: str) -> None:
    text = ("**The Project Gutenberg Etext of The Tale of a Whale by A. Writer**\n"
            "******This file should be named whale10.txt or whale10.zip*****\n\n"
            "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n"
            "Why is this \"Small Print!\" statement here? You know: lawyers.\n"
            f"{end_marker}\n\n\n" + book() + "\n\n\nEnd of the Project Gutenberg Etext of The Tale\n")
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "small-print"
    assert first_last(result) == ("THE TALE OF A WHALE", prose(11).split("\n")[-1])
    assert [r.reason for r in result.removals] == ["header", "licence (small print)", "footer"]
    assert result.metadata == {"title": "The Tale of a Whale", "author": "A. Writer"}


def test_transitional_2002_small_print_after_end() -> None:
    text = ("The Project Gutenberg EBook of Whale, by A. Writer\n\nTitle: Whale\n\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK, WHALE ***\n\n" + book() +
            "\n\n*** END OF THE PROJECT GUTENBERG EBOOK, WHALE ***\n\n"
            "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN EBOOKS**START***\nlegal words\n"
            "*END THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS*Ver.02/11/02*END*\n")
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "2002"
    assert result.removals[-1].reason == "licence (small print)"
    assert first_last(result)[0] == "THE TALE OF A WHALE"


def test_2003_style_wrapped_start_and_end_markers() -> None:
    text = ("The Project Gutenberg eBook, Frankenstein, or the Modern Prometheus, by\n"
            "Mary Shelley\n\nTitle: Frankenstein, or the Modern Prometheus\n\n"
            "***START OF THE PROJECT GUTENBERG EBOOK FRANKENSTEIN, OR THE MODERN\n"
            "PROMETHEUS***\n\n\nE-text prepared by Jane Doe and Project Gutenberg Distributed\n"
            "Proofreaders\n\n\n\n" + book() +
            "\n\n\n***END OF THE PROJECT GUTENBERG EBOOK FRANKENSTEIN, OR THE MODERN\n"
            "PROMETHEUS***\n\n******* This file should be named 84.txt *******\n\n" + LICENCE)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "2003"
    assert "PROMETHEUS***" not in result.text
    assert first_last(result) == ("THE TALE OF A WHALE", prose(11).split("\n")[-1])
    assert [r.reason for r in result.removals] == [
        "header", "produced-by credits", "footer", "licence"]
    assert result.metadata["credits"].startswith("E-text prepared by Jane Doe")


@pytest.mark.parametrize("footer", [
    "End of the Project Gutenberg EBook of The Tale of a Whale, by\nA. Writer",
    "End of Project Gutenberg’s The Tale of a Whale, by A. Writer",
    "End of Project Gutenberg's The Tale of a Whale, by A. Writer",
])
def test_2004_2018_era_with_metadata_and_footer_variants(footer: str) -> None:
    text = ("The Project Gutenberg EBook of The Tale of a Whale, by A. Writer\n\n"
            "This eBook is for the use of anyone anywhere at no cost\n\n"
            "Title: The Tale of a Whale\n       Being a True Account\n\nAuthor: A. Writer\n\n"
            "Release Date: June 17, 2008 [EBook #99999]\nLast updated: January 13, 2018\n\n"
            "Language: English\n\nCharacter set encoding: UTF-8\n\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n\n\n\n\n"
            "Produced by Jane Doe, John Roe and the Online Distributed\n"
            "Proofreading Team at http://www.pgdp.net\n\n\n\n\n" + book() +
            f"\n\n\n\n\n{footer}\n\n*** END OF THIS PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n\n"
            "***** This file should be named 99999.txt or 99999.zip *****\n\n" + LICENCE)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "2004-2018"
    assert first_last(result) == ("THE TALE OF A WHALE", prose(11).split("\n")[-1])
    assert not BOILERPLATE_RE.search(result.text)
    assert result.metadata == {
        "title": "The Tale of a Whale: Being a True Account", "author": "A. Writer",
        "release_date": "June 17, 2008", "language": "English", "encoding": "UTF-8",
        "credits": "Produced by Jane Doe, John Roe and the Online Distributed "
                   "Proofreading Team at http://www.pgdp.net"}


def test_start_of_the_marker_with_the_old_use_notice_is_2004_2018() -> None:
    text = ("The Project Gutenberg EBook of Whale, by A. Writer\n\n"
            "This eBook is for the use of anyone anywhere at no cost and with\n\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK WHALE ***\n\n" + book() +
            "\n\n*** END OF THE PROJECT GUTENBERG EBOOK WHALE ***\n")
    result = clean_gutenberg(text)
    assert result.era == "2004-2018" and result.text == book() + "\n"


def test_modern_era_with_indented_end_marker() -> None:
    text = ("\nThe Project Gutenberg eBook of The Tale of a Whale\n    \n"
            "This ebook is for the use of anyone anywhere in the United States and\n"
            "most other parts of the world at no cost.\n\nTitle: The Tale of a Whale\n\n\n"
            "Author: A. Writer\n\nRelease date: October 1, 1993 [eBook #99999]\n"
            "                Most recently updated: December 2, 2022\n\nLanguage: English\n\n"
            "Credits: Jane Doe and John Roe.\n        Further corrections by Max Muster.\n\n\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n\n\n\n"
            + book() + "\n\n\n\n        \n"
            "            *** END OF THE PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n"
            "        \n\n    \n\nUpdated editions will replace the previous one.\n\n"
            "START: FULL LICENSE\n\nTHE FULL PROJECT GUTENBERG LICENSE\n")
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "modern"
    assert first_last(result) == ("THE TALE OF A WHALE", prose(11).split("\n")[-1])
    assert result.metadata["release_date"] == "October 1, 1993"
    assert result.metadata["credits"] == (
        "Jane Doe and John Roe. Further corrections by Max Muster.")
    assert [r.reason for r in result.removals] == ["header", "footer", "licence"]


def test_pg_source_footer_only_with_repository_notice() -> None:
    text = (book() + "\n\n\n\nEnd of the Project Gutenberg EBook of Die Verwandlung, by Franz Kafka"
            "\n\nProject Gutenberg (https://www.gutenberg.org) public repository for eBook #22367."
            "\nThis book is in the public domain in the United States.\n")
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "pg-source"
    assert result.text == book() + "\n"
    assert result.removals[-1].reason == "footer"
    assert is_gutenberg_text(text)


def test_non_gutenberg_text_is_unchanged() -> None:
    text = "\n\n" + book() + "\n\nProduced by the author.\n\n\n"
    result = clean_gutenberg(text)
    assert result.era == "unknown"
    assert result.text == book() + "\n\nProduced by the author.\n"
    assert result.metadata == {}
    assert {r.reason for r in result.removals} == {"blank lines"}
    assert not is_gutenberg_text(text)
    assert clean_gutenberg("").text == "" and clean_gutenberg("").era == "unknown"


def test_is_gutenberg_text_markers() -> None:
    assert is_gutenberg_text("x\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\ny")
    assert is_gutenberg_text("x\n  *** END OF THE PROJECT GUTENBERG EBOOK X ***\n")
    assert is_gutenberg_text("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*")
    assert is_gutenberg_text("The Project Gutenberg eBook of Charmes\n")
    assert not is_gutenberg_text("He read about Project Gutenberg in a magazine.\n")


# --- notes and credits ---------------------------------------------------------------------

def framed(body: str) -> str:
    return ("The Project Gutenberg EBook of Whale, by A. Writer\n\nTitle: Whale\n\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK WHALE ***\n\n\n" + body +
            "\n\n\nEnd of the Project Gutenberg EBook of Whale, by A. Writer\n\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK WHALE ***\n\n" + LICENCE)


NOTES = {
    "bracketed": "[Transcriber's Note:\n\nObvious errors have been corrected.\n\n"
                 "Some [[odd]] marks are the printer's.]",
    "mojibake": "TranscriberaEuro(TM)s Note\n\nObvious typographical errors have been corrected.",
    "boxed": "  +--------------------------------------+\n"
             "  | Transcriber's note:                  |\n"
             "  | Genus names are not italicized.      |\n"
             "  +--------------------------------------+",
    "separated": "       *       *       *       *       *\n\n"
                 "Transcriber's Note: The original publication has been replicated\n"
                 "faithfully.\n\nThere is an index.\n\n       *       *       *       *       *",
    "german": "[Anmerkungen zur Transkription: Offensichtliche Druckfehler wurden berichtigt.]",
    "german errata": "[Im folgenden werden alle geänderten Textzeilen angeführt, wobei jeweils "
                     "zuerst die Zeile wie im Original, danach die Zeile nach der Korrektur "
                     "steht.\n\n    dem Feinde / den Feinde\n    den Feinde / dem Feinde]",
    "french": "Note du transcripteur:\n\nLes erreurs typographiques ont été corrigées.",
    "spanish": "Nota del transcriptor:\n\nSe han corregido los errores tipográficos.",
}


@pytest.mark.parametrize("kind", sorted(NOTES))
def test_note_at_start_is_removed(kind: str) -> None:
    text = framed("Produced by Jane Doe\n\n\n\n" + NOTES[kind] + "\n\n\n\n" + book())
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert "transcriber's note" in {r.reason for r in result.removals}


@pytest.mark.parametrize("kind", ["bracketed", "german", "german errata", "mojibake", "french"])
def test_note_at_end_is_removed(kind: str) -> None:
    text = framed(book() + "\n\n\n\n" + NOTES[kind])
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert result.removals[1].reason == "transcriber's note"


def test_bilingual_notes_before_pg_source_footer() -> None:
    notes = (NOTES["german"] + "\n\n[Transcriber's Note: Obvious printer errors have been "
             "corrected.\nThe German original is kept.]")
    text = book() + "\n\n\n" + notes + "\n\n\nEnd of the Project Gutenberg EBook of Faust\n"
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert [r.reason for r in result.removals] == [
        "transcriber's note", "transcriber's note", "footer"]


def test_note_after_title_lines_is_removed() -> None:
    note = ("Original Transcriber's Notes:\n\nThis text is a combination of etexts.\n\n"
            "In chapters 24, 89, and 90, we substituted a capital L for the pound.")
    body = book().replace("By A. Writer\n\n", "By A. Writer\n\n\n\n" + note + "\n\n\n\n")
    text = framed(body)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book().replace("By A. Writer\n\n", "By A. Writer\n\n\n\n") + "\n"
    assert [r.reason for r in result.removals][1] == "transcriber's note"


def test_note_in_the_middle_of_the_book_is_kept() -> None:
    middle = "[Transcriber's Note: a page of the original is missing here.]"
    chapters = [prose(i) for i in range(60)]
    body = "\n\n".join(["THE TALE", "CHAPTER I", *chapters[:30], middle, *chapters[30:]])
    result = clean_gutenberg(framed(body))
    assert middle in result.text.split("\n")
    assert result.text == body + "\n"


def test_unlabelled_etext_notes_after_the_last_separator_are_removed() -> None:
    tail = ("       *       *       *       *       *\n\n_Typography_\n\n"
            "In the notes, long vowels were printed with a circumflex; this e-text keeps it.\n\n"
            "_Errors_\n\nErrors in the main text are shown in [[double brackets]].")
    text = framed(book() + "\n\n\n" + tail)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    ending = book() + "\n\n       *       *       *\n\nAnd so they lived happily."
    assert clean_gutenberg(framed(ending)).text == ending + "\n"


def test_strip_notes_false_keeps_notes_and_credits() -> None:
    body = "Produced by Jane Doe\n\n" + NOTES["bracketed"] + "\n\n" + book()
    text = framed(body + "\n\nTranscriber's Notes\n\nPage 3: teh changed to the.")
    result = clean_gutenberg(text, CleanOptions(strip_notes=False))
    check_partition(text, result)
    assert result.text.startswith("Produced by Jane Doe\n")
    assert "[Transcriber's Note:" in result.text
    assert result.text.endswith("Page 3: teh changed to the.\n")
    assert {r.reason for r in result.removals} <= {"header", "footer", "licence"}


@pytest.mark.parametrize("credits", [
    "Produit par Jean Dupont et l'équipe de relecture.",
    "Este libro electrónico ha sido producido por Juan Pérez.",
    "This etext was prepared by Daniel Lazarus and Jonesey",
    "[Chapters 1-6: mostly scanned by David Meltzer,\nMeltzer@cat.syr.edu, proofread by\n"
    "Christy Phillips, submitted on 9/24/93.]",
    "Jeroen Hellingman and the PG Online Distributed Proofreaders Team.\n"
    "Jeroen Hellingman en het PG gedistribueerd proeflees team.",
])
def test_credits_in_other_forms_and_languages(credits: str) -> None:
    text = framed(credits + "\n\n\n" + book())
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert result.removals[1].reason == "produced-by credits"


PIECES = [
    "", "", "   ", "Produced by Jane Doe", "[Transcriber's Note:", "Some words.]", "]", "[",
    "Transcriber's Notes", "*** START OF THIS PROJECT GUTENBERG EBOOK X ***", "***START OF THE",
    "*** END OF THE PROJECT GUTENBERG EBOOK X ***", "End of the Project Gutenberg EBook of X",
    "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*END*", "*** START: FULL LICENSE ***",
    "Title: X", "Credits:", "       *       *       *", "  +-------+", "  | Transcriber's note: |",
    "[Illustration: a", "caption]", "[Illustration]", "Project Gutenberg", "See this e-text.",
    "The whale rose slowly from the grey water while the crew watched in a silence.",
    "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***", "End of", "\x1a", "*****",
    "Fin du Projet Gutenberg de X", "<--  an electronic edition, public domain", " -->",
    "No warranty; refunds and royalties to the Foundation: www.example.org",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.booleans(), st.booleans(), st.booleans())
def test_any_arrangement_of_markers_is_handled(pieces: list[str], notes: bool, pictures: bool,
                                               unwrap: bool) -> None:
    text = "\n".join(pieces)
    options = CleanOptions(strip_notes=notes, drop_illustrations=pictures, unwrap=unwrap)
    result = clean_gutenberg(text, options)
    assert result.text == "" or (result.text.endswith("\n") and result.text.strip())
    if not unwrap:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        gone = covered(result)
        assert "".join(x + "\n" for n, x in enumerate(lines, 1) if n not in gone) == result.text
    previous = 0
    for r in result.removals:
        assert r.reason and previous < r.first_line <= r.last_line
        previous = r.last_line
    result.report()


# --- boilerplate told by its words: unfamiliar licences, footers and notices ----------------

UNFAMILIAR_LICENCE = """\
Terms of use for this electronic edition

You may copy this eBook and give it away, but you may not charge for it
without a licence from the Foundation that holds the trademark.  Any
royalties are due within sixty days, and refunds are made on request.
This work is in the public domain in most countries; check the laws of
your own country before you pass it on.

NO WARRANTY: the text is provided as it is, with no warranty of
merchantability; we accept no liability for damages of any kind.

Donations to the Foundation are tax deductible; see www.example.org/give
or write to us at help@example.org.
"""
MODERN_HEADER = ("The Project Gutenberg eBook of The Tale of a Whale\n\n"
                 "This ebook is for the use of anyone anywhere in the United States and\n"
                 "most other parts of the world at no cost.\n\nTitle: The Tale of a Whale\n\n"
                 "Author: A. Writer\n\nRelease date: October 1, 1993 [eBook #99999]\n\n"
                 "Language: English\n\n\n")
SMALL_PRINT_HEADER = ("**The Project Gutenberg Etext of The Tale of a Whale, by A. Writer**\n"
                      "*****This file should be named whale10.txt or whale10.zip*****\n\n"
                      "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n")
SMALL_PRINT_END = "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n"


@pytest.mark.parametrize("after_body", [
    "\n\n*** END OF THE PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n\n",
    "\n\nEnd of the Project Gutenberg EBook of The Tale of a Whale\n\n",
    "\n\n\n",  # no marker at all: only the words tell the licence
])
def test_licence_in_unfamiliar_words_after_the_body_is_removed(after_body: str) -> None:
    text = (MODERN_HEADER + "*** START OF THE PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n\n"
            + book() + after_body + UNFAMILIAR_LICENCE)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert result.era == "modern"
    assert not re.search(r"licen[cs]e|warranty|donation", result.text, re.I)
    if after_body == "\n\n\n":
        assert result.removals[-1].reason == "licence"


def test_licence_in_unfamiliar_words_before_the_start_marker_is_removed() -> None:
    text = (UNFAMILIAR_LICENCE + "\n" + MODERN_HEADER
            + "*** START OF THE PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n\n" + book()
            + "\n\n*** END OF THE PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n" + LICENCE)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n" and result.removals[0].reason == "header"


def test_small_print_without_a_known_end_marker_ends_where_its_words_thin_out() -> None:
    text = (SMALL_PRINT_HEADER + UNFAMILIAR_LICENCE + "*That is all the small print, lawyers.*\n"
            "\n\n\n" + book() + "\n\n\nEnd of the Project Gutenberg Etext of The Tale of a Whale\n")
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "small-print"
    assert result.text == book() + "\n"
    assert "licence (small print)" in {r.reason for r in result.removals}


def test_small_print_at_the_bottom_of_the_file() -> None:
    text = ("The Project Gutenberg Etext of The Tale of a Whale, by A. Writer\n"
            "Please read the legal small print at the bottom of this etext.\n\n\n" + book()
            + "\n\n\nEnd of the Project Gutenberg Etext of The Tale of a Whale\n\n"
            + SMALL_PRINT_HEADER.split("\n\n")[1] + "Why is this here? You know: lawyers.\n"
            + SMALL_PRINT_END)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "small-print" and result.text == book() + "\n"
    assert [r.reason for r in result.removals] == ["header", "footer", "licence (small print)"]


def test_end_marker_without_a_start_marker() -> None:
    text = (MODERN_HEADER + "\n\n" + book()
            + "\n\n\n            *** END OF THE PROJECT GUTENBERG EBOOK THE TALE OF A WHALE ***\n"
            + "\nUpdated editions will replace the previous one.\n\n" + UNFAMILIAR_LICENCE)
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == "modern" and result.text == book() + "\n"


@pytest.mark.parametrize("footer", [
    "Fin du Projet Gutenberg, The Tale of a Whale",
    "Fin du Project Gutenberg's The Tale of a Whale",
    "Ende dieses Projekt Gutenberg Etextes The Tale of a Whale von A. Writer",
    "Fin del Proyecto Gutenberg de The Tale of a Whale",
    "Einde van het Project Gutenberg eBook The Tale of a Whale",
    "Fine del Progetto Gutenberg: The Tale of a Whale",
    "End of\n\nProject Gutenberg's Etext of The Tale of a Whale by A. Writer",  # double spacing
])
def test_footer_in_the_language_of_the_book(footer: str) -> None:
    accents = "Text without accents.  Also available with accents in several formats."
    text = (SMALL_PRINT_HEADER + SMALL_PRINT_END + "\n\n" + book() + "\n\n\n" + footer
            + "\n\n" + accents + "\n")
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert result.removals[-1].reason == "footer" and is_gutenberg_text(text)
    pg_source = clean_gutenberg(book() + "\n\n\n" + footer + "\n")
    assert pg_source.era == "pg-source" and pg_source.text == book() + "\n"


MENTIONS = ["Old Gutenberg, the printer, had no licence for his press, they said.",
            "He paid the royalty on the licence, and went home to Mainz."]


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_body_that_mentions_a_licence_or_gutenberg_keeps_those_lines(where: str) -> None:
    paragraphs = [prose(i) for i in range(12)]
    at = {"start": 0, "middle": 6, "end": 12}[where]
    paragraphs[at:at] = MENTIONS
    body = "\n\n".join(["THE TALE OF A WHALE", *paragraphs])
    for text in (framed(body), SMALL_PRINT_HEADER + SMALL_PRINT_END + body
                 + "\n\nEnd of the Project Gutenberg Etext of The Tale\n"):
        result = clean_gutenberg(text)
        check_partition(text, result)
        assert result.text == body + "\n"


PRODUCER_NOTICE = """\
 INFORMATION ABOUT OUR ELECTRONIC TEXTS

Our texts are shareware: they may be copied and given away freely,
in their original formats (ASCII, HTML), by anyone.

Please send a donation to keep the project alive:
  The Free Texts Association
  e-mail: info@example.org

  http://www.example.org"""
BRACKETED_NOTES = """\
**  Thesaurus-1911, version 1.02  **
<--  An electronic edition derived from the printed text of 1911,
     prepared by Example, Inc., who make no proprietary claims on it.
     If the printed work is in the public domain, so is this electronic
     version; a donation to Example, Inc. is welcome.

     The words marked [obs] were obsolete in 1911.

     (If no one answers, please leave a message.)
 -->"""


@pytest.mark.parametrize("notice", [PRODUCER_NOTICE, BRACKETED_NOTES])
def test_producers_notice_before_the_title_is_removed(notice: str) -> None:
    text = (SMALL_PRINT_HEADER + SMALL_PRINT_END + "\n\nProduced by The Free Texts Association\n"
            "\n\n\n" + notice + "\n" + book() + "\n\nEnd of the Project Gutenberg Etext of X\n")
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert [r.reason for r in result.removals][2:4] == ["produced-by credits", "e-text notice"]


def test_edition_note_at_the_start_is_removed() -> None:
    text = framed("This etext is in Spanish, without accents.\n\n\n" + book())
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n" and result.removals[1].reason == "Gutenberg notice"


@pytest.mark.parametrize("ending", ["\x1a\n", "\n\n*****\n\x1a", "\n\n  ~  \n\x1a\x1a\n\n"])
def test_marks_and_control_characters_ending_a_file_without_footer(ending: str) -> None:
    text = SMALL_PRINT_HEADER + SMALL_PRINT_END + "\n\n" + book() + "\n\n" + ending
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.text == book() + "\n"
    assert result.removals[-1].reason == "end-of-file marks"
    with_footer = text.replace(ending, "End of the Project Gutenberg Etext of X\n" + ending)
    assert clean_gutenberg(with_footer).text == book() + "\n"


# --- synthetic books in every era: no body line lost, no boilerplate left ------------------

def _era_frame(era: str, title: str, footer_line: str) -> tuple[str, str]:
    """Header and footer of a tiny e-text of ``era`` around a book called ``title``."""
    up = title.upper()
    if era == "small-print":
        return (f"**The Project Gutenberg Etext of {title}, by A. Writer**\n\n"
                "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n"
                "Why is this \"Small Print!\" statement here?  You know: lawyers.\n"
                + SMALL_PRINT_END + "\n\n\n", f"\n\n\n{footer_line}\n")
    if era == "2002":
        return (f"The Project Gutenberg EBook of {title}, by A. Writer\n\nTitle: {title}\n\n"
                f"*** START OF THE PROJECT GUTENBERG EBOOK, {up} ***\n\n",
                f"\n\n*** END OF THE PROJECT GUTENBERG EBOOK, {up} ***\n\n"
                "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN EBOOKS**START***\nlegal words\n"
                "*END THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS*Ver.02/11/02*END*\n")
    if era == "2003":
        return (f"The Project Gutenberg eBook, {title}, by A. Writer\n\nTitle: {title}\n\n"
                f"***START OF THE PROJECT GUTENBERG EBOOK {up}***\n\n\n",
                f"\n\n\n***END OF THE PROJECT GUTENBERG EBOOK {up}***\n\n" + LICENCE)
    if era == "2004-2018":
        return (f"The Project Gutenberg EBook of {title}, by A. Writer\n\n"
                "This eBook is for the use of anyone anywhere at no cost\n\n"
                f"Title: {title}\n\n*** START OF THIS PROJECT GUTENBERG EBOOK {up} ***\n\n\n",
                f"\n\n\n{footer_line}\n\n*** END OF THIS PROJECT GUTENBERG EBOOK {up} ***\n\n"
                + LICENCE)
    if era == "modern":
        return (MODERN_HEADER.replace("The Tale of a Whale", title)
                + f"*** START OF THE PROJECT GUTENBERG EBOOK {up} ***\n\n\n\n",
                f"\n\n\n\n            *** END OF THE PROJECT GUTENBERG EBOOK {up} ***\n\n\n"
                "Updated editions will replace the previous one.\n\n" + UNFAMILIAR_LICENCE)
    return "", (f"\n\n\n{footer_line}\n\nProject Gutenberg (https://www.gutenberg.org) public "
                "repository for eBook #99999.\nThis book is in the public domain in the US.\n")


ERAS = ["small-print", "2002", "2003", "2004-2018", "modern", "pg-source"]
FOOTER_LINES = ["End of the Project Gutenberg EBook of {title}, by\nA. Writer",
                "End of Project Gutenberg's {title}, by A. Writer",
                "Ende dieses Projekt Gutenberg Etextes {title}", "Fin du Projet Gutenberg, {title}",
                "Fim do Projecto Gutenberg: {title}", "End of\n\nProject Gutenberg's Etext of {title}",
                ""]
END_MARKER_RE = re.compile(r"^\s*\*+\s*END OF TH")
BODY_PIECES = [prose(i) for i in range(8)] + [
    "Our glad hosannas, Prince of Peace,\nThy welcome shall proclaim,\nAnd Heaven ring.",
    "CHAPTER II", "       *       *       *       *       *", "[Illustration: THE WHALE]",
    *MENTIONS, "Note: the author revised this chapter in 1850.", "    I.\n\n    II.",
]
START_NOTES = sorted(NOTES)
END_NOTES = ["bracketed", "german", "german errata", "mojibake", "french"]


@settings(max_examples=150, deadline=None)
@given(era=st.sampled_from(ERAS), title=st.sampled_from(["Moby Dick", "Charmes", "Whale"]),
       middle=st.lists(st.sampled_from(BODY_PIECES), min_size=1, max_size=12),
       footer=st.sampled_from(FOOTER_LINES), credits=st.booleans(),
       start_note=st.none() | st.sampled_from(START_NOTES),
       end_note=st.none() | st.sampled_from(END_NOTES), end_marker=st.booleans(),
       end_of_file=st.sampled_from(["", "\x1a\n", "*****\n\x1a\n"]))
def test_books_wrapped_in_any_era_lose_no_body_line(
        era: str, title: str, middle: list[str], footer: str, credits: bool,
        start_note: str | None, end_note: str | None, end_marker: bool, end_of_file: str) -> None:
    """Every era, with or without credits, notes, footer line, END marker and end-of-file marks:
    the book comes out whole and alone."""
    body = "\n\n".join([title.upper(), "By A. Writer", *middle, prose(9)])
    inside = "\n\n\n".join([*(["Produced by Jane Doe and the Online Distributed Proofreading Team"]
                              if credits else []),
                            *([NOTES[start_note]] if start_note else []), body,
                            *([NOTES[end_note]] if end_note else [])])
    if era == "pg-source" and not footer:
        footer = FOOTER_LINES[0]
    header, trailer = _era_frame(era, title, footer.format(title=title))
    if not end_marker:
        trailer = "\n".join(x for x in trailer.split("\n") if not END_MARKER_RE.match(x))
    text = header + inside + trailer + end_of_file
    result = clean_gutenberg(text)
    check_partition(text, result)
    assert result.era == era
    assert result.text == body + "\n"


# --- options -------------------------------------------------------------------------------

def test_drop_illustrations_single_and_multi_line() -> None:
    body = ("THE TALE\n\n[Illustration]\n\n" + prose(1) + "\n\n"
            "[Illustration: THE WHALE RISING FROM\nTHE GREY WATER.]\n\n" + prose(2) + "\n\n"
            "  [Illustration: an indented one]\n\nThe end.")
    text = framed(body)
    kept = clean_gutenberg(text)
    assert kept.text == body + "\n"
    result = clean_gutenberg(text, CleanOptions(drop_illustrations=True))
    check_partition(text, result)
    assert "Illustration" not in result.text
    assert result.text == f"THE TALE\n\n{prose(1)}\n\n{prose(2)}\n\nThe end.\n"
    markers = [r for r in result.removals if r.reason == "illustration marker"]
    assert len(markers) == 3
    assert markers[1].last_line - markers[1].first_line >= 1  # the two-line caption


def test_unwrap_joins_prose_and_keeps_verse_indents_tables_and_headings() -> None:
    verse = "Our glad hosannas, Prince of Peace,\nThy welcome shall proclaim,\nAnd Heaven ring."
    indented = "    CE LIVRE\n    A ÉTÉ IMPRIMÉ\n    PAR"
    table = "Kirke, Boston      103  359   53\nKling, Boston       81  252   26"
    heading = "CHAPTER I\nLOOMINGS"
    body = "\n\n".join([heading, prose(1), verse, prose(2), indented, table, "- one\n- two"])
    result = clean_gutenberg(framed(body), CleanOptions(unwrap=True))
    paras = result.text.rstrip("\n").split("\n\n")
    assert paras[1] == " ".join(prose(1).split("\n"))
    assert paras[3] == " ".join(prose(2).split("\n"))
    assert [paras[0], paras[2], paras[4], paras[5], paras[6]] == [
        heading, verse, indented, table, "- one\n- two"]
    assert clean_gutenberg(framed(body)).text == body + "\n"


def test_unwrap_joins_dashes_without_space() -> None:
    para = textwrap.fill("a " * 40, width=70).replace("a a\n", "a a--\n", 1)
    out = clean_gutenberg(para + "\n", CleanOptions(unwrap=True)).text
    assert "--\n" not in out and "-- " not in out and out.count("\n") == 1


def test_report_mentions_every_removal() -> None:
    text = framed("Produced by Jane Doe\n\n" + NOTES["bracketed"] + "\n\n" + book())
    result = clean_gutenberg(text)
    report = result.report()
    for r in result.removals:
        span = f"line {r.first_line}" if r.first_line == r.last_line else \
            f"lines {r.first_line}-{r.last_line}"
        assert f"{span}: {r.reason}" in report
    assert len(report.splitlines()) == len(result.removals) + 1
    assert "era 2004-2018" in report.splitlines()[-1]


def test_api_types_are_frozen() -> None:
    result = clean_gutenberg(framed(book()))
    assert isinstance(result.removals, tuple) and isinstance(result.removals[0], Removal)
    with pytest.raises(AttributeError):
        result.era = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        CleanOptions().unwrap = True  # type: ignore[misc]


# --- the shared raw books ------------------------------------------------------------------

@pytest.fixture(scope="session")
def raw_dir(shared_corpora: Path) -> Path:
    return shared_corpora / "gutenberg" / "raw"


_CACHE: dict[str, tuple[list[str], CleanedText, str]] = {}


def cleaned(raw_dir: Path, name: str) -> tuple[list[str], CleanedText, str]:
    if name not in _CACHE:
        text = decode_text((raw_dir / name).read_bytes(), name, warn_legacy=False)
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        _CACHE[name] = (lines, clean_gutenberg(text), text)
    return _CACHE[name]


def test_fixture_lists_every_raw_book(raw_dir: Path) -> None:
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(BOOKS)


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_raw_book_fixture_is_consistent(raw_dir: Path, name: str) -> None:
    lines, _, _ = cleaned(raw_dir, name)
    expect = BOOKS[name]
    assert lines[expect["first_line"] - 1] == expect["first"]
    assert lines[expect["last_line"] - 1] == expect["last"]
    for entry in expect["removed"] + expect["kept"]:
        assert lines[entry["line"] - 1] == entry["text"]


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_raw_book_body_bounds_and_era(raw_dir: Path, name: str) -> None:
    _, result, text = cleaned(raw_dir, name)
    expect = BOOKS[name]
    assert first_last(result) == (expect["first"], expect["last"])
    assert result.era == expect["era"]
    assert is_gutenberg_text(text)


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_raw_book_has_no_boilerplate_left(raw_dir: Path, name: str) -> None:
    _, result, _ = cleaned(raw_dir, name)
    assert len(BOILERPLATE_RE.findall(result.text)) == BOOKS[name]["project_gutenberg_in_body"]


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_raw_book_loses_nothing_of_the_body(raw_dir: Path, name: str) -> None:
    lines, result, text = cleaned(raw_dir, name)
    expect = BOOKS[name]
    first, last = expect["first_line"], expect["last_line"]
    check_partition(text, result)
    inside = [r for r in result.removals if r.last_line >= first and r.first_line <= last]
    assert all(first <= r.first_line and r.last_line <= last for r in inside)
    assert {r.reason for r in inside} <= BODY_REASONS
    gone = covered(result)
    body = [x for n, x in enumerate(lines, 1) if first <= n <= last and n not in gone]
    assert result.text.split("\n")[:-1] == body


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_raw_book_notes_removed_and_kept(raw_dir: Path, name: str) -> None:
    _, result, _ = cleaned(raw_dir, name)
    reasons = {n: r.reason for r in result.removals for n in range(r.first_line, r.last_line + 1)}
    for entry in BOOKS[name]["removed"]:
        assert reasons.get(entry["line"]) == entry["reason"], entry
    for entry in BOOKS[name]["kept"]:
        assert entry["line"] not in reasons, entry


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_raw_book_keeps_exactly_the_book(raw_dir: Path, name: str) -> None:
    """Between first and last, every non-blank line outside the note blocks is kept; every
    non-blank line of a note block, wherever it is, is removed."""
    lines, result, _ = cleaned(raw_dir, name)
    expect = BOOKS[name]
    notes = {n for a, b in expect["note_blocks"] for n in range(a, b + 1)}
    gone = covered(result)
    for n in range(expect["first_line"], expect["last_line"] + 1):
        if lines[n - 1].strip():
            assert (n in gone) == (n in notes), (n, lines[n - 1])
    assert all(n in gone for n in notes if lines[n - 1].strip())


@pytest.mark.parametrize("name", ["tinyshakespeare.txt", "scifi/moby.train.txt", "scifi/moby.test.txt",
                                  "scifi/combined.test.c5bf0fa.txt", "jules/jules.valid.txt"])
def test_header_free_texts_are_left_alone(shared_corpora, name: str) -> None:
    from charpoet.corpus.files import read_text_file

    text = read_text_file(shared_corpora / name)
    result = clean_gutenberg(text)
    assert result.era == "unknown" and result.text.strip("\n") == text.strip("\n")
    assert not is_gutenberg_text(text)
