import numpy as np
import pytest
import torch

from charpoet.corpus import Library, Source, library_from_paths
from charpoet import data as data_module
from charpoet.data import EvalRows, StreamBatches, encode_library, eval_layout, split_point
from charpoet.errors import CharpoetWarning, ConfigError
from charpoet.tokenizer import CharTokenizer, WordTokenizer


def test_single_file_split_matches_nanogpt(shared_corpora):
    library = library_from_paths([str(shared_corpora / "tinyshakespeare.txt")])
    tok = CharTokenizer.fit([library.sources[0].text])
    data = encode_library(library, tok, 0.1)
    assert (len(data.train), len(data.valid)) == (1_003_854, 111_540)
    text = library.sources[0].text
    n = len(text)
    assert tok.decode(data.train.ids[:50]) == text[: int(n * 0.9)][:50]
    assert tok.decode(data.valid.ids[-50:]) == text[int(n * 0.9) :][-50:]


def _library() -> Library:
    return Library("t", (Source("a", "A", "abcdefghij" * 3), Source("b", "B", "0123456789" * 2)))


def test_every_source_is_split_on_its_own():
    lib = _library()
    tok = CharTokenizer.fit([s.text for s in lib])
    data = encode_library(lib, tok, 0.1)
    assert tok.decode(data.train.ids) == lib[0].text[:27] + lib[1].text[:18]
    assert tok.decode(data.valid.ids) == lib[0].text[27:] + lib[1].text[18:]
    assert split_point(30, 0.1) == 27


@pytest.mark.parametrize("kind", ["char", "word"])
def test_locate_traces_every_token_back_to_its_source(kind):
    lib = Library("t", (Source("a", "A", "one two, three.\nfour five\n" * 3), Source("b", "B", "six seven eight nine.\n" * 4)))
    tok = CharTokenizer.fit([s.text for s in lib]) if kind == "char" else WordTokenizer.fit([s.text for s in lib])
    data = encode_library(lib, tok, 0.2)
    for split in (data.train, data.valid):
        for i, token_id in enumerate(split.ids):
            source, offset = split.locate(i)
            piece = tok.token_text(int(token_id))
            if piece == "<unk>":  # a word cut by the split point is out of vocabulary
                continue
            assert lib[source].text[offset : offset + len(piece)] == piece


def test_stream_batches_continue_rows_across_batches():
    ids = np.arange(1000)
    batches = StreamBatches(ids, batch_size=4, seq_len=10)
    assert batches.steps_per_epoch == (250 - 1) // 10
    x0, y0 = batches.batch(0)
    x1, _ = batches.batch(1)
    assert x0.shape == (4, 10)
    assert (y0 == x0 + 1).all()  # targets are the next token
    assert (x1[:, 0] == x0[:, -1] + 1).all()  # row b of batch k+1 continues row b of batch k
    assert x0[:, 0].tolist() == [0, 250, 500, 750]  # contiguous streams
    with pytest.raises(IndexError):
        batches.batch(batches.steps_per_epoch)


def test_too_small_corpus_shrinks_the_batch_with_a_warning():
    with pytest.warns(CharpoetWarning, match="--batch-size 3"):
        batches = StreamBatches(np.arange(100), batch_size=64, seq_len=30)
    assert batches.batch_size == 3 and batches.steps_per_epoch >= 1


def test_corpus_shorter_than_one_window_is_an_error():
    with pytest.raises(ConfigError, match="--seq-len 64 needs at least 65"):
        StreamBatches(np.arange(50), batch_size=4, seq_len=64)


def test_eval_layout_depends_on_the_split_alone():
    from charpoet.data import EVAL_MIN_ROW, EVAL_STREAMS

    assert eval_layout(np.arange(101)).shape == (1, 101)  # short: one row
    rows = eval_layout(np.arange(5 * EVAL_MIN_ROW + 3))
    assert rows.shape == (5, EVAL_MIN_ROW) and rows[1, 0] == EVAL_MIN_ROW
    assert eval_layout(np.arange(1000 * EVAL_MIN_ROW)).shape[0] == EVAL_STREAMS
    assert eval_layout(np.arange(1)) is None


def _memmap(tmp_path, values, dtype=np.uint16):
    path = tmp_path / "ids.bin"
    np.asarray(values, dtype=dtype).tofile(path)
    return np.memmap(path, dtype=dtype, mode="r")


