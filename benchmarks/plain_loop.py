"""A plain PyTorch char-LSTM training loop: the reference charpoet is compared with.

Embedding -> nn.LSTM -> Linear, Adam, the training text laid out as parallel streams and
the hidden state carried between windows (pytorch/examples word_language_model's batchify
and repackage_hidden), no allocator tuning. Prints one JSON line with characters/second and the validation loss
(nats/char, whole validation split, first 90% / last 10%) at the requested minutes.

    python benchmarks/plain_loop.py --text ../shared/corpora/tinyshakespeare.txt --minutes 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, layers: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        y, state = self.lstm(self.emb(x), state)
        return self.out(y), state


@torch.no_grad()
def val_loss(model: CharLSTM, data: torch.Tensor, batch: int = 64, chunk: int = 256) -> float:
    model.eval()
    rows = data[: len(data) // batch * batch].view(batch, -1)
    total, count, state = 0.0, 0, None
    for s in range(0, rows.shape[1] - 1, chunk):
        x, y = rows[:, s : s + chunk], rows[:, s + 1 : s + chunk + 1]
        x = x[:, : y.shape[1]]
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--text", required=True)
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--eval-at", type=float, nargs="*", default=[], help="minutes at which to evaluate")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--emb", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args()

    torch.manual_seed(a.seed)
    text = open(a.text, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = int(len(data) * 0.9)
    train, valid = data[:n], data[n:]
    model = CharLSTM(len(chars), a.emb, a.hidden, a.layers)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    marks = sorted(a.eval_at)
    results: dict[str, float] = {}
    rows = train[: len(train) // a.batch * a.batch].view(a.batch, -1)  # (B, L) streams
    steps, train_time, pos, state = 0, 0.0, 0, None
    while train_time < a.minutes * 60:
        t0 = time.perf_counter()
        if pos + a.seq + 1 > rows.shape[1]:
            pos, state = 0, None
        x, y = rows[:, pos : pos + a.seq], rows[:, pos + 1 : pos + a.seq + 1]
        pos += a.seq
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        steps += 1
        train_time += time.perf_counter() - t0
        while marks and train_time >= marks[0] * 60:
            results[f"val_loss@{marks.pop(0):g}min"] = round(val_loss(model, valid), 4)
    out = {"steps": steps, "train_seconds": round(train_time, 2),
           "chars_per_sec": round(steps * a.batch * a.seq / train_time), **results}
    if not a.eval_at:
        out["val_loss"] = round(val_loss(model, valid), 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
