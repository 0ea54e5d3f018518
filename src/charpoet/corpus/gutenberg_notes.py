"""Credits, Gutenberg notices and transcriber's notes at the edges of a book's body.

``Body`` splits the body into paragraphs and peels off its very start and end: "Produced by"
credits, short notices naming Project Gutenberg or the e-text, transcriber's notes (headings in
several languages; bracketed, boxed or plain paragraphs) and dense runs of boilerplate (see
``gutenberg_boilerplate``). Further in, a note goes only in the front matter or in the last
lines of the book; notes in the middle are kept. The header framing (``gutenberg_markers``) and
the metadata (``gutenberg_metadata``) use some of the patterns here too.
"""

from __future__ import annotations

import bisect
import re

from charpoet.corpus.gutenberg_boilerplate import (
    MAX_NOTE_LINES,
    PROSE_LINE_CHARS,
    RUN_NEAR,
    bracket_close,
    dense_run,
    hit,
    run_reason,
)
from charpoet.corpus.gutenberg_lines import CREDITS, NOTE, NOTICE, Labels, paragraphs

__all__ = ["CREDITS_LEAD_RE", "GUTENBERG_MENTION_RE", "NOTE_HEADING_RE", "Body"]

# --- vocabulary ----------------------------------------------------------------------------

_APOS = r"(?:'|’|‘|`|´|aEuro\(TM\)|â€™|\ufffd)?"
_DECORATION = r"[\s\[|*_=#~+-]*"
NOTE_HEADING_RE = re.compile(
    _DECORATION + r"(?:"
    rf"(?:original\s+|e-?text\s+)?transcriber{_APOS}s?{_APOS}\s*"
    r"(?:notes?|amendments|errata|corrections)"
    r"|notes?\s+(?:on|about)\s+(?:this|the)\s+e-?(?:text|book)|transcription\s+notes?"
    r"|(?:anmerkungen?|hinweise?)\s+zur\s+transkription"
    r"|im\s+folgenden\s+werden\s+alle\s+geänderten\s+textzeilen"
    r"|notes?\s+(?:du|de\s+la|de)\s+transcri(?:pteur|ptrice|ption)"
    r"|notas?\s+(?:del|de\s+la)\s+transcript(?:or|ora)|notas?\s+de\s+(?:la\s+)?transcripci[oó]n"
    r"|opmerkingen?\s+(?:van|bij)\s+de\s+(?:transcriptie|transcriber|bewerker)"
    r")\b", re.I)
_HEADING_ONLY_TAIL_RE = re.compile(r"[\s:.\]|*_=-]*$")
CREDITS_LEAD_RE = re.compile(
    r"^\s*\[?\s*(?:"
    r"(?:this\s+)?(?:project\s+gutenberg\s+)?e-?(?:text|book)\s+(?:was\s+)?"
    r"(?:prepared|produced|created|transcribed)\s+by"
    r"|(?:produced|prepared|transcribed|digiti[sz]ed)\s+by\b|credits?\s+for\s+(?:the\s+)?e-?text"
    r"|produit\s+par|(?:ce|cet)\s+(?:livre|texte|ouvrage|e-?book|fichier)\s+(?:électronique\s+)?"
    r"a\s+été\s+(?:produit|préparé|réalisé|numérisé)\s+par"
    r"|producido\s+por|(?:este|el)\s+(?:libro(?:\s+electrónico)?|texto|e-?book|archivo)\s+"
    r"(?:ha\s+sido|fue)\s+(?:producido|preparado|digitalizado)\s+por"
    r"|(?:produziert|digitalisiert)\s+von|geproduceerd\s+door"
    r")", re.I)
CREDITS_LINE_RE = re.compile(
    r"\b(?:scanned|proof-?read|proofed|re-?proofed|proofing|typed|transcribed|digiti[sz]ed|"
    r"prepared|produced|submitted|margination|html\s+version|corrections?)\b[^.]{0,40}?\bby\b"
    r"|[\w.-]+@[\w-]+\.[\w.]+|\bpgdp\.net\b|distributed\s+proofread|proofreading\s+team"
    r"|gedistribueerd|proeflee|korrektur\w*\s+(?:gelesen|von)|relecture|relu\s+par", re.I)
