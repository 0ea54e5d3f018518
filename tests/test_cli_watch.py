"""``charpoet train`` as a user watches it: auto-resume, --fresh, %JOB%, remote runs, samples, runs."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from typer.testing import CliRunner

from charpoet.cli import app

SMALL = ["--rnn-size", "32", "--embedding-size", "16", "--batch-size", "8", "--seq-len", "32",
         "--learning-rate", "0.01", "--warmup-steps", "5", "--device", "cpu", "--num-epochs", "1"]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def test_watch_a_run_and_continue_it(tiny_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--text-path", tiny_corpus, "--checkpoint-path", run, *SMALL, "--stats-every", "10steps",
            "--snapshot-every", "10steps", "--sample-every", "10steps", "--sample-below-loss", "10",
            "--sample-length", "60", "--sample-temperatures", "0.5,1.0", "--tensorboard"]
    first = ok(cli(*args))
    assert "y:" in first.stderr and "yp:" in first.stderr  # the seeds' side-by-side view
    assert "sample at step 10" in first.stderr and "T=0.5" in first.stderr
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["temperature"] for s in samples[:2]] == [0.5, 1.0] and all(0 <= s["copy_rate"] <= 1 for s in samples)
    assert (run / "samples" / "step-0000010.html").is_file()
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert list((run / "tensorboard").iterdir())
    steps = json.loads((run / "metrics.json").read_text())[-1]["step"]

    # the same command again: the run is complete (1 epoch); asking for 2 epochs continues it
    more = ok(cli(*args[:-1], "--num-epochs", "2", "--no-tensorboard"))
    assert "continuing" in more.stderr
    assert json.loads((run / "metrics.json").read_text())[-1]["step"] == 2 * steps

    listed = ok(cli("runs", tmp_path, "--json"))
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["steps"] == 2 * steps and row["corpus"] == "corpus" and row["best_val_loss"] > 0


def test_fresh_moves_the_old_run_aside(tiny_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", run, *SMALL, "--num-epochs", "0.2"))
    again = ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", run, *SMALL, "--num-epochs", "0.2",
                   "--fresh"))
    assert "moved the old run to" in again.stderr
    (old,) = tmp_path.glob("run.old-*")
    assert (old / "last.safetensors").is_file() and (run / "last.safetensors").is_file()
    assert "training on" in again.stderr
    result = cli("train", "--checkpoint-path", run, "--restore", "--fresh")
    assert result.exit_code == 2 and "not both" in result.stderr
    # a bad option or missing texts: the error comes first, the old run stays where it is
    for bad in (["--learning-rate", "-1"], ["--text-path", tmp_path / "missing.txt"]):
        result = cli("train", "--checkpoint-path", run, "--fresh", *bad)
        assert result.exit_code == 2 and (run / "config.json").is_file()
    assert len(list(tmp_path.glob("run.old-*"))) == 1


def test_job_names(tiny_corpus: Path, tmp_path: Path) -> None:
    pattern = str(tmp_path / "runs" / "%JOB%")
    ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", pattern, *SMALL, "--num-epochs", "0.2"))
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "corpus-char-lstm-2x32-emb16"
    # another learning rate or batch size continues the same run; another size is another run
    again = ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", pattern, *SMALL, "--num-epochs", "0.4",
                   "--learning-rate", "0.005", "--batch-size", "4"))
    assert "continuing" in again.stderr
    ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", pattern, *SMALL[2:], "--rnn-size", "24",
           "--num-epochs", "0.2"))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "corpus-char-lstm-2x24-emb16", "corpus-char-lstm-2x32-emb16"]


@pytest.fixture
def memory_fs():
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    yield fs
    fs.store.clear()


def test_remote_run_directory(tiny_corpus: Path, memory_fs) -> None:
    url = "memory://bucket/runs/tiny"
    ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", url, *SMALL, "--num-epochs", "0.3",
           "--no-tensorboard"))
    names = {Path(p).name for p in memory_fs.find("/bucket/runs/tiny")}
    assert {"config.json", "last.safetensors", "best.safetensors", "metrics.jsonl", "sources.json", "sources.bin"} <= names
    assert not [p for p in memory_fs.find("/bucket/runs/tiny") if "/tokens/" in p]  # derived on each machine, not uploaded
    assert not [n for n in names if n.endswith(".tmp")]
    # continue it from the remote copy alone, then generate from it
    from charpoet.corpus.cache import charpoet_home

    import shutil

    shutil.rmtree(charpoet_home() / "remote-runs")
    more = ok(cli("train", "--checkpoint-path", url, "--num-epochs", "0.6", "--no-tensorboard"))
    assert "continuing" in more.stderr
    config = json.loads(memory_fs.cat("/bucket/runs/tiny/config.json"))
    assert config["train"]["num_epochs"] == 0.6
    generated = ok(cli("generate", "--checkpoint-path", url, "--length", "20", "--seed", "1"))
    assert len(generated.stdout) >= 20


def test_interrupted_training_exits_130(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    import importlib

    train_module = importlib.import_module("charpoet.train")
    real = train_module._Session.stop_reason

    def interrupt_at_step_3(self, *args):
        return "interrupted" if self.step >= 3 else real(self, *args)

    monkeypatch.setattr(train_module._Session, "stop_reason", interrupt_at_step_3)
    result = cli("train", "--text-path", tiny_corpus, "--checkpoint-path", tmp_path / "run", *SMALL)
    assert result.exit_code == 130 and "interrupted; last state saved" in result.stderr


def test_diverged_training_is_a_clear_error(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    import importlib

    train_module = importlib.import_module("charpoet.train")
    monkeypatch.setattr(train_module, "sequence_loss", lambda logits, y: logits.sum() * float("nan"))
    result = cli("train", "--text-path", tiny_corpus, "--checkpoint-path", tmp_path / "run", *SMALL,
                 "--max-rollbacks", "1")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: training diverged")
    assert "rolled back" in result.stderr


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--stats-every", "3x", "--stats-every"), ("--snapshot-every", "-1m", "--snapshot-every"),
    ("--sample-temperatures", "0.5,hot", "--sample-temperatures"), ("--nan-lr-factor", "1.5", "--nan-lr-factor"),
    ("--early-stop-patience", "-1", "--early-stop-patience"), ("--sample-length", "0", "--sample-length"),
])
def test_bad_watch_options(tiny_corpus: Path, tmp_path: Path, flag: str, value: str, message: str) -> None:
    result = cli("train", "--text-path", tiny_corpus, "--checkpoint-path", tmp_path / "run", flag, value)
    assert result.exit_code == 2 and message in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_failed_upload_does_not_stop_training(tiny_corpus: Path, memory_fs, monkeypatch) -> None:
    from charpoet.errors import CheckpointError
    from charpoet.storage import RunLocation

    real, calls = RunLocation.push, [0]

    def flaky(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 1:
            raise CheckpointError("cannot upload last.safetensors to memory://bucket/r: network down")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RunLocation, "push", flaky)
    url = "memory://bucket/r"
    result = ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", url, *SMALL, "--num-epochs", "0.3",
                    "--stats-every", "5steps", "--no-tensorboard"))
    assert "warning: cannot upload" in result.stderr and "retries the upload" in result.stderr
    assert memory_fs.exists("/bucket/r/config.json") and memory_fs.exists("/bucket/r/last.safetensors")


def test_summary_dir_puts_tensorboard_logs_under_a_shared_root(tiny_corpus: Path, tmp_path: Path) -> None:
    """--summary-dir ROOT: each run's TensorBoard logs in ROOT/<run name>; with %JOB% the path as expanded."""
    pytest.importorskip("tensorboard")
    for run, summary in (("runs/a", tmp_path / "board"), ("runs/b", tmp_path / "board"),
                         ("runs/c", tmp_path / "jobs" / "%JOB%")):
        ok(cli("train", "--text-path", tiny_corpus, "--checkpoint-path", tmp_path / run, *SMALL,
               "--num-epochs", "0.3", "--tensorboard", "--summary-dir", str(summary)))
        assert not (tmp_path / run / "tensorboard").exists()
    assert sorted(p.name for p in (tmp_path / "board").iterdir()) == ["a", "b"]
    for name in ("a", "b"):
        assert list((tmp_path / "board" / name).glob("events.out.tfevents.*"))
    (job,) = (tmp_path / "jobs").iterdir()
    assert job.name.startswith("corpus-") and list(job.glob("events.out.tfevents.*"))
    assert cli("train", "--text-path", tiny_corpus, "--checkpoint-path", tmp_path / "runs/d", *SMALL,
               "--summary-dir", "memory://board").exit_code == 2
