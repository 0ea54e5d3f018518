"""Source attribution: which passages of a text occur verbatim in a library's sources.

The rule is the seeds' greedy one. At each position, find the longest prefix of the rest of
the text that occurs verbatim in some source. If it has at least ``min_len`` characters, it
is a span, credited to the first source (in library order) that contains it, at that
source's first occurrence, with the number of other sources that contain it too. The scan
then continues after the span; otherwise it moves on by one character.

The index is a suffix array (libdivsufsort, through ``pydivsufsort``) over the UTF-8 bytes
of all sources, each followed by a 0xFF byte. 0xFF never occurs in UTF-8, so no match can
cross from one source into the next::

    corpus  = source0 FF source1 FF ... sourceS-1 FF        (n bytes, + CAP bytes of FF padding)
    sa[j]   = start of the j-th smallest suffix of corpus  (n int32/int64)

``attribute`` looks up every character position of the text at once. A vectorised binary
search over ``sa`` compares 8-byte blocks, up to ``CAP`` bytes deep, for all positions
together and gives the longest match of each, exact when it is shorter than ``CAP`` bytes.
Positions whose match reaches ``CAP`` get their full length by binary lifting over the rank
array (``rank[sa[j]] = j``), so a quote of any length costs O(log length) vectorised steps,
not a byte-by-byte walk per position. With I_d(x) the ``sa`` rows of the suffixes that
start with the d query bytes at x (suffixes sharing d bytes are ordered by what follows)::

    I_2d(x) = { r in I_d(x) : rank[sa[r] + d] in I_d(x + d) }     (a sub-range of I_d(x))

Intervals for d = 8, 16, 32, ... are built for the query bytes that lie in long matches;
descending through them (largest d first) gives each match's length in whole 8-byte
blocks, and one comparison at the neighbours inside the final interval gives the rest.
The greedy spans and the novelty curve come from these lengths. Building is O(n) (about
1 s for 10 MB); a lookup costs O(m log n) vectorised work for a text of m characters, plus
O(b log b log n) for the b bytes of the text inside matches longer than ``CAP``.

On disk (``save``; a run caches it as ``INDEX_FILE``) the index is a safetensors file holding
everything a lookup needs, 8-byte arrays first so that every array is aligned::

    keys (n,) u64 | starts (S+1,) i64 | block_chars i64 | sa (n,) i32/i64 | corpus (n+CAP,) u8

``load`` maps the file (``mmap``) instead of reading it: loading costs no time or memory
whatever the size, and pages are read (and shared between processes) as lookups touch them.
Building needs about 13 bytes of memory per byte of text (the corpus, an int32 ``sa`` and
the 8-byte ``keys``; 17 above 2 GiB, where ``sa`` is int64), and the file is as large; so
a library above ``MAX_INDEX_BYTES`` of text is not indexed unless forced
(``IndexTooLargeError``; ``--force-index``, ``force=True``).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import mmap
import os
import tempfile
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from charpoet.attribution_types import NOVELTY_MAX_LEN, Attribution, SourceInfo, Span
from charpoet.corpus import Library
from charpoet.errors import CheckpointError, ConfigError
from charpoet.resources import format_bytes
from charpoet.runfiles import ATTRIBUTION_INDEX

SEP = 0xFF
CAP = 256  # bytes compared by the vectorised search; longer matches are measured by lifting
_BLOCK = 4096  # bytes between character-count checkpoints
_FORMAT = "charpoet.attribution-index/2"  # 2: every array stored (keys too) and memory-mapped by load
INDEX_FILE = ATTRIBUTION_INDEX  # cached in a run directory; not needed to generate text
# Above this much UTF-8 text (256 MiB) the index is only built when forced: building needs
# about 13 bytes of memory per byte (3.3 GiB here) and its file takes as much disk.
MAX_INDEX_BYTES = 256 << 20
_OFFS = np.arange(8)
# The arrays of the file, in file order (8-byte ones first: each stays aligned), and their dtypes.
_LAYOUT = {"keys": ("U64",), "starts": ("I64",), "block_chars": ("I64",), "sa": ("I32", "I64"), "corpus": ("U8",)}
_DTYPES = {"U64": "<u8", "I64": "<i8", "I32": "<i4", "U8": "u1"}


class IndexTooLargeError(ConfigError):
    """A library above ``MAX_INDEX_BYTES`` of text, whose index is not built unless forced."""


def build_memory(text_bytes: int) -> int:
    """Bytes of memory building the index of ``text_bytes`` bytes of text needs (and its file size)."""
    return text_bytes * (13 if text_bytes <= np.iinfo(np.int32).max else 17)


def check_index_size(text_bytes: int, *, at_least: bool = False) -> None:
    """``IndexTooLargeError`` (one line: sizes, memory, how to force) above ``MAX_INDEX_BYTES``."""
    if text_bytes <= MAX_INDEX_BYTES:
        return
    size = f"{'at least ' if at_least else ''}{format_bytes(text_bytes)}"
    raise IndexTooLargeError(
        f"the library holds {size} of text, more than the {format_bytes(MAX_INDEX_BYTES)} that charpoet "
        f"indexes for attribution by default (building its index needs about {format_bytes(build_memory(text_bytes))} "
        f"of memory and as much disk); use --force-index (force=True in Python) to build it anyway")


def check_min_quote(min_len: int) -> int:
    """The shortest verbatim copy worth reporting; ``ConfigError`` below 1 character."""
    if min_len < 1:
        raise ConfigError(f"--min-quote must be >= 1, got {min_len}")
    return min_len


class CorpusIndex:
    """Suffix-array index of a library's sources for verbatim-span lookup."""

    def __init__(self, corpus: Any, sa: np.ndarray, starts: np.ndarray, block_chars: np.ndarray,
                 sources: tuple[SourceInfo, ...], fingerprint: str, keys: np.ndarray | None = None):
        # (n + CAP,) the corpus, padded with CAP bytes of 0xFF (an array, or any buffer: no copy)
        self.corpus = corpus if isinstance(corpus, np.ndarray) else np.frombuffer(corpus, dtype=np.uint8)
        self.n = len(self.corpus) - CAP
        self.sa = sa  # (n,) suffix array
        self.starts = starts  # (S + 1,) byte offset where each source begins; last = n
        self.block_chars = block_chars  # characters (and separators) before each _BLOCK-byte block
        self.sources = sources
        self.fingerprint = fingerprint
        self.keys = _first_words(self.corpus, sa) if keys is None else keys  # (n,) u64: first 8 bytes of each suffix

    @property
    def _bytes(self) -> memoryview:
        """The padded corpus as a buffer (no copy; slices compare equal to bytes)."""
        return memoryview(self.corpus)

    @property
    def mapped(self) -> bool:
        """True when the arrays are mapped from a file (``load``) rather than held in memory."""
        return isinstance(self.sa.base, mmap.mmap)

    # --- building, saving, loading ----------------------------------------------------------
    @classmethod
    def build(cls, library: Library, force: bool = False) -> CorpusIndex:
        """Index ``library``'s sources, read in bounded pieces (``Source.chunks``) into one buffer.

        Above ``MAX_INDEX_BYTES`` of UTF-8 text, ``IndexTooLargeError`` unless ``force``. The
        size is checked before reading, with the library's character count (exact for ASCII,
        a lower bound otherwise: a character is 1 to 4 bytes), and again while reading, with
        the bytes read so far, so a library that is too large is never read in full.
        """
        import pydivsufsort

        estimate = library.num_chars + len(library.sources)  # bytes >= characters; + one separator each
        if not force:
            check_index_size(estimate, at_least=True)
        data = bytearray(estimate + CAP)  # exact for ASCII; grown in place (realloc) for longer UTF-8
        starts = np.zeros(len(library.sources) + 1, dtype=np.int64)
        pos = 0
        for i, source in enumerate(library.sources):
            for chunk in source.chunks():
                piece = chunk.encode("utf-8")
                data[pos : pos + len(piece)] = piece  # a short slice at the end grows the buffer
                pos += len(piece)
                if not force:
                    check_index_size(pos, at_least=True)
            data[pos : pos + 1] = bytes([SEP])
            pos += 1
            starts[i + 1] = pos
        n = pos
        if not force:
            check_index_size(n)
        data[n : n + CAP] = bytes([SEP]) * CAP
        del data[n + CAP :]  # the estimate's spare bytes, if any
        corpus = np.frombuffer(data, dtype=np.uint8)  # (n + CAP,) the only copy of the text kept
        is_char = (corpus[:n] & 0xC0) != 0x80  # starts a character
        per_block = np.add.reduceat(is_char, np.arange(0, n, _BLOCK), dtype=np.int64) if n else np.zeros(0, np.int64)
        block_chars = np.concatenate([[0], np.cumsum(per_block)]).astype(np.int64)
        del is_char
        sa = pydivsufsort.divsufsort(corpus[:n]) if n else np.zeros(0, dtype=np.int32)  # a view: no copy
        sources = tuple(SourceInfo(s.name, f"{s.title}, by {s.author}" if s.author else s.title)
                        for s in library.sources)
        return cls(corpus, sa, starts, block_chars, sources, library.fingerprint())

    def save(self, path: str | Path) -> None:
        """Write the index as a safetensors file (module docstring), atomically and in pieces."""
        meta = {"format": _FORMAT, "fingerprint": self.fingerprint,
                "sources": json.dumps([[s.name, s.title] for s in self.sources], ensure_ascii=False)}
        header: dict[str, Any] = {"__metadata__": meta}
        arrays, offset = [], 0
        for name, dtypes in _LAYOUT.items():
            dtype = "I32" if name == "sa" and self.sa.dtype.itemsize == 4 else dtypes[-1]
            array = np.ascontiguousarray(getattr(self, name), dtype=_DTYPES[dtype])  # no copy on little-endian
            header[name] = {"dtype": dtype, "shape": [len(array)], "data_offsets": [offset, offset + array.nbytes]}
            arrays.append(memoryview(array).cast("B"))
            offset += array.nbytes
        head = json.dumps(header, ensure_ascii=False).encode("utf-8")
        head += b" " * (-len(head) % 8)  # the arrays start 8-byte aligned
        _atomic_write_pieces(path, [len(head).to_bytes(8, "little"), head, *arrays])

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None) -> CorpusIndex:
        """Map an index file; ``CheckpointError`` if it is unreadable, of another format or, given
        ``fingerprint``, built from other sources. The file may be replaced while mapped, never
        rewritten in place (reading a page cut off by truncation is a SIGBUS); charpoet only replaces it."""
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head_len = int.from_bytes(f.read(8), "little")
                if size < 8 or head_len > min(size - 8, 100 << 20):
                    raise ValueError("not a safetensors file")
                header = json.loads(f.read(head_len))
                meta = header.get("__metadata__") or {}
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"not a {_FORMAT} file")
                if fingerprint is not None and meta.get("fingerprint") != fingerprint:
                    raise ValueError("built from other sources")
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            arrays = {}
            for name, dtypes in _LAYOUT.items():
                entry = header[name]
                begin, end = (int(x) for x in entry["data_offsets"])
                dtype = np.dtype(_DTYPES[entry["dtype"]]) if entry["dtype"] in dtypes else None
                count, rest = divmod(end - begin, dtype.itemsize if dtype is not None else 1)
                if dtype is None or rest or not 0 <= begin <= end <= size - 8 - head_len or entry["shape"] != [count]:
                    raise ValueError(f"bad entry for {name}")
                arrays[name] = np.ndarray((count,), dtype=dtype, buffer=mapped, offset=8 + head_len + begin)
            sources = tuple(SourceInfo(name, title) for name, title in json.loads(meta["sources"]))
            n = len(arrays["sa"])
            if len(arrays["keys"]) != n or len(arrays["corpus"]) != n + CAP or len(arrays["starts"]) != len(sources) + 1:
                raise ValueError("arrays of inconsistent sizes")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"attribution index {path} is unreadable: {exc}") from None
        return cls(arrays["corpus"], arrays["sa"], arrays["starts"], arrays["block_chars"], sources,
                   meta["fingerprint"], keys=arrays["keys"])

    @property
    def nbytes(self) -> int:
        """Bytes of the index arrays (``rank`` too, once a long match has built it); for a loaded
        index they are mapped from its file, and only ``rank`` is held in memory."""
        arrays = [self.sa, self.keys, self.starts, self.block_chars, self.corpus]
        if "rank" in self.__dict__:
            arrays.append(self.rank)
        return sum(a.nbytes for a in arrays)

    # --- lookup ---------------------------------------------------------------------------
    def attribute(self, text: str, min_len: int = 20) -> Attribution:
        """Greedy verbatim spans of ``text`` (at least ``min_len`` characters) and metrics."""
        check_min_quote(min_len)
        query = text.encode("utf-8")
        qbuf = np.frombuffer(query + bytes(CAP), dtype=np.uint8)
        char_pos = np.flatnonzero((qbuf[: len(query)] & 0xC0) != 0x80)  # byte offset of each character
        char_end = np.append(char_pos[1:], len(query))  # byte offset where each character ends
        match_bytes = self._longest_matches(qbuf, char_pos, len(query))
        long = np.flatnonzero((match_bytes >= CAP) & (char_pos + CAP < len(query)))  # may go on past CAP
        if len(long):
            match_bytes[long] = self._long_matches(qbuf, len(query), char_pos, match_bytes, long)
        # Characters fully inside each match: a match may stop in the middle of a character.
        match_chars = np.searchsorted(char_end, char_pos + match_bytes, side="right") - np.arange(len(char_pos))
        spans = []
        i, m = 0, len(char_pos)
        while i < m:
            length = int(match_chars[i])
            if length >= min_len:
                start_byte = int(char_pos[i])
                end_byte = int(char_end[i + length - 1])
                spans.append(self._credit(query[start_byte:end_byte], i, i + length))
                i += length
            else:
                i += 1
        return Attribution(text, tuple(spans), self.sources, min_len, _novelty(match_chars))

    def _longest_matches(self, qbuf: np.ndarray, qpos: np.ndarray, qlen: int) -> np.ndarray:
        """Longest match in bytes (capped at CAP) of every query suffix qbuf[qpos:]."""
        n = self.n
        # Level 1: suffixes whose first 8 bytes equal the query's, by one searchsorted on the keys.
        lo, hi = self._key_range(_words(qbuf, qpos))
        # Level 2: within that range, the lower bound of the query compared from byte 8 on.
        active = np.flatnonzero(lo < hi)
        while len(active):
            mid = (lo[active] + hi[active]) // 2
            sign, _ = self._compare(qbuf, qpos[active], self.sa[mid], start=8)
            greater = sign > 0
            lo[active[greater]] = mid[greater] + 1
            hi[active[~greater]] = mid[~greater]
            active = active[lo[active] < hi[active]]
        best = np.zeros(len(qpos), dtype=np.int64)
        for neighbour in (lo - 1, lo):  # the longest match is next to the insertion point
            rows = np.flatnonzero((neighbour >= 0) & (neighbour < n))
            _, lcp = self._compare(qbuf, qpos[rows], self.sa[neighbour[rows]])
            best[rows] = np.maximum(best[rows], lcp)
        return np.minimum(best, qlen - qpos)

    def _compare(self, qbuf: np.ndarray, qpos: np.ndarray, cpos: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Compare query suffixes with corpus suffixes over CAP bytes: (sign, common prefix length).

        Bytes before ``start`` are known to be equal.
        """
        k = len(qpos)
        sign = np.zeros(k, dtype=np.int8)
        lcp = np.full(k, CAP, dtype=np.int64)
        rows = np.arange(k)
        for depth in range(start, CAP, 8):
            q = qbuf[qpos[rows, None] + depth + _OFFS]  # (r, 8)
            c = self.corpus[cpos[rows, None] + depth + _OFFS]  # (r, 8)
            differ = q != c
            decided = differ.any(axis=1)
            if decided.any():
                r = rows[decided]
                first = differ[decided].argmax(axis=1)
                pick = np.arange(len(r))
                lcp[r] = depth + first
                sign[r] = np.where(q[decided][pick, first] > c[decided][pick, first], 1, -1)
                rows = rows[~decided]
            if not len(rows):
                break
        return sign, lcp

    def _key_range(self, qkeys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows [lo, hi) of ``sa`` whose suffixes start with each 8-byte key.

        Sorted queries make searchsorted walk the 8n-byte key array in order: ~4x faster.
        """
        order = np.argsort(qkeys, kind="stable")
        lo, hi = np.empty(len(qkeys), dtype=np.int64), np.empty(len(qkeys), dtype=np.int64)
        lo[order] = np.searchsorted(self.keys, qkeys[order], side="left")
        hi[order] = np.searchsorted(self.keys, qkeys[order], side="right")
        return lo, hi

    @cached_property
    def rank(self) -> np.ndarray:
        """(n,) inverse suffix array, rank[sa[j]] = j; built on the first match longer than CAP."""
        rank = np.empty(self.n, dtype=self.sa.dtype)
        rank[self.sa] = np.arange(self.n, dtype=self.sa.dtype)
        return rank

    def _bound(self, lo: np.ndarray, hi: np.ndarray, shift: np.ndarray | int, target: np.ndarray) -> np.ndarray:
        """Per row, the first r in [lo, hi) with rank[sa[r] + shift] >= target (hi if none).

        Only valid where the suffixes of rows [lo, hi) share their first ``shift`` bytes, so
        that rank[sa[r] + shift] grows with r.
        """
        lo, hi = lo.copy(), hi.copy()
        shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), lo.shape)
        active = np.flatnonzero(lo < hi)
        while len(active):
            mid = (lo[active] + hi[active]) // 2
            below = self.rank[self.sa[mid] + shift[active]] < target[active]
            lo[active[below]] = mid[below] + 1
            hi[active[~below]] = mid[~below]
            active = active[lo[active] < hi[active]]
        return lo

    def _long_matches(self, qbuf: np.ndarray, qlen: int, char_pos: np.ndarray, match_bytes: np.ndarray,
                      long: np.ndarray) -> np.ndarray:
        """Full length in bytes of the matches at characters ``long``, whose first CAP bytes match.

        Lifting (module docstring) needs I_d(x) at every byte x inside these matches. A run of
        long characters ends before a character whose match is exact (shorter than CAP or cut
        by the end of the query), and match ends never move left, so that character's match
        end bounds the bytes of the whole run.
        """
        breaks = long[1:] != long[:-1] + 1
        first, follow = long[np.insert(breaks, 0, True)], long[np.append(breaks, True)] + 1  # of each run
        run_end = np.full(len(follow), qlen, dtype=np.int64)
        inside = follow < len(char_pos)
        run_end[inside] = char_pos[follow[inside]] + match_bytes[follow[inside]]
        cover = np.zeros(qlen + 1, dtype=np.int64)
        np.add.at(cover, char_pos[first], 1)
        np.add.at(cover, run_end, -1)
        x = np.flatnonzero(np.cumsum(cover[:qlen]) > 0)  # bytes inside long matches
        x = x[x + 8 <= qlen]
        lo, hi = self._key_range(_words(qbuf, x))
        keep = lo < hi
        levels = [(x[keep], lo[keep], hi[keep])]  # levels[k]: the x with I_d(x) non-empty, d = 8 << k
        while len(levels[-1][0]):
            (x, lo, hi), d = levels[-1], 8 << (len(levels) - 1)
            at = np.minimum(np.searchsorted(x, x + d), len(x) - 1)
            rows = np.flatnonzero(x[at] == x + d)
            at = at[rows]
            lo2 = self._bound(lo[rows], hi[rows], d, lo[at])
            hi2 = self._bound(lo2, hi[rows], d, hi[at])
            keep = lo2 < hi2
            levels.append((x[rows[keep]], lo2[keep], hi2[keep]))
        # Descend: the longest whole-8-byte-block prefix, and its interval [a, b).
        start = char_pos[long]
        length = np.zeros(len(long), dtype=np.int64)
        a, b = np.zeros(len(long), dtype=np.int64), np.full(len(long), self.n, dtype=np.int64)
        for k in range(len(levels) - 2, -1, -1):
            x, lo, hi = levels[k]
            here = start + length
            at = np.minimum(np.searchsorted(x, here), len(x) - 1)
            rows = np.flatnonzero(x[at] == here)
            at, shift = at[rows], length[rows]
            a2, b2, go_on = lo[at], hi[at], np.flatnonzero(shift > 0)  # shift 0: I_d(start) itself
            a2[go_on] = self._bound(a[rows[go_on]], b[rows[go_on]], shift[go_on], lo[at[go_on]])
            b2[go_on] = self._bound(a2[go_on], b[rows[go_on]], shift[go_on], hi[at[go_on]])
            grow = a2 < b2
            rows = rows[grow]
            a[rows], b[rows], length[rows] = a2[grow], b2[grow], length[rows] + (8 << k)
        # The rest (< 8 bytes): the best of the two interval rows around the query's rank.
        here = start + length
        below, _ = self._key_range(_words(qbuf, here))
        r = self._bound(a, b, length, below)
        best = np.zeros(len(long), dtype=np.int64)
        for neighbour in (r - 1, r):
            rows = np.flatnonzero((neighbour >= a) & (neighbour < b))
            _, lcp = self._compare(qbuf, here[rows], self.sa[neighbour[rows]] + length[rows])
            best[rows] = np.maximum(best[rows], lcp)
        return np.minimum(length + best, qlen - start)

    def _range(self, pattern: bytes) -> tuple[int, int]:
        """Suffix-array range of suffixes starting with ``pattern``."""
        size, data = len(pattern), self._bytes
        a = bisect.bisect_left(self.sa, pattern, 0, self.n, key=lambda j: data[j : j + size].tobytes())
        b = bisect.bisect_right(self.sa, pattern, a, self.n, key=lambda j: data[j : j + size].tobytes())
        return a, b

    def _credit(self, passage: bytes, start: int, end: int) -> Span:
        """The span of ``passage``: first source (library order) containing it, first offset there."""
        a, b = self._range(passage)
        positions = np.asarray(self.sa[a:b], dtype=np.int64)
        source_of = np.searchsorted(self.starts, positions, side="right") - 1
        source = int(source_of.min())
        first = int(positions[source_of == source].min())
        offset = self._chars_before(first) - self._chars_before(int(self.starts[source]))
        return Span(start, end, source, offset, int(len(np.unique(source_of))) - 1)

    def _chars_before(self, pos: int) -> int:
        """Characters (separators included) before byte ``pos`` of the corpus."""
        block = pos // _BLOCK
        tail = self.corpus[block * _BLOCK : pos]
        return int(self.block_chars[block]) + int(np.count_nonzero((tail & 0xC0) != 0x80))


