import numpy as np
import pytest

from charpoet.corpus import Library, Source, library_from_paths
from charpoet.data import StreamBatches, encode_library, eval_layout, split_point
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
