"""Strip Project Gutenberg boilerplate from a decoded e-text and report what was removed.

Header/footer eras recognised (``CleanedText.era``):

* ``small-print`` (1991-2001): a preamble and the ``***START**THE SMALL PRINT!`` licence,
  closed by ``*END*THE SMALL PRINT!``, ``*END THE SMALL PRINT!`` or ``**END THE SMALL PRINT!``
  (rarely at the bottom of the file); footer line ``End of (the|this) Project Gutenberg('s)
  Etext ...``, or the same in the book's language (``Ende dieses Projekt Gutenberg Etextes``).
* ``2002``: ``*** START OF THE PROJECT GUTENBERG EBOOK, TITLE ***`` with the small print after END.
* ``2003``: Distributed-Proofreaders style ``***START OF THE PROJECT GUTENBERG EBOOK TITLE***``
  (no space after the asterisks; the title may wrap onto a second line).
* ``2004-2018``: ``*** START OF THIS PROJECT GUTENBERG EBOOK ... ***`` and FULL LICENSE.
* ``modern``: ``*** START OF THE PROJECT GUTENBERG EBOOK ... ***``; the END marker may be indented.
* ``pg-source`` (2024 PG source repositories): no header, only an ``End of the Project
  Gutenberg EBook ...`` line, perhaps followed by a repository notice.
* ``unknown``: no marker; the text is returned as it is, less outer blank lines.

Markers frame the body; where one is missing or worded in a way we do not know, the vocabulary
of boilerplate takes over: words common in licences, headers and producers' notices across the
eras and languages (licence, royalty, e-text, public domain, donazione, http://...), counted line
by line. A dense run of them (``_dense_run``) is a licence or an e-text notice: it ends a small
print that has no end marker, a header that has no START marker, and, at the body's very start
or end, removes licences with unfamiliar wording, leftovers of them, and producers' notices
(Liber Liber's, MICRA's...), up to a bracket they leave open or the book's title. A book that
mentions a licence or Gutenberg now and then keeps those lines. Marks without letters
(``*****``, a DOS ``^Z``) that end a file with no footer go too.

In the body, "Produced by" credits (English, French, Spanish, German, Dutch), notes about
Project Gutenberg editions and transcriber's notes (headings in the same languages; bracketed,
boxed or plain paragraphs) are peeled off its very start and end. Further in, a note is removed
only in the front matter (first 10% of the body, at most 400 lines, before the first prose
paragraph) or in the last 10% (at most 250 lines), where a note heading takes everything after
it, as does a final ``*  *  *`` section that speaks of "this e-text". Notes in the middle of the
book are kept: when unsure, keep. Every line that is not in the output is covered by a
``Removal`` (1-based input line numbers). The input is already decoded with ``\\n`` newlines
(see ``charpoet.corpus.files.decode_text``); a final newline does not start another line.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

__all__ = ["CleanOptions", "CleanedText", "Removal", "clean_gutenberg", "is_gutenberg_text"]


@dataclass(frozen=True)
class Removal:
    """Input lines ``first_line``..``last_line`` (1-based, inclusive) left out, and why."""

    first_line: int
    last_line: int
    reason: str

    def __str__(self) -> str:
        if self.first_line == self.last_line:
            return f"line {self.first_line}: {self.reason}"
        return f"lines {self.first_line}-{self.last_line}: {self.reason}"


@dataclass(frozen=True)
class CleanedText:
    """The body of a book, the removals that produced it, its header era and metadata."""

    text: str
    removals: tuple[Removal, ...]
    era: str
    metadata: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        """One line per removal, then a summary line."""
        removed = sum(r.last_line - r.first_line + 1 for r in self.removals)
        kept = self.text.count("\n")
        summary = (f"era {self.era}: kept {kept} lines ({len(self.text)} chars), "
                   f"removed {removed} lines in {len(self.removals)} blocks")
        return "\n".join([*map(str, self.removals), summary])


@dataclass(frozen=True)
class CleanOptions:
    """``strip_notes``: transcriber's notes and produced-by credits; ``drop_illustrations``:
    ``[Illustration...]`` markers; ``unwrap``: join hard-wrapped prose paragraphs."""

    strip_notes: bool = True
    drop_illustrations: bool = False
    unwrap: bool = False


# --- reasons -------------------------------------------------------------------------------

HEADER, FOOTER, LICENCE, SMALL_PRINT = "header", "footer", "licence", "licence (small print)"
CREDITS, NOTE, NOTICE = "produced-by credits", "transcriber's note", "Gutenberg notice"
ETEXT_NOTICE, END_MARKS = "e-text notice", "end-of-file marks"
ILLUSTRATION, BLANK = "illustration marker", "blank lines"

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
_GUTENBERG_ANY_RE = re.compile(  # the framing markers or a banner, anywhere in a text
    "|".join(f"(?:{p.pattern})" for p in _FRAMING[:-1])
    + r"|^\W*(?:the\s+)?Project\s+Gutenberg(?:'s|’s)?\s+(?:e-?text|e-?book)\b", re.I | re.M)

# --- boilerplate vocabulary ----------------------------------------------------------------
# Words of Gutenberg headers, licences and small print, and of producers' notices (Liber Liber's,
# MICRA's...), in the languages of the collection: common there, rare in books. A line holding one
# is a hit; a block is boilerplate when its hits are many and dense (see ``_dense_run``), so a book
# that mentions a licence or Gutenberg now and then keeps its lines. Matched on lower-cased lines,
# each word from the start of a word.
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

# --- notes and credits ---------------------------------------------------------------------

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
ILLUSTRATION_RE = re.compile(r"^\s*\[\s*illustration\b", re.I)
_NON_WORD_RE = re.compile(r"[^\w\s]+")

# --- metadata ------------------------------------------------------------------------------

META_RE = re.compile(
    r"^\s*(title|author|language|release\s+date|cha\w*ter\s+set\s+encoding|credits)\s*:\s*(.*)$",
    re.I)
_META_MULTILINE = {"title", "author", "credits"}
HEADER_FIELD_RE = re.compile(
    r"^\s*(?:title|author|translator|editor|illustrator|release\s+date|posting\s+date|"
    r"(?:last|most\s+recently)\s+updated|original\s+publication|edition|language|"
    r"cha\w*ter\s+set\s+encoding|credits)"
    r"\s*:", re.I)

# --- limits --------------------------------------------------------------------------------

EDGE_REGION_MIN, START_REGION_MAX, END_REGION_MAX = 80, 400, 250  # lines
MAX_NOTE_LINES = 150       # a note (paragraph run or bracket) longer than this is not a note
MAX_CREDITS_LINES = 10
MAX_REPOSITORY_NOTICE = 40  # non-blank lines after a pg-source footer line
MAX_MARKER_LINES = 3        # a START/END marker wrapped over at most this many lines
RUN_MIN_HITS, RUN_MIN_STRONG = 4, 2  # a boilerplate run has this many hit lines, strong ones
RUN_DENSITY = 8             # ... and at least one hit in this many non-blank lines
RUN_MAX_GAP = 25            # ... and no more non-blank lines than this between two hits
RUN_NEAR = 3                # ... and ends on a hit this close to the one before
QUIET_PROSE_LINES = 3       # ... and stops at a paragraph with this many long lines and no hit
PROSE_LINE_CHARS = 45       # a line of prose is this long at least
RUN_MAX_LINES = 400         # ... within this many lines of the body's edge


def is_gutenberg_text(text: str) -> bool:
    """Whether ``text`` has any Project Gutenberg header or footer marker."""
    return _GUTENBERG_ANY_RE.search(text) is not None


def clean_gutenberg(text: str, options: CleanOptions = CleanOptions()) -> CleanedText:
    """The book inside a Project Gutenberg e-text, with every removal reported.

    Text without any Gutenberg marker (era ``unknown``) keeps its notes; only its outer blank
    lines go, and ``drop_illustrations`` and ``unwrap`` if asked for.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    labels = _Labels(len(lines))
    era, body_start, body_end = _frame(lines, labels)
    metadata = _parse_metadata(lines[:body_start]) if era != "unknown" else {}
    if era != "unknown":
        body = _Body(lines, labels, body_start, body_end, options.strip_notes,
                     metadata.get("title", ""))
        body.peel()
        if "credits" not in metadata and body.credits:
            metadata["credits"] = body.credits
    if options.drop_illustrations:
        _drop_illustrations(lines, labels, body_start, body_end)
    kept = _strip_outer_blanks(lines, labels, body_start, body_end)
    out = [lines[i] for i in kept]
    if options.unwrap:
        out = _unwrap(out)
    return CleanedText(text="\n".join(out) + "\n" if out else "", removals=labels.removals(),
                       era=era, metadata=metadata)


