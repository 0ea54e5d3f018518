"""The vocabulary of Project Gutenberg boilerplate, and runs of it dense enough to remove.

Words of Gutenberg headers, licences and small print, and of producers' notices (Liber Liber's,
MICRA's...), in the languages of the collection: common there, rare in books. A line holding one
is a hit (``hit``); a block is boilerplate when its hits are many and dense (``dense_run``), so a
book that mentions a licence or Gutenberg now and then keeps its lines. ``run_reason`` tells a
licence from another e-text notice; ``bracket_close`` extends a run to the bracket it left open.
"""

from __future__ import annotations

import re

from charpoet.corpus.gutenberg_lines import ETEXT_NOTICE, LICENCE, is_blank

__all__ = [
    "MAX_NOTE_LINES", "PROSE_LINE_CHARS", "RUN_NEAR", "bracket_close", "dense_run", "hit",
    "run_reason",
]

# --- vocabulary ----------------------------------------------------------------------------
# Matched on lower-cased lines, each word from the start of a word.
_STRONG_WORDS = (
    r"gutenberg", r"michael\s+(?:s\.\s*)?hart", r"benedictine", r"carnegie[\s-]*mellon",
    r"literary\s+archive", r"501\s*\(c\)", r"ftp\b", r"https?://", r"www\.", r"e-?(?:text|book)",
    r"ascii\b", r"html?\b", r"cd-?rom", r"(?:soft|share)ware\b", r"newsletter", r"elettronic",
    r"[eé]lectroni(?:que|c)", r"electr[oó]nic", r"elektroni", r"public\s+domain",
    r"domaine\s+public", r"dominio\s+p[uú]blico", r"pubblico\s+dominio", r"publiek\s+domein",
    r"proprietary", r"donat", r"donazion", r"donaci", r"tax[\s-]+deductible",
    r"diritt[oi]\s+d.autore", r"derechos\s+de\s+autor", r"droits?\s+d.auteur", r"urheberrecht",
    r"auteursrecht", r"proofread", r"proeflee", r"updated\s+editions\s+will",
    r"associated\s+files", r"should\s+be\s+named", r"solicit", r"fund\s*rais",
)
_LICENCE_WORDS = (r"licen[cs]", r"licenz", r"royalt", r"trademark", r"warrant", r"refund",
                  r"indemni", r"liabilit", r"merchantab", r"disclaim", r"small\s+print")
_WEAK_WORDS = (r"copyright", r"distribu", r"contribution", r"files?\b", r"fax\b", r"e-?mail\b")
STRONG_WORD_RE = re.compile(r"\b(?:" + "|".join(_STRONG_WORDS + _LICENCE_WORDS) + r")"
                            r"|@[\w-]+\.[a-z]|\.(?:zip|txt|html?|rtf)\b")  # e-mail addresses, files
LICENCE_WORD_RE = re.compile(r"\b(?:" + "|".join(_LICENCE_WORDS) + ")")
WEAK_WORD_RE = re.compile(r"\b(?:" + "|".join(_WEAK_WORDS) + ")")
_OPENERS = (("[", "]"), ("{", "}"), ("<--", "-->"))           # brackets a notice may leave open
# a header field (``Title:``, ``Release Date:``...) counts as a strong word
HEADER_FIELD_RE = re.compile(
    r"^\s*(?:title|author|translator|editor|illustrator|release\s+date|posting\s+date|"
    r"(?:last|most\s+recently)\s+updated|original\s+publication|edition|language|"
    r"cha\w*ter\s+set\s+encoding|credits)"
    r"\s*:", re.I)

# --- limits --------------------------------------------------------------------------------

MAX_NOTE_LINES = 150       # a bracket closes within this many lines, and a note is no longer
RUN_MIN_HITS, RUN_MIN_STRONG = 4, 2  # a boilerplate run has this many hit lines, strong ones
RUN_DENSITY = 8             # ... and at least one hit in this many non-blank lines
RUN_MAX_GAP = 25            # ... and no more non-blank lines than this between two hits
RUN_NEAR = 3                # ... and ends on a hit this close to the one before
QUIET_PROSE_LINES = 3       # ... and stops at a paragraph with this many long lines and no hit
PROSE_LINE_CHARS = 45       # a line of prose is this long at least
RUN_MAX_LINES = 400         # ... within this many lines of the body's edge


def hit(line: str) -> int:
    """2 for a line with a strong boilerplate word, 1 for a weak one only, else 0."""
    if STRONG_WORD_RE.search(line.lower()) or HEADER_FIELD_RE.match(line):
        return 2
    return 1 if WEAK_WORD_RE.search(line) else 0


def dense_run(lines: list[str], start: int, stop: int) -> int | None:
    """The furthest line of a run of boilerplate read from ``start`` towards ``stop`` (excluded;
    either way): at least RUN_MIN_HITS hit lines, RUN_MIN_STRONG of them strong, one hit per
    RUN_DENSITY non-blank lines or more, at most RUN_MAX_GAP non-blank lines between two hits, all
    within RUN_MAX_LINES lines. So that a mention or two beyond the book's own text do not draw
    the run into it, a run ends on a hit close to the one before (RUN_NEAR lines) and stops at
    a paragraph of prose without a hit. ``None``: no such run."""
    step = 1 if stop >= start else -1
    stop = min(stop, start + RUN_MAX_LINES) if step > 0 else max(stop, start - RUN_MAX_LINES)
    hits = strong = seen = gap = 0
    long_lines = para_hits = 0  # in the paragraph being read
    best = None
    for i in range(start, stop, step):
        if is_blank(lines[i]):
            if long_lines >= QUIET_PROSE_LINES and not para_hits:
                break
            long_lines = para_hits = 0
            continue
        seen += 1
        long_lines += len(lines[i].rstrip()) >= PROSE_LINE_CHARS
        score = hit(lines[i])
        if not score:
            gap += 1
            if gap > RUN_MAX_GAP:
                break
            continue
        near = gap <= RUN_NEAR
        hits, strong, gap, para_hits = hits + 1, strong + (score == 2), 0, para_hits + 1
        if near and hits >= RUN_MIN_HITS and strong >= RUN_MIN_STRONG and hits * RUN_DENSITY >= seen:
            best = i
    return best


def run_reason(lines: list[str], first: int, stop: int) -> str:
    """A licence when licence words recur in ``[first, stop)``, else some other e-text notice."""
    licence_lines = sum(1 for x in lines[first:stop] if LICENCE_WORD_RE.search(x.lower()))
    return LICENCE if licence_lines >= 2 else ETEXT_NOTICE


def bracket_close(lines: list[str], first: int, last: int, stop: int) -> int:
    """``last``, or the line soon after it (before ``stop``) that closes a bracket left open in
    ``[first, last]``."""
    for opener, closer in _OPENERS:
        depth = sum(x.count(opener) - x.count(closer) for x in lines[first:last + 1])
        j = last
        while depth > 0 and j + 1 < min(stop, last + MAX_NOTE_LINES):
            j += 1
            depth += lines[j].count(opener) - lines[j].count(closer)
        if depth <= 0 and j > last:
            return j
    return last
