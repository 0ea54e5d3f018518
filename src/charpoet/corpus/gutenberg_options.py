"""The optional passes of ``CleanOptions``: ``[Illustration...]`` markers and unwrapping."""

from __future__ import annotations

import re

from charpoet.corpus.gutenberg_lines import ILLUSTRATION, Labels, is_blank

__all__ = ["drop_illustrations", "unwrap"]

ILLUSTRATION_RE = re.compile(r"^\s*\[\s*illustration\b", re.I)


def drop_illustrations(lines: list[str], labels: Labels, start: int, end: int) -> None:
    """Remove whole-line ``[Illustration...]`` markers (captions may span lines)."""
    i = start
    while i < end:
        if labels.of[i] is None and ILLUSTRATION_RE.match(lines[i]):
            close = _illustration_close(lines, labels, i, end)
            if close is not None:
                stop = close + 1
                standalone = (i == start or is_blank(lines[i - 1])) and \
                    (stop >= end or is_blank(lines[stop]))
                while standalone and stop < end and is_blank(lines[stop]) and labels.of[stop] is None:
                    stop += 1
                labels.mark(i, stop, ILLUSTRATION)
                i = stop
                continue
        i += 1


def _illustration_close(lines: list[str], labels: Labels, i: int, end: int) -> int | None:
    """Line where the marker opened at ``i`` closes, if nothing follows the bracket there."""
    depth = 0
    for j in range(i, min(i + 30, end)):
        if labels.of[j] is not None:
            return None
        depth += lines[j].count("[") - lines[j].count("]")
        if depth <= 0:
            return j if lines[j].rstrip().endswith("]") else None
    return None


_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*•]\s|\d+[.)]\s|\(?[a-zA-Z0-9]{1,3}\)\s)")
_TABLE_RE = re.compile(r"\S {3,}\S|\|")


def unwrap(lines: list[str]) -> list[str]:
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
