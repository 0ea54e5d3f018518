"""``charpoet evaluate`` and ``charpoet.evaluate_texts``: a run's scores on any texts.

Checked against training's own validation numbers, against a slow one-forward reference, across
chunk sizes, with out-of-vocabulary text for char and word runs, and through the CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import charpoet
from charpoet.cli import app
from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from charpoet.corpus import Source
from charpoet.data import split_point
from charpoet.errors import CharpoetError
from charpoet.model import RNNLM
from charpoet.sample import LanguageModel
from charpoet.tokenizer import CharTokenizer, WordTokenizer


def _valid_part(run: Path) -> str:
    """The validation part of a single-source run's text, as training cut it."""
    config = charpoet.load(run).config
    text = Path(config.data.text_path[0]).read_text(encoding="utf-8")
    return text[split_point(len(text), config.data.valid_fraction):]


def _reference(lm: LanguageModel, ids: np.ndarray) -> tuple[float, int]:
    """Summed nats and correct guesses of one forward pass over the whole stream (slow, obvious)."""
    x = torch.as_tensor(ids[None, :-1], dtype=torch.int64, device=lm.device)
    y = torch.as_tensor(ids[1:], dtype=torch.int64)
    with torch.no_grad():
        logits, _ = lm.model(x)
    flat = logits[0].double().cpu()
    return float(torch.nn.functional.cross_entropy(flat, y, reduction="sum")), int((flat.argmax(-1) == y).sum())