GUTENBERG_MENTION_RE = re.compile(
    r"project\s+gutenberg|gutenberg\.(?:org|net)|ibiblio\.org|promo\.net/pg", re.I)
ETEXT_WORD_RE = re.compile(r"\be-?texts?\b|\bthis\s+e-?book\b", re.I)
SEPARATOR_RE = re.compile(r"^\s*(?:\*\s*){3,}$")
BOX_BORDER_RE = re.compile(r"^\s*\+[-=+]{3,}\+?\s*$")
_NON_WORD_RE = re.compile(r"[^\w\s]+")

# --- limits --------------------------------------------------------------------------------

EDGE_REGION_MIN, START_REGION_MAX, END_REGION_MAX = 80, 400, 250  # lines
MAX_CREDITS_LINES = 10


class Body:
    """Paragraphs of the body ``[start, end)``; peels boilerplate off its start and end."""

    def __init__(self, lines: list[str], labels: Labels, start: int, end: int, strip_notes: bool,
                 title: str = ""):
        self.lines, self.labels, self.strip_notes = lines, labels, strip_notes
        self.start, self.end = start, end
        self.title = _normalized(title)
        self.paras = paragraphs(lines, start, end)
        self.credits = ""
        size = end - start
        self.start_region = min(START_REGION_MAX, max(EDGE_REGION_MIN, size // 10))
        self.end_region = min(END_REGION_MAX, max(EDGE_REGION_MIN, size // 10))

    def peel(self) -> None:
        if not self.paras:
            return
        first = self._peel_start()
        self._notes_in_front_matter(first)
        self._peel_end(first)

    # marking

    def _stop_after(self, p: int) -> int:
        """Line index after paragraph ``p`` and the blank lines that follow it."""
        return self.paras[p + 1][0] if p + 1 < len(self.paras) else self.end

    def _remove(self, p: int, q: int, reason: str, through_end: bool = False) -> None:
        """Remove paragraphs ``p..q`` (and the blanks after them) unless notes are to stay."""
        if reason in (CREDITS, NOTE) and not self.strip_notes:
            return
        if reason == CREDITS:
            s, e = self.paras[p]
            self.credits = " ".join([self.credits, *(x.strip() for x in self.lines[s:e + 1])]).strip()
        stop = self.end if through_end else self._stop_after(q)
        self.labels.mark(self.paras[p][0], stop, reason)

    # paragraph kinds

    def _text(self, p: int) -> list[str]:
        s, e = self.paras[p]
        return self.lines[s:e + 1]

    def _is_credits(self, p: int, strong_only: bool = False) -> bool:
        text = self._text(p)
        if len(text) > MAX_CREDITS_LINES:
            return False
        if CREDITS_LEAD_RE.match(text[0]):
            return True
        if strong_only:
            return False
        return sum(1 for x in text if CREDITS_LINE_RE.search(x)) * 5 >= len(text) * 3

    def _is_notice(self, p: int) -> bool:
        """A short paragraph that names Project Gutenberg or the e-text."""
        text = self._text(p)
        return len(text) <= MAX_CREDITS_LINES and \
            any(GUTENBERG_MENTION_RE.search(x) or ETEXT_WORD_RE.search(x) for x in text)

    def _is_separator(self, p: int) -> bool:
        return all(SEPARATOR_RE.match(x) for x in self._text(p))

    def _heading_line(self, p: int) -> str | None:
        """The line holding a transcriber's-note heading at the top of paragraph ``p``."""
        text = self._text(p)
        if NOTE_HEADING_RE.match(text[0]):
            return text[0]
        if BOX_BORDER_RE.match(text[0]) and len(text) > 1 and NOTE_HEADING_RE.match(text[1]):
            return text[1]
        return None

    def _is_prose(self, p: int) -> bool:
        text = self._text(p)
        long_lines = sum(1 for x in text if len(x) >= PROSE_LINE_CHARS and not x[:1].isspace())
        return len(text) >= 4 and long_lines >= 3

    # note extents

    def _note_end(self, p: int) -> int | None:
        """Last paragraph of the transcriber's note starting at ``p`` (``None``: not a note)."""
        heading = self._heading_line(p)
        if heading is None:
            return None
        text = self._text(p)
        if BOX_BORDER_RE.match(text[0]):
            return p
        if text[0].lstrip().startswith("["):
            closed = self._bracket_end(p)
            if closed is not None:
                return closed
        last = p
        if len(text) == 1 and _heading_only(heading) and p + 1 < len(self.paras):
            last = p + 1
        while last + 1 < len(self.paras) and self.paras[last + 1][0] - self.paras[last][1] == 2:
            last += 1
            if self._is_separator(last):
                break
        if self.paras[last][1] - self.paras[p][0] >= MAX_NOTE_LINES:
            last = p + 1 if len(text) == 1 and _heading_only(heading) else p
        return min(last, len(self.paras) - 1)

    def _bracket_end(self, p: int) -> int | None:
        """Paragraph where the bracket opened at the top of ``p`` closes, if it does soon."""
        depth = 0
        first = self.paras[p][0]
        for i in range(first, min(first + MAX_NOTE_LINES, self.end)):
            depth += self.lines[i].count("[") - self.lines[i].count("]")
            if depth <= 0:
                return next((q for q in range(p, len(self.paras)) if self.paras[q][1] >= i), None)
        return None

    # the three passes

    def _peel_start(self) -> int:
        """Remove credits, notes, notices and runs of boilerplate (a licence, a producer's
        notice) at the very start; the first paragraph kept."""
        p = 0
        while p < len(self.paras):
            if self._is_credits(p):
                self._remove(p, p, CREDITS)
                p += 1
            elif (q := self._note_end(p)) is not None:
                self._remove(p, q, NOTE)
                p = q + 1
            elif self._is_separator(p) and p + 1 < len(self.paras) \
                    and (q := self._note_end(p + 1)) is not None:
                self._remove(p, q, NOTE)
                p = q + 1
            elif self._is_notice(p):
                self._remove(p, p, NOTICE)
                p += 1
            elif (last := self._run_from(p)) is not None:
                p = self._remove_through(p, last)
            else:
                break
        return p

    def _notes_in_front_matter(self, first: int) -> None:
        """Notes and credits after the title page, before the first prose paragraph."""
        limit = self.start + self.start_region
        p = first
        while p < len(self.paras) and self.paras[p][0] < limit and not self._is_prose(p):
            if self._is_credits(p, strong_only=True):
                self._remove(p, p, CREDITS)
            elif (q := self._note_end(p)) is not None:
                if self._is_separator(q) and p > 0 and self._is_separator(p - 1) \
                        and self.paras[p][0] - self.paras[p - 1][1] <= 3:
                    p -= 1
                self._remove(p, q, NOTE)
                p = q
            p += 1

    # boilerplate runs: licences and notices told by their vocabulary

    def _run_from(self, p: int) -> int | None:
        """Last line of a run of boilerplate opening with paragraph ``p``: the run's last hit,
        or the line closing a bracket it left open, or the end of that line's paragraph unless
        the book's title comes first."""
        s, e = self.paras[p]
        if not any(hit(x) == 2 for x in self.lines[s:e + 1]):
            return None
        last = dense_run(self.lines, s, self.end)
        if last is None:
            return None
        closed = bracket_close(self.lines, s, last, self.end)
        if closed != last:
            return closed
        stop = self.paras[self._para_of(last)][1]
        return next((i - 1 for i in range(last + 1, stop + 1) if self._is_title(self.lines[i])), stop)

    def _run_back_to(self, last: int, floor: int) -> int | None:
        """First paragraph of a run of boilerplate closing with paragraph ``last`` (or with a few
        short lines after its last strong word: ``(Three Pages)``)."""
        s, e = self.paras[last]
        tail = [x for p in range(last, max(floor, last - RUN_NEAR) - 1, -1)
                for x in reversed(self._text(p))][:RUN_NEAR + 1]
        if not any(hit(x) == 2 for x in self._text(last) + tail):
            return None
        first = dense_run(self.lines, e, self.paras[floor][0] - 1)
        return None if first is None else max(floor, self._para_of(first))

    def _remove_through(self, p: int, last: int) -> int:
        """Remove from paragraph ``p`` through line ``last``; the paragraph to look at next."""
        q = self._para_of(last)
        reason = run_reason(self.lines, self.paras[p][0], last + 1)
        if last == self.paras[q][1]:
            self.labels.mark(self.paras[p][0], self._stop_after(q), reason)
            return q + 1
        self.labels.mark(self.paras[p][0], last + 1, reason)
        self.paras[q] = (last + 1, self.paras[q][1])  # the rest of the paragraph is the book's
        return q

    def _para_of(self, i: int) -> int:
        """Index of the paragraph holding (or, for a blank line, preceding) line ``i``."""
        return bisect.bisect_right(self.paras, (i, len(self.lines))) - 1

    def _is_title(self, line: str) -> bool:
        text = _normalized(line)
        return len(text) >= 4 and bool(self.title) and (
            self.title.startswith(text) or text.startswith(self.title))

    def _removed(self, p: int) -> bool:
        return self.labels.of[self.paras[p][0]] is not None

    def _peel_end(self, first: int) -> None:
        """Remove credits, runs of boilerplate, notices and notes at the very end of the body."""
        floor = first
        last = len(self.paras) - 1
        while last >= floor:
            if self._removed(last):
                pass
            elif self._is_credits(last):
                self._remove(last, last, CREDITS)
            elif (opening := self._run_back_to(last, floor)) is not None:
                self._remove(opening, last, run_reason(
                    self.lines, self.paras[opening][0], self.paras[last][1] + 1))
                last = opening
            elif self._is_notice(last):
                self._remove(last, last, NOTICE)
            elif (opening := self._bracketed_note_closing_at(last, floor)) is not None:
                self._remove(opening, last, NOTE)
                last = opening
            else:
                break
            last -= 1
        self._trailing_note(floor, last)

    def _bracketed_note_closing_at(self, last: int, floor: int) -> int | None:
        if not self._text(last)[-1].rstrip().endswith("]"):
            return None
        for p in range(last, floor - 1, -1):
            if self.paras[last][1] - self.paras[p][0] > MAX_NOTE_LINES:
                return None
            if self._text(p)[0].lstrip().startswith("[") and self._heading_line(p) is not None:
                return p if self._bracket_end(p) == last else None
        return None

    def _trailing_note(self, floor: int, last: int) -> None:
        """A note heading in the last lines: it and all after it are the transcriber's."""
        if last < floor:
            return
        limit = self.paras[last][1] - self.end_region
        candidates = [p for p in range(floor, last + 1)
                      if self.paras[p][0] > limit and not self._removed(p)]
        for p in candidates:
            if self._heading_line(p) is not None and not self._text(p)[0].lstrip().startswith("["):
                if p - 1 >= floor and self._is_separator(p - 1):
                    p -= 1
                self._remove(p, last, NOTE, through_end=last == len(self.paras) - 1)
                return
        separators = [p for p in candidates if self._is_separator(p)]
        if separators and separators[-1] < last:
            p = separators[-1]
            tail = [x for q in range(p + 1, last + 1) for x in self._text(q)]
            if any(ETEXT_WORD_RE.search(x) for x in tail):
                self._remove(p, last, NOTE, through_end=last == len(self.paras) - 1)


def _normalized(text: str) -> str:
    """Lower-case words only: ``Orlando Furioso`` and ``ORLANDO FURIOSO.`` compare equal."""
    return " ".join(_NON_WORD_RE.sub(" ", text).casefold().split())


def _heading_only(line: str) -> bool:
    m = NOTE_HEADING_RE.match(line)
    return m is not None and _HEADING_ONLY_TAIL_RE.match(line, m.end()) is not None
