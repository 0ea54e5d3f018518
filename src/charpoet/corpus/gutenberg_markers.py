"""The framing of a Project Gutenberg e-text: its header, footer and licence, and its era.

``frame`` finds the START/END markers, the small print and the ``End of the Project Gutenberg
...`` footer (the eras are listed in ``gutenberg_clean``), labels the header, footer, licence
and end-of-file marks, and returns the era and the body's line range. Where a marker is missing
or unfamiliar, the boilerplate vocabulary (``gutenberg_boilerplate``) ends the small print or the
header instead.
"""

from __future__ import annotations

import re

from charpoet.corpus.gutenberg_boilerplate import bracket_close, dense_run, hit
from charpoet.corpus.gutenberg_lines import (
    END_MARKS,
    FOOTER,
    HEADER,
    LICENCE,
    SMALL_PRINT,
    Labels,
    is_blank,
    paragraphs,
)
from charpoet.corpus.gutenberg_notes import CREDITS_LEAD_RE, NOTE_HEADING_RE

__all__ = ["GUTENBERG_ANY_RE", "HEADER_TITLE_RE", "START_RE", "frame"]

# --- markers -------------------------------------------------------------------------------

_PG = r"PROJECT\s+GUTENBERG"
START_RE = re.compile(rf"^\s*\**\s*START\s+OF\s+(?:THE\s+|THIS\s+)?(?:COPYRIGHTED\s+)?{_PG}", re.I)
END_RE = re.compile(rf"^\s*\*+\s*END\s+OF\s+(?:THE\s+|THIS\s+)?(?:COPYRIGHTED\s+)?{_PG}", re.I)
DP_MARKER_RE = re.compile(r"^\s*\*{3}(?:START|END)\b", re.I)   # 2003 style: no space after ***
THIS_MARKER_RE = re.compile(r"(?:START|END)\s+OF\s+THIS\b", re.I)  # 2004-2018 style
SMALL_PRINT_START_RE = re.compile(r"^\W*START\W*(?:OF\W+)?THE\W+(?:LEGAL\W+)?SMALL\W*PRINT", re.I)
SMALL_PRINT_END_RE = re.compile(r"^\W*END\W*(?:OF\W+)?(?:THE\W+)?(?:LEGAL\W+)?SMALL\W*PRINT", re.I)
# "End of the Project Gutenberg EBook", "Ende dieses Projekt Gutenberg Etextes", "Fin del Proyecto
# Gutenberg", "Einde van het Project Gutenberg": an end word, then the project, in any language
_END_WORD = r"(?:end|ende|einde|fin|fine|fim|slut|loppu|koniec|konec|vége|конец|τέλος)"
_PROJECT = r"pro(?:j\w{1,5}|yecto|getto)\W+gutenberg"        # Project, Projekt, Proyecto, Progetto ...
FOOTER_START_RE = re.compile(rf"^\W*{_END_WORD}\b", re.I)
FOOTER_RE = re.compile(rf"^\W*{_END_WORD}\b.{{0,60}}?\b{_PROJECT}", re.I)
FOOTER_PIECE_RE = re.compile(  # "End of" (the footer wraps) / "Project Gutenberg's Etext of ..."
    rf"^\W*{_END_WORD}\s+(?:of|dieses|des|du|de|del|della|do|da|van|von)\b(?:\s+\w+)?\W*$", re.I)
FOOTER_REST_RE = re.compile(rf"^\W*(?:\w+\s+){{0,2}}{_PROJECT}", re.I)
_FRAMING = (START_RE, END_RE, SMALL_PRINT_START_RE, SMALL_PRINT_END_RE, FOOTER_RE, FOOTER_PIECE_RE)
ANY_MARKER_RE = re.compile("|".join(f"(?:{p.pattern})" for p in _FRAMING), re.I)
MARKER_WORD_RE = re.compile(rf"\W*(?:start|{_END_WORD})", re.I)  # how every marker begins
START_OR_END_RE = re.compile(f"(?:{START_RE.pattern})|(?:{END_RE.pattern})", re.I)
OLD_USE_NOTICE_RE = re.compile(r"for\s+the\s+use\s+of\s+anyone\s+anywhere\s+at\s+no\s+cost", re.I)
FULL_LICENCE_RE = re.compile(r"^\s*(?:\*+\s*)?START:\s*FULL\s+LICEN[CS]E", re.I)
HEADER_TITLE_RE = re.compile(
    rf"^\W*(?:the\s+)?{_PG}(?:'s|’s)?\s*(?:e-?text|e-?book)?\s*(?:,|\bof\b)?\s*"
    r"(?P<title>.+?)(?:,?\s+by\s+(?P<author>[^*]+?))?\W*$", re.I)
GUTENBERG_ANY_RE = re.compile(  # the framing markers or a banner, anywhere in a text
    "|".join(f"(?:{p.pattern})" for p in _FRAMING[:-1])
    + r"|^\W*(?:the\s+)?Project\s+Gutenberg(?:'s|’s)?\s+(?:e-?text|e-?book)\b", re.I | re.M)

