"""Training benchmark on tiny shakespeare: throughput and quality against a plain loop.

    python benchmarks/train_shakespeare.py speed     # seeds' spec, alternating with the plain loop
    python benchmarks/train_shakespeare.py quality   # our defaults for 10 minutes
    python benchmarks/train_shakespeare.py quality --with-plain   # and the plain loop beside it

``speed`` trains the seeds' model (2 x 128 LSTM, embedding 32, batch 64, seq 64) with
``charpoet train`` and with ``plain_loop.py`` in turns, each in a fresh process for the
same number of seconds, and prints characters/second per round, medians and their ratio.

Both print the 1-minute load average around each run: on a shared machine other processes
slow PyTorch's OpenMP threads (which the plain loop uses) far more than charpoet's shards.

``quality`` runs ``charpoet train --text-path TEXT --max-minutes 10`` with our defaults (the
model sized to the budget by the measured speed, see charpoet.sizing)
(plus ``--stats-every 100steps`` so the curve can be read at 2 and 5 minutes; evaluation time is
not counted as training time) and prints validation loss/bpc on the whole validation
split at 2, 5 and 10 minutes of training, and characters/second.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_description

HERE = Path(__file__).resolve().parent
DEFAULT_TEXT = HERE.parent.parent / "shared" / "corpora" / "tinyshakespeare.txt"
SEEDS_SPEC = ["--rnn-size", "128", "--num-layers", "2", "--embedding-size", "32", "--batch-size", "64", "--seq-len", "64"]


def charpoet_train(text: Path, minutes: float, flags: list[str], run: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "charpoet", "train", "--text-path", str(text), "--checkpoint-path", str(run),
           "--max-minutes", str(minutes), *flags]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((run / "metrics.json").read_text())


def plain_loop(text: Path, minutes: float, eval_at: list[float] | None = None) -> dict:
    cmd = [sys.executable, str(HERE / "plain_loop.py"), "--text", str(text), "--minutes", str(minutes)]
    if eval_at:
        cmd += ["--eval-at", *map(str, eval_at)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def load() -> str:
    """The 1-minute load average: other processes on the machine slow both loops, unevenly."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def speed(args: argparse.Namespace) -> None:
    minutes = args.seconds / 60
    ours, plain, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            before = load()
            p = plain_loop(args.text, minutes)["chars_per_sec"]
            between = load()
            history = charpoet_train(args.text, minutes, [*SEEDS_SPEC, "--stats-every", "off"], Path(tmp) / f"r{r}")
            last = history[-1]
            c = last["step"] * 64 * 64 / last["elapsed"]
            plain.append(p)
            ours.append(c)
            ratios.append(c / p)
            print(f"round {r + 1}: plain loop {p:,.0f} chars/s   charpoet {c:,.0f} chars/s   ratio {c / p:.2f}"
                  f"   (load average {before} / {between} / {load()})", flush=True)
    mp, mc = statistics.median(plain), statistics.median(ours)
    print(f"median over {args.rounds} rounds of {args.seconds:g} s: plain loop {mp:,.0f} chars/s, "
          f"charpoet {mc:,.0f} chars/s, ratio of medians {mc / mp:.2f}, median of ratios {statistics.median(ratios):.2f}")


def at_minutes(history: list[dict], minutes: float) -> dict | None:
    """The last evaluation at or before ``minutes`` of training (the final one for the budget)."""
    seen = [h for h in history if "val_loss" in h and h["elapsed"] <= minutes * 60 + 1.0]
    return seen[-1] if seen else None


def quality(args: argparse.Namespace) -> None:
    marks = [m for m in (2, 5, 10) if m <= args.minutes] or [args.minutes]
    with tempfile.TemporaryDirectory() as tmp:
        if args.with_plain:
            p = plain_loop(args.text, args.minutes, marks)
            print(f"plain loop (2x128, Adam 2e-3): {p['chars_per_sec']:,} chars/s; "
                  + ", ".join(f"{m:g} min: val {p[f'val_loss@{m:g}min']:.4f}" for m in marks), flush=True)
        history = charpoet_train(args.text, args.minutes, ["--stats-every", f"{args.eval_every}steps", *args.flags], Path(tmp) / "q")
        config = json.loads((Path(tmp) / "q" / "config.json").read_text())
    last = history[-1]
    m, d = config["model"], config["data"]
    tokens = last["step"] * d["batch_size"] * d["seq_len"]
    chosen = " (chosen by auto size)" if m.get("auto_size") else ""
    print(f"charpoet defaults {' '.join(args.flags)}: {m['num_layers']}x{m['rnn_size']} {m['cell']}, embedding "
          f"{m['embedding_size']}{chosen}; {last['step']} steps, {tokens / last['elapsed']:,.0f} chars/s")
    for mark in marks:
        h = at_minutes(history, mark)
        if h:
            versus = f", plain loop {p[f'val_loss@{mark:g}min']:.4f}" if args.with_plain else ""
            print(f"  {mark:g} min: val loss {h['val_loss']:.4f} nats/char{versus}, {h['val_bpc']:.3f} bpc, "
                  f"accuracy {h['val_accuracy']:.1%} (step {h['step']}, {h['elapsed'] / 60:.1f} min)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["speed", "quality"])
    p.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    p.add_argument("--rounds", type=int, default=3, help="speed: alternating rounds")
    p.add_argument("--seconds", type=float, default=60, help="speed: seconds per run")
    p.add_argument("--minutes", type=float, default=10, help="quality: training budget")
    p.add_argument("--eval-every", type=int, default=100, help="quality: steps between evaluations")
    p.add_argument("--with-plain", action="store_true", help="quality: also run the plain loop")
    p.add_argument("flags", nargs="*", help="quality: extra charpoet train flags (after --)")
    args = p.parse_args()
    print(cpu_description(), flush=True)
    if not args.text.is_file():
        sys.exit(f"error: {args.text} not found; pass --text")
    if not math.isfinite(args.seconds) or args.seconds <= 0:
        sys.exit("error: --seconds must be positive")
    speed(args) if args.mode == "speed" else quality(args)


if __name__ == "__main__":
    main()
