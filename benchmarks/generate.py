"""Generation benchmark: charpoet's generation core against the field's usual per-token loop.

    python benchmarks/generate.py                  # 2 x 256 char LSTM, embedding 64, tiny shakespeare's 65 chars
    python benchmarks/generate.py --rounds 5 --seconds 10

Both write from the same model object (``RNNLM``, float32): the plain loop steps it with its
carried state, then softmax, ``torch.multinomial`` and ``.item()`` for every character, as
char-rnn-style scripts do; charpoet calls ``LanguageModel.generate``. Rounds alternate between
the two, for one stream and for 64 streams, and the script prints characters/second per round,
the medians and their ratio. It also checks that both write the same greedy text, and times
``charpoet generate --length 600`` from process start to exit on a briefly trained run of the
same shape (with the kernels already compiled, and once with an empty kernel cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_description

HERE = Path(__file__).resolve().parent
DEFAULT_TEXT = HERE.parent.parent / "shared" / "corpora" / "tinyshakespeare.txt"
sys.path.insert(0, str(HERE.parent / "src"))

from charpoet.config import ModelConfig, RunConfig  # noqa: E402
from charpoet.model import RNNLM  # noqa: E402
from charpoet.sample import LanguageModel  # noqa: E402
from charpoet.tokenizer import CharTokenizer  # noqa: E402


@torch.no_grad()
def plain_loop(model: RNNLM, itos: list[str], prime: list[int], length: int, streams: int, temperature: float) -> list[str]:
    """The usual loop: one forward call per character, softmax, multinomial, .item()."""
    x = torch.tensor([prime] * streams)  # (N, P)
    logits, state = model(x)
    out: list[list[str]] = [[] for _ in range(streams)]
    for _ in range(length):
        last = logits[:, -1]  # (N, V)
        if temperature == 0:
            idx = last.argmax(-1, keepdim=True)
        else:
            idx = torch.multinomial(torch.softmax(last / temperature, -1), 1)  # (N, 1)
        if streams == 1:
            out[0].append(itos[idx.item()])
        else:
            for row, i in zip(out, idx[:, 0].tolist()):
                row.append(itos[i])
        logits, state = model(idx, state)
    return ["".join(r) for r in out]


def chars_per_second(write, streams: int, seconds: float) -> float:
    """Characters per second of ``write()`` (which writes ``length`` per stream) repeated for ``seconds``."""
    done, start = 0, time.perf_counter()
    while True:
        done += sum(len(t) for t in write())
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def alternate(name: str, plain, ours, streams: int, args: argparse.Namespace) -> None:
    p, c = [], []
    for r in range(args.rounds):
        p.append(chars_per_second(plain, streams, args.seconds))
        c.append(chars_per_second(ours, streams, args.seconds))
        print(f"  {name} round {r + 1}: plain loop {p[-1]:,.0f} chars/s   charpoet {c[-1]:,.0f} chars/s   "
              f"ratio {c[-1] / p[-1]:.1f}", flush=True)
    mp, mc = statistics.median(p), statistics.median(c)
    mr = statistics.median(b / a for a, b in zip(p, c))
    print(f"{name}: median plain loop {mp:,.0f} chars/s, charpoet {mc:,.0f} chars/s, ratio of medians {mc / mp:.1f}, "
          f"median of ratios {mr:.1f}", flush=True)


def cli_timing(args: argparse.Namespace) -> None:
    """``charpoet generate --length 600`` wall time, process start to exit, on a run of this shape."""
    charpoet = [sys.executable, "-m", "charpoet"]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run([*charpoet, "train", "--text-path", str(args.text), "--checkpoint-path", str(run),
                        "--rnn-size", str(args.rnn_size), "--num-layers", str(args.layers), "--embedding-size",
                        str(args.emb), "--max-minutes", "0.2", "--stats-every", "off", "--no-tensorboard"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        command = [*charpoet, "generate", "--checkpoint-path", str(run), "--length", "600", "--seed", "1"]

        def timed(env: dict[str, str] | None = None) -> float:
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, **(env or {})})
            return time.perf_counter() - start

        timed()  # the run's attribution index and the kernels, once
        warm = [timed() for _ in range(3)]
        print(f"charpoet generate --length 600, process start to exit: median {statistics.median(warm):.2f} s "
              f"of {', '.join(f'{t:.2f}' for t in warm)}", flush=True)
        with tempfile.TemporaryDirectory() as cache:
            cold = timed({"NUMBA_CACHE_DIR": cache})
        print(f"  the same with an empty kernel cache (the first run after installing): {cold:.2f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="vocabulary source, and the run's corpus")
    p.add_argument("--rnn-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--no-cli", action="store_true", help="skip timing the charpoet generate command")
    args = p.parse_args()
    print(cpu_description(), flush=True)
    if not args.text.is_file():
        sys.exit(f"error: {args.text} not found; pass --text")
    chars = sorted(set(args.text.read_text(encoding="utf-8")))
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=len(chars), rnn_size=args.rnn_size, num_layers=args.layers,
                              embedding_size=args.emb)).eval()
    lm = LanguageModel(model, CharTokenizer(chars), RunConfig(), meta={})
    prime = "ROMEO:"
    prime_ids = lm.tokenizer.encode(prime).tolist()
    print(f"model: {args.layers} x {args.rnn_size} {model.config.cell}, embedding {args.emb}, vocabulary "
          f"{len(chars)}, {model.num_parameters():,} parameters, float32; backend {lm.stepper.backend} "
          f"with {lm.stepper.threads} thread(s) for 1 stream; torch threads {torch.get_num_threads()}", flush=True)
    same = plain_loop(model, chars, prime_ids, 600, 1, 0)[0] == lm.generate(prime, length=600, temperature=0)[0]
    print(f"greedy text, 600 chars: {'identical' if same else 'DIFFERENT'} in the plain loop and charpoet", flush=True)
    T = args.temperature
    for streams, length in ((1, 500), (64, 100)):
        alternate(f"{streams} stream{'s' if streams > 1 else ''}, T={T:g}",
                  lambda: plain_loop(model, chars, prime_ids, length, streams, T),
                  lambda: lm.generate(prime, length=length, temperature=T, num_samples=streams), streams, args)
    if not args.no_cli:
        cli_timing(args)


if __name__ == "__main__":
    main()