class _Labels:
    """Per input line: ``None`` (kept) or the ``(block id, reason)`` of its removal."""

    def __init__(self, n: int) -> None:
        self.of: list[tuple[int, str] | None] = [None] * n
        self._next_id = 0

    def mark(self, first: int, stop: int, reason: str) -> None:
        """Remove lines ``first`` up to, not including, ``stop`` (0-based) as one block."""
        if first >= stop:
            return
        self._next_id += 1
        for i in range(first, stop):
            self.of[i] = (self._next_id, reason)

    def removals(self) -> tuple[Removal, ...]:
        out: list[Removal] = []
        i, n = 0, len(self.of)
        while i < n:
            label = self.of[i]
            j = i
            while j + 1 < n and label is not None and self.of[j + 1] == label:
                j += 1
            if label is not None:
                out.append(Removal(i + 1, j + 1, label[1]))
            i = j + 1
        return tuple(out)


# --- lines and markers ---------------------------------------------------------------------

_CONTROL = "".join(map(chr, range(33)))  # and the space


def _is_blank(line: str) -> bool:
    """Whitespace or control characters only (form feeds, a DOS end-of-file ``^Z``...)."""
    text = line.strip()
    return not text or text[0] < " " and not text.strip(_CONTROL)


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
        if not _is_blank(lines[j]):
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
        if _is_blank(lines[j]):
            break
        if lines[j].rstrip().endswith("*"):
            return j + 1
    return i + 1