@pytest.mark.parametrize("rows", [None, (0, 1), (2, 5), (6, 7), (0, 7)])
def test_stream_batches_over_a_memmap_are_the_in_memory_layout(tmp_path, rows):
    values = np.random.default_rng(0).integers(0, 60_000, size=1003)
    ids = _memmap(tmp_path, values)
    batches = StreamBatches(ids, batch_size=7, seq_len=9, rows=rows)
    row_len = 1003 // 7
    reference = torch.from_numpy(values[: 7 * row_len].reshape(7, row_len))  # (B, L) int64, as before
    a, b = rows or (0, 7)
    assert (batches.batch_size, batches.local_rows, batches.steps_per_epoch) == (7, b - a, (row_len - 1) // 9)
    for k in range(batches.steps_per_epoch):
        x, y = batches.batch(k)
        assert x.dtype == y.dtype == torch.int64 and x.shape == (b - a, 9)
        assert torch.equal(x, reference[a:b, k * 9 : k * 9 + 9]) and torch.equal(y, reference[a:b, k * 9 + 1 : k * 9 + 10])


def test_released_map_pages_read_back_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "RELEASE_BYTES", 16)  # release after every batch
    values = np.arange(20_000) % 251
    batches = StreamBatches(_memmap(tmp_path, values, np.uint8), batch_size=4, seq_len=64)
    reference = StreamBatches(values, batch_size=4, seq_len=64)
    for k in range(batches.steps_per_epoch):
        assert all(torch.equal(p, q) for p, q in zip(batches.batch(k), reference.batch(k)))


def test_stream_batches_rows_must_lie_in_the_batch():
    for rows in ((0, 0), (3, 2), (-1, 2), (0, 5)):
        with pytest.raises(ConfigError, match="rows"):
            StreamBatches(np.arange(1000), batch_size=4, seq_len=10, rows=rows)


def _old_eval_layout(ids):
    """The evaluation layout before the token cap (what every small split keeps)."""
    n = len(ids)
    rows = max(1, min(data_module.EVAL_STREAMS, n // data_module.EVAL_MIN_ROW))
    row_len = n // rows
    return torch.from_numpy(np.asarray(ids[: rows * row_len], dtype=np.int64).reshape(rows, row_len))


@pytest.mark.parametrize("n", [2, 101, 2047, 5 * 2048 + 3, 64 * 2048 + 5, 200_001])
def test_eval_rows_of_small_splits_are_the_old_layout(n, tmp_path):
    values = np.arange(n) % 65_000
    rows = EvalRows.of(_memmap(tmp_path, values))
    expected = _old_eval_layout(values)
    assert rows.shape == tuple(expected.shape)
    assert torch.equal(rows.tensor(), expected)
    # a stateful pass, chunk by chunk, sees what _eval_rows used to slice from the tensor
    chunk = 256
    windows = list(rows.windows(chunk))
    starts = range(0, expected.shape[1] - 1, chunk)
    assert len(windows) == len(starts)
    for (x, y), start in zip(windows, starts):
        y_old = expected[:, start + 1 : start + chunk + 1]
        assert torch.equal(y, y_old) and torch.equal(x, expected[:, start : start + chunk][:, : y_old.shape[1]])
    if rows.shape[0] >= 3:
        assert torch.equal(rows.part(1, 3).tensor(), expected[1:3])
        x, y = rows.part(1, 3).window(5, 7)
        assert torch.equal(x, expected[1:3, 5:12]) and torch.equal(y, expected[1:3, 6:13])


def test_eval_rows_of_a_long_split_keep_the_head_of_every_stretch(monkeypatch):
    ids = np.zeros(3 * data_module.EVAL_MAX_TOKENS + 77, dtype=np.uint8)  # a view: nothing copied
    rows = EvalRows.of(ids)
    assert rows.shape == (64, data_module.EVAL_MAX_TOKENS // 64)

    monkeypatch.setattr(data_module, "EVAL_MAX_TOKENS", 64 * 3000)
    values = np.arange(64 * 2048 * 5 + 9)
    stretch = len(values) // 64
    rows = EvalRows.of(values)
    assert rows.shape == (64, 3000)
    assert torch.equal(rows.tensor(), torch.from_numpy(values[: 64 * stretch].reshape(64, stretch)[:, :3000]))
