"""In-browser attribution (``web/static/attribution.js`` over ``site_index`` files) equals Python's.

The JavaScript runs in node: a small driver imports the module, loads the index files from a
temporary directory and attributes a list of texts; every result must equal
``attribution_json(CorpusIndex.build(library).attribute(text, min_len))`` exactly.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from charpoet.attribution import CorpusIndex
from charpoet.corpus import Library, Source, library_from_paths
from charpoet.render import palette
from charpoet.site_index import MAX_SITE_LIBRARY_BYTES, build_site_index, library_bytes, site_index_bytes
from charpoet.web.service import attribution_json
from conftest import TINY_LINES, make_text

MODULE = Path(__file__).resolve().parents[1] / "src" / "charpoet" / "web" / "static" / "attribution.js"

DRIVER = """\
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
const { loadIndex, attribute, palette } = await import(process.argv[2]);
const job = JSON.parse(readFileSync(process.argv[3], "utf8"));
const readFile = async (url) => {
  const b = readFileSync(fileURLToPath(url));
  return { ok: true, status: 200, arrayBuffer: async () => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) };
};
const t0 = performance.now();
const index = await loadIndex(pathToFileURL(job.dir).href, readFile);  // a folder URL without its "/"
const loadMs = performance.now() - t0;
const results = [], ms = [];
for (const [text, minLen] of job.cases) {
  const t = performance.now();
  results.push(attribute(index, text, minLen));
  ms.push(performance.now() - t);
}
// The same index from the files' contents (strings and Buffers, as a page could hold them).
const read = (name) => readFileSync(job.dir + "/" + name);
const sa = read("index.bin"), unaligned = new Uint8Array(sa.length + 1);
unaligned.set(sa, 1);  // not on a 4-byte boundary: read through a DataView
const again = await loadIndex({ "sources.json": read("sources.json").toString("utf8"), "corpus.bin": read("corpus.bin"),
                                "index.bin": unaligned.subarray(1) });
