"""Train/valid/test files from a library: by whole book, or inside every book."""

from __future__ import annotations

from pathlib import Path

import pytest

from charpoet.corpus.library import Library, Source
from charpoet.corpus.split import split_library, write_split
from charpoet.errors import CorpusError


def _book(name: str, paragraphs: int, width: int = 60) -> Source:
    text = "\n\n".join(f"{name} paragraph {i}. " + "x" * width for i in range(paragraphs)) + "\n"
    return Source(name=name, title=name.title(), text=text)


def _library(*sizes: int) -> Library:
    return Library("shelf", tuple(_book(f"b{i}", n) for i, n in enumerate(sizes)))


def _paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def test_by_book_keeps_books_whole_and_loses_nothing() -> None:
    library = _library(*[20] * 10)
    parts = split_library(library, 0.1, 0.1, by="book", seed=3)
    owners = {name: part for part in parts.values() for name, _ in part.pieces}
    assert sorted(owners) == library.names  # every book in exactly one part
    assert [len(parts[p].pieces) for p in ("train", "valid", "test")] == [8, 1, 1]
    for part in parts.values():
        expected = [p.strip() for name, _ in part.pieces for p in _paragraphs(library.sources[library.names.index(name)].text)]
        assert [p.strip() for p in _paragraphs(part.text)] == expected


def test_by_book_is_seeded() -> None:
    library = _library(*[20] * 10)
    a = split_library(library, by="book", seed=1)
    assert a == split_library(library, by="book", seed=1)
    assert any(a[p] != split_library(library, by="book", seed=2)[p] for p in a)


def test_by_book_leaves_a_book_for_every_part() -> None:
    parts = split_library(_library(50, 5, 5), 0.45, 0.45, by="book")
    assert all(len(parts[p].pieces) == 1 for p in ("train", "valid", "test"))
    with pytest.raises(CorpusError, match="at least 3 books.*--by text"):
        split_library(_library(20, 20), by="book")
    assert len(split_library(_library(20, 20), 0.5, 0.0, by="book")["test"].pieces) == 0


def test_by_text_cuts_every_book_at_paragraph_breaks() -> None:
    library = _library(100, 40)
    parts = split_library(library, 0.1, 0.2, by="text")
    for part in parts.values():
        assert [name for name, _ in part.pieces] == ["b0", "b1"]
    for i, source in enumerate(library):
        pieces = [dict(parts[p].pieces)[source.name] for p in ("train", "valid", "test")]
        # cut at blank lines: the pieces of a book, rejoined with a blank line, are the book
        assert "\n".join(_pieces_text(parts, source.name)) == source.text
        shares = [n / len(source) for n in pieces]
        assert shares == pytest.approx([0.7, 0.1, 0.2], abs=0.03)
    assert all(p.startswith("b") for p in _paragraphs(parts["valid"].text))  # whole paragraphs


def _pieces_text(parts, name: str) -> list[str]:
    out = []
    for p in ("train", "valid", "test"):
        text, offset = parts[p].text, 0
        for piece_name, n in parts[p].pieces:
            piece = text[offset:offset + n]
            offset += n + 1  # pieces are joined with a blank line
            if piece_name == name:
                out.append(piece)
    return out


def test_bad_values() -> None:
    library = _library(20, 20, 20)
    for kwargs, message in [({"valid": -0.1}, "--valid"), ({"test": 1.0}, "--test"),
                            ({"valid": 0.5, "test": 0.5}, "leave something"), ({"by": "line"}, "--by")]:
        with pytest.raises(CorpusError, match=message):
            split_library(library, **kwargs)


def test_write_split(tmp_path: Path) -> None:
    parts = split_library(_library(*[20] * 5), 0.2, 0.0, by="book")
    paths = write_split(parts, tmp_path / "out", "shelf")
    assert [p.name for p in paths] == ["shelf.train.txt", "shelf.valid.txt"]
    assert paths[0].read_text(encoding="utf-8") == parts["train"].text
    assert not (tmp_path / "out" / "shelf.test.txt").exists()


def test_by_text_with_an_empty_part() -> None:
    library = _library(100, 40)
    parts = split_library(library, 0.0, 0.1, by="text")
    assert parts["valid"].pieces == () and parts["valid"].text == ""
    parts = split_library(library, 0.1, 0.0, by="text")
    assert parts["test"].pieces == ()