def _footer_line_before(lines: list[str], stop: int, floor: int) -> int:
    """Start of an ``End of the Project Gutenberg ...`` line (maybe wrapped) just before ``stop``:
    among its last MAX_MARKER_LINES non-blank lines."""
    seen = 0
    for i in range(stop - 1, floor - 1, -1):
        if _is_blank(lines[i]):
            continue
        if _footer_at(lines, i):
            return i
        seen += 1
        if seen == MAX_MARKER_LINES:
            break
    return stop


# --- boilerplate by vocabulary -------------------------------------------------------------

def _hit(line: str) -> int:
    """2 for a line with a strong boilerplate word, 1 for a weak one only, else 0."""
    if STRONG_WORD_RE.search(line.lower()) or HEADER_FIELD_RE.match(line):
        return 2
    return 1 if WEAK_WORD_RE.search(line) else 0


def _dense_run(lines: list[str], start: int, stop: int) -> int | None:
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
        if _is_blank(lines[i]):
            if long_lines >= QUIET_PROSE_LINES and not para_hits:
                break
            long_lines = para_hits = 0
            continue
        seen += 1
        long_lines += len(lines[i].rstrip()) >= PROSE_LINE_CHARS
        score = _hit(lines[i])
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


def _run_reason(lines: list[str], first: int, stop: int) -> str:
    """A licence when licence words recur in ``[first, stop)``, else some other e-text notice."""
    licence_lines = sum(1 for x in lines[first:stop] if LICENCE_WORD_RE.search(x.lower()))
    return LICENCE if licence_lines >= 2 else ETEXT_NOTICE


def _bracket_close(lines: list[str], first: int, last: int, stop: int) -> int:
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


# --- header and footer ---------------------------------------------------------------------

def _frame(lines: list[str], labels: _Labels) -> tuple[str, int, int]:
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
            sum(not _is_blank(x) for x in lines[footer + 1:]) <= MAX_REPOSITORY_NOTICE:
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
    return first, (_dense_run(lines, first, len(lines)) or first) + 1


