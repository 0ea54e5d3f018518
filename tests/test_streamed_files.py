"""Streamed text files: piecewise decoding equals whole-file decoding, changed files, fsspec URLs."""

from __future__ import annotations

import os
import random
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from charpoet.corpus import Library, library_from_paths
from charpoet.corpus import files as files_mod
from charpoet.corpus.files import BinaryFileError, decode_text, default_library_name, expand_paths
from charpoet.errors import CharpoetWarning, CorpusError


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def whole(data: bytes) -> str:
    """The old reading: the whole file decoded and normalised at once."""
    return decode_text(data, "whole", warn_legacy=False)


def streamed(path: Path | str) -> Library:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CharpoetWarning)
        return library_from_paths([os.fspath(path)])


def assert_same_text(data: bytes, tmp_path: Path) -> None:
    """Reading ``data`` streamed gives the whole-file text, and the scan measured it right."""
    expected = whole(data)
    source = streamed(write(tmp_path / "t.txt", data))[0]
    assert source.streamed
    assert "".join(source.chunks(max_chars=5)) == expected
    assert source.text == expected
    assert len(source) == len(expected)
    fresh = Library("x", (source.replace(text=expected),))[0]
    assert source.sha256 == fresh.sha256


@pytest.fixture
def memfs() -> Iterator[fsspec.AbstractFileSystem]:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


# --- the same text as decoding the whole file --------------------------------------------------

SAMPLES = {
    "utf8-bom": b"\xef\xbb\xbfHello, w\xc3\xb6rld\n" * 3,
    "cp1252": b"\x93quoted\x94 caf\xe9 \x85\r\nmore\x81 \x9d\n",
    "latin1": "Ça dépend,\r\nseñor.\n".encode("latin-1") * 4,
    "crlf-and-cr": b"one\r\ntwo\rthree\n\r\nfour\r",
    "nfd": "cafe\u0301\nn\u0303o\u0327\u0301\r\nHan\u1100\u1161\u11a8 done".encode(),
    "no-final-newline": "a long line without any newline at all, ünïcödé éverywhere".encode(),
}


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 64, files_mod.BLOCK_BYTES])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_streamed_equals_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, block: int) -> None:
    monkeypatch.setattr(files_mod, "BLOCK_BYTES", block)
    assert_same_text(SAMPLES[name], tmp_path)


def test_multibyte_characters_around_every_block_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(14)
    alphabet = ["a", " ", "\n", "\r", "\r\n", "é", "e\u0301", "\u0327", "한", "\u1100\u1161", "𝄞", "—", "ß",
                "\u0301\u0300"]
    for block in (1, 2, 3, 4, 5, 8, 13):
        monkeypatch.setattr(files_mod, "BLOCK_BYTES", block)
        text = "".join(rng.choice(alphabet) for _ in range(300))
        assert_same_text(("x" + text).encode("utf-8"), tmp_path)
        one_line = ["a", " ", "\r", "é", "e\u0301", "\u0327", "한", "\u1100\u1161", "𝄞", "\u0301\u0300"]
        no_newline = "".join(rng.choice(one_line) for _ in range(200))  # cut before ASCII characters
        assert_same_text(("x" + no_newline).encode("utf-8"), tmp_path)


def test_bigger_than_a_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "BLOCK_BYTES", 1000)
    data = ("Ünïcödé — 𝄞 e\u0301 line\r\n" * 500).encode("utf-8")
    assert_same_text(data, tmp_path)
    pieces = list(streamed(tmp_path / "t.txt")[0]._reader())  # the reader's own pieces stay bounded
    assert len(pieces) > 10 and max(map(len, pieces)) <= 1000


