"""Source-attribution benchmark: the suffix-array ``CorpusIndex`` against the seeds' scan.

    python benchmarks/attribution.py [--skip-seeds] [--query FILE] [--corpora DIR]

For two libraries, tiny shakespeare (1 MB) and moby.train + moby.valid + combined.test
(about 10 MB), it prints the index build time (median of 3 builds, 2 for the big one), the
peak memory of a build (in a fresh child process: RSS growth and tracemalloc peak),
``index.nbytes``, the size of the saved index, and the time of ``index.attribute(query, 20)``
on a 10,000-character query (median of 20 runs after a warm-up).

The default query is a seeded mixture: text that is not in the library (shuffled words of
the corpus for shakespeare; ``moby.test.txt[50000:60000]``, Melville text held out of the
moby library) interleaved with verbatim copies of 20-150 characters from random offsets of
the library. ``--query FILE`` uses that file's text instead.

A second, long query (two verbatim copies of 5,000 characters from random offsets, joined
by one character found in no source) is attributed with min_len 300, above the search's
256-byte cap (``CAP``): the line says whether each copy came back as one whole span with
its source and offset (checked with ``str.find``), how long that took, and the memory of
the rank array that the index builds at its first match longer than ``CAP`` bytes.

The seeds' method (ml-indie-tools 0.12.42 ``Text_Dataset.source_highlight``) is re-run as
``seeds_scan`` on the same query and sources; its spans must be identical (start, end,
source, source offset). A final line holds all figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charpoet.attribution_reference import seeds_scan
from machine import cpu_description

DEFAULT_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
QUERY_CHARS = 10_000
LONG_CHARS, LONG_MIN_LEN = 5_000, 300  # the long-quote check: copies of 5,000 characters, min_len > CAP bytes
TARGETS = {"build_s": 5.0, "build_mb": 200.0, "attribute_ms": 50.0, "speedup": 100.0}

_CHILD = """
import contextlib, json, sys, tracemalloc
import numpy, pydivsufsort
from charpoet.attribution import CorpusIndex
from charpoet.corpus import library_from_paths
def status():  # VmHWM (peak RSS) and VmRSS, in bytes; /proc, since ru_maxrss survives exec from the parent
    return {k: int(v.split()[0]) * 1024 for k, v in (l.split(":") for l in open("/proc/self/status"))
            if k in ("VmHWM", "VmRSS")}
library = library_from_paths(sys.argv[1:])
with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak to the current RSS
before = status()
tracemalloc.start()
index = CorpusIndex.build(library)
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"rss_growth": status()["VmHWM"] - before["VmRSS"], "peak_grew": status()["VmHWM"] > before["VmHWM"],
                  "traced_peak": traced, "nbytes": index.nbytes}))
"""


def mixed_query(sources: list[str], novel: str | None, seed: int = 0, size: int = QUERY_CHARS) -> str:
    """Novel text (``novel``, or shuffled words of the sources) interleaved with verbatim copies."""
    rng = random.Random(seed)
    if novel is None:
        words = re.findall(r"\S+\s+", sources[0])
        novel = "".join(rng.choice(words) for _ in range(size))  # more than enough
    weights = [len(s) for s in sources]
    parts, used, pos = [], 0, 0
    while used < size:
        n = rng.randint(80, 400)
        parts.append(novel[pos : pos + n])
        pos += n
        source = rng.choices(sources, weights)[0]
        k = rng.randint(20, 150)
        start = rng.randrange(len(source) - k)
        parts.append(source[start : start + k])
        used += n + k
    return "".join(parts)[:size]


def long_query(sources: list[str], seed: int = 0) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Two copies of LONG_CHARS characters joined by a character found in no source, and the
    spans expected: each copy whole, credited to the first source holding it, at its first offset."""
    rng = random.Random(seed)
    joint = next(c for c in "\u2603\u2604\u2605\u2606" if not any(c in s for s in sources))
    copies = []
    for _ in range(2):
        source = rng.choices(sources, [len(s) for s in sources])[0]
        start = rng.randrange(len(source) - LONG_CHARS)
        copies.append(source[start : start + LONG_CHARS])
    expected = []
    for begin, copy in ((0, copies[0]), (LONG_CHARS + 1, copies[1])):
        first = next(k for k, s in enumerate(sources) if copy in s)
        expected.append((begin, begin + LONG_CHARS, first, sources[first].find(copy)))
    return copies[0] + joint + copies[1], expected


