"""Metadata of a Project Gutenberg header: ``Title:``, ``Author:``, ``Release Date:`` ...

``parse_metadata`` reads the labelled fields (a title's indented subtitle joins it) and, where
there is no ``Title:`` line, the title and author of a ``The Project Gutenberg Etext of TITLE, by
AUTHOR`` banner.
"""

from __future__ import annotations

import re

from charpoet.corpus.gutenberg_lines import is_blank
from charpoet.corpus.gutenberg_markers import HEADER_TITLE_RE, START_RE
from charpoet.corpus.gutenberg_notes import GUTENBERG_MENTION_RE

__all__ = ["parse_metadata"]

META_RE = re.compile(
    r"^\s*(title|author|language|release\s+date|cha\w*ter\s+set\s+encoding|credits)\s*:\s*(.*)$",
    re.I)
_META_MULTILINE = {"title", "author", "credits"}


def parse_metadata(header: list[str]) -> dict[str, str]:
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
        while key in _META_MULTILINE and i < len(header) and not is_blank(header[i]) \
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
        if wrapped and i + 1 < len(header) and not is_blank(header[i + 1]):
            banner += " " + header[i + 1].strip()
        m = HEADER_TITLE_RE.match(banner)
        if m and m.group("title")[:1].isupper():
            found["title"] = m.group("title").strip(" ,")
            if m.group("author"):
                found.setdefault("author", " ".join(m.group("author").split()))
            return