# --- limits --------------------------------------------------------------------------------

MAX_REPOSITORY_NOTICE = 40  # non-blank lines after a pg-source footer line
MAX_MARKER_LINES = 3        # a START/END marker wrapped over at most this many lines


# --- lines and markers ---------------------------------------------------------------------

def _is_mark(line: str) -> bool:
    """Something but no letter or digit: ``*****``, ``~``, a DOS end-of-file ``^Z`` ..."""
    return bool(line.strip()) and not any(c.isalnum() for c in line)


def _first(lines: list[str], pattern: re.Pattern[str], start: int = 0,
           stop: int | None = None) -> int | None:
    for i in range(start, len(lines) if stop is None else stop):
        if pattern.match(lines[i]):
            return i
    return None


def _last(lines: list[str], pattern: re.Pattern[str], start: int = 0) -> int | None:
    for i in range(len(lines) - 1, start - 1, -1):
        if pattern.match(lines[i]):
            return i
    return None


def _has_marker(lines: list[str]) -> bool:
    """Whether any line is a marker that can frame a body (a quick test for most texts)."""
    return any(MARKER_WORD_RE.match(x) and ANY_MARKER_RE.match(x) for x in lines)


def _next_nonblank(lines: list[str], i: int, within: int) -> int | None:
    for j in range(i + 1, min(i + 1 + within, len(lines))):
        if not is_blank(lines[j]):
            return j
    return None


def _footer_at(lines: list[str], i: int) -> bool:
    """Whether an ``End of the Project Gutenberg ...`` footer starts at line ``i``, whole or
    wrapped after its first words (``End of`` / ``Project Gutenberg's Etext of ...``), maybe with
    a blank line between, as in double-spaced files."""
    if not FOOTER_START_RE.match(lines[i]):
        return False
    if FOOTER_RE.match(lines[i]):
        return True
    if not FOOTER_PIECE_RE.match(lines[i]):
        return False
    j = _next_nonblank(lines, i, 2)
    return j is not None and FOOTER_REST_RE.match(lines[j]) is not None


def _last_footer(lines: list[str], start: int = 0, stop: int | None = None) -> int | None:
    for i in range((len(lines) if stop is None else stop) - 1, start - 1, -1):
        if _footer_at(lines, i):
            return i
    return None


def _marker_stop(lines: list[str], i: int) -> int:
    """Index after a START/END marker at ``i`` whose title may wrap until a line ending in ``*``."""
    if lines[i].rstrip().endswith("*"):
        return i + 1
    for j in range(i + 1, min(i + MAX_MARKER_LINES, len(lines))):
        if is_blank(lines[j]):
            break
        if lines[j].rstrip().endswith("*"):
            return j + 1
    return i + 1


def _footer_line_before(lines: list[str], stop: int, floor: int) -> int:
    """Start of an ``End of the Project Gutenberg ...`` line (maybe wrapped) just before ``stop``:
    among its last MAX_MARKER_LINES non-blank lines."""
    seen = 0
    for i in range(stop - 1, floor - 1, -1):
        if is_blank(lines[i]):
            continue
        if _footer_at(lines, i):
            return i
        seen += 1
        if seen == MAX_MARKER_LINES:
            break
    return stop


# --- header and footer ---------------------------------------------------------------------

def frame(lines: list[str], labels: Labels) -> tuple[str, int, int]:
    """Find the era and the body ``[start, end)``; label header, footer and licences."""
    n = len(lines)
    if not _has_marker(lines):
        return "unknown", 0, n
    marker = _first(lines, START_OR_END_RE)
    if marker is not None and START_RE.match(lines[marker]):
        era, body_start, body_end = _frame_markers(lines, labels, marker,
                                                   _marker_stop(lines, marker))
    elif marker is not None:  # an END marker: the START marker is lost or unknown
        era, body_start, body_end = _frame_markers(lines, labels, marker,
                                                   _header_stop(lines, marker))
    elif (small_print := _small_print(lines)) is not None:
        era, body_start, body_end = "small-print", *_frame_small_print(lines, labels, *small_print)
    elif (footer := _last_footer(lines)) is not None and \
            sum(not is_blank(x) for x in lines[footer + 1:]) <= MAX_REPOSITORY_NOTICE:
        labels.mark(footer, n, FOOTER)
        return "pg-source", 0, footer
    else:
        return "unknown", 0, n
    if body_end == n:
        body_end = _end_marks(lines, labels, body_start, body_end)
    return era, body_start, body_end


def _small_print(lines: list[str]) -> tuple[int, int] | None:
    """``[first, stop)`` of a small-print licence (1991-2001); one whose end marker we do not
    know ends where its boilerplate words thin out."""
    end = _first(lines, SMALL_PRINT_END_RE)
    first = _last(lines[:end], SMALL_PRINT_START_RE) if end is not None \
        else _first(lines, SMALL_PRINT_START_RE)
    if end is not None:
        return (end if first is None else first), end + 1
    if first is None:
        return None
    return first, (dense_run(lines, first, len(lines)) or first) + 1