for (const [k, [text, minLen]] of job.cases.entries()) {
  if (JSON.stringify(attribute(again, text, minLen)) !== JSON.stringify(results[k])) throw new Error("object form differs");
}
writeFileSync(process.argv[4], JSON.stringify({ results, ms, loadMs, palette: job.palette.map((n) => palette(n)) }));
"""


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node is required for the in-browser attribution tests when CI=true")
        pytest.skip("node not found: the in-browser attribution is not tested")
    return path


def run_js(node: str, tmp: Path, library: Library, cases: list[tuple[str, int]], palette_sizes=()) -> dict:
    site = tmp / "site"
    site.mkdir()
    for name, data in build_site_index(library).items():
        (site / name).write_bytes(data)
    (tmp / "driver.mjs").write_text(DRIVER, encoding="utf-8")
    (tmp / "job.json").write_text(json.dumps({"dir": str(site), "cases": cases, "palette": list(palette_sizes)}))
    proc = subprocess.run([node, str(tmp / "driver.mjs"), MODULE.as_uri(), str(tmp / "job.json"), str(tmp / "out.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp / "out.json").read_text(encoding="utf-8"))


def check(node: str, tmp: Path, library: Library, cases: list[tuple[str, int]]) -> dict:
    """JS results equal Python's for every case; returns the driver's output (timings too)."""
    out = run_js(node, tmp, library, cases)
    index = CorpusIndex.build(library)
    for (text, min_len), got in zip(cases, out["results"], strict=True):
        want = attribution_json(index.attribute(text, min_len))
        assert got["spans"] == want["spans"], (text[:80], min_len)
        assert got == want
    return out


def library_of(*texts: str, authors: tuple[str, ...] = ()) -> Library:
    authors = authors or ("",) * len(texts)
    return Library("t", tuple(Source(f"s{i}", f"Source {i}", t, author=a) for i, (t, a) in enumerate(zip(texts, authors))))


def noisy(pieces: list[str], rng: random.Random, alphabet: str = "xqzjk QWZ\n") -> str:
    return "".join(p + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for p in pieces)


def test_index_files_match_the_python_index():
    library = library_of("hello world", "wörld 🎉 of 日本", "x")
    files = build_site_index(library)
    index = CorpusIndex.build(library)
    meta = json.loads(files["sources.json"])
    assert meta["starts"] == index.starts.tolist()
    assert [(s["name"], s["title"]) for s in meta["sources"]] == [(s.name, s.title) for s in index.sources]
    assert files["corpus.bin"] == index._bytes[: index.n]
    assert np.array_equal(np.frombuffer(files["index.bin"], dtype="<i4"), index.sa)
    assert site_index_bytes(library) == sum(len(b) for b in files.values())
    assert library_bytes(library) == len(files["corpus.bin"]) - 3
    assert MAX_SITE_LIBRARY_BYTES == 20 << 20


def test_tiny_corpus(node, tmp_path, tiny_corpus):
    library = library_from_paths([str(tiny_corpus)])
    assert len(library) == 2
    rng = random.Random(3)
    lines = make_text(40, seed=7).split("\n")
    text = noisy(lines, rng)
    half = noisy([line[rng.randint(0, 10):] for line in lines], rng, "abc ")
    cases = [(t, k) for t in (text, half, "", "zzz", TINY_LINES[2]) for k in (5, 12, 20)]
    out = check(node, tmp_path, library, cases)
    assert any(s["also_in"] == 1 for r in out["results"] for s in r["spans"])


def test_non_ascii_and_surrogate_pairs(node, tmp_path):
    one = "Élan vital 🎉 à la carte — naïve façade; 日本語のテキスト 🐍🐍 and ümlauts\n" * 3
    two = "Zürich 🎉 à la carte — crème brûlée 🐍🐍 and ümlauts, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝔱𝔢𝔵𝔱\n"
    library = library_of(one, two, authors=("Anne Autrice", ""))
    rng = random.Random(5)
    text = noisy([one[3:40], two[10:60], "🎉🎉 ", one[40:], two[-20:], "𝔘𝔫𝔦"], rng, "é🎉x日 ")
    cases = [(t, k) for t in (text, two, one[5:] + two) for k in (1, 2, 5, 12, 20)]
    out = check(node, tmp_path, library, cases)
    spans = [s for r in out["results"] for s in r["spans"]]
    assert any(s["also_in"] for s in spans) and any(s["source_title"] == "Source 0, by Anne Autrice" for s in spans)


def test_passage_in_several_sources_and_many_colours(node, tmp_path):
    rng = random.Random(11)
    shared = "a passage that every source quotes word for word"
    texts = [f"source {i} opens with its own words {i * 7919} " + shared + f" and ends {i} alone; "
             + "".join(rng.choice("abcdefgh ") for _ in range(200)) for i in range(30)]
    library = library_of(*texts)
    query = noisy([t[:30] for t in reversed(texts)] + [shared, texts[3][120:180]], rng)
    cases = [(query, 5), (query, 12), (query, 20), (shared + "!", 12)]
    out = run_js(node, tmp_path, library, cases, palette_sizes=range(0, 45))
    index = CorpusIndex.build(library)
    for (text, min_len), got in zip(cases, out["results"], strict=True):
        assert got == attribution_json(index.attribute(text, min_len))
    assert len(out["results"][2]["legend"]) > 12  # HLS colours past the fixed palette
    assert out["results"][3]["spans"][0]["also_in"] == 29
    assert out["palette"] == [palette(n) for n in range(0, 45)]


def test_tiny_shakespeare(node, tmp_path, shared_corpora):
    whole = library_from_paths([str(shared_corpora / "tinyshakespeare.txt")]).sources[0].text
    third = len(whole) // 3
    library = library_of(whole[:third], whole[third : 2 * third], whole[2 * third :])  # repeated lines: also_in
    rng = random.Random(17)
    pieces, size = [], 0
    while size < 5000:
        length = rng.choice([8, 15, 30, 60, 120, 400])
        start = rng.randrange(len(whole) - length)
        pieces.append(whole[start : start + length])
        size += length + 3
    query = noisy(pieces, rng, "zqxjé🎉 ")[:5000]
    query += whole[100000:100700]  # one match longer than the Python index's 256-byte search
    common = "e\x01" * 300 + query[:200]  # the same common one-letter passage, credited 300 times
    out = check(node, tmp_path, library, [(query, 5), (query, 12), (query, 20), (query, 300), (common, 1)])
    assert max(r["metrics"]["longest"]["length"] for r in out["results"]) >= 700
    # speed: 10 KB of text over the 1 MB library
    big = (query * 2)[:10000]
    (tmp_path / "speed").mkdir()
    timed = run_js(node, tmp_path / "speed", library, [(big, 20)])
    assert timed["ms"][0] < 1000, timed["ms"]
    print(f"load {timed['loadMs']:.0f} ms, 10 KB attributed in {timed['ms'][0]:.0f} ms")