def build_memory(paths: list[Path]) -> dict:
    """Build once in a fresh interpreter and report its memory (bytes)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def bench(name: str, paths: list[Path], novel: str | None, query: str | None, args) -> dict:
    from charpoet.attribution import CorpusIndex
    from charpoet.corpus import library_from_paths

    library = library_from_paths(paths)
    sources = [s.text for s in library.sources]
    mb_text = sum(len(s.encode("utf-8")) for s in sources) / 1e6
    print(f"\n== {name}: {len(sources)} source(s), {library.num_chars:,} characters ({mb_text:.1f} MB)")

    times = []
    for _ in range(3 if mb_text < 5 else 2):
        t0 = time.perf_counter()
        index = CorpusIndex.build(library)
        times.append(time.perf_counter() - t0)
    build_s = statistics.median(times)
    mem = build_memory(paths)
    build_mb = max(mem["rss_growth"], mem["traced_peak"]) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.safetensors"
        index.save(path)
        disk_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        CorpusIndex.load(path)
        load_s = time.perf_counter() - t0
    print(f"build:   {build_s:.2f} s (median of {len(times)}: {', '.join(f'{t:.2f}' for t in times)})"
          f"   target <= {TARGETS['build_s']:.0f} s for 10 MB: {mark(build_s <= TARGETS['build_s'])}")
    print(f"memory:  build peak {build_mb:.0f} MB (RSS +{mem['rss_growth'] / 1e6:.0f} MB"
          f"{'' if mem['peak_grew'] else ', upper bound'}, tracemalloc peak {mem['traced_peak'] / 1e6:.0f} MB)"
          f"   target <= {TARGETS['build_mb']:.0f} MB: {mark(build_mb <= TARGETS['build_mb'])}")
    nbytes = index.nbytes  # before a long match adds the rank array
    print(f"index:   nbytes {nbytes / 1e6:.0f} MB in memory, {disk_mb:.0f} MB on disk, load {load_s:.2f} s")

    if query is None:
        query = mixed_query(sources, novel, seed=args.seed)
    per_10k = QUERY_CHARS / max(len(query), 1)
    result = index.attribute(query, args.min_len)  # warm-up
    runs = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        result = index.attribute(query, args.min_len)
        runs.append(time.perf_counter() - t0)
    attr_ms = statistics.median(runs) * 1000
    longest = result.longest
    print(f"query:   {len(query):,} characters, {len(result.spans)} spans >= {args.min_len}, copy rate "
          f"{result.copy_rate:.1%}, longest {longest.length if longest else 0}, novelty(20) {result.novelty[19]:.3f}")
    print(f"attribute: {attr_ms:.1f} ms (median of {args.runs}; min {min(runs) * 1000:.1f}, max {max(runs) * 1000:.1f})"
          f", {attr_ms * per_10k:.1f} ms per 10,000 characters"
          f"   target <= {TARGETS['attribute_ms']:.0f} ms: {mark(attr_ms * per_10k <= TARGETS['attribute_ms'])}")

    long, expected = long_query(sources, seed=args.seed)
    index.attribute(long, LONG_MIN_LEN)  # warm-up
    long_runs = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        long_result = index.attribute(long, LONG_MIN_LEN)
        long_runs.append(time.perf_counter() - t0)
    long_ms = statistics.median(long_runs) * 1000
    whole = [(s.start, s.end, s.source, s.source_offset) for s in long_result.spans] == expected
    print(f"long:    2 copies of {LONG_CHARS:,} characters, min_len {LONG_MIN_LEN}: found whole: "
          f"{'yes' if whole else 'no'} ({len(long_result.spans)} spans)   "
          f"attribute {long_ms:.1f} ms (median of {args.runs}); rank array +{(index.nbytes - nbytes) / 1e6:.0f} MB")

    figures = {"library": name, "sources": len(sources), "chars": library.num_chars, "mb": round(mb_text, 2),
               "build_s": round(build_s, 3), "build_peak_mb": round(build_mb, 1),
               "build_rss_growth_mb": round(mem["rss_growth"] / 1e6, 1),
               "build_tracemalloc_peak_mb": round(mem["traced_peak"] / 1e6, 1),
               "nbytes_mb": round(nbytes / 1e6, 1), "disk_mb": round(disk_mb, 1), "load_s": round(load_s, 3),
               "query_chars": len(query), "spans": len(result.spans), "copy_rate": round(result.copy_rate, 4),
               "attribute_ms": round(attr_ms, 2), "attribute_ms_per_10k": round(attr_ms * per_10k, 2),
               "long_whole": whole, "long_attribute_ms": round(long_ms, 2),
               "rank_mb": round((index.nbytes - nbytes) / 1e6, 1)}
    if not args.skip_seeds:
        t0 = time.perf_counter()
        expected = seeds_scan(query, sources, args.min_len, count_others=False)
        seeds_s = time.perf_counter() - t0
        got = [(s.start, s.end, s.source, s.source_offset) for s in result.spans]
        same = got == expected
        speedup = seeds_s * 1000 / attr_ms
        print(f"seeds:   {seeds_s:.1f} s, {len(expected)} spans; identical spans: {'yes' if same else 'no'}"
              f"   speed-up {speedup:,.0f}x   target >= {TARGETS['speedup']:.0f}x: {mark(speedup >= TARGETS['speedup'])}")
        if not same:
            diff = next((k for k, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            print(f"  first difference at span {diff}: index {got[diff:diff + 1]} seeds {expected[diff:diff + 1]}")
        figures.update(seeds_s=round(seeds_s, 2), identical=same, speedup=round(speedup, 1))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA, help="folder holding the shared corpora")
    parser.add_argument("--query", type=Path, help="text to attribute (default: a seeded 10,000-character mixture)")
    parser.add_argument("--skip-seeds", action="store_true", help="don't time the seeds' scan")
    parser.add_argument("--min-len", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(cpu_description(), flush=True)

    query = args.query.read_text(encoding="utf-8") if args.query else None
    scifi = args.corpora / "scifi"
    heldout = (scifi / "moby.test.txt").read_text(encoding="utf-8")[50000:60000]
    libraries = [
        ("tinyshakespeare", [args.corpora / "tinyshakespeare.txt"], None),
        ("moby+combined", [scifi / "moby.train.txt", scifi / "moby.valid.txt", scifi / "combined.test.c5bf0fa.txt"],
         heldout),
    ]
    print("targets: build <= 5 s and <= 200 MB for 10 MB; attribute <= 50 ms per 10,000 characters; "
          "identical spans; >= 100x faster than the seeds' scan")
    results = [bench(name, paths, novel, query, args) for name, paths, novel in libraries]
    print(json.dumps({"benchmark": "attribution", "min_len": args.min_len, "results": results}))


if __name__ == "__main__":
    main()
