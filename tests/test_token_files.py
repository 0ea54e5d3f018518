"""Token files: streamed encoding, the on-disk format, reuse and re-encoding, streamed vocabulary."""

import json
import random

import numpy as np
import pytest

from charpoet import data
from charpoet.corpus import Library, Source
from charpoet.data import encode_library, fit_tokenizer, ids_dtype, split_point, tokenize_library
from charpoet.errors import CorpusError, TokenizerError
from charpoet.tokenizer import _WORD_PIECES, CharTokenizer, WordTokenizer, build_tokenizer, piece_safe_chunks

LONG_LINE = "don't o'er-hasty ’twas words_with_underscores 12345 " * 9  # no newline for 400+ chars


def _library() -> Library:
    """Several sources: multi-byte characters, apostrophes, long lines without a newline, a
    streamed source (read in odd-sized pieces), a source with no newline at all and an empty one."""
    poem = "Shall I compare thee to a summer's day?\nThou art more lovely — and more temperate:\n" * 5
    streamed_text = "日本語のテキスト, naïve café 🎭 déjà vu!\n\n" * 4 + LONG_LINE + "\nend"

    def reader():
        return (streamed_text[i : i + 13] for i in range(0, len(streamed_text), 13))

    return Library("t", (
        Source("poem", "Poem", poem),
        Source("long", "Long", LONG_LINE + "\n" + LONG_LINE),
        Source("streamed", "Streamed", reader=reader),
        Source("one-line", "One line", "   spaces\tand\ttabs   " * 20),
        Source("empty", "Empty", ""),
    ))


def _tokenizer(kind: str, library: Library, max_vocab: int = 10_000):
    return build_tokenizer(kind, [s.text for s in library], max_vocab)


def _reference(library: Library, tokenizer, valid_fraction: float):
    """Ids and char offsets of each split, tokenizing every part whole (obviously right)."""
    out = []
    for split in (0, 1):
        ids, offsets = [], []
        for source in library:
            text = source.text
            cut = split_point(len(text), valid_fraction)
            part = text[:cut] if split == 0 else text[cut:]
            pieces = tokenizer.pieces(part)
            ids.extend(tokenizer.encode(part).tolist())
            offsets.extend(np.cumsum([0] + [len(p) for p in pieces])[:-1].tolist())
        out.append((ids, offsets))
    return out


@pytest.mark.parametrize("kind", ["char", "word"])
@pytest.mark.parametrize("chunk", [1, 5, 16, 1 << 20])
def test_streamed_encoding_gives_the_tokens_of_the_whole_parts(kind, chunk, monkeypatch, tmp_path):
    monkeypatch.setattr(data, "ENCODE_CHUNK_CHARS", chunk)
    library = _library()
    tok = _tokenizer(kind, library, max_vocab=40)  # some words out of vocabulary: <unk>
    expected = _reference(library, tok, 0.15)
    for dataset in (encode_library(library, tok, 0.15), tokenize_library(library, tok, 0.15, tmp_path / "tokens")):
        for split, (ids, offsets) in zip((dataset.train, dataset.valid), expected):
            assert split.ids.dtype == np.uint8
            assert split.ids.tolist() == ids
            if kind == "word":
                assert split.token_offsets.tolist() == offsets
            else:
                assert split.token_offsets is None


@pytest.mark.parametrize("kind", ["char", "word"])
def test_locate_traces_tokens_read_from_files(kind, monkeypatch, tmp_path):
    monkeypatch.setattr(data, "ENCODE_CHUNK_CHARS", 7)
    library = _library()
    tok = _tokenizer(kind, library)
    dataset = tokenize_library(library, tok, 0.2, tmp_path)
    checked = 0
    for split in (dataset.train, dataset.valid):
        for i, token_id in enumerate(split.ids):
            source, offset = split.locate(i)
            piece = tok.token_text(int(token_id))
            if piece == "<unk>":  # a word cut by the split point
                continue
            assert library[source].text[offset : offset + len(piece)] == piece
            checked += 1
    assert checked > 500


def test_ids_use_the_smallest_dtype(tmp_path):
    assert [ids_dtype(v) for v in (2, 256, 257, 65536, 65537)] == [np.uint8, np.uint8, np.uint16, np.uint16, np.uint32]
    for size, dtype in ((256, np.uint8), (257, np.uint16)):
        text = ("".join(chr(0x100 + i) for i in range(size - 1)) + "\n") * 3  # size distinct characters
        library = Library("t", (Source("a", "A", text),))
        tok = CharTokenizer.fit([text])
        dataset = tokenize_library(library, tok, 0.1, tmp_path / str(size))
        assert dataset.train.ids.dtype == dtype and isinstance(dataset.train.ids, np.memmap)
        assert (tmp_path / str(size) / "train.bin").stat().st_size == len(dataset.train) * np.dtype(dtype).itemsize
        assert dataset.train.ids.tolist() + dataset.valid.ids.tolist() == tok.encode(text).tolist()
        meta = json.loads((tmp_path / str(size) / "tokens.json").read_text())
        assert meta["dtype"] == np.dtype(dtype).name and meta["splits"]["train"]["tokens"] == len(dataset.train)


def test_ids_are_read_only(tmp_path):
    library = _library()
    dataset = tokenize_library(library, _tokenizer("char", library), 0.1, tmp_path)
    with pytest.raises(ValueError):
        dataset.train.ids[0] = 1


