"""Training on several processes with torchrun (gloo on the CPU): the same result as one process,
resumable across world sizes, surviving a killed rank, and one-line errors for bad launches."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charpoet import RunConfig, train
from charpoet.checkpoint import RunDir

WORKER = Path(__file__).resolve().parent / "dist_worker.py"
STEP = 6  # steps per segment


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "CHARPOET_DIST_TIMEOUT": "120", **extra}


def torchrun(ranks: int, *args: str, restarts: int = 0) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
            f"--max-restarts={restarts}", *args]


def run_ranks(ranks: int, config: RunConfig, run: Path, steps: int, tmp_path: Path) -> None:
    """``train(config, run, stop_after_steps=steps)`` on ``ranks`` processes."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    done = subprocess.run(torchrun(ranks, str(WORKER), str(path), str(run), str(steps)), env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[:4000] + "\n...\n" + done.stderr[-2000:]


@pytest.fixture
def config(tiny_corpus: Path) -> RunConfig:
    c = RunConfig()
    c.data.text_path = [str(tiny_corpus)]
    c.data.batch_size, c.data.seq_len = 16, 32
    c.model.rnn_size, c.model.num_layers, c.model.embedding_size, c.model.drop_rate = 32, 2, 16, 0.0
    c.train.stats_every, c.train.snapshot_every, c.train.warmup_steps = "5steps", "5steps", 3
    c.train.device, c.train.precision = "cpu", "fp32"
    return c


def weights(run: Path) -> dict[str, torch.Tensor]:
    return RunDir(run).load_weights("last")[0]


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= atol, f"weights differ by up to {worst:g}"


def trainer_state(run: Path) -> dict:
    from charpoet.checkpoint import load_training_state

    return load_training_state(RunDir(run)).trainer


