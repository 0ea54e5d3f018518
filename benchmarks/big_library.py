"""A library larger than memory should be: peak RSS while encoding and training, time to the first
training step, and training throughput against a 1 MB library, in the same run.

    python benchmarks/big_library.py                 # a 1 GB library in /tmp/charpoet-big
    python benchmarks/big_library.py --size-mb 200   # smaller, quicker

The library is the shared English corpora (tiny shakespeare, the Melville and sci-fi sets) written
again and again, each copy with its paragraphs in another order, until it reaches --size-mb; the
1 MB library is 1 KB slices spread over the same texts, so both have nearly the same vocabulary. Each training runs in a fresh process
(``charpoet.train`` through its Python API) that reports, from its own ``ru_maxrss``:

    encode   peak RSS when the first training step begins: copying the sources into the run,
             the vocabulary scan and tokenizing into the memory-mapped token files
    train    peak RSS after --steps training steps (and the closing evaluation)

Throughput is the median chars/s of the step reports after the first, for the big library and for
its first 1 MB, with the same model and batch; the ratio should be 1 within noise.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"

CHILD = r"""
import json, resource, sys, time
started = time.perf_counter()
from charpoet import RunConfig, train

args = json.loads(sys.argv[1])
config = RunConfig()
config.data.text_path = [args["library"]]
config.data.batch_size, config.data.seq_len = 64, 128
config.model.num_layers, config.model.rnn_size, config.model.embedding_size = 2, 128, 64
config.train.stats_every = config.train.snapshot_every = config.train.sample_every = "100000steps"
config.train.device = "cpu"
marks = {}

def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def on_event(event):
    if event.kind == "start":
        marks["first_step_s"] = time.perf_counter() - started
        marks["encode_rss"] = rss()
        marks["train_tokens"] = event.info["train_tokens"]
        marks["vocab"] = event.info["vocab_size"]
    elif event.kind == "step":
        marks.setdefault("rates", []).append(event.chars_per_sec)

train(config, args["run"], on_event=on_event, stop_after_steps=args["steps"], log_every=10)
marks["train_rss"] = rss()
print(json.dumps(marks))
"""


def base_texts() -> list[str]:
    from charpoet.corpus import library_from_paths

    return [s.text for s in library_from_paths([SHARED / "tinyshakespeare.txt", SHARED / "scifi"])]


def build_library(directory: Path, size: int, texts: list[str]) -> int:
    """Write ``texts``, shuffled by paragraphs, into ``directory`` until ``size`` bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    written, copy = 0, 0
    while written < size:
        rng = random.Random(copy)
        for i, text in enumerate(texts):
            paragraphs = text.split("\n\n")
            rng.shuffle(paragraphs)
            data = "\n\n".join(paragraphs).encode("utf-8")[: size - written]
            (directory / f"copy{copy:03d}-{i:03d}.txt").write_bytes(data)
            written += len(data)
            if written >= size:
                break
        copy += 1
    return written


def build_small(directory: Path, texts: list[str], size: int = 1_000_000) -> None:
    """About ``size`` bytes: 1 KB slices evenly spread over ``texts``, in proportion to their length."""
    directory.mkdir(parents=True, exist_ok=True)
    total = sum(len(t) for t in texts)
    parts = []
    for text in texts:
        count = max(1, round(size / 1000 * len(text) / total))
        step = max(1000, len(text) // count)
        parts += [text[i : i + 1000] for i in range(0, len(text), step)][:count]
    (directory / "small.txt").write_text("\n".join(parts), encoding="utf-8")


def run_child(library: Path, run: Path, steps: int) -> dict:
    shutil.rmtree(run, ignore_errors=True)
    args = json.dumps({"library": str(library), "run": str(run), "steps": steps})
    done = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("/tmp/charpoet-big"))
    parser.add_argument("--keep", action="store_true", help="keep the generated library and runs")
    args = parser.parse_args()
    print(cpu_description())
    size = int(args.size_mb * 1e6)
    big, small = args.work / "library", args.work / "small"
    t0 = time.perf_counter()
    texts = base_texts()
    if not big.is_dir() or sum(p.stat().st_size for p in big.iterdir()) < size:
        shutil.rmtree(big, ignore_errors=True)
        build_library(big, size, texts)
    build_small(small, texts)
    total = sum(p.stat().st_size for p in big.iterdir())
    files = sorted(big.iterdir())
    print(f"library: {total / 1e6:,.0f} MB in {len(files)} files ({time.perf_counter() - t0:.0f} s to write)")

    results = {}
    for name, library in (("1 MB", small), (f"{total / 1e9:.2f} GB", big)):
        r = run_child(library, args.work / f"run-{name.split()[1]}", args.steps)
        results[name] = r
        print(f"{name:>8}: {r['train_tokens']:>13,} training tokens, vocabulary {r['vocab']}; first step after "
              f"{r['first_step_s']:6.1f} s; peak RSS encoding {r['encode_rss'] / 2**30:.2f} GiB, training "
              f"{r['train_rss'] / 2**30:.2f} GiB; {median(r['rates'][1:]):,.0f} chars/s (median of step reports)")
    (small_r, big_r) = results.values()
    ratio = median(big_r["rates"][1:]) / median(small_r["rates"][1:])
    print(f"throughput, big / 1 MB library: {ratio:.2f}")
    limit = 2 * 2**30
    verdict = "within" if max(big_r["encode_rss"], big_r["train_rss"]) <= limit else "OVER"
    print(f"peak RSS {verdict} the 2 GiB budget")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
