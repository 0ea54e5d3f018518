import gzip
import json
import math
import os
import signal
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from charpoet.checkpoint import RunDir
from charpoet.corpus import library_from_paths
from charpoet.errors import CharpoetWarning, CheckpointError
from charpoet.train import get_lr, train

SRC = Path(__file__).resolve().parents[1] / "src" / "charpoet"


def _unigram_entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def test_loss_falls_well_below_unigram_entropy(tiny_corpus, tiny_config, tmp_path):
    config = tiny_config(tiny_corpus, num_epochs=6.0, stats_every="1000steps")
    result = train(config, tmp_path / "run")
    text = "".join(s.text for s in library_from_paths([str(tiny_corpus)]))
    final = result.history[-1]
    assert final["val_loss"] < 0.5 * _unigram_entropy(text)
    assert final["val_bpc"] == pytest.approx(final["val_loss"] / math.log(2))
    assert result.stop_reason == "epochs"


def _weights(run: Path, name: str = "last.safetensors") -> dict[str, torch.Tensor]:
    with safe_open(str(run / name), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("cell,layer_norm,precision", [("lstm", False, "auto"), ("gru", True, "fp32")])
def test_resume_gives_the_same_weights_as_one_run(tiny_corpus, tiny_config, tmp_path, cell, layer_norm, precision):
    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="7steps", precision=precision)
    config = replace(config, model=replace(config.model, cell=cell, layer_norm=layer_norm))
    whole = train(config, tmp_path / "whole", stop_after_steps=26)
    first = train(config, tmp_path / "split", stop_after_steps=13)
    assert first.step == 13 and first.stop_reason == "steps"
    stored = RunDir(tmp_path / "split").read_config()
    second = train(stored, tmp_path / "split", restore=True, stop_after_steps=13)
    assert second.step == whole.step == 26
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    for key in a:
        if not key.startswith("rng."):
            assert torch.equal(a[key], b[key]), key
    assert [h["step"] for h in second.history] == [7, 13, 14, 21, 26]


def test_schedule_warms_up_then_decays(tiny_config, tiny_corpus):
    tc = tiny_config(tiny_corpus).train
    tc = replace(tc, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert get_lr(0, 0.0, tc) == pytest.approx(0.1)
    assert get_lr(9, 0.0, tc) == pytest.approx(1.0)
    assert get_lr(50, 0.5, tc) == pytest.approx(0.55)
    assert get_lr(100, 1.0, tc) == pytest.approx(0.1)
    assert get_lr(50, 0.5, replace(tc, schedule="constant")) == 1.0


def test_run_directory_holds_no_pickle(tiny_corpus, tiny_config, tmp_path):
    from charpoet.runfiles import DECLARED

    run = tmp_path / "run"
    train(tiny_config(tiny_corpus, num_epochs=0.5), run)
    names = sorted(p.name for p in run.iterdir())
    assert names == ["best.safetensors", "config.json", "last.safetensors", "metrics.json", "metrics.jsonl",
                     "sources.bin", "sources.json", "tokens", "vocab.json"]
    assert set(names) <= {f.name for f in DECLARED}  # every file of a run is declared in charpoet.runfiles
    for path in [*run.iterdir(), *(run / "tokens").iterdir()]:
        if path.is_dir():
            continue
        raw = path.read_bytes()
        assert not raw.startswith(b"\x80"), f"{path.name} looks like a pickle"
        if path.suffix == ".json":
            json.loads(raw)
        elif path.suffix == ".jsonl":
            assert all(json.loads(line)["step"] >= 0 for line in raw.decode().splitlines())
        elif path.name == "sources.bin":  # the texts, each followed by 0xFF
            assert [t.decode() for t in raw.split(b"\xff")[:-1]] == [(tiny_corpus / n).read_text() for n in ("one.txt", "two.txt")]
        elif path.parent.name == "tokens":
            assert path.suffix == ".bin"  # raw token ids, described by tokens.json
        else:
            with safe_open(str(path), framework="pt") as f:
                assert list(f.keys())
    for source in SRC.rglob("*.py"):
        code = source.read_text()
        assert "import pickle" not in code and "torch.load(" not in code, source


def test_best_checkpoint_has_the_lowest_validation_loss(tiny_corpus, tiny_config, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(tiny_corpus, num_epochs=2.0, stats_every="10steps"), run)
    _, meta = RunDir(run).load_tensors("best.safetensors")
    assert meta["metrics"]["val_loss"] == min(h["val_loss"] for h in result.history)
    assert result.best_val_loss == meta["metrics"]["val_loss"]
    assert RunDir(run).read_metrics() == result.history


def test_sigint_stops_cleanly_and_the_run_continues(tiny_corpus, tiny_config, tmp_path):
    run = tmp_path / "run"

    def interrupt(event):
        if event.kind == "step" and event.step == 20:
            os.kill(os.getpid(), signal.SIGINT)

    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="1000steps")
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    result = train(config, run, on_event=interrupt, log_every=10)
    assert result.interrupted and result.step == 20
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    _, meta = RunDir(run).load_tensors("last.safetensors")
    assert meta["trainer"]["step"] == 20
    again = train(RunDir(run).read_config(), run, restore=True)
    assert again.stop_reason == "epochs" and again.step > 20 and again.history[-1]["step"] == again.step