def test_encoding_is_decided_over_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "BLOCK_BYTES", 16)
    valid_then_cp1252 = "naïve café\n".encode() * 10 + b"\x93late\x94\n"
    with pytest.warns(CharpoetWarning, match=r"late\.txt.*Windows-1252"):
        lib = library_from_paths([str(write(tmp_path / "late.txt", valid_then_cp1252))])
    assert lib[0].text == whole(valid_then_cp1252)
    latin1_at_end = "naïve café\n".encode() * 10 + b"fin \xe9\n"
    with pytest.warns(CharpoetWarning, match=r"end\.txt.*ISO-8859-1"):
        lib = library_from_paths([str(write(tmp_path / "end.txt", latin1_at_end))])
    assert lib[0].text == whole(latin1_at_end) and lib[0].text.startswith("naÃ¯ve")


def test_utf8_needs_no_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert library_from_paths([str(write(tmp_path / "a.txt", "é\n"))])[0].text == "é\n"


# --- bad files fail when the library is built --------------------------------------------------


def test_binary_after_the_head_is_an_error_when_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "BLOCK_BYTES", 4096)
    data = b"plain text\n" * 3000 + b"\x00\x01\x02"
    f = write(tmp_path / "d" / "late.bin", data)
    with pytest.raises(BinaryFileError, match=r"late\.bin.*NUL"):
        library_from_paths([str(f)])
    write(tmp_path / "d" / "good.txt", "fine\n")
    with pytest.warns(CharpoetWarning, match=r"late\.bin.*skipped"):
        assert library_from_paths([str(tmp_path / "d")]).names == ["good"]


def test_huge_sparse_file_fails_at_once(tmp_path: Path) -> None:
    f = tmp_path / "huge.txt"
    with open(f, "wb") as out:
        out.truncate(64 << 30)  # 64 GiB of NUL bytes; only the first block is read
    with pytest.raises(BinaryFileError, match="NUL"):
        library_from_paths([str(f)])


@pytest.mark.parametrize("data", [b"", b" \n\x0b\x0c\t\r\n" * 5000, b"\xef\xbb\xbf  "], ids=["empty", "blank", "bom"])
def test_empty_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(files_mod, "BLOCK_BYTES", 3)
    with pytest.raises(CorpusError, match=r"e\.txt: file is empty"):
        library_from_paths([str(write(tmp_path / "e.txt", data))])


# --- a file that changes -----------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo[CorpusError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_file_appended_to_after_the_library_was_built(tmp_path: Path) -> None:
    f = write(tmp_path / "growing.txt", "first line\n")
    source = library_from_paths([str(f)])[0]
    with open(f, "ab") as out:
        out.write(b"second line\n")
    with pytest.raises(CorpusError) as exc:
        source.text
    assert one_line(exc) == (f"{f}: file changed while charpoet was reading it; "
                             "run the command again once it is complete")


def test_file_changed_while_being_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "BLOCK_BYTES", 8)
    f = write(tmp_path / "g.txt", "line\n" * 20)
    source = library_from_paths([str(f)])[0]
    pieces = source.chunks(max_chars=4)
    next(pieces)
    with open(f, "ab") as out:
        out.write(b"tail\n")
    with pytest.raises(CorpusError, match=r"g\.txt: file changed while charpoet"):
        list(pieces)


def test_file_removed_after_the_library_was_built(tmp_path: Path) -> None:
    f = write(tmp_path / "gone.txt", "here\n")
    source = library_from_paths([str(f)])[0]
    f.unlink()
    with pytest.raises(CorpusError, match=r"gone\.txt: file disappeared") as exc:
        source.text
    one_line(exc)


@pytest.mark.parametrize(("new", "words"), [(b"abc\x00\x00fgh\n", "binary data"),
                                           (b"abc\xff\xfefgh\n", "no longer valid UTF-8")])
def test_same_size_rewrite_with_bad_bytes(tmp_path: Path, new: bytes, words: str) -> None:
    f = write(tmp_path / "same.txt", b"abcdefgh\n")
    source = library_from_paths([str(f)])[0]
    st = f.stat()
    with open(f, "r+b") as out:  # in place: same inode, same size, mtime put back
        out.write(new)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CorpusError, match=words) as exc:
        source.text
    assert "changed while charpoet was reading it" in one_line(exc)