def index_for_run(run_dir: str | Path, force: bool = False) -> CorpusIndex:
    """The index of a run's sources, built once and cached in the run directory (``INDEX_FILE``).

    The cache records the library's fingerprint, so it is rebuilt whenever the sources change
    (or the cache is missing, unreadable or of an older format). A cached index is mapped, not
    read, whatever its size; building one above ``MAX_INDEX_BYTES`` of text needs ``force``
    (``IndexTooLargeError`` otherwise). A run that cannot be written to is indexed in memory.
    """
    from charpoet.checkpoint import RunDir

    run = Path(run_dir)
    try:
        library = RunDir(run).read_library()
    except CheckpointError as exc:
        raise CheckpointError(f"no sources to attribute against in {run}: {exc}") from None
    fingerprint = library.fingerprint()
    cache = run / INDEX_FILE
    try:
        return CorpusIndex.load(cache, fingerprint=fingerprint)
    except CheckpointError:
        pass  # missing, stale or damaged: build below
    index = CorpusIndex.build(library, force=force)
    del library
    try:
        index.save(cache)
        return CorpusIndex.load(cache, fingerprint=fingerprint)  # mapped: the built arrays are freed
    except (OSError, CheckpointError):
        return index  # a read-only run still attributes, just without a cache


def _atomic_write_pieces(path: str | Path, pieces: Iterable[bytes | memoryview], step: int = 1 << 26) -> None:
    """``atomic_write_bytes`` for data given in pieces, none of them copied: temp file in the same
    directory, fsync, rename; a failed write raises its ``OSError`` and removes the temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view[:step]):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _words(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 8 bytes at each position as big-endian uint64 (so integer order = byte order)."""
    return buf[pos[:, None] + _OFFS].view(">u8").ravel().astype(np.uint64)


def _first_words(corpus: np.ndarray, sa: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """First 8 bytes of every suffix in suffix-array order, in chunks to bound memory."""
    keys = np.empty(len(sa), dtype=np.uint64)
    for i in range(0, len(sa), chunk):
        keys[i : i + chunk] = _words(corpus, np.asarray(sa[i : i + chunk], dtype=np.int64))
    return keys


def _novelty(match_chars: np.ndarray) -> tuple[float, ...]:
    """Share of length-L substrings (L = 1..50) that occur in no source; NaN if the text is shorter."""
    m = len(match_chars)
    out = []
    for length in range(1, NOVELTY_MAX_LEN + 1):
        count = m - length + 1
        out.append(float(np.count_nonzero(match_chars[:count] < length)) / count if count > 0 else math.nan)
    return tuple(out)