def _untrained(tokenizer: CharTokenizer | WordTokenizer, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    config = RunConfig(model=ModelConfig(rnn_size=16, embedding_size=8, num_layers=2, vocab_size=tokenizer.vocab_size),
                       data=DataConfig(tokenizer=tokenizer.kind))
    return LanguageModel(RNNLM(config.model), tokenizer, config, {})


# --- (1) a run's own validation text gives its recorded validation numbers -------------------

def test_the_validation_text_gives_the_recorded_validation_loss(trained_run: Path) -> None:
    # trained_run has one source; its validation part (~1,450 characters) is under 2 x 2,048
    # tokens, so training's EvalRows lays it out as ONE row from a zero state over the whole part:
    # exactly the one stream evaluate_texts scores.
    valid = _valid_part(trained_run)
    assert len(valid) < 2 * 2048
    lm = charpoet.load(trained_run)  # best weights; their metadata holds the evaluation that chose them
    recorded = lm.meta["metrics"]
    result = charpoet.evaluate_texts(lm, [Source("valid", "valid", text=valid)])
    total = result.total
    assert total.tokens == recorded["val_tokens"] + 1 and total.oov == 0
    assert abs(total.loss - recorded["val_loss"]) < 1e-4
    assert abs(total.bpc - recorded["val_bpc"]) < 1e-4
    assert abs(total.accuracy - recorded["val_accuracy"]) < 1e-9
    assert result.step == lm.meta["step"] and result.weights == "best" and result.tokenizer == "char"


def test_a_word_run_gives_its_recorded_val_bpc(tmp_path: Path) -> None:
    from conftest import make_text

    from charpoet.train import train

    (tmp_path / "text.txt").write_text(make_text(300, seed=3), encoding="utf-8")
    config = RunConfig(model=ModelConfig(rnn_size=16, embedding_size=8, drop_rate=0.0),
                       data=DataConfig(text_path=[str(tmp_path / "text.txt")], tokenizer="word", batch_size=4, seq_len=16),
                       train=TrainConfig(learning_rate=1e-2, warmup_steps=2, num_epochs=0.5, stats_every="20steps",
                                         device="cpu"))
    train(config, tmp_path / "run")
    lm = charpoet.load(tmp_path / "run")
    recorded = lm.meta["metrics"]
    valid = _valid_part(tmp_path / "run")
    total = charpoet.evaluate_texts(lm, [Source("valid", "valid", text=valid)]).total
    assert total.covered == total.characters == len(valid)  # a word run's bpc is per character of the text
    assert abs(total.loss - recorded["val_loss"]) < 1e-4
    assert abs(total.bpc - recorded["val_bpc"]) < 1e-4
    assert abs(total.accuracy - recorded["val_accuracy"]) < 1e-9


# --- (2) chunking changes nothing ---------------------------------------------------------------

def test_chunk_size_and_text_chunks_do_not_change_the_result(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import make_text

    lm = charpoet.load(trained_run)
    texts = [Source("a", "a", text=make_text(120, seed=5)), Source("b", "b", text=make_text(80, seed=6))]
    big = charpoet.evaluate_texts(lm, texts, chunk_tokens=4096)
    import charpoet.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "TEXT_CHUNK_CHARS", 13)  # the text read in tiny chunks too
    small = charpoet.evaluate_texts(lm, texts, chunk_tokens=7)
    for a, b in zip((*big.sources, big.total), (*small.sources, small.total)):
        assert (a.name, a.characters, a.tokens, a.scored, a.correct) == (b.name, b.characters, b.tokens, b.scored, b.correct)
        assert abs(a.loss - b.loss) < 1e-6 and abs(a.bpc - b.bpc) < 1e-6
    for score, source in zip(big.sources, texts):  # each source one stream from a zero state
        nats, correct = _reference(lm, lm.tokenizer.encode(source.text))
        assert abs(score.nats - nats) < 1e-3 and score.correct == correct
        assert score.scored == len(source.text) - 1
    total = big.total
    assert total.scored == sum(s.scored for s in big.sources)
    assert total.loss == pytest.approx(sum(s.nats for s in big.sources) / total.scored)


def test_word_tokens_read_in_chunks_are_those_of_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "don't stop-me now, I'm having such a good time\nI'm a rocket ship on my way to Mars " * 30
    tokenizer = WordTokenizer.fit([text[: len(text) // 2]], max_vocab=12)
    lm = _untrained(tokenizer)
    import charpoet.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "TEXT_CHUNK_CHARS", 5)  # cuts inside words and "don't"
    score = charpoet.evaluate_texts(lm, [Source("t", "t", text=text)], chunk_tokens=3).sources[0]
    ids = tokenizer.encode(text)
    nats, correct = _reference(lm, ids)
    assert score.tokens == len(ids) and score.oov == int((ids == 0).sum())
    assert abs(score.nats - nats) < 1e-3 and score.correct == correct


# --- (3) out of vocabulary ----------------------------------------------------------------------

def test_characters_outside_the_vocabulary_are_skipped_and_counted() -> None:
    clean = "the cat sat on the mat\nthe dog ran\n" * 20
    lm = _untrained(CharTokenizer(sorted(set(clean))))
    dirty = clean.replace("cat", "c€t").replace("dog", "dÖg!") + "€€"
    oov = dirty.count("€") + dirty.count("Ö") + dirty.count("!")
    result = charpoet.evaluate_texts(lm, [Source("dirty", "dirty", text=dirty), Source("clean", "clean", text=clean)])
    dirty_score, clean_score = result.sources
    assert dirty_score.oov == oov == 20 + 20 + 20 + 2
    assert dirty_score.oov_examples == ("€", "Ö", "!")  # distinct, in order of appearance
    assert dirty_score.characters == len(dirty) and dirty_score.covered == dirty_score.tokens == len(dirty) - oov
    # scored as the text without them: "c€t" -> "ct", "dÖg!" -> "dg"
    skipped = charpoet.evaluate_texts(lm, [Source("s", "s", text=dirty.translate({ord(c): None for c in "€Ö!"}))])
    assert dirty_score.nats == pytest.approx(skipped.total.nats, abs=1e-9) and dirty_score.correct == skipped.total.correct
    assert dirty_score.bpc == pytest.approx(dirty_score.loss / math.log(2))  # per scored character
    assert clean_score.oov == 0 and clean_score.oov_examples == ()
    assert result.total.oov == oov and result.total.oov_examples == ("€", "Ö", "!")


def test_words_outside_the_vocabulary_are_scored_as_unk() -> None:
    known = "the cat sat on the mat\n" * 10
    tokenizer = WordTokenizer.fit([known])
    lm = _untrained(tokenizer, seed=1)
    text = "the zebra sat on the giraffe\nthe zebra ran\n"
    score = charpoet.evaluate_texts(lm, [Source("t", "t", text=text)]).sources[0]
    assert score.oov == 4 and score.oov_examples == ("zebra", "giraffe", "ran")
    ids = tokenizer.encode(text)
    assert int((ids == tokenizer.unk_id).sum()) == 4 and score.tokens == len(ids)
    nats, correct = _reference(lm, ids)
    assert abs(score.nats - nats) < 1e-4 and score.correct == correct
    assert score.covered == len(text)
    assert score.bpc == pytest.approx(score.loss / math.log(2) * len(ids) / len(text))


def test_nothing_to_score_is_an_error() -> None:
    lm = _untrained(CharTokenizer(list("abc")))
    with pytest.raises(CharpoetError, match="nothing to score: all 4 of its characters are outside"):
        charpoet.evaluate_texts(lm, [Source("xyz", "x", text="xyz\n")])
    with pytest.raises(CharpoetError, match="nothing to score: it has 1 character"):
        charpoet.evaluate_texts(lm, [Source("one", "x", text="a€")])
    with pytest.raises(CharpoetError, match="no texts"):
        charpoet.evaluate_texts(lm, [])
    with pytest.raises(CharpoetError, match="chunk_tokens"):
        charpoet.evaluate_texts(lm, [Source("a", "a", text="abc")], chunk_tokens=0)


def test_to_dict_is_json_and_paths_load_the_run(trained_run: Path, tmp_path: Path) -> None:
    from conftest import make_text

    (tmp_path / "t.txt").write_text(make_text(20, seed=9), encoding="utf-8")
    result = charpoet.evaluate_texts(trained_run, [tmp_path / "t.txt"], weights="last", device="cpu")
    d = json.loads(json.dumps(result.to_dict()))
    assert d["weights"] == "last" and d["run"] == str(trained_run) and d["tokenizer"] == "char"
    assert [s["name"] for s in d["sources"]] == ["t"] and d["total"]["name"] == "total"
    assert set(d["total"]) >= {"characters", "tokens", "scored", "oov", "oov_examples", "loss", "bpc", "accuracy"}
    assert isinstance(result, charpoet.Evaluation)


# --- (4) the command ----------------------------------------------------------------------------

def _invoke(*args: object, stdin: str | bytes | None = None):  # noqa: ANN202
    return CliRunner().invoke(app, ["evaluate", *map(str, args)], input=stdin)


def test_the_table_has_a_row_per_source_and_a_total(trained_run: Path, tmp_path: Path) -> None:
    from conftest import make_text

    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "one.txt").write_text(make_text(30, seed=1), encoding="utf-8")
    (folder / "two.txt").write_text(make_text(20, seed=2) + "€\n", encoding="utf-8")
    result = _invoke(folder, "--checkpoint-path", trained_run)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["source", "characters", "tokens", "OOV", "loss", "bpc", "accuracy"]
    assert [line.split()[0] for line in lines[1:]] == ["one", "two", "total"]
    assert len({len(line) for line in lines}) == 1  # aligned columns, one line each
    assert lines[2].split()[3] == "1" and lines[3].split()[3] == "1"
    expected = charpoet.evaluate_texts(trained_run, [folder])
    assert lines[3].split()[5] == f"{expected.total.bpc:.4f}"
    assert "warning: two: 1 characters not in the run's vocabulary were skipped: '€'" in result.stderr


def test_json_and_stdin(trained_run: Path, tmp_path: Path) -> None:
    from conftest import make_text

    text = make_text(25, seed=4)
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    result = _invoke(tmp_path / "a.txt", "-", "--checkpoint-path", trained_run, "--weights", "last", "--json",
                     stdin=text.encode("utf-8"))
    assert result.exit_code == 0, result.stderr
    d = json.loads(result.stdout)
    assert [s["name"] for s in d["sources"]] == ["<stdin>", "a"]
    stdin_row, file_row = d["sources"]
    assert stdin_row["loss"] == file_row["loss"] and stdin_row["tokens"] == file_row["tokens"] == len(text)
    assert d["weights"] == "last" and d["run"] == str(trained_run) and d["total"]["tokens"] == 2 * len(text)
    assert d["step"] == charpoet.load(trained_run, "last").meta["trainer"]["step"] > 0
    assert d["total"]["bpc"] == pytest.approx(charpoet.evaluate_texts(trained_run, [tmp_path / "a.txt"], weights="last").total.bpc)


@pytest.mark.parametrize(("args", "stdin", "words"), [
    ((), None, "give the texts"),
    (("-",), b"", "standard input: file is empty"),
    (("-",), b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "binary"),
    (("-", "-"), b"abc\n", "more than once"),
    (("-",), "xzqQZ€".encode(), "nothing to score"),
])
def test_bad_stdin_and_arguments(trained_run: Path, args: tuple[str, ...], stdin: bytes | None, words: str) -> None:
    result = _invoke(*args, "--checkpoint-path", trained_run, stdin=stdin)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and words in lines[-1], result.stderr
    assert result.stdout == ""


def test_a_remote_run_is_read_through_a_local_copy(trained_run: Path, tmp_path: Path) -> None:
    import fsspec

    from conftest import make_text

    (tmp_path / "t.txt").write_text(make_text(20, seed=8), encoding="utf-8")
    fs = fsspec.filesystem("memory")
    url = "memory://charpoet-evaluate/run"
    fs.put(str(trained_run), url, recursive=True)
    try:
        remote = _invoke(tmp_path / "t.txt", "--checkpoint-path", url, "--json")
        missing = _invoke(tmp_path / "t.txt", "--checkpoint-path", "memory://charpoet-evaluate/nothing")
    finally:
        fs.rm("memory://charpoet-evaluate", recursive=True)
    assert remote.exit_code == 0, remote.stderr
    local = charpoet.evaluate_texts(trained_run, [tmp_path / "t.txt"])
    assert json.loads(remote.stdout)["total"]["loss"] == local.total.loss
    assert missing.exit_code == 2 and "no charpoet run" in missing.stderr