# --- fsspec URLs -------------------------------------------------------------------------------

BOOKS = {
    "a.txt": "Of arms and the man I sing\n",
    "b.txt": "Sing, goddess, the anger\r\n",
    "sub/c.txt": "cafe\u0301 au lait\n",
    "sub/deeper/book.txt": "deep\n",
    "other/book.txt": "another book\n",
    ".hidden.txt": "secret\n",
    ".git/x.txt": "git\n",
}


def make_books(root: Path, fs: fsspec.AbstractFileSystem, prefix: str) -> None:
    for rel, text in BOOKS.items():
        write(root / rel, text)
        fs.pipe(f"{prefix}/{rel}", text.encode("utf-8"))


@pytest.mark.parametrize(
    ("local", "url"),
    [("{root}/a.txt", "memory://lib/a.txt"), ("{root}", "memory://lib"), ("{root}/", "memory://lib/"),
     ("{root}/*.txt", "memory://lib/*.txt"), ("{root}/**/*.txt", "memory://lib/**/*.txt"),
     ("{root}/sub", "memory:///lib/sub")],
    ids=["file", "directory", "directory-slash", "glob", "recursive-glob", "absolute"],
)
def test_memory_url_gives_the_same_library_as_local_files(tmp_path: Path, memfs: fsspec.AbstractFileSystem,
                                                          local: str, url: str) -> None:
    root = tmp_path / "lib"
    make_books(root, memfs, "/lib")
    here, there = streamed(local.format(root=root)), streamed(url)
    assert there.names == here.names
    assert [s.text for s in there] == [s.text for s in here]
    assert there.fingerprint() == here.fingerprint()
    assert there.name == here.name == default_library_name([url])
    assert all(s.streamed and s.path.startswith("memory://") for s in there)
    assert ".hidden" not in " ".join(there.names) and "x" not in there.names


def test_memory_directory_names_and_paths(memfs: fsspec.AbstractFileSystem, tmp_path: Path) -> None:
    make_books(tmp_path, memfs, "/lib")
    lib = streamed("memory://lib")
    assert lib.names == ["a", "b", "other/book.txt", "c", "sub/deeper/book.txt"]
    assert lib[0].path == "memory:///lib/a.txt"
    assert expand_paths(["memory://lib/sub"]) == ["memory:///lib/sub/c.txt", "memory:///lib/sub/deeper/book.txt"]
    assert streamed("memory://lib/a.txt")[0].path == "memory://lib/a.txt"
    assert [s.name for s in streamed("memory://lib/a.txt")] == ["a"]


def test_file_url(tmp_path: Path) -> None:
    f = write(tmp_path / "poem.txt", "roses\r\n")
    lib = streamed(f"file://{f}")
    assert (lib.names, lib[0].text, lib[0].path) == (["poem"], "roses\n", f"file://{f}")
    assert lib.fingerprint() == streamed(f).fingerprint()


def test_urls_and_local_paths_mix_without_duplicates(tmp_path: Path, memfs: fsspec.AbstractFileSystem) -> None:
    memfs.pipe("/m/one.txt", b"one\n")
    f = write(tmp_path / "two.txt", "two\n")
    lib = library_from_paths(["memory://m/one.txt", str(f), "memory://m", f"file://{f}"])
    assert lib.names == ["one", "two"]


def test_memory_file_that_changes(memfs: fsspec.AbstractFileSystem) -> None:
    memfs.pipe("/c/x.txt", b"short\n")
    source = streamed("memory://c/x.txt")[0]
    memfs.pipe("/c/x.txt", b"longer text\n")
    with pytest.raises(CorpusError, match=r"memory://c/x\.txt: file changed while charpoet"):
        source.text
    memfs.rm("/c/x.txt")
    with pytest.raises(CorpusError, match=r"memory://c/x\.txt: file disappeared"):
        source.text


