"""Run names (``%JOB%``) and ``charpoet runs``: run directories are written file by file."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charpoet.checkpoint import LAST, RunDir
from charpoet.cli import app
from charpoet.runs import format_age
from charpoet.config import ARCHITECTURE_KEYS, DataConfig, ModelConfig, RunConfig, TrainConfig
from charpoet.corpus import Library, Source
from charpoet.runs import JOB, RunSummary, corpus_name, expand_job, job_name, list_runs


def config(**options: object) -> RunConfig:
    sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
    kwargs = {s: cls(**{k: v for k, v in options.items() if k in {f.name for f in dataclasses.fields(cls)}})
              for s, cls in sections.items()}
    return RunConfig(**kwargs).validate()


# --- names ------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "corpus", "expected"), [
    ({"rnn_size": 256, "layer_norm": True}, "shakespeare", "shakespeare-char-lstm-2x256-emb64-norm"),
    ({"tokenizer": "word", "cell": "gru", "num_layers": 3, "rnn_size": 512, "embedding_size": 128},
     "verne", "verne-word10000-gru-3x512-emb128"),
    ({"valid_fraction": 0.05}, "tiny", "tiny-char-lstm-2x384-emb64-valid0.05"),
    ({"tokenizer": "word", "max_vocab": 500, "layer_norm": True, "valid_fraction": 0.2},
     "poe", "poe-word500-lstm-2x384-emb64-norm-valid0.2"),
    ({"max_vocab": 500}, "poe", "poe-char-lstm-2x384-emb64"),  # max_vocab does not shape a char vocabulary
])
def test_job_name(options: dict, corpus: str, expected: str) -> None:
    assert job_name(config(**options), corpus) == expected


@pytest.mark.parametrize(("corpus", "expected"), [
    ("Jules Verne", "jules-verne"),
    ("Les Misérables (vol. 1)", "les-miserables-vol.-1"),
    ("../../etc/passwd", "etc-passwd"),
    ("a/b\\c:d*e", "a-b-c-d-e"),
    ("  __Shakespeare__ ", "shakespeare"),
    ("???", "corpus"),
    ("", "corpus"),
])
def test_job_name_sanitises_the_corpus_name(corpus: str, expected: str) -> None:
    assert job_name(config(), corpus) == f"{expected}-char-lstm-2x384-emb64"


def test_job_name_is_at_most_80_characters_and_keeps_the_architecture() -> None:
    cfg = config(tokenizer="word", layer_norm=True, valid_fraction=0.125)
    one, two = job_name(cfg, "x" * 200 + "one"), job_name(cfg, "x" * 200 + "two")
    assert len(one) == len(two) == 80
    assert one != two  # a hash of the full corpus name keeps them apart
    assert one.endswith("-word10000-lstm-2x384-emb64-norm-valid0.125")
    assert re.fullmatch(r"[a-z0-9._-]+", one)


def test_job_name_ignores_training_options() -> None:
    base = job_name(config(), "tiny")
    other = config(learning_rate=1e-4, batch_size=7, seq_len=33, num_epochs=3.0, drop_rate=0.0,
                   warmup_steps=0, schedule="constant", seed=9, max_minutes=5.0, stats_every="20steps",
                   text_path=["elsewhere.txt"])
    assert job_name(other, "tiny") == base


CHANGED = {"cell": "gru", "num_layers": 3, "rnn_size": 100, "embedding_size": 7, "layer_norm": True,
           "tokenizer": "char", "max_vocab": 123, "valid_fraction": 0.3}


@pytest.mark.parametrize(("section", "key"), [(s, k) for s, keys in ARCHITECTURE_KEYS.items() for k in keys])
def test_every_architecture_key_changes_the_name(section: str, key: str) -> None:
    base = config(tokenizer="word")  # max_vocab only counts for words, so start from a word model
    changed = RunConfig.from_dict(base.to_dict())
    setattr(getattr(changed, section), key, CHANGED[key])
    assert getattr(changed, section) != getattr(base, section)
    assert job_name(changed.validate(), "tiny") != job_name(base, "tiny")


def test_expand_job_in_paths_and_urls() -> None:
    cfg, name = config(), "shakespeare-char-lstm-2x384-emb64"
    assert expand_job("runs/%JOB%", cfg, "shakespeare") == f"runs/{name}"
    assert expand_job(Path("runs") / JOB / "x", cfg, "shakespeare") == f"runs/{name}/x"
    assert expand_job("gs://bucket/job/%JOB%/tb-%JOB%", cfg, "shakespeare") == f"gs://bucket/job/{name}/tb-{name}"
    assert expand_job("runs/%job%/%JOB", cfg, "shakespeare") == "runs/%job%/%JOB"  # case-sensitive, whole token
    assert expand_job("runs/plain", cfg, "shakespeare") == "runs/plain"


def test_corpus_name_from_the_data_options(tmp_path: Path) -> None:
    (tmp_path / "poems.txt").write_text("x", encoding="utf-8")
    assert corpus_name(DataConfig()) == "shakespeare"
    assert corpus_name(DataConfig(text_path=[str(tmp_path / "poems.txt")])) == "poems"
    assert corpus_name(DataConfig(text_path=[str(tmp_path)])) == tmp_path.name
    assert corpus_name(DataConfig(text_path=[str(tmp_path / "*.txt")])) == "custom"
    assert corpus_name(DataConfig(text_path=["a.txt", "b.txt"])) == "custom"
    assert corpus_name(DataConfig(library="verne")) == "verne"
    assert corpus_name(DataConfig(library=str(tmp_path / "libs" / "poe"))) == "poe"


# --- listing ------------------------------------------------------------------------------
def make_run(path: Path, cfg: RunConfig, losses: list[float] | None, step: int | None, corpus: str = "tiny",
             age: float = 0.0) -> RunDir:
    """A run as the trainer leaves it: config, library, metrics, last.safetensors."""
    run = RunDir(path)
    path.mkdir(parents=True)
    run.write_config(cfg)
    run.write_library(Library(corpus, (Source("one", "One", "the cat sat on the mat\n" * 50),)))
    if losses is not None:
        run.write_metrics([{"step": 10 * (i + 1), "train_loss": 2.0, "val_loss": v, "val_bpc": v / 0.6931}
                           for i, v in enumerate(losses)])
    if step is not None:
        run.save_tensors(LAST, {"model.w": torch.zeros(2, 3)},
                         {"trainer": {"step": step, "epoch": 1, "best_val_loss": min(losses or [1e9]), "elapsed": 3.0}})
    stamp = time.time() - age
    for f in path.iterdir():
        os.utime(f, (stamp, stamp))
    return run


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root / "good", config(rnn_size=32, embedding_size=16), [2.0, 1.5, 1.7], step=300, age=300)
    make_run(root / "sweep" / "gru", config(cell="gru", tokenizer="word", layer_norm=True), [1.2], step=40,
             corpus="Verne")
    make_run(root / "fresh", config(), None, step=None, corpus="poe")  # started, not yet evaluated
    broken = root / "broken"
    make_run(broken, config(), [1.9], step=50, corpus="wrecked")
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run", encoding="utf-8")
    (root / "a" / "b" / "c" / "d" / "deep").mkdir(parents=True)  # below the search depth
    (root / "a" / "b" / "c" / "d" / "deep" / "config.json").write_text("{}", encoding="utf-8")
    return root


def test_list_runs(runs_dir: Path) -> None:
    found = list_runs(runs_dir)
    assert [r.name for r in found] == ["sweep/gru", "good", "broken", "fresh"]  # best loss first, unknown last
    gru, good, broken, fresh = found
    assert (gru.corpus, gru.architecture, gru.steps) == ("Verne", "word10000 gru 2x384 emb64 norm", 40)
    assert good == RunSummary(path=runs_dir / "good", name="good", corpus="tiny", architecture="char lstm 2x32 emb16",
                              steps=300, best_val_loss=1.5, best_val_bpc=pytest.approx(1.5 / 0.6931),
                              updated=pytest.approx(time.time() - 300, abs=5))
    assert fresh.best_val_loss is None and fresh.steps is None and fresh.error is None
    assert (fresh.corpus, fresh.architecture) == ("poe", "char lstm 2x384 emb64")


def test_a_broken_run_is_listed_with_what_is_known(runs_dir: Path) -> None:
    broken = next(r for r in list_runs(runs_dir) if r.name == "broken")
    assert (broken.corpus, broken.steps, broken.best_val_loss, broken.architecture) == ("wrecked", 50, 1.9, None)
    assert broken.error and broken.error.startswith("config.json is corrupt")


def test_corrupt_files_become_errors_not_exceptions(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", config(), [1.0], step=20)
    (run.path / LAST).write_bytes(b"\xff" * 7)
    (run.path / "sources.json").write_bytes(b"\xff not json at all")
    (r,) = list_runs(tmp_path)
    assert (r.steps, r.best_val_loss, r.corpus) == (10, 1.0, "shakespeare")  # steps from metrics, corpus from config
    assert "last.safetensors is corrupt" in r.error and "sources.json is corrupt" in r.error
    (run.path / "metrics.json").write_text("[1, ", encoding="utf-8")
    (run.path / "config.json").write_text('{"model": {"cell": "gru", "future_option": 1}}', encoding="utf-8")
    (r,) = list_runs(tmp_path)
    assert r.architecture == "char gru 2x384 emb64"  # unknown keys from another version are skipped
    assert "metrics.json is corrupt" in r.error and "unknown config key" in r.error


def test_metrics_jsonl_eval_lines_are_preferred(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", config(), [1.0], step=None)
    lines = [{"kind": "stats", "step": 5, "val_loss": 0.1}, {"kind": "eval", "step": 10, "val_loss": 0.9, "val_bpc": 1.3},
             {"kind": "eval", "step": 20, "val_loss": float("nan")}]
    (run.path / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + '\n{"kind": "ev', encoding="utf-8")
    (r,) = list_runs(tmp_path)
    assert (r.best_val_loss, r.best_val_bpc, r.steps, r.error) == (0.9, 1.3, 20, None)


def test_the_library_name_is_read_from_the_start_of_the_file(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", config(), None, step=None, corpus="big")
    path = run.path / "sources.json"
    path.write_bytes(path.read_bytes()[:80])  # cut short: the sources are gone, the name is not
    assert list_runs(tmp_path)[0].corpus == "big"
    legacy = run.path / "library.json.gz"  # older runs keep their library in one gzip JSON
    path.unlink()
    legacy.write_bytes(gzip.compress(b'{"format": "charpoet.library", "version": 1, "name": "older", "sources": [{"te'))
    assert list_runs(tmp_path)[0].corpus == "older"


def test_the_directory_itself_may_be_a_run(runs_dir: Path) -> None:
    (r,) = list_runs(runs_dir / "good")
    assert (r.name, r.steps) == ("good", 300)


def test_list_runs_errors(tmp_path: Path) -> None:
    from charpoet.errors import CheckpointError

    assert list_runs(tmp_path) == []
    with pytest.raises(CheckpointError, match="does not exist"):
        list_runs(tmp_path / "missing")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(CheckpointError, match="not a directory"):
        list_runs(tmp_path / "file")


# --- command ------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(app, ["runs", *args], env={"COLUMNS": "200"})


def test_cli_table(runs_dir: Path) -> None:
    result = invoke(str(runs_dir))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "corpus", "architecture"]
    assert [line.split()[0] for line in lines[1:]] == ["sweep/gru", "good", "broken", "fresh"]
    good = next(line for line in lines if line.startswith("good"))
    assert "char lstm 2x32 emb16" in good and "1.5000" in good and "300" in good and "(5 min ago)" in good
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", good)
    assert result.stderr.startswith("warning: broken: config.json is corrupt")


def test_cli_json(runs_dir: Path) -> None:
    result = invoke(str(runs_dir), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["sweep/gru", "good", "broken", "fresh"]
    assert rows[1]["steps"] == 300 and rows[1]["best_val_loss"] == 1.5 and rows[1]["path"] == str(runs_dir / "good")
    assert rows[2]["error"].startswith("config.json is corrupt") and rows[0]["error"] is None


def test_cli_empty_and_missing_directories(tmp_path: Path) -> None:
    result = invoke(str(tmp_path))
    assert result.exit_code == 0 and result.stdout == ""
    assert "no runs in" in result.stderr
    result = invoke(str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: run directory")


@pytest.mark.parametrize(("seconds", "text"), [(5, "just now"), (300, "5 min ago"), (7300, "2 h ago"),
                                               (86400, "1 day ago"), (3 * 86400 + 5, "3 days ago"), (-50, "just now")])
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def test_cli_table_through_a_pipe_never_wraps_or_cuts(runs_dir: Path) -> None:
    """`charpoet runs | grep NAME` works whatever the width: one whole line per run."""
    long = "shakespeare-char-lstm-2x384-emb64-with-a-very-long-experiment-name"
    make_run(runs_dir / long, config(rnn_size=32, embedding_size=16), [1.1], step=7, corpus="a" * 60)
    result = CliRunner().invoke(app, ["runs", str(runs_dir)], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and lines[0].split()[:3] == ["run", "corpus", "architecture"]
    (mine,) = [line for line in lines if long in line]
    assert mine.split()[:4] == [long, "a" * 60, "char", "lstm"] and "1.1000" in mine
    assert "\x1b[" not in result.stdout and "[dim]" not in result.stdout
