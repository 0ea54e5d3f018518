"""Gutenberg cleaner benchmark: ``clean_gutenberg`` against c-w/gutenberg's ``strip_headers``.

    python benchmarks/gutenberg_clean.py [--raw DIR] [--fixture FILE] [--repeat N]

For every raw book in ``shared/corpora/gutenberg/raw`` (decoded once with
``charpoet.corpus.files.decode_text``), both cleaners run on the same text: ours on the
``str``, ``gutenbergpy.textget.strip_headers`` (a verbatim copy of c-w/gutenberg's
``strip_headers`` and its marker lists) on its UTF-8 bytes, as that function expects.
Each output is mapped back to input line numbers and scored against the hand-written truth
in ``tests/fixtures/gutenberg_bodies.json``:

* ``S``/``E``: the first/last non-blank output line is the book's expected first/last line;
* ``PG``: boilerplate left in the output ("Project Gutenberg", "gutenberg.org/.net",
  "small print", "End of (the) Project"); the expected bodies have none;
* ``lic``: licence words ("license", "trademark", "royalty", "donation", "refund") beyond
  those in the expected body;
* ``notes``: transcriber's-note blocks of the fixture with a line left in the output;
* ``extra``: other non-blank lines kept from outside the expected body (headers, credits,
  licence); ``lost``: non-blank lines of the expected body missing from the output;
* ``ms``: best of ``--repeat`` runs.

A book is "exactly right" when S and E hold and PG, notes, extra and lost are all zero.
gutenbergpy is optional: without it only our cleaner is scored. It needs ``future`` and
``chardet`` to import ``textget`` (its other dependencies, lxml and pymongo, serve its
catalogue cache, which is not used here).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from charpoet.corpus.files import decode_text
from charpoet.corpus.gutenberg_clean import clean_gutenberg

from machine import cpu_description

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RAW = ROOT.parent / "shared" / "corpora" / "gutenberg" / "raw"
DEFAULT_FIXTURE = ROOT / "tests" / "fixtures" / "gutenberg_bodies.json"
BOILERPLATE_RE = re.compile(
    r"project\s+gutenberg|gutenberg\.(?:org|net)|small\s+print|end\s+of\s+(?:the\s+)?project", re.I)
LICENCE_RE = re.compile(r"\blicen[cs]e|\btrademark|\broyalt|\bdonation|\brefund", re.I)
COLUMNS = ("S", "E", "PG", "lic", "notes", "extra", "lost", "ms")


def load_strip_headers() -> tuple[Callable[[bytes], bytes] | None, str]:
    try:
        from gutenbergpy.textget import strip_headers
    except ImportError as e:
        return None, f"gutenbergpy is not installed ({e}); only charpoet's cleaner is scored"
    from importlib.metadata import version

    return strip_headers, f"gutenbergpy {version('gutenbergpy')}"


def input_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def ours(text: str, lines: list[str]) -> tuple[str, list[int]]:
    """Our output and the 1-based input line numbers of its lines."""
    result = clean_gutenberg(text)
    gone = {n for r in result.removals for n in range(r.first_line, r.last_line + 1)}
    return result.text, [n for n in range(1, len(lines) + 1) if n not in gone]


def align(lines: list[str], out: list[str]) -> list[int]:
    """Input line numbers of ``out``, a subsequence of ``lines``: anchor the start, then greedy."""
    probe = out[:20]
    start = 0
    for s in range(len(lines) - len(probe) + 1):
        if lines[s:s + len(probe)] == probe:
            start = s
            break
    numbers, i = [], start
    for line in out:
        while i < len(lines) and lines[i] != line:
            i += 1
        if i == len(lines):
            break
        numbers.append(i + 1)
        i += 1
    return numbers


def theirs(strip_headers: Callable[[bytes], bytes], text: str,
           lines: list[str]) -> tuple[str, list[int]]:
    out = strip_headers(text.encode("utf-8")).decode("utf-8")
    return out, align(lines, out.split("\n"))


def best_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def score(lines: list[str], out: str, kept: list[int], truth: dict) -> dict[str, object]:
    first, last = truth["first_line"], truth["last_line"]
    notes = [set(range(a, b + 1)) for a, b in truth["note_blocks"]]
    in_notes = set().union(*notes)
    body = {n for n in range(first, last + 1) if lines[n - 1].strip() and n not in in_notes}
    kept_text = {n for n in kept if lines[n - 1].strip()}
    shown = [x for x in out.split("\n") if x.strip()]
    expected_licence = sum(len(LICENCE_RE.findall(lines[n - 1])) for n in body)
    return {
        "S": bool(shown) and shown[0] == truth["first"],
        "E": bool(shown) and shown[-1] == truth["last"],
        "PG": len(BOILERPLATE_RE.findall(out)),
        "lic": max(0, len(LICENCE_RE.findall(out)) - expected_licence),
        "notes": sum(1 for block in notes if block & kept_text),
        "extra": len(kept_text - body - in_notes),
        "lost": len(body - kept_text),
    }


def exact(s: dict[str, object]) -> bool:
    return bool(s["S"] and s["E"]) and s["PG"] == s["notes"] == s["extra"] == s["lost"] == 0


def cells(s: dict[str, object]) -> str:
    mark = {True: "ok", False: "NO"}
    return (f"{mark[bool(s['S'])]:>2} {mark[bool(s['E'])]:>2} {s['PG']:>4} {s['lic']:>4} "
            f"{s['notes']:>5} {s['extra']:>5} {s['lost']:>5} {s['ms']:>6.1f}")


def summary(name: str, scores: list[dict[str, object]]) -> str:
    total = {c: sum(float(s[c]) for s in scores) for c in COLUMNS}
    return (f"{name:12} exactly right {sum(map(exact, scores)):>2}/{len(scores)}; start right "
            f"{int(total['S'])}, end right {int(total['E'])}; boilerplate left {int(total['PG'])}, "
            f"licence words {int(total['lic'])}, notes left {int(total['notes'])}, extra lines "
            f"{int(total['extra'])}, body lines lost {int(total['lost'])}; "
            f"{total['ms'] / len(scores):.1f} ms/file ({total['ms']:.0f} ms in all)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(cpu_description(), flush=True)
    if not args.raw.is_dir():
        print(f"raw Gutenberg books not found at {args.raw}", file=sys.stderr)
        return 2
    truth = json.loads(args.fixture.read_text(encoding="utf-8"))["books"]
    strip_headers, about = load_strip_headers()
    if strip_headers is None:
        print(f"NOTE: {about}")
    rival = f" vs {about}" if strip_headers is not None else ""
    print(f"charpoet clean_gutenberg{rival}; {len(truth)} books from {args.raw}")
    head = " ".join(f"{c:>{w}}" for c, w in zip(COLUMNS, (2, 2, 4, 4, 5, 5, 5, 6)))
    print(f"{'book':44} | charpoet: {head}" + (f" | gutenbergpy: {head}" if strip_headers else ""))
    mine: list[dict[str, object]] = []
    other: list[dict[str, object]] = []
    for name in sorted(truth):
        text = decode_text((args.raw / name).read_bytes(), name, warn_legacy=False)
        lines = input_lines(text)
        out, kept = ours(text, lines)
        s = score(lines, out, kept, truth[name])
        s["ms"] = best_ms(lambda: clean_gutenberg(text), args.repeat)
        mine.append(s)
        row = f"{name[:-4][:44]:44} | {'':10}{cells(s)}"
        if strip_headers is not None:
            out, kept = theirs(strip_headers, text, lines)
            t = score(lines, out, kept, truth[name])
            data = text.encode("utf-8")
            t["ms"] = best_ms(lambda: strip_headers(data), args.repeat)
            other.append(t)
            row += f" | {'':13}{cells(t)}"
        print(row)
    print()
    print(summary("charpoet", mine))
    if strip_headers is not None:
        print(summary("gutenbergpy", other))
    else:
        print(about)
    return 0


if __name__ == "__main__":
    sys.exit(main())