def test_restore_with_a_new_batch_size_continues(tiny_corpus, tiny_config, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(tiny_corpus, num_epochs=1.0)
    train(config, run, stop_after_steps=10)
    stored = RunDir(run).read_config()
    bigger = replace(stored, data=replace(stored.data, batch_size=16))
    result = train(bigger, run, restore=True)
    assert result.stop_reason == "epochs"
    assert RunDir(run).read_config().data.batch_size == 16


def test_validation_loss_does_not_depend_on_the_training_batch_size(tiny_corpus, tiny_config, tmp_path):
    """The same weights score the same after a resume with another --batch-size, so best-model
    choice and early stopping compare like with like."""
    run = tmp_path / "run"
    first = train(tiny_config(tiny_corpus, num_epochs=1.0), run, stop_after_steps=10)
    assert first.history[-1]["step"] == 10
    (run / "metrics.json").unlink()  # the continued session then evaluates step 10 again
    stored = RunDir(run).read_config()
    for batch_size in (16, 3):
        again = train(replace(stored, data=replace(stored.data, batch_size=batch_size)), run, restore=True,
                      stop_after_steps=0)
        assert again.step == 10
        assert again.history[-1]["val_loss"] == first.history[-1]["val_loss"]
        (run / "metrics.json").unlink()


def test_a_nan_validation_loss_never_becomes_the_best(tiny_corpus, tiny_config, tmp_path, monkeypatch):
    import sys

    train_module = sys.modules["charpoet.train"]  # the package's `train` is the function
    real, calls = train_module.estimate_loss, []

    def first_is_nan(*args, **kwargs):
        metrics = real(*args, **kwargs)
        calls.append(metrics["val_loss"])
        return {**metrics, "val_loss": float("nan")} if len(calls) == 1 else metrics

    monkeypatch.setattr(train_module, "estimate_loss", first_is_nan)
    run = tmp_path / "run"
    result = train(tiny_config(tiny_corpus, num_epochs=1.0, stats_every="5steps", early_stop_patience=2), run,
                   stop_after_steps=20)
    losses = [h["val_loss"] for h in result.history]
    assert math.isnan(losses[0]) and all(math.isfinite(v) for v in losses[1:])
    assert result.best_val_loss == min(losses[1:])
    _, meta = RunDir(run).load_weights("best")
    assert meta["metrics"]["val_loss"] == min(losses[1:])
    assert result.stop_reason == "steps"  # later finite losses count as improvements, not as bad evaluations


def test_a_new_run_never_overwrites_an_existing_one(tiny_corpus, tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_corpus, num_epochs=0.2), run)
    before = (run / "last.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="--fresh"):
        train(tiny_config(tiny_corpus, num_epochs=0.2), run, restore=False)
    assert (run / "last.safetensors").read_bytes() == before


def test_interrupted_write_leaves_the_previous_checkpoint(tiny_corpus, tiny_config, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(tiny_corpus, num_epochs=0.2), run)
    before = (run / "last.safetensors").read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CheckpointError, match="cannot write .*last.safetensors: disk full"):
        RunDir(run).save_tensors("last.safetensors", {"x": torch.zeros(3)}, {})
    assert (run / "last.safetensors").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_word_level_run_reports_bits_per_character(tiny_corpus, tiny_config, tmp_path):
    config = tiny_config(tiny_corpus, num_epochs=3.0)
    config = replace(config, data=replace(config.data, tokenizer="word", seq_len=8))
    result = train(config, tmp_path / "run")
    final = result.history[-1]
    tokens_per_char = final["val_loss"] / math.log(2) / final["val_bpc"]
    assert 1.5 < tokens_per_char < 6  # words are several characters long
    assert final["val_loss"] < 1.0


def test_restoring_a_run_without_checkpoint_starts_it(tiny_corpus, tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_corpus, num_epochs=0.2), run)
    (run / "last.safetensors").unlink()  # as if killed before its first checkpoint
    with pytest.warns(CharpoetWarning, match="no checkpoint yet"):
        result = train(RunDir(run).read_config(), run, restore=True)
    assert result.stop_reason == "epochs" and (run / "last.safetensors").exists()


def test_restore_refuses_other_texts(tiny_corpus, tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_corpus, num_epochs=0.2), run)
    other = tmp_path / "other.txt"
    other.write_text("something else entirely\n" * 50)
    with pytest.raises(CheckpointError, match="other texts"):
        train(RunDir(run).read_config(), run, restore=True, library=library_from_paths([str(other)]))


def test_compile_trains_as_the_plain_model(tiny_corpus, tiny_config, tmp_path):
    """--compile runs the training forward through torch.compile; the checkpoint is the plain module's."""
    weights = []
    for compiled in (False, True):
        config = tiny_config(tiny_corpus, num_epochs=1.0, precision="fp32")
        config.model.drop_rate = 0.0
        config.train.compile = compiled
        train(config, tmp_path / f"run-{compiled}", stop_after_steps=3)
        weights.append(RunDir(tmp_path / f"run-{compiled}").load_weights("last")[0])
    plain, compiled = weights
    assert plain.keys() == compiled.keys()  # no "_orig_mod." prefix
    assert all(torch.allclose(plain[k], compiled[k], atol=1e-5) for k in plain)
