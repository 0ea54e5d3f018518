"""The attribution index on disk: a memory-mapped file that answers as the built index does, a cache
that is rebuilt when stale, and the size limit above which an index is built only when forced.

No test builds a large index: the limit (``charpoet.attribution.MAX_INDEX_BYTES``) is made tiny."""

import json
import mmap
import random
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import charpoet.attribution as attribution
from charpoet.attribution import CAP, INDEX_FILE, CorpusIndex, IndexTooLargeError, index_for_run
from charpoet.attribution_reference import seeds_scan
from charpoet.checkpoint import RunDir
from charpoet.cli import app
from charpoet.corpus import Library, Source
from charpoet.errors import ConfigError

WORDS = "the cat sat on a mat while rain fell over grey hills and quiet water ran down to the sea".split()


def prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "\n"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(7)
    return [prose(rng, 400), "déjà vu, 日本語の文章 🎉 " + prose(rng, 300), prose(rng, 500)]


@pytest.fixture(scope="module")
def library(texts: list[str]) -> Library:
    return Library("t", tuple(Source(f"s{i}", f"Source {i}", t, author="A" * i) for i, t in enumerate(texts)))


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(attribution, "MAX_INDEX_BYTES", 64)
    return 64


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of the trained run without its index cache."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / INDEX_FILE).unlink(missing_ok=True)
    return copy


def queries(texts: list[str]) -> list[str]:
    a, b, c = texts
    return [
        a[10:60] + " zqx " + c[100:140],
        a[:CAP + 300] + "wibble" + b[:40],  # a quote far beyond CAP bytes
        b[5:CAP * 2] + " plonk " + c[-(CAP + 50):],  # non-ASCII and a quote running to a source's end
        "nothing here is copied at all, I hope: xyzzy",
        c * 2,  # longer than any source
    ]


def spans(att):
    return [(s.start, s.end, s.source, s.source_offset, s.also_in) for s in att.spans]


def test_a_loaded_index_answers_as_the_built_one_and_as_the_oracle(library, texts, tmp_path):
    built = CorpusIndex.build(library)
    built.save(tmp_path / "index.safetensors")
    loaded = CorpusIndex.load(tmp_path / "index.safetensors")
    assert loaded.mapped and not built.mapped
    assert loaded.fingerprint == built.fingerprint == library.fingerprint() and loaded.sources == built.sources
    for query in queries(texts):
        for min_len in (5, 20):
            got = loaded.attribute(query, min_len)
            assert got == built.attribute(query, min_len)
            assert spans(got) == seeds_scan(query, texts, min_len)
    assert any(s.length * 4 > CAP for s in loaded.attribute(queries(texts)[1], 20).spans)


def test_loading_maps_the_arrays_instead_of_reading_them(library, tmp_path):
    CorpusIndex.build(library).save(tmp_path / "index.safetensors")
    loaded = CorpusIndex.load(tmp_path / "index.safetensors")
    for array in (loaded.sa, loaded.keys, loaded.corpus, loaded.starts, loaded.block_chars):
        assert isinstance(array.base, mmap.mmap) and not array.flags.writeable
    assert loaded.corpus.base is loaded.sa.base  # one mapping of the whole file
    assert loaded.sa.ctypes.data % loaded.sa.itemsize == 0 and loaded.keys.ctypes.data % 8 == 0  # aligned


def test_the_file_is_a_safetensors_file_with_everything_a_lookup_needs(library, tmp_path):
    from safetensors import safe_open

    built = CorpusIndex.build(library)
    built.save(tmp_path / "index.safetensors")
    with safe_open(str(tmp_path / "index.safetensors"), framework="np") as f:
        assert set(f.keys()) == {"corpus", "sa", "keys", "starts", "block_chars"}
        for name in f.keys():
            assert np.array_equal(f.get_tensor(name), getattr(built, name)), name
        meta = f.metadata()
    assert meta["format"] == attribution._FORMAT and meta["fingerprint"] == library.fingerprint()
    assert json.loads(meta["sources"])[2] == ["s2", "Source 2, by AA"]