def test_legacy_encoding_and_binary_at_a_url(memfs: fsspec.AbstractFileSystem) -> None:
    memfs.pipe("/e/win.txt", b"\x93hi\x94\n")
    memfs.pipe("/e/blob.png", b"\x89PNG\r\n\x1a\n\x00")
    with pytest.warns(CharpoetWarning) as record:
        lib = library_from_paths(["memory://e"])
    assert lib.names == ["win"] and lib[0].text == "\u201chi\u201d\n"
    messages = [str(w.message) for w in record]
    assert any("blob.png" in m and "skipped" in m for m in messages)
    assert any("win.txt" in m and "Windows-1252" in m for m in messages)
    with pytest.raises(BinaryFileError, match=r"memory://e/blob\.png: binary"):
        library_from_paths(["memory://e/blob.png"])


@pytest.mark.parametrize(
    ("url", "words"),
    [("memory://nothing/here.txt", "memory://nothing/here.txt: no such file or directory"),
     ("memory://lib/*.nothing", "no files match"),
     ("nosuch://bucket/x.txt", "unknown protocol nosuch://"),
     ("memory://emptydir", "no (non-hidden) files")],
    ids=["missing", "glob-matches-nothing", "unknown-protocol", "empty-directory"],
)
def test_bad_urls_are_one_line_errors(memfs: fsspec.AbstractFileSystem, url: str, words: str) -> None:
    memfs.pipe("/lib/a.txt", b"a\n")
    memfs.mkdir("/emptydir")
    memfs.pipe("/emptydir/.hidden", b"x\n")
    with pytest.raises(CorpusError) as exc:
        library_from_paths([url])
    assert words in one_line(exc)


def test_url_needing_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "s3fs" else real(name, *a))
    registry = sys.modules["fsspec.registry"]
    monkeypatch.delitem(registry._registry, "s3", raising=False)
    monkeypatch.setitem(sys.modules, "s3fs", None)  # importing it fails, installed or not
    with pytest.raises(CorpusError) as exc:
        library_from_paths(["s3://bucket/books/*.txt"])
    assert "s3:// needs the s3fs package: pip install s3fs" in one_line(exc)


def test_url_that_cannot_be_read(memfs: fsspec.AbstractFileSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    memfs.pipe("/p/locked.txt", b"secret\n")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError("Access Denied\nfor this key")

    monkeypatch.setattr(type(memfs), "_open", denied)
    with pytest.raises(CorpusError) as exc:
        library_from_paths(["memory://p/locked.txt"])
    assert one_line(exc) == "memory://p/locked.txt: cannot read file (Access Denied for this key)"


def test_default_library_name_for_urls(memfs: fsspec.AbstractFileSystem) -> None:
    memfs.pipe("/books/poems/a.txt", b"a\n")
    assert default_library_name(["memory://books/poems"]) == "poems"
    assert default_library_name(["memory://books/poems/a.txt"]) == "a"
    assert default_library_name(["memory://books/**/*.txt"]) == "custom"
    assert default_library_name(["nosuch://x/sonnets.txt"]) == "sonnets"  # a guess; reading it fails later


def test_cli_reads_a_memory_url_in_process(memfs: fsspec.AbstractFileSystem, tmp_path: Path) -> None:
    """memory:// lives in one process: the CLI runner is the one way a command can read it."""
    from typer.testing import CliRunner

    from charpoet.cli import app

    for i in range(3):
        memfs.pipe(f"/lib/book{i}.txt", f"line {i} of a book, ünïcödé\r\n".encode() * 40)
    result = CliRunner().invoke(app, ["corpus", "split", "--text-path", "memory://lib", "--by", "text",
                                      "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    parts = "".join((tmp_path / f"lib.{p}.txt").read_text(encoding="utf-8") for p in ("train", "valid", "test"))
    assert len(parts) >= sum(len(s) for s in streamed("memory://lib")) and "\r" not in parts
