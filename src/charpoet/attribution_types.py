"""Results of source attribution: verbatim spans of a text found in a library's sources.

Kept apart from the index (``attribution.py``) so that renderers and callers can build and
read results without NumPy or the index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

NOVELTY_MAX_LEN = 50  # novelty is measured for substring lengths 1..50, as torch-rnn's novel_substrings


@dataclass(frozen=True)
class SourceInfo:
    """A source of the library, as a result names it."""

    name: str
    title: str


@dataclass(frozen=True)
class Span:
    """A passage of the attributed text that occurs verbatim in a source."""

    start: int  # character offset in the attributed text (inclusive)
    end: int  # character offset in the attributed text (exclusive)
    source: int  # index into ``Attribution.sources`` (the first source, in library order, containing it)
    source_offset: int  # character offset of the passage's first occurrence in that source's text
    also_in: int = 0  # how many other sources also contain the passage

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Attribution:
    """Highlighted spans of ``text`` and the metrics of the same pass."""

    text: str
    spans: tuple[Span, ...]  # sorted by start, never overlapping
    sources: tuple[SourceInfo, ...]  # every source of the library; Span.source indexes this
    min_len: int
    novelty: tuple[float, ...] = field(default=())  # novelty[L - 1]: share of length-L substrings found nowhere

    @property
    def copied_chars(self) -> int:
        return sum(s.length for s in self.spans)

    @property
    def copy_rate(self) -> float:
        """Fraction of the text's characters inside a highlighted span."""
        return self.copied_chars / len(self.text) if self.text else 0.0

    @property
    def longest(self) -> Span | None:
        """The longest span (the first one on ties)."""
        return max(self.spans, key=lambda s: s.length, default=None)

    @property
    def source_shares(self) -> dict[int, float]:
        """Per source index: fraction of the text's characters credited to it (cited sources only)."""
        shares: dict[int, float] = {}
        for span in self.spans:
            shares[span.source] = shares.get(span.source, 0.0) + span.length
        return {k: v / len(self.text) for k, v in sorted(shares.items())}

    def cited_sources(self) -> list[int]:
        """Source indices in order of first appearance in the text."""
        seen: dict[int, None] = {}
        for span in self.spans:
            seen.setdefault(span.source, None)
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: spans with source names, and the metrics."""
        longest = self.longest
        return {
            "text": self.text,
            "min_len": self.min_len,
            "spans": [
                {"start": s.start, "end": s.end, "source": self.sources[s.source].name,
                 "source_title": self.sources[s.source].title, "source_offset": s.source_offset,
                 "also_in": s.also_in}
                for s in self.spans
            ],
            "metrics": {
                "chars": len(self.text),
                "copied_chars": self.copied_chars,
                "copy_rate": self.copy_rate,
                "longest": None if longest is None else {
                    "length": longest.length, "start": longest.start,
                    "source": self.sources[longest.source].name},
                "source_shares": {self.sources[k].name: v for k, v in self.source_shares.items()},
                "novelty": {str(n + 1): (None if math.isnan(v) else v) for n, v in enumerate(self.novelty)},
            },
        }

    def _repr_html_(self) -> str:
        from charpoet.render import to_html

        return to_html(self, standalone=False)