def test_damaged_or_foreign_files_are_unreadable(library, tmp_path):
    from safetensors.numpy import save

    path = tmp_path / "index.safetensors"
    CorpusIndex.build(library).save(path)
    good = path.read_bytes()
    for bad in (good[: len(good) // 2], good[:5], b"", save({"sa": np.zeros(3, np.int32)}, metadata={"format": "x"})):
        path.write_bytes(bad)
        with pytest.raises(attribution.CheckpointError, match="unreadable"):
            CorpusIndex.load(path)
    path.write_bytes(good)
    with pytest.raises(attribution.CheckpointError, match="other sources"):
        CorpusIndex.load(path, fingerprint="0" * 64)


def test_an_empty_library_round_trips(tmp_path):
    index = CorpusIndex.build(Library("empty", ()))
    index.save(tmp_path / "e.safetensors")
    loaded = CorpusIndex.load(tmp_path / "e.safetensors")
    assert loaded.n == 0 and loaded.attribute("anything at all", 3).spans == ()


def test_build_reads_streamed_sources_in_pieces(texts):
    calls = []

    def reader(text):
        def pieces():
            calls.append(text[:5])
            return (text[i : i + 97] for i in range(0, len(text), 97))
        return pieces

    streamed = Library("s", tuple(Source(f"s{i}", f"Source {i}", reader=reader(t)) for i, t in enumerate(texts)))
    plain = Library("p", tuple(Source(f"s{i}", f"Source {i}", t) for i, t in enumerate(texts)))
    got, expected = CorpusIndex.build(streamed), CorpusIndex.build(plain)
    assert got.fingerprint == expected.fingerprint
    assert np.array_equal(got.corpus, expected.corpus) and np.array_equal(got.sa, expected.sa)
    query = texts[1][:CAP + 20]
    assert got.attribute(query, 10) == expected.attribute(query, 10)


# --- the run's cache ---------------------------------------------------------------------------
def test_the_cache_is_used_and_rebuilt_when_stale(run, monkeypatch):
    first = index_for_run(run)
    assert first.mapped and (run / INDEX_FILE).is_file()
    real_build = CorpusIndex.build
    built = []
    monkeypatch.setattr(CorpusIndex, "build", classmethod(lambda cls, lib, force=False: built.append(lib)
                                                          or real_build.__func__(cls, lib, force)))
    again = index_for_run(run)
    assert not built and again.fingerprint == first.fingerprint  # mapped from the cache
    query = "ROMEO: what light through yonder window breaks?"
    assert again.attribute(query, 10) == first.attribute(query, 10)

    # an index of the old format (/1) is a cache to rebuild
    from safetensors.numpy import save

    meta = {"format": "charpoet.attribution-index/1", "fingerprint": first.fingerprint, "built_from": "x",
            "sources": json.dumps([[s.name, s.title] for s in first.sources])}
    old = save({"corpus": np.asarray(first.corpus).copy(), "sa": np.asarray(first.sa).copy()}, metadata=meta)
    (run / "old.tmp").write_bytes(old)
    (run / "old.tmp").replace(run / INDEX_FILE)  # replaced, never rewritten in place: `first` maps the file
    assert index_for_run(run).attribute(query, 10) == first.attribute(query, 10) and len(built) == 1
    assert CorpusIndex.load(run / INDEX_FILE).mapped  # rewritten in the new format

    # other sources: another fingerprint
    RunDir(run).write_library(Library("new", (Source("new", "New", "brand new words here, and more of them"),)))
    fresh = index_for_run(run)
    assert [s.name for s in fresh.sources] == ["new"] and len(built) == 2
    assert [(s.start, s.end) for s in fresh.attribute("say brand new words here", 10).spans] == [(4, 24)]


def test_a_run_that_cannot_be_written_still_attributes(run, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(attribution, "_atomic_write_pieces", full)
    index = index_for_run(run)
    assert not index.mapped and not (run / INDEX_FILE).exists()
    assert index.attribute("ROMEO: what light through yonder window breaks?", 10).spans


# --- the size limit ----------------------------------------------------------------------------
def test_above_the_limit_building_needs_force(library, small_limit):
    with pytest.raises(IndexTooLargeError) as info:
        CorpusIndex.build(library)
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and "\n" not in message
    for words in ("of text", "64 bytes", "memory", "--force-index", "force=True"):
        assert words in message, words
    forced = CorpusIndex.build(library, force=True)
    assert forced.n == sum(len(s.text.encode("utf-8")) + 1 for s in library)


def test_the_limit_counts_bytes_not_characters(monkeypatch):
    text = "日本語" * 10  # 30 characters, 90 bytes
    library = Library("cjk", (Source("a", "A", text),))
    monkeypatch.setattr(attribution, "MAX_INDEX_BYTES", 60)
    with pytest.raises(IndexTooLargeError, match="at least"):
        CorpusIndex.build(library)
    monkeypatch.setattr(attribution, "MAX_INDEX_BYTES", 91)
    assert CorpusIndex.build(library).n == 91


def test_a_run_above_the_limit_is_indexed_when_forced_and_then_mapped(run, small_limit):
    with pytest.raises(IndexTooLargeError):
        index_for_run(run)
    assert not (run / INDEX_FILE).exists()
    forced = index_for_run(run, force=True)
    assert forced.mapped and (run / INDEX_FILE).is_file()
    assert index_for_run(run).fingerprint == forced.fingerprint  # a cached index is used whatever its size


# --- the surfaces --------------------------------------------------------------------------------
def invoke(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def test_attribute_above_the_limit_is_one_line_and_exit_2(run, tmp_path, small_limit):
    text = tmp_path / "t.txt"
    text.write_text("ROMEO: what light through yonder window breaks? " * 2, encoding="utf-8")  # > 64 bytes
    result = invoke("attribute", text, "--checkpoint-path", run)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "--force-index" in line
    assert not (run / INDEX_FILE).exists()
    forced = invoke("attribute", text, "--checkpoint-path", run, "--force-index", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["spans"]
    assert invoke("attribute", text, "--text-path", text).exit_code == 2
    assert invoke("attribute", text, "--text-path", text, "--force-index").exit_code == 0


def test_generate_above_the_limit_prints_the_text_and_one_warning(run, tmp_path, small_limit):
    page = tmp_path / "page.html"
    result = invoke("generate", "--checkpoint-path", run, "--prime", "ROMEO:", "--length", "60", "--seed", "3",
                    "--html", page)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) >= 66
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("warning: samples are not highlighted") and "--force-index" in line
    html = page.read_text(encoding="utf-8")
    assert result.stdout.strip()[6:26] in html and "<mark" not in html
    assert not (run / INDEX_FILE).exists()
    forced = invoke("generate", "--checkpoint-path", run, "--length", "20", "--force-index")
    assert forced.exit_code == 0 and "copied verbatim" in forced.stderr and (run / INDEX_FILE).exists()


def test_chat_above_the_limit_answers_with_one_warning(run, small_limit):
    result = invoke("chat", "--checkpoint-path", run, "--seed", "1", "--max-length", "30", input="ROMEO:\nJULIET:\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n\n") == 2  # two answers
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: answers are not highlighted"), lines


def test_the_server_above_the_limit(run, small_limit):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from charpoet.web.app import create_app
    from charpoet.web.service import Service

    root = run.parent
    service = Service(root=root)
    try:
        with TestClient(create_app(service)) as client:
            r = client.post("/api/attribute", json={"run": "run", "text": "ROMEO: what light"})
            assert r.status_code == 400 and "--force-index" in r.json()["error"]
            assert client.post("/api/attribute", json={"run": "run", "text": "x"}).status_code == 400  # remembered
            r = client.post("/api/generate", json={"run": "run", "prompt": "ROMEO:", "length": 20, "seed": 1})
            assert r.status_code == 200
            events = [block for block in r.text.split("\n\n") if block]
            done = json.loads(events[-1].split("data: ", 1)[1])
            assert events[-1].startswith("event: done") and "--force-index" in done["attribution_error"]
            assert len(done["samples"][0]["text"]) == 20 and done["samples"][0]["spans"] == []
    finally:
        service.close()
    assert not (run / INDEX_FILE).exists()


def test_the_training_monitor_above_the_limit_shows_samples_without_highlighting(tmp_path, small_limit):
    from test_monitor import TEMPS, sample_event

    from charpoet.errors import CharpoetWarning
    from charpoet.monitor import TrainingMonitor

    received = []
    with TrainingMonitor(tmp_path, tensorboard=False, on_samples=lambda s, x: received.append(x)) as monitor:
        with pytest.warns(CharpoetWarning, match="not highlighted.*--force-index") as caught:
            monitor(sample_event(40))
            monitor(sample_event(80))
    assert len([w for w in caught if issubclass(w.category, CharpoetWarning)]) == 1  # once, not per sample event
    assert monitor.enabled["samples"]
    assert [[len(att.text) for _, att in batch] for batch in received] == [[60] * len(TEMPS)] * 2
    assert all(att.spans == () for batch in received for _, att in batch)
    lines = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 * len(TEMPS) and all(r["copy_rate"] is None and r["longest"] is None for r in lines)
    assert "<mark" not in (tmp_path / "samples" / "step-0000080.html").read_text(encoding="utf-8")