def _frame_small_print(lines: list[str], labels: Labels, sp_start: int,
                       sp_stop: int) -> tuple[int, int]:
    """Frame a text whose licence is the small print ``[sp_start, sp_stop)``, usually on top."""
    n = len(lines)
    if sp_start > n // 2:
        return _frame_small_print_at_bottom(lines, labels, sp_start, sp_stop)
    _label_header(lines, labels, 0, sp_stop, sp_start, sp_stop)
    footer = _last_footer(lines, sp_stop)
    body_end = footer if footer is not None else n
    labels.mark(body_end, n, FOOTER)
    return sp_stop, body_end


def _frame_small_print_at_bottom(lines: list[str], labels: Labels, sp_start: int,
                                 sp_stop: int) -> tuple[int, int]:
    """Header (its boilerplate run: no marker ends it), body, footer, then the small print."""
    n = len(lines)
    footer = _last_footer(lines, 0, sp_start)
    body_end = footer if footer is not None else sp_start
    header_stop = _header_stop(lines, body_end)
    labels.mark(0, header_stop, HEADER)
    labels.mark(body_end, sp_start, FOOTER)
    labels.mark(sp_start, sp_stop, SMALL_PRINT)
    labels.mark(sp_stop, n, FOOTER)
    return header_stop, body_end


def _header_stop(lines: list[str], stop: int) -> int:
    """End of a header that no marker ends: its first paragraphs while each holds a boilerplate
    word (and a bracket they open), up to credits or a transcriber's note, left to the body."""
    header_stop = 0
    for first, last in paragraphs(lines, 0, stop):
        text = lines[first:last + 1]
        if CREDITS_LEAD_RE.match(text[0]) or NOTE_HEADING_RE.match(text[0]) \
                or not any(hit(x) for x in text):
            break
        header_stop = last + 1
    return bracket_close(lines, 0, header_stop - 1, stop) + 1 if header_stop else 0


def _end_marks(lines: list[str], labels: Labels, start: int, end: int) -> int:
    """End of the body less the marks (``*****``, ``^Z``...) closing a file that has no footer."""
    i = end
    while i > start and (is_blank(lines[i - 1]) or _is_mark(lines[i - 1])):
        i -= 1
    marks = [j for j in range(i, end) if _is_mark(lines[j])]
    if not marks:
        return end
    labels.mark(marks[0], end, END_MARKS)
    return marks[0]


def _label_header(lines: list[str], labels: Labels, first: int, stop: int,
                  sp_first: int | None = None, sp_stop: int | None = None) -> None:
    """Label ``[first, stop)`` as header, with an embedded small-print licence if given."""
    if sp_first is None or sp_stop is None:
        labels.mark(first, stop, HEADER)
        return
    labels.mark(first, sp_first, HEADER)
    labels.mark(sp_first, sp_stop, SMALL_PRINT)
    labels.mark(sp_stop, stop, HEADER)


def _frame_markers(lines: list[str], labels: Labels, marker: int,
                   body_start: int) -> tuple[str, int, int]:
    """Frame a text with START and END markers (eras 2002 to modern); ``marker``: the START
    marker, or the END marker where no START marker ends the header at ``body_start``."""
    n = len(lines)
    sp_end = _first(lines, SMALL_PRINT_END_RE, 0, min(marker, body_start))
    sp_start = _last(lines[:sp_end], SMALL_PRINT_START_RE) if sp_end is not None else None
    if sp_end is not None:
        _label_header(lines, labels, 0, body_start,
                      sp_start if sp_start is not None else sp_end, sp_end + 1)
    else:
        labels.mark(0, body_start, HEADER)
    end = _first(lines, END_RE, body_start)
    if end is None:
        end = _last_footer(lines, body_start)
    if end is None:
        end = _first(lines, FULL_LICENCE_RE, body_start)
    if end is None:
        end = _first(lines, SMALL_PRINT_START_RE, body_start)
    body_end = n if end is None else _footer_line_before(lines, end, body_start)
    licence = _first(lines, FULL_LICENCE_RE, body_end)
    small_print = _first(lines, SMALL_PRINT_START_RE, body_end)
    era = _marker_era(lines[marker], small_print is not None, lines[:body_start])
    if licence is not None:
        labels.mark(body_end, licence, FOOTER)
        labels.mark(licence, n, LICENCE)
    elif small_print is not None:
        labels.mark(body_end, small_print, FOOTER)
        labels.mark(small_print, n, SMALL_PRINT)
    else:
        labels.mark(body_end, n, FOOTER)
    return era, body_start, body_end


def _marker_era(marker: str, small_print_after_end: bool, header: list[str]) -> str:
    if DP_MARKER_RE.match(marker):
        return "2003"
    if small_print_after_end:
        return "2002"
    if THIS_MARKER_RE.search(marker) or any(OLD_USE_NOTICE_RE.search(x) for x in header):
        return "2004-2018"
    return "modern"