def _frame_small_print(lines: list[str], labels: _Labels, sp_start: int,
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


def _frame_small_print_at_bottom(lines: list[str], labels: _Labels, sp_start: int,
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
    for first, last in _paragraphs(lines, 0, stop):
        text = lines[first:last + 1]
        if CREDITS_LEAD_RE.match(text[0]) or NOTE_HEADING_RE.match(text[0]) \
                or not any(_hit(x) for x in text):
            break
        header_stop = last + 1
    return _bracket_close(lines, 0, header_stop - 1, stop) + 1 if header_stop else 0


def _end_marks(lines: list[str], labels: _Labels, start: int, end: int) -> int:
    """End of the body less the marks (``*****``, ``^Z``...) closing a file that has no footer."""
    i = end
    while i > start and (_is_blank(lines[i - 1]) or _is_mark(lines[i - 1])):
        i -= 1
    marks = [j for j in range(i, end) if _is_mark(lines[j])]
    if not marks:
        return end
    labels.mark(marks[0], end, END_MARKS)
    return marks[0]


def _label_header(lines: list[str], labels: _Labels, first: int, stop: int,
                  sp_first: int | None = None, sp_stop: int | None = None) -> None:
    """Label ``[first, stop)`` as header, with an embedded small-print licence if given."""
    if sp_first is None or sp_stop is None:
        labels.mark(first, stop, HEADER)
        return
    labels.mark(first, sp_first, HEADER)
    labels.mark(sp_first, sp_stop, SMALL_PRINT)
    labels.mark(sp_stop, stop, HEADER)


def _frame_markers(lines: list[str], labels: _Labels, marker: int,
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


# --- metadata ------------------------------------------------------------------------------

def _parse_metadata(header: list[str]) -> dict[str, str]:
    """``Title:``, ``Author:``, ``Release Date:`` ... lines of the header."""
    found: dict[str, str] = {}
    i = 0
    while i < len(header):
        m = META_RE.match(header[i])
        i += 1
        if not m:
            continue
        key = _meta_key(m.group(1))
        text = m.group(2).strip()
        while key in _META_MULTILINE and i < len(header) and not _is_blank(header[i]) \
                and not META_RE.match(header[i]) and not START_RE.match(header[i]):
            text = _join_continuation(key, text, header[i])
            i += 1
        if key == "release_date":
            text = text.split("[")[0].strip()
        if text and key not in found:
            found[key] = text
    if "title" not in found:
        _title_from_banner(header, found)
    return found


def _join_continuation(key: str, text: str, line: str) -> str:
    """An indented line after a title is its subtitle (``Title: Main``/``   Subtitle``)."""
    part = line.strip()
    if not text:
        return part
    subtitle = key == "title" and line[:1].isspace() and not text.endswith((",", ";", ":"))
    return f"{text}: {part}" if subtitle else f"{text} {part}"


def _meta_key(name: str) -> str:
    name = name.lower()
    if name.startswith("release"):
        return "release_date"
    if name.endswith("encoding"):
        return "encoding"
    return name  # title, author, language, credits


def _title_from_banner(header: list[str], found: dict[str, str]) -> None:
    """Title and author from a ``The Project Gutenberg Etext of TITLE, by AUTHOR`` line."""
    for i, line in enumerate(header):
        if not GUTENBERG_MENTION_RE.search(line):
            continue
        banner = line
        wrapped = line.rstrip().endswith((",", "by", "and"))
        if wrapped and i + 1 < len(header) and not _is_blank(header[i + 1]):
            banner += " " + header[i + 1].strip()
        m = HEADER_TITLE_RE.match(banner)
        if m and m.group("title")[:1].isupper():
            found["title"] = m.group("title").strip(" ,")
            if m.group("author"):
                found.setdefault("author", " ".join(m.group("author").split()))
            return


# --- the body: credits, notices and transcriber's notes ------------------------------------

class _Body:
    """Paragraphs of the body ``[start, end)``; peels boilerplate off its start and end."""

    def __init__(self, lines: list[str], labels: _Labels, start: int, end: int, strip_notes: bool,
                 title: str = ""):
        self.lines, self.labels, self.strip_notes = lines, labels, strip_notes
        self.start, self.end = start, end
        self.title = _normalized(title)
        self.paras = _paragraphs(lines, start, end)
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
        if not any(_hit(x) == 2 for x in self.lines[s:e + 1]):
            return None
        last = _dense_run(self.lines, s, self.end)
        if last is None:
            return None
        closed = _bracket_close(self.lines, s, last, self.end)
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
        if not any(_hit(x) == 2 for x in self._text(last) + tail):
            return None
        first = _dense_run(self.lines, e, self.paras[floor][0] - 1)
        return None if first is None else max(floor, self._para_of(first))

    def _remove_through(self, p: int, last: int) -> int:
        """Remove from paragraph ``p`` through line ``last``; the paragraph to look at next."""
        q = self._para_of(last)
        reason = _run_reason(self.lines, self.paras[p][0], last + 1)
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
                self._remove(opening, last, _run_reason(
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


def _paragraphs(lines: list[str], start: int, end: int) -> list[tuple[int, int]]:
    """``(first, last)`` line indices of the runs of non-blank lines in ``[start, end)``."""
    paras: list[tuple[int, int]] = []
    i = start
    while i < end:
        if _is_blank(lines[i]):
            i += 1
            continue
        j = i
        while j + 1 < end and not _is_blank(lines[j + 1]):
            j += 1
        paras.append((i, j))
        i = j + 1
    return paras


# --- options: illustrations, outer blank lines, unwrapping ---------------------------------

def _drop_illustrations(lines: list[str], labels: _Labels, start: int, end: int) -> None:
    """Remove whole-line ``[Illustration...]`` markers (captions may span lines)."""
    i = start
    while i < end:
        if labels.of[i] is None and ILLUSTRATION_RE.match(lines[i]):
            close = _illustration_close(lines, labels, i, end)
            if close is not None:
                stop = close + 1
                standalone = (i == start or _is_blank(lines[i - 1])) and \
                    (stop >= end or _is_blank(lines[stop]))
                while standalone and stop < end and _is_blank(lines[stop]) and labels.of[stop] is None:
                    stop += 1
                labels.mark(i, stop, ILLUSTRATION)
                i = stop
                continue
        i += 1


def _illustration_close(lines: list[str], labels: _Labels, i: int, end: int) -> int | None:
    """Line where the marker opened at ``i`` closes, if nothing follows the bracket there."""
    depth = 0
    for j in range(i, min(i + 30, end)):
        if labels.of[j] is not None:
            return None
        depth += lines[j].count("[") - lines[j].count("]")
        if depth <= 0:
            return j if lines[j].rstrip().endswith("]") else None
    return None


def _strip_outer_blanks(lines: list[str], labels: _Labels, start: int, end: int) -> list[int]:
    """Indices of the kept lines, less outer blank ones, which join the adjacent removal."""
    kept = [i for i in range(start, end) if labels.of[i] is None]
    first, stop = 0, len(kept)
    while first < stop and _is_blank(lines[kept[first]]):
        i = kept[first]
        before = labels.of[i - 1] if i > 0 else None
        labels.of[i] = before if before is not None else _blank_label(labels, i)
        first += 1
    while stop > first and _is_blank(lines[kept[stop - 1]]):
        i = kept[stop - 1]
        after = labels.of[i + 1] if i + 1 < len(labels.of) else None
        labels.of[i] = after if after is not None else _blank_label(labels, i)
        stop -= 1
    kept = kept[first:stop]
    # blank lines between header and body that the framing left unlabelled
    for i in range(len(labels.of)):
        if labels.of[i] is None and not (kept and kept[0] <= i <= kept[-1]):
            labels.of[i] = _blank_label(labels, i)
    return kept


def _blank_label(labels: _Labels, i: int) -> tuple[int, str]:
    """A blank-lines label, shared with the blank line just before ``i`` if it has one."""
    if i > 0 and labels.of[i - 1] is not None and labels.of[i - 1][1] == BLANK:
        return labels.of[i - 1]
    labels._next_id += 1
    return (labels._next_id, BLANK)


_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*•]\s|\d+[.)]\s|\(?[a-zA-Z0-9]{1,3}\)\s)")
_TABLE_RE = re.compile(r"\S {3,}\S|\|")


def _unwrap(lines: list[str]) -> list[str]:
    """Join each hard-wrapped prose paragraph into one line; leave everything else alone."""
    lengths = sorted(len(x.rstrip()) for x in lines if x.strip())
    if not lengths:
        return lines
    full = 0.6 * max(50, lengths[int(0.9 * (len(lengths) - 1))])
    out: list[str] = []
    para: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            para.append(line)
            continue
        if para:
            out.extend([_join(para)] if _is_wrapped_prose(para, full) else para)
            para = []
        out.append(line)
    out.pop()
    return out


def _is_wrapped_prose(para: list[str], full: float) -> bool:
    if len(para) < 2:
        return False
    if any(x[:1].isspace() or _LIST_ITEM_RE.match(x) or _TABLE_RE.search(x.strip()) for x in para):
        return False
    if all(x.upper() == x for x in para):
        return False  # headings in capitals
    return all(len(x.rstrip()) >= full for x in para[:-1])


def _join(para: list[str]) -> str:
    joined = para[0].rstrip()
    for line in para[1:]:
        part = line.strip()
        if joined.endswith(("--", "—", "-")) and not joined.endswith(" -"):
            joined += part
        else:
            joined += " " + part
    return joined
