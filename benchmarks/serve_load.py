"""Web server load benchmark: ``charpoet serve`` under 1, 8 and 32 concurrent generations.

    python benchmarks/serve_load.py                  # trains a 2 x 256 char LSTM (emb 64) for 12 s first
    python benchmarks/serve_load.py --run runs/x     # or serves an existing run
    python benchmarks/serve_load.py --levels 1,8,32,64 --rounds 5

Starts ``charpoet serve --checkpoint-path RUN --port 0 --max-streams-per-client 64`` on 127.0.0.1
as its own process and, for each level N, opens N streams at once (POST /api/generate, --length
characters each, T=0.8, a seed per stream) and parses every event, while a separate connection
polls GET /api/health every 50 ms. For each level it prints:

    chars/s     all streams' characters / wall time from the first request to the last ``done``
                (median of the rounds)
    TTFT        time from a request to its first token event, p50 and p95 over every stream of
                every round (a stream's ``done`` also waits for the attribution of its text)
    errors      non-200 answers, ``error`` events, connection failures, and streams whose token
                events do not add up to --length characters or to the ``done`` event's text
    /api/health latency while the streams run: p50, p95, max (and how many polls)

The client runs in this process on the same cores as the server, so the figures include its
share of the CPU; they measure the server as a user on this machine would see it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2

from machine import cpu_description

HERE = Path(__file__).resolve().parent
DEFAULT_TEXT = HERE.parent.parent / "shared" / "corpora" / "tinyshakespeare.txt"
CHARPOET = [sys.executable, "-m", "charpoet"]
PROMPT = "ROMEO:\n"


@dataclass
class Stream:
    """One generation as the client saw it."""

    chars: int = 0
    ttft: float | None = None  # seconds to the first token event
    seconds: float = 0.0  # to the done event (or the failure)
    error: str | None = None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def events(block: bytes) -> tuple[str, dict]:
    fields = dict(line.split(": ", 1) for line in block.decode("utf-8").split("\n") if line)
    return fields.get("event", ""), json.loads(fields.get("data", "null"))


async def one_stream(client: httpx2.AsyncClient, url: str, run: str, length: int, seed: int) -> Stream:
    out, text, done = Stream(), "", None
    start = time.perf_counter()
    body = {"run": run, "prompt": PROMPT, "length": length, "temperature": 0.8, "seed": seed}
    try:
        async with client.stream("POST", f"{url}/api/generate", json=body) as response:
            if response.status_code != 200:
                out.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return out
            buf = b""
            async for chunk in response.aiter_raw():
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    event, data = events(block)
                    if event == "token":
                        if out.ttft is None:
                            out.ttft = time.perf_counter() - start
                        text += data["texts"][0]
                    elif event == "done":
                        done = data
                    else:
                        out.error = f"{event} event: {data}"
    except httpx2.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.seconds, out.chars = time.perf_counter() - start, len(text)
    if out.error is None:
        if done is None:
            out.error = "no done event"
        elif done["samples"][0]["text"] != text or len(text) != length:
            out.error = f"{len(text)} characters in token events, done text of {len(done['samples'][0]['text'])}"
    return out


async def poll_health(url: str, stop: asyncio.Event) -> tuple[list[float], int]:
    """Latencies of GET /api/health every 50 ms until ``stop``; the most generations it reported."""
    latencies, most = [], 0
    async with httpx2.AsyncClient(timeout=120) as client:
        while not stop.is_set():
            start = time.perf_counter()
            response = await client.get(f"{url}/api/health")
            latencies.append(time.perf_counter() - start)
            most = max(most, response.json()["generations"])
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
    return latencies, most


async def level(url: str, run: str, n: int, length: int, seed: int) -> tuple[float, list[Stream], list[float], int]:
    """One round of ``n`` streams at once: chars/s, the streams, health latencies, most generations seen."""
    limits = httpx2.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx2.AsyncClient(timeout=300, limits=limits) as client:
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_health(url, stop))
        await asyncio.sleep(0.01)  # the poller's connection is open before the streams start
        start = time.perf_counter()
        streams = await asyncio.gather(*(one_stream(client, url, run, length, seed + i) for i in range(n)))
        wall = time.perf_counter() - start
        stop.set()
        latencies, most = await poller
    return sum(s.chars for s in streams) / wall, streams, latencies, most


def train_run(args: argparse.Namespace, root: Path) -> Path:
    run = root / "run"
    print(f"training a {args.layers} x {args.rnn_size} char LSTM (embedding {args.emb}) on {args.text.name} "
          f"for {args.minutes * 60:g} s ...", flush=True)
    subprocess.run([*CHARPOET, "train", "--text-path", str(args.text), "--checkpoint-path", str(run),
                    "--rnn-size", str(args.rnn_size), "--num-layers", str(args.layers), "--embedding-size",
                    str(args.emb), "--max-minutes", str(args.minutes), "--stats-every", "off", "--no-tensorboard"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run


def start_server(run: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[str], str, queue.Queue]:
    proc = subprocess.Popen([*CHARPOET, "serve", "--checkpoint-path", str(run), "--port", "0",
                             "--max-streams-per-client", "64", "--max-length", str(max(args.length, 5000))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while True:
        line = lines.get(timeout=120)
        if line is None:
            sys.exit(f"error: charpoet serve ended (exit {proc.wait()})")
        if found := re.match(r"charpoet serve: (http://\S+?)/ ", line):
            return proc, found.group(1), lines
        print(f"  server: {line}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="serve this run instead of training one")
    p.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="corpus of the run trained first")
    p.add_argument("--rnn-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--minutes", type=float, default=0.2, help="training time of the run trained first")
    p.add_argument("--levels", default="1,8,32", help="concurrent streams, comma-separated")
    p.add_argument("--length", type=int, default=500, help="characters per stream")
    p.add_argument("--rounds", type=int, default=5, help="rounds per level")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    print(cpu_description(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            if not args.text.is_file():
                sys.exit(f"error: {args.text} not found; pass --text or --run")
            run = train_run(args, Path(tmp))
        else:
            run = args.run
        proc, url, lines = start_server(run, args)
        try:
            info = httpx2.get(f"{url}/api/runs", timeout=120).json()["runs"][0]
            limits = httpx2.get(f"{url}/api/health", timeout=120).json()["limits"]
            print(f"run: {info['architecture']}, {info['steps']} steps, best val bpc {info['best_val_bpc']}; "
                  f"server {url}, {limits['workers'] or os.cpu_count()} worker threads (0 = one per core: "
                  f"{os.cpu_count()})", flush=True)
            start = time.perf_counter()
            warm = asyncio.run(level(url, info["name"], 1, 50, 0))[1][0]
            print(f"first generation (loads the model and the attribution index): "
                  f"{time.perf_counter() - start:.2f} s{'' if warm.error is None else ', ' + warm.error}", flush=True)
            rows = []
            for n in levels:
                rates, streams, latencies, most = [], [], [], 0
                for r in range(args.rounds):
                    rate, got, lat, seen = asyncio.run(level(url, info["name"], n, args.length, 1000 * r))
                    rates.append(rate)
                    streams += got
                    latencies += lat
                    most = max(most, seen)
                    worst = max((s.ttft for s in got if s.ttft is not None), default=0.0)
                    print(f"  {n} stream{'s' if n > 1 else ''}, round {r + 1}: {rate:,.0f} chars/s, slowest first "
                          f"token {worst * 1000:.0f} ms, slowest health {max(lat, default=0) * 1000:.0f} ms, "
                          f"{sum(s.error is not None for s in got)} errors", flush=True)
                ttft = [s.ttft for s in streams if s.ttft is not None]
                errors = [s.error for s in streams if s.error is not None]
                rows.append((n, statistics.median(rates), ttft, errors, latencies, most))
                for e in sorted(set(errors))[:3]:
                    print(f"    error: {e}", flush=True)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(60)
        tail = []
        while (line := lines.get(timeout=60)) is not None:
            tail.append(line)
    print(f"\n{args.rounds} rounds per level, {args.length} characters per stream, T=0.8; "
          f"server exit status {code}: {tail[-1] if tail else ''}")
    head = (f"{'streams':>7}  {'chars/s':>9}  {'TTFT p50':>9}  {'TTFT p95':>9}  {'errors':>8}  "
            f"{'health p50':>10}  {'p95':>8}  {'max':>8}  {'polls':>5}  {'generations seen':>16}")
    print(head)
    print("-" * len(head))
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    for n, rate, ttft, errors, latencies, most in rows:
        print(f"{n:>7}  {rate:>9,.0f}  {ms(percentile(ttft, 50)) if ttft else '-':>9}  "
              f"{ms(percentile(ttft, 95)) if ttft else '-':>9}  {f'{len(errors)}/{n * args.rounds}':>8}  "
              f"{ms(percentile(latencies, 50)) if latencies else '-':>10}  "
              f"{ms(percentile(latencies, 95)) if latencies else '-':>8}  "
              f"{ms(max(latencies)) if latencies else '-':>8}  {len(latencies):>5}  {most:>16}")
    logged = [line for line in tail[:-1] if line.strip()]
    if logged:
        print(f"\nthe server logged {len(logged)} lines:", *logged[:20], sep="\n  ")


if __name__ == "__main__":
    main()
