"""The training monitor (samples, TensorBoard, loss plot) and the display of the new events."""

from __future__ import annotations

import io
import json
import sys
import time
import warnings

import pytest
import torch
from rich.console import Console

from charpoet.cli.progress import TrainDisplay
from charpoet.config import ModelConfig, RunConfig
from charpoet.corpus import Library, Source
from charpoet.errors import CharpoetWarning, ConfigError
from charpoet.model import RNNLM
from charpoet.monitor import TrainingMonitor, plot_metrics
from charpoet.tokenizer import build_tokenizer
from charpoet.train import TrainEvent

TEXT = "The cat sat on the mat.\nA dog ran in the fog.\nROMEO: what light through yonder window breaks?\n" * 20
TEMPS = [0.5, 1.0]


def event(kind: str, step: int = 10, **kwargs) -> TrainEvent:
    return TrainEvent(kind, step, step / 100, step / 100, **kwargs)


def sample_event(step: int = 40, length: int = 60) -> TrainEvent:
    tokenizer = build_tokenizer("char", [TEXT], 10000)
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(rnn_size=16, embedding_size=8, num_layers=1, vocab_size=tokenizer.vocab_size))
    model.train()
    library = Library("tiny", (Source("one", "One", TEXT),))
    info = {"model": model, "tokenizer": tokenizer, "config": RunConfig(), "library": library,
            "temperatures": TEMPS, "length": length, "seed": 7, "run_dir": None}
    return event("sample", step, loss=1.2, info=info)


def eval_event(step: int = 20) -> TrainEvent:
    metrics = {"step": step, "epoch": 0.2, "elapsed": 3725.0, "lr": 2e-3, "train_loss": 1.41, "val_loss": 1.52,
               "val_bpc": 2.19, "val_accuracy": 0.55, "val_tokens": 1000, "chars_per_sec": 12345.0,
               "grad_norm": 0.7, "remaining": 59.0}
    return event("eval", step, loss=1.41, metrics=metrics, info={"preview": {"y": "the cat⏎sat" * 20,
                                                                             "yp": "thd cat⏎sat" * 20}})