def _stamp(directory):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_a_second_call_reuses_the_files(tmp_path, monkeypatch):
    library = _library()
    tok = _tokenizer("word", library)
    first = tokenize_library(library, tok, 0.1, tmp_path)
    stamp = _stamp(tmp_path)
    assert set(stamp) == {"tokens.json", "train.bin", "valid.bin", "train.offsets.bin", "valid.offsets.bin"}

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(data, "_encode_splits", no_encoding)
    again = tokenize_library(library, WordTokenizer(tok.tokens), 0.1, tmp_path)  # an equal vocabulary
    assert _stamp(tmp_path) == stamp
    assert again.train.ids.tolist() == first.train.ids.tolist()
    assert again.valid.token_offsets.tolist() == first.valid.token_offsets.tolist()
    assert again.train.source_starts.tolist() == first.train.source_starts.tolist()
    assert (again.valid.num_chars, again.valid.char_starts.tolist()) == (first.valid.num_chars, first.valid.char_starts.tolist())


def test_another_key_encodes_again(tmp_path):
    library = _library()
    tok = _tokenizer("word", library)
    tokenize_library(library, tok, 0.1, tmp_path)
    stamp = _stamp(tmp_path)

    other = tokenize_library(library, tok, 0.3, tmp_path)  # another valid_fraction
    assert _stamp(tmp_path)["train.bin"] != stamp["train.bin"]
    assert other.valid.ids.tolist() == _reference(library, tok, 0.3)[1][0]

    char = _tokenizer("char", library)  # another vocabulary (and kind: no offsets any more)
    dataset = tokenize_library(library, char, 0.3, tmp_path)
    assert dataset.train.ids.tolist() == _reference(library, char, 0.3)[0][0]
    assert dataset.train.token_offsets is None
    assert not list(tmp_path.glob("*.offsets.bin")) and not list(tmp_path.glob(".*"))

    changed = Library("t", (*library.sources[:-1], Source("empty", "Empty", "Thou art a summer's day\n")))
    dataset = tokenize_library(changed, char, 0.3, tmp_path)  # another library
    assert char.decode(dataset.valid.ids).endswith("day\n")


@pytest.mark.parametrize("damage", ["truncate", "extend", "delete", "json"])
def test_damaged_files_are_encoded_again(tmp_path, damage):
    library = _library()
    tok = _tokenizer("word", library)
    expected = tokenize_library(library, tok, 0.1, tmp_path).train.ids.tolist()
    if damage == "truncate":
        path = tmp_path / "train.bin"
        path.write_bytes(path.read_bytes()[:-1])
    elif damage == "extend":
        path = tmp_path / "valid.offsets.bin"
        path.write_bytes(path.read_bytes() + b"\0\0\0\0")
    elif damage == "delete":
        (tmp_path / "valid.bin").unlink()
    else:
        (tmp_path / "tokens.json").write_text("{not json")
    dataset = tokenize_library(library, tok, 0.1, tmp_path)
    assert dataset.train.ids.tolist() == expected
    assert (tmp_path / "train.bin").stat().st_size == len(expected)


def test_a_character_outside_the_vocabulary_names_its_source(tmp_path):
    library = _library()
    tok = CharTokenizer.fit([s.text for s in library.sources[:2]])
    with pytest.raises(TokenizerError, match="source 'streamed'.*library changed"):
        tokenize_library(library, tok, 0.1, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no temporary files left behind, no tokens.json


def test_a_source_that_changes_while_read_is_an_error(tmp_path):
    text = "abc\n" * 10
    library = Library("t", (Source("a", "A", reader=lambda: [text], num_chars=len(text) + 1, sha256="0" * 64),))
    with pytest.raises(CorpusError, match="changed while being read"):
        tokenize_library(library, CharTokenizer.fit([text]), 0.1, tmp_path)


# --- the streamed vocabulary --------------------------------------------------------------------


def test_piece_safe_chunks_keep_every_piece_whole():
    rng = random.Random(0)
    alphabet = "ab'’ \t\n.,é_9-"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 8))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]) if b > a]
        safe = list(piece_safe_chunks(chunks))
        assert "".join(safe) == text and all(safe)
        assert [p for chunk in safe for p in _WORD_PIECES.findall(chunk)] == _WORD_PIECES.findall(text)
    assert list(piece_safe_chunks(["don", "'", "t go", "!\n"])) == ["don't", " go!\n"]


@pytest.mark.parametrize("kind", ["char", "word"])
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_the_vocabulary_from_chunks_is_the_vocabulary_of_the_whole_texts(kind, chunk, monkeypatch):
    monkeypatch.setattr(data, "ENCODE_CHUNK_CHARS", chunk)
    library = _library()
    assert "".join(data.library_texts(library)) == "".join(s.text for s in library)
    for max_vocab in (10_000, 30):
        assert fit_tokenizer(kind, library, max_vocab).to_dict() == _tokenizer(kind, library, max_vocab).to_dict()


def test_an_empty_validation_split_is_reused_too(tmp_path, monkeypatch):
    library = _library()
    tok = _tokenizer("word", library)
    first = tokenize_library(library, tok, 0.0, tmp_path)
    assert len(first.valid) == 0 and (tmp_path / "valid.bin").stat().st_size == 0
    monkeypatch.setattr(data, "_encode_splits", None)  # any encoding would fail
    again = tokenize_library(library, tok, 0.0, tmp_path)
    assert len(again.valid) == 0 and again.train.ids.tolist() == first.train.ids.tolist()
