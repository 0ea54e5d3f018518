"""kill -9 at any moment loses at most one snapshot interval and never corrupts a run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charpoet.checkpoint import RunDir

HERE = Path(__file__).parent
ARGS = ["--rnn-size", "32", "--embedding-size", "16", "--batch-size", "8", "--seq-len", "32",
        "--learning-rate", "0.01", "--warmup-steps", "5", "--device", "cpu", "--num-epochs", "3",
        "--stats-every", "10steps", "--snapshot-every", "5steps", "--sample-every", "off", "--no-tensorboard"]


def _train_args(corpus: Path, run: Path) -> list[str]:
    return ["train", "--text-path", str(corpus), "--checkpoint-path", str(run), *ARGS]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"training ended before the marker appeared: {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the marker never appeared")
        time.sleep(0.05)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_kill_9_during_a_snapshot_write_then_resume(tiny_corpus: Path, tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "stalled"
    # the 3rd write of last.safetensors: the step-0 rollback point, step 5, then step 10 stalls
    process = subprocess.Popen([sys.executable, str(HERE / "kill_harness.py"), str(marker), "3", "--",
                                *_train_args(tiny_corpus, run)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    _wait_for(marker, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    half_written = Path(marker.read_text())
    assert half_written.exists() and half_written.parent == run

    # the run is intact: the snapshot before the torn write, complete and loadable
    rd = RunDir(run)
    tensors, meta = rd.load_tensors("last.safetensors")
    assert meta["trainer"]["step"] == 5 and all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    rd.read_config(), rd.read_vocab(), rd.read_library()
    logged = [r["step"] for r in rd.read_metrics_log()]
    assert max(logged) >= 10  # the killed process had logged past the snapshot

    # the same command again continues from step 5
    from typer.testing import CliRunner

    from charpoet.cli import app

    result = CliRunner().invoke(app, _train_args(tiny_corpus, run))
    assert result.exit_code == 0, result.stderr
    assert "continuing" in result.stderr
    assert not half_written.exists()
    records = rd.read_metrics_log()
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[0] <= 10  # unbroken, no step twice
    eval_steps = [r["step"] for r in records if r["kind"] == "eval"]
    assert eval_steps == sorted(set(eval_steps))
    final = json.loads((run / "config.json").read_text())
    assert final["train"]["snapshot_every"] == "5steps"
    _, meta = rd.load_tensors("last.safetensors")
    steps_per_epoch = meta["trainer"]["steps_per_epoch"]
    assert meta["trainer"]["step"] == 3 * steps_per_epoch  # the run finished its 3 epochs


def _snapshot_step(run: Path) -> int | None:
    """The step of the snapshot on disk, or None before the first one (a whole file, always)."""
    if not (run / "last.safetensors").exists():
        return None
    _, meta = RunDir(run).load_tensors("last.safetensors")
    return meta["trainer"]["step"]


@pytest.mark.slow
def test_kill_9_at_random_moments_never_corrupts_the_run(tiny_corpus: Path, tmp_path: Path) -> None:
    """Each process is killed a random moment after its snapshots have moved past the previous
    process's: events, not seconds, decide when, so a slow machine waits longer, never fails."""
    run = tmp_path / "run"
    args = _train_args(tiny_corpus, run)
    args[args.index("--snapshot-every") + 1] = "1steps"  # a snapshot write is almost always under way
    args[args.index("--num-epochs") + 1] = "50"
    rng = random.Random(0)
    steps = [0]
    for trial in range(2):
        log = tmp_path / f"stderr-{trial}.txt"
        with log.open("wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "charpoet", *args], stdout=subprocess.DEVNULL,
                                       stderr=err, env=_env())
        target = steps[-1] + rng.randint(2, 6)
        deadline = time.monotonic() + 300  # a safety net only
        while (_snapshot_step(run) or 0) < target:
            if process.poll() is not None:
                pytest.fail(f"training ended early: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"no snapshot reached step {target}")
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.2))  # somewhere in the next few steps, often mid-write
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        step = _snapshot_step(run)  # always a whole file
        assert step is not None and step >= target
        steps.append(step)
    assert steps[2] > steps[1] > 0  # the second process continued where the first was killed
