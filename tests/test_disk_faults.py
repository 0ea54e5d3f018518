"""A full disk or a read-only run directory: one clear error, nothing corrupt, nothing lost.

Most tests inject ENOSPC in-process (``FullDisk``): from a chosen write on, every ``os.write``
under the test's directory writes half its bytes and fails, as on a disk that just filled up.
Two tests use the real thing, a small tmpfs and a read-only bind mount, inside ``unshare``
(skipped where user namespaces are not allowed).
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import charpoet
from charpoet.checkpoint import BEST, LAST, RunDir, RunWriteError
from charpoet.cli import app
from charpoet.corpus.cache import append_bytes, atomic_write_bytes
from charpoet.errors import CharpoetError
from charpoet.train import train

HERE = Path(__file__).parent
SMALL = ["--rnn-size", "32", "--embedding-size", "16", "--batch-size", "8", "--seq-len", "32",
         "--learning-rate", "0.01", "--warmup-steps", "5", "--device", "cpu", "--num-epochs", "1",
         "--stats-every", "20steps", "--snapshot-every", "5steps", "--sample-every", "off", "--no-tensorboard"]
TEMP_NAME = re.compile(r"^\.(.+)\.[^.]*\.tmp$")  # mkstemp's ".NAME.RANDOM.tmp"


class FullDisk:
    """The disk under ``root`` fills up at the ``nth`` opening of a file named ``name`` (its
    temporary file counts as it), or at the first write to it that holds ``containing``: that
    write and every later one under ``root`` write half their bytes, then fail with ENOSPC.
    ``free()`` makes room again."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path):
        self.root = str(root.resolve())
        self.paths: dict[int, tuple[str, int]] = {}  # fd -> (file name, how many times it was opened)
        self.opened: Counter[str] = Counter()
        self.armed: tuple[str, int] | None = None
        self.containing: bytes | None = None
        self.full = False
        self.failed: list[str] = []
        real_open, real_write = os.open, os.write

        def fake_open(path, flags, mode=0o777, *, dir_fd=None):
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            full = os.path.realpath(os.fsdecode(path))
            if full.startswith(self.root + os.sep):
                name = os.path.basename(full)
                name = m.group(1) if (m := TEMP_NAME.match(name)) else name
                self.opened[name] += 1
                self.paths[fd] = (name, self.opened[name])
            else:
                self.paths.pop(fd, None)
            return fd

        def fake_write(fd, data):
            if fd in self.paths:
                name, nth = self.paths[fd]
                if self.armed is not None and name == self.armed[0] and (
                        bytes(data).find(self.containing) >= 0 if self.containing else nth == self.armed[1]):
                    self.full = True
                if self.full:
                    real_write(fd, bytes(memoryview(data)[: len(data) // 2]))
                    self.failed.append(self.paths[fd][0])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "write", fake_write)

    def fill_at(self, name: str, nth: int = 1, containing: bytes | None = None) -> FullDisk:
        self.armed, self.containing = (name, self.opened[name] + nth), containing
        return self

    def free(self) -> None:
        self.armed, self.containing, self.full = None, None, False


def assert_intact(run: Path) -> RunDir:
    """Every file of the run loads and validates, and no temporary file is left."""
    assert not [p for p in run.rglob("*.tmp")], "a temporary file was left behind"
    rd = RunDir(run)
    rd.read_config(), rd.read_vocab(), rd.read_library(), rd.read_metrics()
    for name in (LAST, BEST):
        if (run / name).exists():
            tensors, _ = rd.load_tensors(name)
            assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    for name in ("metrics.jsonl", "train.log"):
        if (run / name).exists():
            text = (run / name).read_text(encoding="utf-8")
            assert text == "" or text.endswith("\n"), f"{name} ends in half a line"
            for line in text.split("\n") if name == "metrics.jsonl" else ():
                assert line == "" or isinstance(json.loads(line), dict)
    charpoet.load(run)
    return rd


def _one_line_error(result) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Logging error" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-3000:]
    return errors[0]


def _cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _files(root: Path) -> dict[str, tuple[str, int]]:
    """Contents and modification times of everything under ``root`` (to show nothing changed)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        data = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (data, st.st_mtime_ns)
    return out


# --- the write helpers -----------------------------------------------------------------------

def test_a_failed_atomic_write_keeps_the_old_file_and_removes_its_temp(monkeypatch, tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    FullDisk(monkeypatch, tmp_path).fill_at("data.bin")
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"new" * 1000)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["data.bin"]


def test_a_failed_append_adds_nothing(monkeypatch, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"step": 1}\n')
    FullDisk(monkeypatch, tmp_path).fill_at("log.jsonl")
    with pytest.raises(OSError):
        append_bytes(log, b'{"step": 2, "loss": 1.234567}\n')
    assert log.read_bytes() == b'{"step": 1}\n'


# --- a full disk while training ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name, nth, step, saved", [
    (LAST, 3, 10, 5),             # the snapshots of steps 0 and 5 are written, step 10's fails
    (BEST, 1, 20, 15),            # the first evaluation (step 20) comes before its snapshot
    ("metrics.jsonl", 2, 20, 15),  # steps 10 and 20 are logged
    ("metrics.json", 1, 20, 15),
])
def test_a_full_disk_stops_training_with_the_last_snapshot_intact(
        monkeypatch, tmp_path, tiny_corpus, tiny_config, name, nth, step, saved):
    config = tiny_config(tiny_corpus, snapshot_every="5steps", stats_every="20steps", num_epochs=1.0)
    run = tmp_path / "run"
    disk = FullDisk(monkeypatch, tmp_path).fill_at(name, nth)
    with pytest.raises(RunWriteError) as info:
        train(config, run)
    message = str(info.value)
    assert isinstance(info.value, CharpoetError) and "\n" not in message
    assert message.startswith(f"cannot write {run / name}: no space left on device; training stopped at step {step} ")
    assert f"the last good snapshot (step {saved}) is intact" in message and "free some space" in message
    assert disk.failed[0] == name
    rd = assert_intact(run)
    assert rd.snapshot_step() == saved
    assert max(r["step"] for r in rd.read_metrics_log()) <= step

    disk.free()  # the same call again continues from the snapshot and finishes
    events = []
    result = train(config, run, on_event=events.append)
    assert events[0].info["start_step"] == saved and result.stop_reason == "epochs"
    assert_intact(run)


@pytest.mark.slow
def test_cli_full_disk_is_one_line_exit_2_and_the_same_command_continues(monkeypatch, tmp_path, tiny_corpus):
    run = tmp_path / "run"
    args = ["train", "--text-path", tiny_corpus, "--checkpoint-path", run, *SMALL]
    disk = FullDisk(monkeypatch, tmp_path).fill_at(LAST, 3)
    result = _cli(*args)
    assert result.exit_code == 2
    error = _one_line_error(result)
    assert re.fullmatch(rf"error: cannot write {re.escape(str(run / LAST))}: no space left on device; "
                        r"training stopped at step 10 and the last good snapshot \(step 5\) is intact in .*: "
                        r"free some space and run the same command again to continue", error), error
    assert_intact(run)

    disk.free()
    again = _cli(*args)
    assert again.exit_code == 0, again.output
    assert "continuing" in again.stderr
    steps = [r["step"] for r in RunDir(run).read_metrics_log() if r["kind"] == "train"]
    assert steps == sorted(set(steps))  # no step twice, none lost
    assert_intact(run)


@pytest.mark.slow
def test_cli_full_disk_on_the_log_file_stops_training_too(monkeypatch, tmp_path, tiny_corpus):
    run = tmp_path / "run"
    FullDisk(monkeypatch, tmp_path).fill_at("train.log", containing=b" INFO eval ")  # the first evaluation's line
    result = _cli("train", "--text-path", tiny_corpus, "--checkpoint-path", run, *SMALL)
    assert result.exit_code == 2
    error = _one_line_error(result)
    assert f"cannot write {run / 'train.log'}: no space left on device; training stopped at step 20" in error
    assert "the last good snapshot (step 15) is intact" in error
    assert_intact(run)


@pytest.mark.slow
def test_cli_full_disk_on_a_sample_stops_training_with_nothing_half_written(monkeypatch, tmp_path, tiny_corpus):
    run = tmp_path / "run"
    args = [a if a != "off" else "5steps" for a in SMALL]  # --sample-every 5steps
    FullDisk(monkeypatch, tmp_path).fill_at("step-0000010.html")  # the first sample (step 10)
    result = _cli("train", "--text-path", tiny_corpus, "--checkpoint-path", run, *args, "--sample-below-loss", "99",
                  "--sample-length", "20")
    assert result.exit_code == 2
    # the monitor switches samples off, and the next write of the run (its warning in train.log, or
    # at the latest the snapshot of step 15) stops training
    error = _one_line_error(result)
    match = re.search(r"no space left on device; training stopped at step (\d+) and the last good snapshot "
                      r"\(step (\d+)\) is intact", error)
    assert match and int(match[1]) in (10, 15) and int(match[2]) == 10 == RunDir(run).snapshot_step(), error
    assert_intact(run)
    assert not list((run / "samples").glob("*"))


# --- a run directory that cannot be written ------------------------------------------------------

@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if training gets as far as loading texts or building a model."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the write check came too late: the slow work had started")

    module = importlib.import_module("charpoet.train")  # charpoet.train is also the function
    monkeypatch.setattr(module, "load_data_library", forbidden)
    monkeypatch.setattr(module, "_Session", forbidden)


def test_a_run_path_that_is_a_file(tmp_path, tiny_corpus, tiny_config, no_work):
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")
    with pytest.raises(RunWriteError, match=r"notes.txt is a file, not a run directory"):
        train(tiny_config(tiny_corpus), path)
    error = _one_line_error(_cli("train", "--text-path", tiny_corpus, "--checkpoint-path", path, *SMALL))
    assert error == f"error: {path} is a file, not a run directory: choose another --checkpoint-path"
    assert path.read_text() == "my notes\n" and sorted(os.listdir(tmp_path)) == ["corpus", "notes.txt"]


def test_a_run_path_under_a_file(tmp_path, tiny_corpus, tiny_config, no_work):
    path = tmp_path / "notes.txt" / "runs" / "x"
    (tmp_path / "notes.txt").write_text("my notes\n")
    with pytest.raises(RunWriteError, match=r"cannot create the run directory .*x: .*notes.txt is a file"):
        train(tiny_config(tiny_corpus), path)
    result = _cli("train", "--text-path", tiny_corpus, "--checkpoint-path", path, *SMALL)
    assert result.exit_code == 2 and "is a file" in _one_line_error(result)
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


def _simulate_read_only(monkeypatch, root: Path) -> None:
    """Creating or writing any file under ``root`` fails with EROFS, as on a read-only mount."""
    real_open, real_mkdir = os.open, os.mkdir
    root_s = str(root.resolve()) + os.sep

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):
        if (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)) and os.path.realpath(os.fsdecode(path)).startswith(root_s):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def fake_mkdir(path, mode=0o777, *, dir_fd=None):
        if os.path.realpath(os.fsdecode(path)).startswith(root_s) and not os.path.isdir(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.mark.slow
def test_a_read_only_run_fails_before_any_work_and_changes_nothing(monkeypatch, trained_run, tmp_path, no_work):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = _files(run)
    _simulate_read_only(monkeypatch, run)
    with pytest.raises(RunWriteError, match=r"^cannot write to the run directory .*run: read-only file system$"):
        train(RunDir(run).read_config(), run)
    result = _cli("train", "--checkpoint-path", run, "--num-epochs", "9")
    assert result.exit_code == 2
    assert _one_line_error(result) == f"error: cannot write to the run directory {run}: read-only file system"
    assert _files(run) == before


def test_a_new_run_in_a_read_only_directory_fails_before_any_work(monkeypatch, tmp_path, tiny_corpus, tiny_config,
                                                                  no_work):
    parent = tmp_path / "readonly"
    parent.mkdir()
    _simulate_read_only(monkeypatch, parent)
    with pytest.raises(RunWriteError, match=r"^cannot create the run directory .*new: read-only file system$"):
        train(tiny_config(tiny_corpus), parent / "runs" / "new")
    result = _cli("train", "--text-path", tiny_corpus, "--checkpoint-path", parent / "runs" / "new", *SMALL)
    assert result.exit_code == 2 and "read-only file system" in _one_line_error(result)
    assert os.listdir(parent) == []


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root writes into a mode-555 directory anyway; the simulated and the real "
                           "read-only mount tests cover this case")
def test_a_run_directory_without_write_permission(tmp_path, tiny_corpus, tiny_config, no_work):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(RunWriteError, match=r"cannot create the run directory .*new: permission denied"):
            train(tiny_config(tiny_corpus), parent / "new")
        assert os.listdir(parent) == []
    finally:
        parent.chmod(stat.S_IRWXU)


# --- the real thing: a tmpfs that fills up, a read-only mount (user namespaces) ------------------------

def _unshare_works() -> bool:
    if not shutil.which("unshare") or not shutil.which("mount"):
        return False
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_unshare = pytest.mark.skipif(not _unshare_works(),
                                   reason="needs `unshare -rm` (user namespaces) to mount a tmpfs or a read-only bind")

# Runs inside `unshare -rm`: a tmpfs for the run; train; once the snapshot of step 5 is on disk, fill
# the disk; copy what the failed process left; free the space; run the same command again; copy again.
FILL_THE_DISK = r"""
import os, shutil, signal, subprocess, sys, time
from charpoet.checkpoint import RunDir
disk, out, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", disk], check=True)
run = os.path.join(disk, "run")
first = subprocess.Popen(cmd + ["--checkpoint-path", run], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
while (RunDir(run).snapshot_step() or 0) < 5 and first.poll() is None:
    time.sleep(0.02)
os.kill(first.pid, signal.SIGSTOP)  # however fast the CPU, the run waits while the disk fills
fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, bytes(1 << 16))
except OSError:
    pass
os.close(fd)
os.kill(first.pid, signal.SIGCONT)
err = first.communicate(timeout=600)[1]
shutil.copytree(run, os.path.join(out, "after-full"))
os.unlink(os.path.join(disk, "filler"))
second = subprocess.run(cmd + ["--checkpoint-path", run], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
shutil.copytree(run, os.path.join(out, "after-rerun"))
print(first.returncode, second.returncode)
sys.stderr.buffer.write(err + b"\n=== rerun ===\n" + second.stderr)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
@needs_unshare
def test_a_disk_that_really_fills_up(tmp_path, tiny_corpus):
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    # 20 epochs: the run goes on long after its fifth snapshot, where the script stops it (a whole
    # epoch of this model can take less than one of the script's polls)
    cmd = [sys.executable, "-m", "charpoet", "train", "--text-path", str(tiny_corpus), *SMALL, "--num-epochs", "20"]
    done = subprocess.run(["unshare", "-rm", sys.executable, "-c", FILL_THE_DISK, str(disk), str(out), *cmd],
                          capture_output=True, text=True, timeout=900, env=_env())
    assert done.stdout.split() == ["2", "0"], done.stdout + done.stderr[-3000:]
    first_err, rerun_err = done.stderr.split("=== rerun ===")
    assert "Traceback" not in done.stderr
    error = [line for line in first_err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "no space left on device; training stopped at step" in error[0], first_err[-3000:]
    saved = RunDir(out / "after-full").snapshot_step()
    assert f"the last good snapshot (step {saved}) is intact" in error[0] and saved >= 5
    assert_intact(out / "after-full")
    assert "continuing" in rerun_err
    rd = assert_intact(out / "after-rerun")
    _, meta = rd.load_tensors(LAST)
    assert meta["trainer"]["step"] == 20 * meta["trainer"]["steps_per_epoch"]  # its 20 epochs, finished


@pytest.mark.slow
@needs_unshare
def test_a_really_read_only_run(trained_run, tmp_path, tiny_corpus):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = _files(run)
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && '
              '"$@" --checkpoint-path "$RUN"; echo $?; "$@" --checkpoint-path "$RUN/sub" --text-path "$TEXT"; echo $?')
    python = [sys.executable, "-m", "charpoet", "train", "--num-epochs", "9"]
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(run), *python], capture_output=True,
                          text=True, timeout=600, env={**_env(), "RUN": str(run), "TEXT": str(tiny_corpus)})
    assert done.stdout.split() == ["2", "2"], done.stdout + done.stderr
    assert done.stderr.splitlines() == [f"error: cannot write to the run directory {run}: read-only file system",
                                        f"error: cannot create the run directory {run}/sub: read-only file system"]
    assert _files(run) == before
