"""Training you can watch and trust: cadences, metrics.jsonl, NaN rollback, early stopping, auto-resume."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from charpoet.cadence import Cadence
from charpoet.checkpoint import RunDir
from charpoet.config import RunConfig
from charpoet.errors import ConfigError
from charpoet.train import train

train_module = importlib.import_module("charpoet.train")  # the package's ``train`` is the function


@pytest.mark.parametrize(("text", "unit", "amount"), [
    ("20s", "seconds", 20), ("3m", "seconds", 180), ("1h", "seconds", 3600), ("1h30m", "seconds", 5400),
    ("90", "seconds", 90), ("0.5m", "seconds", 30), ("500steps", "steps", 500), ("1 step", "steps", 1),
    ("off", "off", 0), ("0", "off", 0), ("0steps", "off", 0),
])
def test_cadence_parse(text: str, unit: str, amount: float) -> None:
    cadence = Cadence.parse(text)
    assert (cadence.unit, cadence.amount) == (unit, amount)


@pytest.mark.parametrize("bad", ["", "3x", "m", "-5s", "steps", "1.5steps", "3m garbage"])
def test_cadence_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="--cadence"):
        Cadence.parse(bad)


def test_cadence_due() -> None:
    steps, minutes = Cadence.parse("10steps"), Cadence.parse("2m")
    assert not steps.due(9, 0, 0, 0) and steps.due(10, 0, 0, 0) and steps.due(20, 0, 13, 0)
    assert not steps.due(19, 0, 13, 0)  # multiples of the count, as an uninterrupted run
    assert minutes.due(0, 130, 0, 10) and not minutes.due(0, 129, 0, 10)
    assert not Cadence.parse("off").due(10**9, 1e9, 0, 0)


def test_old_configs_with_eval_every_still_load() -> None:
    d = RunConfig().to_dict()
    del d["train"]["stats_every"], d["train"]["snapshot_every"]
    d["train"]["eval_every"] = 250
    config = RunConfig.from_dict(d)
    assert config.train.stats_every == "250steps" and config.train.snapshot_every == "250steps"


def test_events_and_metrics_log(tiny_corpus, tiny_config, tmp_path) -> None:
    events = []
    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="10steps", snapshot_every="5steps",
                         sample_every="10steps", sample_below_loss=100.0)
    result = train(config, tmp_path / "run", on_event=events.append, log_every=2)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and {"step", "eval", "snapshot", "sample"} <= set(kinds)
    evals = [e for e in events if e.kind == "eval"]
    assert [e.step for e in evals] == [s for s in range(10, result.step + 1, 10)]
    preview = evals[0].info["preview"]
    assert len(preview["y"]) == len(preview["yp"]) > 0 and "\n" not in preview["y"]
    assert evals[0].metrics["remaining"] is not None and evals[0].metrics["grad_norm"] > 0
    samples = [e for e in events if e.kind == "sample"]
    assert samples[0].info["temperatures"] == [0.6, 0.8, 1.0] and samples[0].info["model"].training
    assert [e.step for e in events if e.kind == "snapshot"] == list(range(5, result.step + 1, 5))

    records = RunDir(tmp_path / "run").read_metrics_log()
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[0] == 2
    assert [r["step"] for r in records if r["kind"] == "eval"] == [e.step for e in evals] + (
        [result.step] if result.step % 10 else [])
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")


def test_resume_cuts_the_metrics_log_back_to_the_snapshot(tiny_corpus, tiny_config, tmp_path) -> None:
    run = tmp_path / "run"
    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="4steps", snapshot_every="10steps")
    train(config, run, stop_after_steps=13, log_every=1)  # ends with a snapshot at 13
    log = RunDir(run)
    # as if the process had been killed at step 17, after the last snapshot (13) was written
    for step in range(14, 18):
        log.append_metrics_log({"kind": "train", "step": step, "loss": 9.0})
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 18, "lo')  # a torn last line
    (run / ".last.safetensors.abc.tmp").write_bytes(b"half a file")
    events = []
    train(config, run, stop_after_steps=7, log_every=1, on_event=events.append)  # auto-resume
    assert events[0].info["start_step"] == 13 and events[0].info["restored"]
    assert not (run / ".last.safetensors.abc.tmp").exists()
    steps = [r["step"] for r in log.read_metrics_log() if r["kind"] == "train"]
    assert steps == list(range(1, 21))  # unbroken: 1..13 from the first session, 14..20 from the second
    assert all(r["loss"] != 9.0 for r in log.read_metrics_log() if r["kind"] == "train")


def _nan_at(calls: set[int], monkeypatch) -> list[int]:
    """Make sequence_loss return NaN on the given (1-based) calls; returns the call counter."""
    real, count = train_module.sequence_loss, [0]

    def fake(logits, targets):
        count[0] += 1
        loss = real(logits, targets)
        return loss * float("nan") if count[0] in calls else loss

    monkeypatch.setattr(train_module, "sequence_loss", fake)
    return count


def test_nan_rolls_back_to_the_snapshot_with_a_lower_learning_rate(tiny_corpus, tiny_config, tmp_path, monkeypatch) -> None:
    _nan_at({12}, monkeypatch)
    events = []
    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="100steps", snapshot_every="5steps",
                         schedule="constant", warmup_steps=0)
    result = train(config, tmp_path / "run", on_event=events.append, log_every=1)
    rollbacks = [e for e in events if e.kind == "rollback"]
    assert len(rollbacks) == 1
    info = rollbacks[0].info
    assert info["failed_at"] == 12 and info["to_step"] == 10 and info["lr_scale"] == 0.5
    assert result.stop_reason == "epochs"
    steps = [e for e in events if e.kind == "step"]
    assert [e.lr for e in steps if e.step <= 10][-1] == pytest.approx(1e-2)
    assert all(e.lr == pytest.approx(5e-3) for e in steps if e.step > 11)
    weights, _ = RunDir(tmp_path / "run").load_weights("last")
    assert all(torch.isfinite(w).all() for w in weights.values())
    records = RunDir(tmp_path / "run").read_metrics_log()
    assert [r["kind"] for r in records if r["step"] == 10][-1] == "rollback"
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps))  # the rolled-back steps 11 were replaced, not duplicated


def test_the_guard_on_the_device_skips_a_bad_step_and_rolls_back_before_the_state_is_read(
        tiny_corpus, tiny_config, tmp_path, monkeypatch) -> None:
    """The GPU path, on the CPU: no sync per step; fused AdamW skips the non-finite step by itself
    (found_inf) and the host looks every 4 steps, or earlier when a snapshot is due."""
    monkeypatch.setattr(train_module, "guard_interval", lambda device, fused: 4)
    _nan_at({13}, monkeypatch)
    looked, real_look = [], train_module._Session.guard_tripped

    def look(session):
        # the weights are still finite when the host looks: the bad step's update was skipped on the device
        looked.append((session.step, all(bool(torch.isfinite(p).all()) for p in session.model.parameters())))
        return real_look(session)

    monkeypatch.setattr(train_module._Session, "guard_tripped", look)
    events = []
    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="100steps", snapshot_every="5steps",
                         schedule="constant", warmup_steps=0)
    result = train(config, tmp_path / "run", on_event=events.append, log_every=100)
    (rollback,) = [e for e in events if e.kind == "rollback"]
    # step 13 failed; the snapshot due at step 15 made the host look before writing it
    assert rollback.info["failed_at"] == 13 and rollback.info["to_step"] == 10
    assert looked[:6] == [(4, True), (5, True), (8, True), (10, True), (12, True), (15, True)]
    assert result.stop_reason == "epochs"
    weights, _ = RunDir(tmp_path / "run").load_weights("last")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_an_infinite_gradient_never_reaches_the_weights(tiny_corpus, tiny_config, tmp_path, monkeypatch) -> None:
    real, count = train_module.grad_norm, [0]

    def fake(parameters, clip):
        count[0] += 1
        norm = real(parameters, clip)
        return norm * float("inf") if count[0] == 3 else norm

    monkeypatch.setattr(train_module, "grad_norm", fake)
    events = []
    train(tiny_config(tiny_corpus, num_epochs=0.3), tmp_path / "run", on_event=events.append)
    (rollback,) = [e for e in events if e.kind == "rollback"]
    assert rollback.info["to_step"] == 0 and "gradient norm inf" in rollback.info["reason"]


def test_repeated_nan_gives_up_and_keeps_the_last_good_state(tiny_corpus, tiny_config, tmp_path, monkeypatch) -> None:
    _nan_at(set(range(6, 10_000)), monkeypatch)
    events = []
    config = tiny_config(tiny_corpus, num_epochs=1.0, snapshot_every="5steps", max_rollbacks=2)
    result = train(config, tmp_path / "run", on_event=events.append)
    assert result.stop_reason == "diverged"
    assert [e.info["rollbacks"] for e in events if e.kind == "rollback"] == [1, 2]
    assert events[-1].kind == "end" and events[-1].info["stop_reason"] == "diverged"
    weights, meta = RunDir(tmp_path / "run").load_weights("last")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_early_stopping_on_validation_loss(tiny_corpus, tiny_config, tmp_path, monkeypatch) -> None:
    losses = iter([3.0, 2.0, 2.5, 2.4, 2.6, 1.0, 0.5])
    real = train_module.estimate_loss

    def fake(*args, **kwargs):
        metrics = real(*args, **kwargs)
        return {**metrics, "val_loss": next(losses)}

    monkeypatch.setattr(train_module, "estimate_loss", fake)
    config = tiny_config(tiny_corpus, num_epochs=5.0, stats_every="3steps", early_stop_patience=3)
    result = train(config, tmp_path / "run")
    assert result.stop_reason == "early-stop" and result.step == 15
    assert result.best_val_loss == 2.0
    _, meta = RunDir(tmp_path / "run").load_weights("best")
    assert meta["step"] == 6  # the best checkpoint is the one with val loss 2.0


def test_cadence_reference_points_survive_a_restart(tiny_corpus, tiny_config, tmp_path) -> None:
    run = tmp_path / "run"
    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="10steps", sample_every="7steps",
                         sample_below_loss=100.0)
    train(config, run, stop_after_steps=15)
    _, meta = RunDir(run).load_tensors("last.safetensors")
    trainer = meta["trainer"]
    assert trainer["last_stats"][0] == 10 and trainer["last_sample"][0] == 14
    assert 0 < trainer["last_stats"][1] <= trainer["last_sample"][1] <= trainer["elapsed"]


def test_a_crash_after_an_evaluation_does_not_change_early_stopping(tiny_corpus, tiny_config, tmp_path, monkeypatch) -> None:
    table = {5: 3.0, 10: 2.0, 15: 2.5, 20: 1.5, 25: 2.6, 30: 2.7, 35: 2.8, 40: 2.9}
    current = [0]
    real_evaluate = train_module._Session.evaluate

    def evaluate(self, *args, **kwargs):
        current[0] = self.step
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(train_module._Session, "evaluate", evaluate)
    monkeypatch.setattr(train_module, "estimate_loss", lambda *a, **k: {
        "val_loss": table.get(current[0], 9.0), "val_bpc": 1.0, "val_accuracy": 0.5, "val_tokens": 1})
    config = tiny_config(tiny_corpus, num_epochs=5.0, stats_every="5steps", snapshot_every="10steps",
                         early_stop_patience=3)
    whole = train(config, tmp_path / "whole")

    def crash_after_step_20_eval(event):
        if event.kind == "eval" and event.step == 20:
            raise RuntimeError("the machine died")  # after best.safetensors (step 20), before the snapshot

    with pytest.raises(RuntimeError):
        train(config, tmp_path / "split", on_event=crash_after_step_20_eval)
    _, meta = RunDir(tmp_path / "split").load_tensors("last.safetensors")
    assert meta["trainer"]["step"] == 10
    resumed = train(config, tmp_path / "split")
    assert whole.stop_reason == resumed.stop_reason == "early-stop"
    assert resumed.step == whole.step == 35 and resumed.best_val_loss == whole.best_val_loss == 1.5
    _, best = RunDir(tmp_path / "split").load_weights("best")
    assert best["step"] == 20
