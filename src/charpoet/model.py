"""The recurrent language model: embedding -> N x LSTM/GRU -> linear.

Shapes: B batch, T time steps, E embedding size, H rnn size, L layers, V vocabulary.

Every variant has the same interface, so loops never branch on the cell type:

    logits, state = model(idx, state)      # idx (B, T) int64 -> logits (B, T, V)

``state`` is a tuple of (L, B, H) tensors: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU;
``None`` means zeros. Each layer is a fused single-layer ``nn.LSTM``/``nn.GRU`` (one
cuDNN or oneDNN kernel over all time steps; oneDNN runs multi-layer RNNs layer by layer
anyway), optionally followed by ``nn.LayerNorm``, with dropout between layers and before
the output layer. On the CPU dropout draws its mask from 16-bit slices of 64-bit random
words (``fast_dropout``): PyTorch's per-element Bernoulli sampler otherwise takes a
quarter of a small model's training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charpoet.config import ModelConfig
from charpoet.resources import require_memory

State = tuple[Tensor, ...]


class RNNLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set before building a model")
        require_memory(4 * count_parameters(config), f"a model of {count_parameters(config):,} parameters",
                       "use a smaller --rnn-size, --num-layers or --embedding-size")
        self.config = config
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        E, H, L = config.embedding_size, config.rnn_size, config.num_layers
        self.embedding = nn.Embedding(config.vocab_size, E)
        self.layers = nn.ModuleList(
            rnn_class(E if i == 0 else H, H, num_layers=1, batch_first=True) for i in range(L)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(H) for _ in range(L)) if config.layer_norm else None
        self.head = nn.Linear(H, config.vocab_size)

    @property
    def state_size(self) -> int:
        """Tensors per state: 2 for an LSTM (h, c), 1 for a GRU (h)."""
        return 2 if self.config.cell == "lstm" else 1

    def init_state(self, batch_size: int) -> State:
        """Zero state on the model's device and dtype."""
        weight = self.head.weight
        shape = (self.config.num_layers, batch_size, self.config.rnn_size)
        return tuple(weight.new_zeros(shape) for _ in range(self.state_size))

    def forward(self, idx: Tensor, state: State | None = None, *,
                generator: torch.Generator | None = None) -> tuple[Tensor, State]:
        """``generator`` is where dropout draws its masks on the CPU (default: torch's global one)."""
        if state is None:
            state = self.init_state(idx.shape[0])
        x = self.embedding(idx)  # (B, T, E)
        p = self.config.drop_rate if self.training else 0.0
        new_state = []
        for i, rnn in enumerate(self.layers):
            layer_state = tuple(s[i : i + 1] for s in state)  # each (1, B, H)
            x, layer_state = _run(rnn, x, layer_state)  # (B, T, H)
            if self.norms is not None:
                x = self.norms[i](x)
            x = fast_dropout(x, p, generator)  # between layers, and before the output layer
            new_state.append(layer_state)
        logits = self.head(x)  # (B, T, V)
        if len(new_state) == 1:
            return logits, new_state[0]
        return logits, tuple(torch.cat(parts, dim=0) for parts in zip(*new_state))  # each (L, B, H)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def count_parameters(config: ModelConfig) -> int:
    """Parameters of ``RNNLM(config)``, computed without building it."""
    gates = 4 if config.cell == "lstm" else 3
    E, H, L, V = config.embedding_size, config.rnn_size, config.num_layers, config.vocab_size
    recurrent = gates * H * (E + H + 2) + (L - 1) * gates * H * (2 * H + 2)  # input, hidden, 2 biases
    norms = 2 * H * L if config.layer_norm else 0
    return V * E + recurrent + norms + H * V + V


def _run(rnn: nn.Module, x: Tensor, state: State) -> tuple[Tensor, State]:
    """Call an nn.LSTM with (h, c) or an nn.GRU with h, always returning a state tuple."""
    if isinstance(rnn, nn.LSTM):
        out, (h, c) = rnn(x, state)
        return out, (h, c)
    out, h = rnn(x, state[0])
    return out, (h,)


def fast_dropout(x: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Inverted dropout with probability ``p``; on the CPU the mask comes from random words.

    Each 64-bit word from ``torch.randint`` gives four 16-bit values, so the mask takes a
    quarter of the generator calls of ``F.dropout`` (the keep probability is rounded to
    1/65536). Off the CPU this is ``F.dropout``. Both use torch's generator (or ``generator``
    on the CPU), so a seeded run (and a resumed one, which restores it) draws the same masks.
    """
    if p <= 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, generator=generator)
    keep = words.view(torch.int16)[:n].view(x.shape) >= round(p * 65536) - 32768  # (same as x)
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))


def detach_state(state: State) -> State:
    """Cut the graph between TBPTT windows while keeping the values."""
    return tuple(s.detach() for s in state)


def sequence_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in nats per token; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
