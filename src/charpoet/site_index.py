"""The files a static site needs to attribute text in the browser (``web/static/attribution.js``).

Built at export time from a run's library. The layout is the Python index's (``attribution.py``)
without its lookup tables, so the JavaScript scan finds the same longest matches::

    sources.json  {"format", "fingerprint", "sources": [{"name", "title"}], "starts": [S + 1 byte
                   offsets, last = n], "corpus": {"file", "bytes"}, "index": {"file", "dtype", "length"}}
    corpus.bin    source0 FF source1 FF ... sourceS-1 FF      (n bytes: the UTF-8 texts)
    index.bin     sa[j] = start of the j-th smallest suffix of corpus.bin  (n little-endian int32)

0xFF never occurs in UTF-8, so no match crosses from one source into the next. Titles are
``CorpusIndex``'s (``"Title, by Author"``), so spans and legends read as the server's.
"""

from __future__ import annotations

import json

import numpy as np

from charpoet.attribution import SEP
from charpoet.corpus import Library

__all__ = ["CORPUS_FILE", "INDEX_FILE", "MAX_SITE_LIBRARY_BYTES", "SOURCES_FILE", "build_site_index",
           "library_bytes", "site_index_bytes"]

FORMAT = "charpoet.site-attribution/1"
SOURCES_FILE = "sources.json"
CORPUS_FILE = "corpus.bin"
INDEX_FILE = "index.bin"
MAX_SITE_LIBRARY_BYTES = 20 << 20  # larger libraries need an explicit flag to be put in a site


def library_bytes(library: Library) -> int:
    """UTF-8 size of the library's texts (what ``MAX_SITE_LIBRARY_BYTES`` limits)."""
    return sum(len(chunk.encode("utf-8")) for s in library.sources for chunk in s.chunks())  # streamed


def _sources_json(library: Library, starts: list[int]) -> bytes:
    n = starts[-1]
    meta = {
        "format": FORMAT,
        "fingerprint": library.fingerprint(),
        "sources": [{"name": s.name, "title": f"{s.title}, by {s.author}" if s.author else s.title}
                    for s in library.sources],
        "starts": starts,
        "corpus": {"file": CORPUS_FILE, "bytes": n},
        "index": {"file": INDEX_FILE, "dtype": "int32le", "length": n},
    }
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _starts(lengths: list[int]) -> list[int]:
    starts = [0]
    for length in lengths:
        starts.append(starts[-1] + length + 1)  # each text is followed by one SEP byte
    return starts


def site_index_bytes(library: Library) -> int:
    """Total size of ``build_site_index(library)``'s files, without building the suffix array."""
    starts = _starts([len(s.text.encode("utf-8")) for s in library.sources])
    return len(_sources_json(library, starts)) + 5 * starts[-1]


def build_site_index(library: Library) -> dict[str, bytes]:
    """File name -> contents: ``sources.json``, ``corpus.bin`` and ``index.bin`` (module docstring)."""
    import pydivsufsort

    texts = [s.text.encode("utf-8") for s in library.sources]
    corpus = b"".join(t + bytes([SEP]) for t in texts)
    if len(corpus) >= 1 << 31:
        raise ValueError(f"library of {len(corpus):,} bytes is too large for an int32 index")
    sa = pydivsufsort.divsufsort(corpus) if corpus else np.zeros(0, dtype=np.int32)
    return {
        SOURCES_FILE: _sources_json(library, _starts([len(t) for t in texts])),
        CORPUS_FILE: corpus,
        INDEX_FILE: np.asarray(sa, dtype="<i4").tobytes(),
    }
