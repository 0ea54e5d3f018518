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
by line. A dense run of them (``gutenberg_boilerplate.dense_run``) is a licence or an e-text notice: it ends a small
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

This module is the entry point; the work is done by ``gutenberg_markers`` (header, footer,
era), ``gutenberg_metadata`` (header fields), ``gutenberg_notes`` (the body's edges),
``gutenberg_boilerplate`` (vocabulary and dense runs), ``gutenberg_options`` (illustrations,
unwrapping) and ``gutenberg_lines`` (line labels, ``Removal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from charpoet.corpus.gutenberg_lines import Labels, Removal, strip_outer_blanks
from charpoet.corpus.gutenberg_markers import GUTENBERG_ANY_RE, frame
from charpoet.corpus.gutenberg_metadata import parse_metadata
from charpoet.corpus.gutenberg_notes import Body
from charpoet.corpus.gutenberg_options import drop_illustrations, unwrap

__all__ = ["CleanOptions", "CleanedText", "Removal", "clean_gutenberg", "is_gutenberg_text"]


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


def is_gutenberg_text(text: str) -> bool:
    """Whether ``text`` has any Project Gutenberg header or footer marker."""
    return GUTENBERG_ANY_RE.search(text) is not None


def clean_gutenberg(text: str, options: CleanOptions = CleanOptions()) -> CleanedText:
    """The book inside a Project Gutenberg e-text, with every removal reported.

    Text without any Gutenberg marker (era ``unknown``) keeps its notes; only its outer blank
    lines go, and ``drop_illustrations`` and ``unwrap`` if asked for.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    labels = Labels(len(lines))
    era, body_start, body_end = frame(lines, labels)
    metadata = parse_metadata(lines[:body_start]) if era != "unknown" else {}
    if era != "unknown":
        body = Body(lines, labels, body_start, body_end, options.strip_notes,
                    metadata.get("title", ""))
        body.peel()
        if "credits" not in metadata and body.credits:
            metadata["credits"] = body.credits
    if options.drop_illustrations:
        drop_illustrations(lines, labels, body_start, body_end)
    kept = strip_outer_blanks(lines, labels, body_start, body_end)
    out = [lines[i] for i in kept]
    if options.unwrap:
        out = unwrap(out)
    return CleanedText(text="\n".join(out) + "\n" if out else "", removals=labels.removals(),
                       era=era, metadata=metadata)
