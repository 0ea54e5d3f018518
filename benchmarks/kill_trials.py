"""kill -9 at random moments during `charpoet train` and `charpoet corpus add`, then the same command again.

    python benchmarks/kill_trials.py                      # 20 trials of each scenario
    python benchmarks/kill_trials.py --trials 5 --scenario train
    python benchmarks/kill_trials.py --scenario corpus --mirror /mnt/pg-mirror --books 84 1342

``train``: a small model on the first ``--chars`` characters of tiny shakespeare, a snapshot
every 5 steps, an evaluation every 20, one epoch. Each trial starts a fresh run, waits for a
random logged step in ``metrics.jsonl`` (the first one is step 10), sleeps a random fraction of a
snapshot interval (measured from the log's own timestamps, so the kill lands anywhere in a
step, an evaluation or a snapshot write on a slow or a fast CPU) and sends SIGKILL. The same
command is then run again to completion.

``corpus``: ``charpoet corpus add`` of six books into a fresh library and cache, against the
test suite's fake mirror (``tests/gutenberg_server.py``, an HTTP server on 127.0.0.1) or a local
mirror directory (``--mirror``). A first, uninterrupted run measures how long the add takes
after its first book request; each trial then kills the process a random fraction of that
time after its first book request, and runs the same command again.

Per scenario it prints: completion (the rerun exits 0 and leaves a valid run or library),
corrupt (a run or library that fails to load or validate, after the kill or after the rerun;
must be 0), and the work lost. For training: the steps between the last step logged before
the kill and the step the rerun continued from, and the wall-clock seconds between the
snapshot it continued from and the kill. For corpus add: the books kept at the kill and the
books downloaded twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import cpu_description

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "corpora"
SNAPSHOT_STEPS, LOG_STEPS = 5, 10  # charpoet logs a step record every 10 steps
TRAIN_FLAGS = ["--rnn-size", "64", "--num-layers", "1", "--embedding-size", "16", "--batch-size", "16",
               "--seq-len", "64", "--learning-rate", "0.01", "--warmup-steps", "5", "--num-epochs", "1",
               "--stats-every", "20steps", "--snapshot-every", f"{SNAPSHOT_STEPS}steps", "--sample-every", "off",
               "--no-tensorboard", "--device", "cpu"]
BOOKS = [84, 1342, 800, 1013, 2701, 5]  # the fake mirror's books, one per layout


def _env(home: Path) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "CHARPOET_HOME": str(home), "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost"}


def _charpoet(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "charpoet", *args], stdout=subprocess.DEVNULL,
                                stderr=err, env=_env(home))


def _kill(process: subprocess.Popen) -> float:
    process.send_signal(signal.SIGKILL)
    at = time.time()
    process.wait(timeout=60)
    return at


@dataclass
class Trial:
    killed: bool = False  # False: the process had finished before the kill moment came
    completed: bool = False
    corrupt: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not corruption
    numbers: dict[str, float] = field(default_factory=dict)


# --- training --------------------------------------------------------------------------------------

def _records(run: Path) -> list[dict]:
    """The whole lines of metrics.jsonl (a killed process may leave half of one)."""
    try:
        text = (run / "metrics.jsonl").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.split("\n"):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in out if isinstance(r, dict)]


def check_run(run: Path, finished: bool) -> list[str]:
    """What is wrong with a run: after a kill, what exists must load; after the rerun, everything."""
    from charpoet.checkpoint import BEST, CONFIG, LAST, RunDir
    from charpoet.errors import CharpoetError

    import torch

    problems: list[str] = []
    rd = RunDir(run)
    try:
        if (run / CONFIG).exists() or finished:
            rd.read_config(), rd.read_vocab(), rd.read_library(), rd.read_metrics()
        for name in (LAST, BEST):
            if (run / name).exists() or (finished and name == LAST):
                tensors, _ = rd.load_tensors(name)
                if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
                    problems.append(f"{name} holds non-finite values")
        if finished:
            import charpoet

            lm = charpoet.load(run)
            lm.generate(length=20, seed=1)
            if list(run.glob(".*.tmp")):
                problems.append("temporary files left after the rerun")
            text = (run / "metrics.jsonl").read_text(encoding="utf-8")
            lines = [line for line in text.split("\n") if line]
            if not text.endswith("\n") or len(lines) != len(_records(run)):
                problems.append("metrics.jsonl has a torn or malformed line")
            steps = [r["step"] for r in _records(run) if r.get("kind") == "train"]
            if steps != sorted(set(steps)):
                problems.append("metrics.jsonl repeats or reorders steps")
    except (CharpoetError, OSError, ValueError, RuntimeError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def train_trial(text: Path, work: Path, rng: random.Random) -> Trial:
    run, home, log = work / "run", work / "home", work / "stderr.txt"
    args = ["train", "--text-path", str(text), "--checkpoint-path", str(run), *TRAIN_FLAGS]
    trial = Trial()
    process = _charpoet(args, home, log)
    target = rng.choice((20, 30, 40))  # a logged step, before the end (about 52 steps for 60,000 characters)
    deadline = time.monotonic() + 900  # a safety net only: events decide
    while time.monotonic() < deadline and process.poll() is None:
        steps = [r for r in _records(run) if r.get("kind") == "train"]
        if steps and steps[-1]["step"] >= target:  # then a random moment of the next snapshot interval
            first, second = steps[0], steps[1]
            per_interval = (second["time"] - first["time"]) / (second["step"] - first["step"]) * SNAPSHOT_STEPS
            trial.numbers["snapshot interval (s)"] = per_interval
            time.sleep(rng.uniform(0.0, per_interval))
            break
        time.sleep(0.005)
    if process.poll() is None:
        kill_time = _kill(process)
        trial.killed = True
    else:
        kill_time = time.time()
    from charpoet.checkpoint import LAST, RunDir

    logged = [r["step"] for r in _records(run) if r.get("kind") == "train"]
    resume = RunDir(run).snapshot_step() or 0
    trial.corrupt += [f"after the kill: {p}" for p in check_run(run, finished=False)]
    if (run / LAST).exists() and resume > 0:
        trial.numbers["seconds lost"] = kill_time - (run / LAST).stat().st_mtime
    trial.numbers["steps lost"] = max(0, (max(logged) if logged else 0) - resume)
    trial.numbers["killed at step"] = max(logged) if logged else 0
    rerun = subprocess.run([sys.executable, "-m", "charpoet", *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env=_env(home), timeout=1800)
    if rerun.returncode != 0:
        trial.corrupt.append(f"rerun exit {rerun.returncode}: {rerun.stderr.strip().splitlines()[-1:]}")
        return trial
    if resume and f"continuing from step {resume}" not in rerun.stderr:
        trial.corrupt.append(f"the rerun did not continue from the snapshot (step {resume})")
    problems = check_run(run, finished=True)
    _, meta = RunDir(run).load_tensors(LAST)
    if meta["trainer"]["step"] != meta["trainer"]["steps_per_epoch"]:
        problems.append(f"the rerun stopped at step {meta['trainer']['step']}, not at the end of the epoch")
    trial.corrupt += [f"after the rerun: {p}" for p in problems]
    trial.completed = not problems
    return trial


# --- corpus add --------------------------------------------------------------------------------------

def check_library(path: Path, finished: bool, books: list[int]) -> list[str]:
    from charpoet.corpus.gutenberg import open_library
    from charpoet.errors import CharpoetError

    problems: list[str] = []
    shelf = open_library(str(path))
    if not shelf.exists():
        return ["no library after the rerun"] if finished else []
    try:
        stored = shelf.books()
        for book in stored:
            data = (path / book.file).read_bytes()
            if hashlib.sha256(data).hexdigest() != book.sha256:
                problems.append(f"book {book.id}: text does not match the manifest")
        shelf.load()
        if finished:
            missing = sorted(set(books) - {b.id for b in stored})
            if missing:
                problems.append(f"books missing after the rerun: {missing}")
    except (CharpoetError, OSError, ValueError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def _stale(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob(".*.tmp")]


class CorpusEvents:
    """When a ``corpus add`` started working (its first request to the fake mirror, or with a local
    mirror its library's lock file) and when it last wrote its manifest, in wall-clock seconds."""

    def __init__(self, server, library: Path):
        self.server, self.library = server, library

    def started(self) -> float | None:
        if self.server is not None:
            log = list(self.server.log)
            return log[0].time + (time.time() - time.monotonic()) if log else None
        lock = self.library / ".lock"
        return lock.stat().st_mtime if lock.exists() else None

    def last_write(self) -> float | None:
        manifest = self.library / "library.json"
        return manifest.stat().st_mtime if manifest.exists() else None


def corpus_trial(mirror: str, books: list[int], server, work: Path, rng: random.Random,
                 window: float | None) -> tuple[Trial, float]:
    """One trial: kill a random moment of ``window`` seconds after the add starts working, then rerun.

    ``window`` None is the uninterrupted calibration run; it returns the add's working time.
    """
    library, home, log = work / "library", work / "home", work / "stderr.txt"
    args = ["corpus", "add", *map(str, books), "--library", str(library), "--mirror", mirror, "--min-interval", "0"]
    trial, events = Trial(), CorpusEvents(server, library)
    book_paths = _book_paths(server, books)
    if server is not None:
        server.clear_log()
    process = _charpoet(args, home, log)
    if window is None:
        process.wait(timeout=900)
        started, ended = events.started(), events.last_write()
        if process.returncode != 0 or started is None or ended is None:
            sys.exit(f"error: the calibration `charpoet {' '.join(args)}` failed; see {log}")
        return trial, ended - started
    deadline = time.monotonic() + 900  # a safety net only: events decide
    while events.started() is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, window))
    if process.poll() is None:
        _kill(process)
        trial.killed = True
    fetched = {r.path for r in list(server.log) if r.path in book_paths and r.status == 200} if server else set()
    trial.corrupt += [f"after the kill: {p}" for p in check_library(library, False, books)]
    from charpoet.corpus.gutenberg import open_library

    trial.numbers["books kept"] = len(open_library(str(library)).books()) if events.last_write() else 0
    if server is not None:
        server.clear_log()
    rerun = subprocess.run([sys.executable, "-m", "charpoet", *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env=_env(home), timeout=1800)
    if server is not None:
        again = {r.path for r in list(server.log) if r.path in book_paths and r.status == 200}
        trial.numbers["books downloaded twice"] = len(again & fetched)
    stale = _stale(library, home / "gutenberg")
    trial.numbers["temp files left"] = len(stale)
    trial.notes += [f"left behind after the rerun: {p.relative_to(work)} ({p.stat().st_size:,} bytes)" for p in stale]
    if rerun.returncode != 0:
        trial.corrupt.append(f"rerun exit {rerun.returncode}: {rerun.stderr.strip().splitlines()[-1:]}")
        return trial, 0.0
    problems = check_library(library, True, books)
    trial.corrupt += [f"after the rerun: {p}" for p in problems]
    trial.completed = not problems
    return trial, 0.0


def _book_paths(server, books: list[int]) -> set[str]:
    if server is None:
        return set()
    from gutenberg_server import BOOK_PATHS

    return {BOOK_PATHS[b] for b in books if b in BOOK_PATHS}


# --- report ------------------------------------------------------------------------------------------------

def report(name: str, trials: list[Trial], note: str = "") -> None:
    n = len(trials)
    killed = sum(t.killed for t in trials)
    completed = sum(t.completed for t in trials)
    corrupt = [t for t in trials if t.corrupt]
    print(f"\n{name}: {n} trials ({killed} killed mid-command{note})")
    print(f"  completion: {completed}/{n}   corrupt: {len(corrupt)}")
    keys = sorted({k for t in trials for k in t.numbers})
    for key in keys:
        values = [t.numbers[key] for t in trials if key in t.numbers]
        fmt = "{:.2f}" if any(isinstance(v, float) for v in values) else "{:g}"
        print(f"  {key}: mean {fmt.format(statistics.mean(values))}, median {fmt.format(statistics.median(values))}, "
              f"max {fmt.format(max(values))} (over {len(values)} trials)")
    for i, t in enumerate(trials, 1):
        for problem in t.corrupt + t.notes:
            print(f"  trial {i}: {problem}")


def summary(results: list[tuple[str, list[Trial]]], books: int) -> None:
    """The results as the README's markdown table."""
    print("\n| scenario | trials | killed mid-command | rerun completed, valid | corrupt | work lost per trial |")
    print("|---|---|---|---|---|---|")
    for name, trials in results:
        n = len(trials)

        def stat(key: str, fmt: str = "{:g}") -> str:
            values = [t.numbers[key] for t in trials if key in t.numbers]
            return f"mean {fmt.format(statistics.mean(values))}, max {fmt.format(max(values))}" if values else "-"

        if name == "train":
            lost = (f"{stat('steps lost')} steps (snapshots every {SNAPSHOT_STEPS} steps); "
                    f"{stat('seconds lost', '{:.2f}')} s (snapshot interval {stat('snapshot interval (s)', '{:.2f}')} s)")
        else:
            lost = (f"books done and kept at the kill: {stat('books kept', '{:.1f}')} of {books}; downloaded twice: "
                    f"{sum(t.numbers.get('books downloaded twice', 0) for t in trials):g} in all; temp files left "
                    f"after the rerun: {sum(t.numbers.get('temp files left', 0) for t in trials):g} in all")
        print(f"| `charpoet {'train' if name == 'train' else 'corpus add'}` | {n} | {sum(t.killed for t in trials)} | "
              f"{sum(t.completed for t in trials)}/{n} | {sum(bool(t.corrupt) for t in trials)} | {lost} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20, help="trials per scenario")
    p.add_argument("--scenario", choices=["train", "corpus", "both"], default="both")
    p.add_argument("--text", type=Path, default=SHARED / "tinyshakespeare.txt")
    p.add_argument("--chars", type=int, default=60_000, help="train on this many characters of --text")
    p.add_argument("--mirror", help="corpus: a local mirror directory or URL instead of the fake HTTP mirror")
    p.add_argument("--books", type=int, nargs="+", default=BOOKS, help="corpus: the books to add")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, help="keep the trials' runs and libraries here")
    args = p.parse_args()
    if args.trials < 1:
        sys.exit("error: --trials must be >= 1")
    print(cpu_description())
    print(f"python {platform.python_version()}, {time.strftime('%Y-%m-%d')}", flush=True)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill-trials-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, list[Trial]]] = []
    try:
        if args.scenario in ("train", "both"):
            if not args.text.is_file():
                sys.exit(f"error: {args.text} not found; pass --text")
            text = work / "text.txt"
            text.write_text(args.text.read_text(encoding="utf-8")[: args.chars], encoding="utf-8")
            print(f"\ntrain: {args.chars:,} characters of {args.text.name}; charpoet train {' '.join(TRAIN_FLAGS)}")
            trials = []
            for i in range(args.trials):
                trials.append(train_trial(text, work / f"train-{i:02d}", rng))
                t = trials[-1]
                print(f"  trial {i + 1}: killed at logged step {t.numbers.get('killed at step', 0):g}, continued "
                      f"{t.numbers['steps lost']:g} steps back, {'ok' if t.completed else 'FAILED'}", flush=True)
            report("charpoet train", trials)
            results.append(("train", trials))
        if args.scenario in ("corpus", "both"):
            server = None
            mirror = args.mirror
            if mirror is None:
                sys.path.insert(0, str(ROOT / "tests"))
                from gutenberg_server import make_server

                if not SHARED.is_dir():
                    sys.exit(f"error: the fake mirror needs the shared corpora at {SHARED}; or pass --mirror")
                server = make_server(SHARED).start()
                mirror = server.url
            try:
                _, window = corpus_trial(mirror, args.books, server, work / "corpus-calibration", rng, None)
                print(f"\ncharpoet corpus add {' '.join(map(str, args.books))} --min-interval 0 --mirror "
                      f"{args.mirror or 'FAKE-MIRROR'}: {window:.2f} s from its first request to its last "
                      "manifest write, uninterrupted; each trial kills it a random moment of that", flush=True)
                trials = []
                for i in range(args.trials):
                    trial, _ = corpus_trial(mirror, args.books, server, work / f"corpus-{i:02d}", rng, window)
                    trials.append(trial)
                    print(f"  trial {i + 1}: {trial.numbers['books kept']:g} books kept at the kill, "
                          f"{'ok' if trial.completed else 'FAILED'}", flush=True)
                report("charpoet corpus add", trials)
                results.append(("corpus", trials))
            finally:
                if server is not None:
                    server.stop()
        summary(results, len(args.books))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