def test_two_ranks_train_as_one_process(config, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    train(config, one, stop_after_steps=2 * STEP)
    run_ranks(2, config, two, 2 * STEP, tmp_path)
    assert_same_weights(one, two)
    assert trainer_state(two)["step"] == trainer_state(one)["step"] == 2 * STEP
    # the snapshot holds every stream's hidden state, gathered from both ranks
    from charpoet.checkpoint import load_training_state

    h_one, h_two = load_training_state(RunDir(one)).hidden, load_training_state(RunDir(two)).hidden
    assert h_two is not None and h_two[0].shape == h_one[0].shape == (2, 16, 32)
    assert torch.allclose(h_one[0], h_two[0], atol=1e-5)
    # one process writes: every step and evaluation is logged once, the evaluations agree
    records = RunDir(two).read_metrics_log()
    steps = [r["step"] for r in records if r["kind"] == "eval"]
    assert steps == sorted(set(steps)) and 2 * STEP in steps
    evals_one = {r["step"]: r["val_loss"] for r in RunDir(one).read_metrics_log() if r["kind"] == "eval"}
    evals_two = {r["step"]: r["val_loss"] for r in records if r["kind"] == "eval"}
    assert evals_one.keys() == evals_two.keys()
    assert all(abs(evals_one[s] - evals_two[s]) < 1e-5 for s in evals_one)


def test_resume_across_world_sizes_continues_exactly(config, tmp_path):
    straight, chain = tmp_path / "straight", tmp_path / "chain"
    train(config, straight, stop_after_steps=4 * STEP)
    train(config, chain, stop_after_steps=STEP)  # 1 process
    run_ranks(2, config, chain, STEP, tmp_path)  # 1 -> 2
    run_ranks(4, config, chain, STEP, tmp_path)  # 2 -> 4, the same global batch of 16 streams
    train(config, chain, stop_after_steps=STEP)  # 4 -> 1
    assert trainer_state(chain)["step"] == 4 * STEP
    assert_same_weights(straight, chain)


def test_a_killed_rank_restarts_from_the_last_snapshot(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["-m", "charpoet", "train", "--text-path", str(tiny_corpus), "--checkpoint-path", str(run),
            "--rnn-size", "32", "--num-layers", "1", "--batch-size", "16", "--seq-len", "32", "--num-epochs", "6",
            "--snapshot-every", "10steps", "--stats-every", "50steps", "--no-tensorboard", "--device", "cpu"]
    agent = subprocess.Popen(torchrun(2, *args, restarts=1), env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        while (RunDir(run).snapshot_step() or 0) < 20:  # wait for a snapshot well into the run
            assert agent.poll() is None, agent.communicate()[1][-3000:]
            time.sleep(0.05)
        victim = _worker(agent.pid, rank=1)
        os.kill(victim, signal.SIGKILL)
        out, err = agent.communicate(timeout=600)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err[-3000:]
    state = trainer_state(run)
    assert state["epoch"] == 6 and state["cursor"] == 0  # the run completed
    records = RunDir(run).read_metrics_log()
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps))  # the lost steps were cut when the ranks resumed
    assert train_steps[-1] <= state["step"] and records[-1]["kind"] == "eval"


def _worker(agent: int, rank: int) -> int:
    """The pid of the torchrun worker with ``rank`` (a child of the agent)."""
    for _ in range(200):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == agent and f"RANK={rank}".encode() in env:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no worker with rank {rank} under {agent}")


def test_bad_launches_give_one_line(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["-m", "charpoet", "train", "--text-path", str(tiny_corpus), "--checkpoint-path", str(run),
            "--batch-size", "15", "--no-tensorboard"]
    done = subprocess.run(torchrun(2, *args), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: --batch-size 15 does not divide across 2 ranks: the global batch is split evenly, "
                     "so use a multiple of 2 (for example 14)"]  # from rank 0 only
    assert not run.exists()

    with socket.socket() as s:  # a port where nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               CHARPOET_DIST_TIMEOUT="1")
    done = subprocess.run([sys.executable, "-m", "charpoet", "train", "--text-path", str(tiny_corpus),
                           "--checkpoint-path", str(run), "--no-tensorboard"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: rank 1: cannot join the 1 other rank at "
                                                                    f"127.0.0.1:{port} within 1 s"), done.stderr
    assert not run.exists()


def test_a_resume_with_another_global_batch_is_refused(config, tmp_path):
    run = tmp_path / "run"
    train(config, run, stop_after_steps=2)
    config.data.batch_size = 8
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    done = subprocess.run(torchrun(2, str(WORKER), str(path), str(run), "2"), env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode != 0
    assert "trains a global batch of 16 streams; continue it with --batch-size 16" in done.stderr
    assert trainer_state(run)["step"] == 2  # nothing lost


def test_two_machines_share_a_run_on_remote_storage(tiny_corpus, tmp_path, config):
    """Two torchrun agents (two "machines", each with its own CHARPOET_HOME and so its own staging)
    train one run at a file:// URL: rank 0 uploads the prepared run, the other machine downloads it."""
    url = f"file://{tmp_path}/bucket/run"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["-m", "charpoet", "train", "--text-path", str(tiny_corpus), "--checkpoint-path", url,
            "--rnn-size", "32", "--num-layers", "2", "--embedding-size", "16", "--drop-rate", "0",
            "--batch-size", "16", "--seq-len", "32", "--num-epochs", "0.2", "--stats-every", "5steps",
            "--snapshot-every", "5steps", "--warmup-steps", "3", "--precision", "fp32", "--device", "cpu",
            "--no-tensorboard"]
    agents = []
    for node in (0, 1):
        launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={node}",
                  "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}", *args]
        env = _env(CHARPOET_HOME=str(tmp_path / f"home{node}"))
        agents.append(subprocess.Popen(launch, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [agent.communicate(timeout=600) for agent in agents]
    for agent, (_, err) in zip(agents, outputs):
        assert agent.returncode == 0, err[-3000:]
    remote = tmp_path / "bucket" / "run"
    assert {"config.json", "sources.json", "sources.bin", "last.safetensors"} <= {p.name for p in remote.iterdir()}
    assert not (remote / "tokens").exists()  # derived on each machine
    staged = list((tmp_path / "home1" / "remote-runs").iterdir())
    assert len(staged) == 1 and (staged[0] / "tokens" / "tokens.json").is_file()  # machine 1 made its own
    steps = trainer_state(remote)["step"]
    single = tmp_path / "single"
    c = config
    c.train.num_epochs = 0.2
    train(c, single)
    assert trainer_state(single)["step"] == steps
    assert_same_weights(single, remote)


def test_a_stop_that_reaches_one_rank_stops_them_all_with_a_snapshot(tiny_corpus, tmp_path):
    """torchrun signals its workers one by one: a SIGTERM seen by rank 1 alone still stops every rank at
    the same step, and rank 0 writes the snapshot of that step."""
    run = tmp_path / "run"
    args = ["-m", "charpoet", "train", "--text-path", str(tiny_corpus), "--checkpoint-path", str(run),
            "--rnn-size", "32", "--num-layers", "1", "--batch-size", "16", "--seq-len", "32", "--num-epochs", "50",
            "--snapshot-every", "100000steps", "--stats-every", "100000steps", "--no-tensorboard", "--device", "cpu"]
    agent = subprocess.Popen(torchrun(2, *args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not [r for r in RunDir(run).read_metrics_log() if r["kind"] == "train" and r["step"] >= 20]:
            assert agent.poll() is None, agent.communicate()[1][-3000:]
            time.sleep(0.05)
        os.kill(_worker(agent.pid, rank=1), signal.SIGTERM)
        _, err = agent.communicate(timeout=600)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert "lost contact" not in err, err[-3000:]
    assert (RunDir(run).snapshot_step() or 0) >= 20  # the stop's own snapshot, not the first one at step 0
    assert trainer_state(run)["epoch"] < 50
