"""Validation and test sources given apart (issue 16): ``--valid-path``, ``--test-path``, ``--data-prefix``.

With ``--valid-path`` the training sources are used whole and validation reads exactly the given
files; ``--test-path`` sources are scored once at the end of training with ``charpoet.evaluate_texts``;
the run keeps copies of both (``valid.json/.bin``, ``test.json/.bin``), so it continues without them.
Training's numbers are checked against ``evaluate_texts`` on the same files: a validation file
shorter than 2 x 2,048 tokens is one row from a zero state in training's ``EvalRows``, exactly the
one stream ``evaluate_texts`` scores (tests/test_evaluate.py).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import charpoet
from charpoet.checkpoint import RunDir
from charpoet.cli import app
from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from charpoet.train import TrainEvent, train

SMALL = ["--rnn-size", "32", "--embedding-size", "16", "--batch-size", "8", "--seq-len", "32",
         "--learning-rate", "0.01", "--warmup-steps", "5", "--device", "cpu", "--stats-every", "20steps"]
TEST_KEYS = ("test_loss", "test_bpc", "test_accuracy", "test_tokens", "test_oov")


def cli(*args: object):  # noqa: ANN201
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result):  # noqa: ANN001, ANN201
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def _config(train_path: Path | str, valid: list[Path] | None = None, test: list[Path] | None = None,
            tokenizer: str = "char", **train_options: object) -> RunConfig:
    t = {"learning_rate": 1e-2, "warmup_steps": 5, "num_epochs": 1.0, "stats_every": "20steps", "device": "cpu",
         **train_options}
    return RunConfig(
        model=ModelConfig(rnn_size=32, embedding_size=16, num_layers=2, drop_rate=0.0),
        data=DataConfig(text_path=[str(train_path)], valid_path=[str(p) for p in valid or []],
                        test_path=[str(p) for p in test or []], tokenizer=tokenizer, batch_size=8, seq_len=32),
        train=TrainConfig(**t),  # type: ignore[arg-type]
    ).validate()


def _train(config: RunConfig, run: Path, **kwargs: object) -> list[TrainEvent]:
    events: list[TrainEvent] = []
    train(config, run, on_event=events.append, **kwargs)  # type: ignore[arg-type]
    return events


def _only(events: list[TrainEvent], kind: str) -> TrainEvent:
    (found,) = [e for e in events if e.kind == kind]
    return found


def _history(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def _files(tmp_path: Path) -> dict[str, Path]:
    """A training text (~5,300 characters), a validation text under 4,096 characters, two test texts."""
    from conftest import make_text

    root = tmp_path / "texts"
    (root / "test").mkdir(parents=True)
    files = {"train": root / "train.txt", "valid": root / "valid.txt",
             "test-a": root / "test" / "a.txt", "test-b": root / "test" / "b.txt"}
    for (name, path), (lines, seed) in zip(files.items(), ((150, 1), (60, 7), (40, 8), (25, 9))):
        path.write_text(make_text(lines, seed=seed), encoding="utf-8")
    assert len(files["valid"].read_text(encoding="utf-8")) < 4096  # one row of training's EvalRows
    return files


def _length(path: Path) -> int:
    return len(path.read_text(encoding="utf-8"))


# --- (1) the training text is used whole; validation reads exactly the given file --------------------

def test_valid_path_trains_on_everything_and_validates_on_the_given_file(tmp_path: Path) -> None:
    files = _files(tmp_path)
    run = tmp_path / "run"
    events = _train(_config(files["train"], [files["valid"]]), run)
    info = _only(events, "start").info
    assert info["train_tokens"] == _length(files["train"])  # no held-out tail
    assert info["valid_tokens"] == _length(files["valid"])
    assert info["valid_oov"] == 0
    history = _history(run)
    final = history[-1]
    assert final["step"] == _only(events, "end").step
    assert final.get("valid_oov", 0) == 0  # (written when there are any)
    assert not any(key in final for key in TEST_KEYS)  # no test sources: no test scores
    # the final evaluation is of the last weights (it is at the last step, which last.safetensors holds)
    result = charpoet.evaluate_texts(run, [files["valid"]], weights="last", device="cpu")
    total = result.total
    assert result.step == final["step"]
    assert total.tokens == _length(files["valid"]) and total.scored == final["val_tokens"] and total.oov == 0
    assert abs(total.loss - final["val_loss"]) < 1e-4
    assert abs(total.bpc - final["val_bpc"]) < 1e-4
    assert abs(total.accuracy - final["val_accuracy"]) < 1e-9
    # and the best weights carry the evaluation that chose them
    lm = charpoet.load(run, device="cpu")
    best = charpoet.evaluate_texts(lm, [files["valid"]]).total
    assert abs(best.loss - lm.meta["metrics"]["val_loss"]) < 1e-4
    assert (run / "valid.json").is_file() and (run / "valid.bin").is_file()
    assert not (run / "test.json").exists()


# --- (2) the test score is evaluate_texts's on the end-of-training model -----------------------------

def test_the_test_score_is_that_of_evaluate_on_the_last_weights(tmp_path: Path) -> None:
    files = _files(tmp_path)
    run = tmp_path / "run"
    events = _train(_config(files["train"], [files["valid"]], [files["test-a"].parent]), run)
    final = _history(run)[-1]
    end = _only(events, "end")
    assert end.metrics is not None
    for key in TEST_KEYS:
        assert key in final and end.metrics[key] == final[key]
    result = charpoet.evaluate_texts(run, [files["test-a"].parent], weights="last", device="cpu")
    assert [s.name for s in result.sources] == ["a", "b"]
    total = result.total
    assert abs(final["test_loss"] - total.loss) < 1e-6
    assert abs(final["test_bpc"] - total.bpc) < 1e-6
    assert abs(final["test_accuracy"] - total.accuracy) < 1e-9
    assert final["test_tokens"] == total.scored and final["test_oov"] == 0  # scored tokens, as val_tokens
    assert (run / "test.json").is_file() and (run / "test.bin").is_file()
    # only the end of training scores the test sources
    assert not any(key in h for h in _history(run)[:-1] for key in TEST_KEYS)


def test_an_interrupted_session_scores_no_test_and_the_continued_run_does(tmp_path: Path) -> None:
    import os
    import signal

    files = _files(tmp_path)
    run = tmp_path / "run"

    def interrupt(event: TrainEvent) -> None:
        if event.kind == "step" and event.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    config = _config(files["train"], [files["valid"]], [files["test-a"]], stats_every="1000steps")
    result = train(config, run, on_event=interrupt, log_every=5)
    assert result.interrupted
    history = _history(run) if (run / "metrics.json").exists() else []
    assert not any(key in h for h in history for key in TEST_KEYS)
    again = train(RunDir(run).read_config(), run, restore=True)
    assert again.stop_reason == "epochs"
    assert all(key in _history(run)[-1] for key in TEST_KEYS)


# --- (3) out of vocabulary ----------------------------------------------------------------------------

def test_characters_outside_the_training_vocabulary_are_skipped_and_counted(tmp_path: Path) -> None:
    files = _files(tmp_path)
    valid = files["valid"].read_text(encoding="utf-8")
    assert not {"€", "Ö"} & set(files["train"].read_text(encoding="utf-8"))
    dirty = tmp_path / "dirty-valid.txt"
    dirty.write_text("€" + valid[:500] + "Ö" + valid[500:] + "€", encoding="utf-8")  # 3 outside the vocabulary
    dirty_test = tmp_path / "dirty-test.txt"
    dirty_test.write_text(files["test-a"].read_text(encoding="utf-8").replace("cat", "c€t", 2), encoding="utf-8")
    run = tmp_path / "run"
    from charpoet.errors import CharpoetWarning

    with pytest.warns(CharpoetWarning, match="3 characters of the validation texts"):
        events = _train(_config(files["train"], [dirty], [dirty_test]), run)
    info = _only(events, "start").info
    assert info["valid_oov"] == 3
    assert info["valid_tokens"] == len(valid)  # the stream is the text without them
    assert "€" not in charpoet.load(run, device="cpu").tokenizer.chars  # the vocabulary is the training text's
    final = _history(run)[-1]
    assert final["valid_oov"] == 3 and final["test_oov"] == 2
    assert math.isfinite(final["val_loss"]) and math.isfinite(final["test_bpc"])
    # validation is the stream with them removed: as evaluate scores the dirty file
    total = charpoet.evaluate_texts(run, [dirty], weights="last", device="cpu").total
    assert total.oov == 3 and abs(total.loss - final["val_loss"]) < 1e-4


def test_a_word_run_on_jules_records_a_test_score(shared_corpora: Path, tmp_path: Path) -> None:
    jules = shared_corpora / "jules"
    if not (jules / "jules.valid.txt").is_file():
        pytest.skip(f"{jules} has no jules.valid.txt")
    run = tmp_path / "run"
    config = _config(jules / "jules.valid.txt", test=[jules / "jules.test.txt"], tokenizer="word",
                     num_epochs=0.02, stats_every="1000steps")
    config.model.rnn_size, config.model.embedding_size, config.model.num_layers = 16, 8, 1
    config.data.max_vocab = 2000
    events = _train(config, run)
    assert _only(events, "end").info["stop_reason"] == "epochs"
    final = _history(run)[-1]
    assert math.isfinite(final["test_bpc"]) and final["test_bpc"] > 0
    assert final["test_oov"] > 0  # a 2,000-word vocabulary leaves words of the test text out
    # (evaluate_texts is not run again here: ~70,000 steps of a CPU LSTM; the scores are checked above)
    tokenizer = charpoet.load(run, device="cpu").tokenizer
    ids = tokenizer.encode((jules / "jules.test.txt").read_text(encoding="utf-8"))
    assert final["test_tokens"] == len(ids) - 1 and final["test_oov"] == int((ids == tokenizer.unk_id).sum())


# --- (4) --data-prefix ----------------------------------------------------------------------------------

def test_data_prefix_is_the_three_explicit_paths(tmp_path: Path) -> None:
    files = _files(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    for part, source in (("train", "train"), ("valid", "valid"), ("test", "test-a")):
        shutil.copy(files[source], data / f"poems.{part}.txt")
    ok(cli("train", "--data-prefix", data / "poems", "--checkpoint-path", tmp_path / "prefixed", *SMALL,
           "--num-epochs", "1"))
    ok(cli("train", "--text-path", data / "poems.train.txt", "--valid-path", data / "poems.valid.txt",
           "--test-path", data / "poems.test.txt", "--checkpoint-path", tmp_path / "explicit", *SMALL,
           "--num-epochs", "1"))
    prefixed, explicit = _history(tmp_path / "prefixed")[-1], _history(tmp_path / "explicit")[-1]
    for key in ("step", "val_tokens", "test_tokens", "test_oov"):
        assert prefixed[key] == explicit[key], key
    for key in ("val_loss", "test_loss", "test_bpc"):
        assert abs(prefixed[key] - explicit[key]) < 1e-6, key
    stored = charpoet.load(tmp_path / "prefixed", device="cpu").config.data
    assert stored.text_path == [str(data / "poems.train.txt")] or stored.data_prefix == str(data / "poems")
    # without NAME.test.txt: training and validation only
    (data / "poems.test.txt").unlink()
    ok(cli("train", "--data-prefix", data / "poems", "--checkpoint-path", tmp_path / "no-test", *SMALL,
           "--num-epochs", "0.5"))
    assert not any(key in _history(tmp_path / "no-test")[-1] for key in TEST_KEYS)
    assert not (tmp_path / "no-test" / "test.json").exists()


# --- (5) a run keeps its validation and test sources ------------------------------------------------

def test_a_run_continues_without_any_of_its_files(tmp_path: Path) -> None:
    files = _files(tmp_path)
    run = tmp_path / "run"
    args = ["train", "--text-path", files["train"], "--valid-path", files["valid"], "--test-path",
            files["test-a"].parent, "--checkpoint-path", run, *SMALL]
    ok(cli(*args, "--num-epochs", "1"))
    first = _history(run)[-1]
    expected = charpoet.evaluate_texts(run, [files["valid"]], weights="last", device="cpu").total
    valid_text = files["valid"].read_text(encoding="utf-8")
    shutil.rmtree(files["train"].parent)  # every text the run was made from is gone
    more = ok(cli("train", "--checkpoint-path", run, "--num-epochs", "2"))
    assert "continuing" in more.stderr
    final = _history(run)[-1]
    assert final["step"] == 2 * first["step"]
    assert final["val_tokens"] == first["val_tokens"] == expected.scored
    assert all(key in final for key in TEST_KEYS) and final["test_tokens"] == first["test_tokens"]
    # the stored validation text is the original: the continued run's last score is evaluate's on it
    copy = tmp_path / "valid-again.txt"
    copy.write_text(valid_text, encoding="utf-8")
    again = charpoet.evaluate_texts(run, [copy], weights="last", device="cpu").total
    assert abs(again.loss - final["val_loss"]) < 1e-4


# --- (6) charpoet runs and charpoet evaluate --------------------------------------------------------

def test_runs_shows_the_test_bpc_and_evaluate_scores_the_stored_test_sources(tmp_path: Path) -> None:
    files = _files(tmp_path)
    runs = tmp_path / "runs"
    run = runs / "tested"
    ok(cli("train", "--text-path", files["train"], "--valid-path", files["valid"], "--test-path",
           files["test-a"].parent, "--checkpoint-path", run, *SMALL, "--num-epochs", "1"))
    ok(cli("train", "--text-path", files["train"], "--checkpoint-path", runs / "untested", *SMALL,
           "--num-epochs", "0.5"))
    test_bpc = _history(run)[-1]["test_bpc"]
    listed = ok(cli("runs", runs)).stdout.splitlines()
    assert "test bpc" in listed[0]
    (row,) = [line for line in listed if line.startswith("tested")]
    assert f"{test_bpc:.3f}" in row
    (other,) = [line for line in listed if line.startswith("untested")]
    assert f"{test_bpc:.3f}" not in other
    rows = {r["name"]: r for r in map(json.loads, ok(cli("runs", runs, "--json")).stdout.splitlines())}
    assert rows["tested"]["test_bpc"] == pytest.approx(test_bpc) and rows["untested"]["test_bpc"] is None
    # the stored test sources, scored with the best weights (evaluate's default), the texts deleted
    expected = charpoet.evaluate_texts(run, [files["test-a"].parent], device="cpu")
    shutil.rmtree(files["train"].parent)
    result = ok(cli("evaluate", "--checkpoint-path", run, "--device", "cpu", "--json"))
    scored = json.loads(result.stdout)
    assert [s["name"] for s in scored["sources"]] == ["a", "b"]
    assert abs(scored["total"]["bpc"] - expected.total.bpc) < 1e-6
    assert scored["total"]["tokens"] == expected.total.tokens
    table = ok(cli("evaluate", "--checkpoint-path", run, "--device", "cpu")).stdout
    assert f"{expected.total.bpc:.4f}" in table
    # a run without test sources still wants texts
    none = cli("evaluate", "--checkpoint-path", runs / "untested", "--device", "cpu")
    assert none.exit_code == 2 and "give the texts" in none.stderr


# --- a test text with nothing to score never costs the training ------------------------------------

@pytest.mark.parametrize("text", ["€€€ÖÖ\n", "a"], ids=["all-out-of-vocabulary", "one-character"])
def test_a_test_text_with_nothing_to_score_is_refused_first_or_does_not_lose_the_training(
        tmp_path: Path, text: str) -> None:
    files = _files(tmp_path)
    (tmp_path / "bad-test.txt").write_text(text, encoding="utf-8")
    run = tmp_path / "run"
    result = cli("train", "--text-path", files["train"], "--valid-path", files["valid"], "--test-path",
                 tmp_path / "bad-test.txt", "--checkpoint-path", run, *SMALL, "--num-epochs", "0.5")
    if result.exit_code == 2:  # refused before training: one line, no run left behind
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "bad-test" in result.stderr
        assert not run.exists(), sorted(p.name for p in run.iterdir())
        return
    ok(result)  # or trained: the end-of-training snapshot is written, the run is complete
    final = _history(run)[-1]
    assert charpoet.load(run, weights="last", device="cpu").meta["trainer"]["step"] == final["step"] > 0
