"""The seeds' attribution scan, written plainly: the reference the index is checked against.

This is the rule of ml-indie-tools' ``Text_Dataset.source_highlight``: for the rest of the
text and each source in order, start at p = min_len and grow p while ``text[i:i+p]`` occurs
in the source; the strictly longest quote wins (the first source on ties); after a quote
the scan continues behind it, otherwise one character further. It calls substring search
O(m x sources x quote length) times, so it takes seconds on a megabyte of sources: use
``CorpusIndex`` for real work. Tests and ``benchmarks/attribution.py`` compare against it.
"""

from __future__ import annotations


def seeds_scan(text: str, sources: list[str], min_len: int, count_others: bool = True) -> list[tuple[int, ...]]:
    """Spans as (start, end, source index, first offset in that source, other sources containing it).

    With ``count_others=False`` the last field is left out, as in the seeds (for timing them).
    """
    spans, i = [], 0
    while i < len(text):
        best, best_source = 0, None
        for index, source in enumerate(sources):
            p = min_len
            if p <= len(text) - i and text[i : i + p] in source:
                p += 1
                while p <= len(text) - i and text[i : i + p] in source:
                    p += 1
                if p - 1 > best:
                    best, best_source = p - 1, index
        if best_source is None:
            i += 1
            continue
        passage = text[i : i + best]
        span = (i, i + best, best_source, sources[best_source].find(passage))
        if count_others:
            span += (sum(passage in s for k, s in enumerate(sources) if k != best_source),)
        spans.append(span)
        i += best
    return spans
