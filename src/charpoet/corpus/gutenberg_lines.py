"""Input lines and their removal labels, shared by every pass of the Gutenberg cleaner.

``Labels`` holds, per input line, the block and reason of its removal (the reasons are the
constants below) and turns them into ``Removal`` records. Also here: what counts as a blank line,
paragraphs (runs of non-blank lines), and the last pass, ``strip_outer_blanks``, which gives the
blank lines around the kept body to the removal beside them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BLANK", "CREDITS", "END_MARKS", "ETEXT_NOTICE", "FOOTER", "HEADER", "ILLUSTRATION", "LICENCE",
    "NOTE", "NOTICE", "SMALL_PRINT", "Labels", "Removal", "is_blank", "paragraphs",
    "strip_outer_blanks",
]


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


# --- reasons -------------------------------------------------------------------------------

HEADER, FOOTER, LICENCE, SMALL_PRINT = "header", "footer", "licence", "licence (small print)"
CREDITS, NOTE, NOTICE = "produced-by credits", "transcriber's note", "Gutenberg notice"
ETEXT_NOTICE, END_MARKS = "e-text notice", "end-of-file marks"
ILLUSTRATION, BLANK = "illustration marker", "blank lines"


class Labels:
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


# --- lines and paragraphs ------------------------------------------------------------------

_CONTROL = "".join(map(chr, range(33)))  # and the space


def is_blank(line: str) -> bool:
    """Whitespace or control characters only (form feeds, a DOS end-of-file ``^Z``...)."""
    text = line.strip()
    return not text or text[0] < " " and not text.strip(_CONTROL)


def paragraphs(lines: list[str], start: int, end: int) -> list[tuple[int, int]]:
    """``(first, last)`` line indices of the runs of non-blank lines in ``[start, end)``."""
    paras: list[tuple[int, int]] = []
    i = start
    while i < end:
        if is_blank(lines[i]):
            i += 1
            continue
        j = i
        while j + 1 < end and not is_blank(lines[j + 1]):
            j += 1
        paras.append((i, j))
        i = j + 1
    return paras


# --- outer blank lines ---------------------------------------------------------------------

def strip_outer_blanks(lines: list[str], labels: Labels, start: int, end: int) -> list[int]:
    """Indices of the kept lines, less outer blank ones, which join the adjacent removal."""
    kept = [i for i in range(start, end) if labels.of[i] is None]
    first, stop = 0, len(kept)
    while first < stop and is_blank(lines[kept[first]]):
        i = kept[first]
        before = labels.of[i - 1] if i > 0 else None
        labels.of[i] = before if before is not None else _blank_label(labels, i)
        first += 1
    while stop > first and is_blank(lines[kept[stop - 1]]):
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


def _blank_label(labels: Labels, i: int) -> tuple[int, str]:
    """A blank-lines label, shared with the blank line just before ``i`` if it has one."""
    if i > 0 and labels.of[i - 1] is not None and labels.of[i - 1][1] == BLANK:
        return labels.of[i - 1]
    labels._next_id += 1
    return (labels._next_id, BLANK)