def scalars(log_dir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_samples_are_written_attributed_and_leave_model_and_rng_alone(tmp_path):
    received = []
    ev = sample_event()
    model = ev.info["model"]
    rng = torch.get_rng_state()
    with TrainingMonitor(tmp_path, tensorboard=False, on_samples=lambda s, x: received.append((s, x))) as monitor:
        monitor(ev)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    page = (tmp_path / "samples" / "step-0000040.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "step 40" in page
    lines = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["temperature"] for r in lines] == TEMPS
    assert all(r["step"] == 40 and len(r["text"]) == 60 and 0.0 <= r["copy_rate"] <= 1.0 for r in lines)
    assert received and received[0][0] == 40 and [t for t, _ in received[0][1]] == TEMPS
    assert [att.text for _, att in received[0][1]] == [r["text"] for r in lines]
    assert not (tmp_path / "tensorboard").exists()


def test_sampling_error_warns_once_and_turns_sampling_off(tmp_path):
    ev = sample_event()
    ev.info["temperatures"] = [-1.0]  # rejected by SampleOptions
    monitor = TrainingMonitor(tmp_path, tensorboard=False)
    with pytest.warns(CharpoetWarning, match="samples switched off"):
        monitor(ev)
    assert ev.info["model"].training and not monitor.enabled["samples"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor(sample_event())  # off now: nothing happens, no second warning
    assert not (tmp_path / "samples.jsonl").exists()


def test_tensorboard_logs_tags_and_purges_after_a_restart(tmp_path):
    with TrainingMonitor(tmp_path, tensorboard=True) as monitor:
        monitor(event("start", 0, info={"start_step": 0}))
        for step in range(1, 11):
            monitor(event("step", step, loss=3.0 - step / 10, lr=1e-3, chars_per_sec=500.0, info={"grad_norm": 1.0}))
        monitor(eval_event(10))
        monitor(sample_event(10, length=30))
        monitor(event("rollback", 10, info={"reason": "loss nan", "to_step": 10, "failed_at": 11,
                                           "lr_scale": 0.5, "rollbacks": 1}))
        monitor(event("end", 10, info={"stop_reason": "interrupted"}))
    time.sleep(1.05 - time.time() % 1)  # event files sort by their creation second
    with TrainingMonitor(tmp_path, tensorboard=True) as monitor:  # a killed run resumed from step 5
        monitor(event("start", 5, info={"start_step": 5}))
        for step in range(6, 9):
            monitor(event("step", step, loss=2.0, lr=1e-3, chars_per_sec=500.0, info={"grad_norm": 1.0}))
        monitor(event("end", 8, info={"stop_reason": "steps"}))
    log_dir = tmp_path / "tensorboard"
    assert [s for s, _ in scalars(log_dir, "train/loss")] == list(range(1, 9))
    assert [v for s, v in scalars(log_dir, "train/loss") if s > 5] == [2.0, 2.0, 2.0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/chars_per_sec", "train/grad_norm", "val/loss", "val/bpc",
            "val/accuracy", "sample/copy_rate_T0.5", "sample/longest_T1", "train/rollbacks"} <= tags


def test_tensorboard_off_writes_nothing_and_required_needs_the_package(tmp_path, monkeypatch):
    with TrainingMonitor(tmp_path, tensorboard=False) as monitor:
        monitor(event("start", 0, info={"start_step": 0}))
        monitor(event("step", 10, loss=2.0, info={"grad_norm": 1.0}))
    assert not (tmp_path / "tensorboard").exists()
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now fails
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        TrainingMonitor(tmp_path, tensorboard=True)
    assert not TrainingMonitor(tmp_path).enabled["tensorboard"]  # auto: off without the package


def test_loss_png_from_metrics_log_with_malformed_lines(tmp_path):
    lines = [json.dumps({"kind": "train", "step": s, "loss": 3.0 / s, "lr": 1e-3}) for s in range(1, 30)]
    lines += ['{"kind": "train", "step": 30, "lo', "not json", "[1, 2]", json.dumps({"kind": "train", "loss": 1.0})]
    lines += [json.dumps({"kind": "eval", "step": s, "val_loss": 2.0 / s, "train_loss": 1.0}) for s in (10, 20)]
    lines.append(json.dumps({"kind": "train", "step": 31, "loss": float("nan")}))
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with TrainingMonitor(tmp_path, tensorboard=False) as monitor:
        monitor(event("end", 31, info={"stop_reason": "epochs"}))
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert plot_metrics(empty) is None and not (empty / "loss.png").exists()


def test_display_renders_the_new_events(tmp_path):
    out = io.StringIO()
    display = TrainDisplay(Console(file=out, width=100))
    with display:
        display(eval_event(20))
        display(event("snapshot", 20, info={"path": "last.safetensors"}))
        display(event("rollback", 20, info={"reason": "loss nan", "to_step": 20, "failed_at": 24,
                                           "lr_scale": 0.5, "rollbacks": 1, "max_rollbacks": 3}))
        with TrainingMonitor(tmp_path, tensorboard=False, on_samples=display.show_samples) as monitor:
            monitor(sample_event(30, length=40))
        for reason in ("early-stop", "diverged"):
            display(event("end", 30, info={"stop_reason": reason}))
    text = out.getvalue()
    lines = text.splitlines()
    assert "val 1.5200" in text and "bpc 2.190" in text and "elapsed 1:02:05" in text and "remaining 0:00:59" in text
    y = next(line for line in lines if line.startswith("y:  "))
    yp = next(line for line in lines if line.startswith("yp: "))
    assert len(y) == len(yp) == 100 and y[4:7] == "the" and yp[4:7] == "thd"
    assert "snapshot saved at step 20" in text
    assert "rolled back to step 20, learning rate x0.5 (rollback 1 of 3)" in text
    assert "sample at step 30, T=0.5" in text and "sample at step 30, T=1" in text
    assert "validation loss stopped improving" in text and "gave up after repeated non-finite losses" in text



def test_resume_and_rollback_cut_the_samples_back(tmp_path) -> None:
    (tmp_path / "samples").mkdir()
    lines = [json.dumps({"step": s, "temperature": 0.8, "text": "x"}) + "\n" for s in (5, 10, 15, 20)]
    (tmp_path / "samples.jsonl").write_text("".join(lines) + '{"step": 25, "te', encoding="utf-8")
    for s in (5, 10, 15, 20):
        (tmp_path / "samples" / f"step-{s:07d}.html").write_text("<html/>")
    with TrainingMonitor(tmp_path, tensorboard=False) as monitor:
        monitor(event("start", step=15, info={"start_step": 15}))
        assert [json.loads(x)["step"] for x in (tmp_path / "samples.jsonl").read_text().splitlines()] == [5, 10, 15]
        monitor(event("rollback", step=5, info={"to_step": 5, "rollbacks": 1, "lr_scale": 0.5}))
    assert [json.loads(x)["step"] for x in (tmp_path / "samples.jsonl").read_text().splitlines()] == [5]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step-0000005.html"]
