"""Exporting a run: one generation step as a standalone ONNX model.

    info = export_onnx("runs/books", "model.onnx")   # best weights; weights="last" for the last

The model takes ``tokens`` (B,) int64 and the state, ``h`` (L, B, H) and for an LSTM ``c``
(L, B, H), float32, and returns ``logits`` (B, V) and the new state, ``h_out`` (and ``c_out``):
the step ``charpoet.stepper.Stepper.step`` takes, for any batch size B. It is one file (weights
inside), and its metadata holds the charpoet version (``charpoet_version``), the run's config
(``charpoet_config``, JSON) and vocabulary (``charpoet_vocab``, JSON, as ``vocab.json``), so an
onnxruntime program in any language can encode a prompt, step and decode with nothing else.

Needs the ``onnx`` package (``pip install 'charpoet[export]'``); onnxruntime runs the result.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from charpoet.corpus.cache import atomic_write_bytes
from charpoet.errors import CharpoetError, ConfigError
from charpoet.model import RNNLM

OPSET = 17
FORMATS = ("onnx",)


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    bytes: int
    cell: str
    num_layers: int
    rnn_size: int
    vocab_size: int


class StepModule(nn.Module):
    """One step of a ``RNNLM`` written with plain tensor operations (what ONNX expresses directly):
    ``(tokens, h[, c]) -> (logits, h_out[, c_out])``; gates in PyTorch's order (LSTM i f g o, GRU r z n)."""

    def __init__(self, model: RNNLM):
        super().__init__()
        cfg = model.config
        self.lstm = cfg.cell == "lstm"
        self.num_layers = cfg.num_layers
        self.embedding = nn.Parameter(model.embedding.weight.detach().clone())  # (V, E)
        for i, rnn in enumerate(model.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                self.register_buffer(f"{name}_{i}", getattr(rnn, f"{name}_l0").detach().clone())
        self.norms = None
        if model.norms is not None:
            self.norms = nn.ModuleList(nn.LayerNorm(cfg.rnn_size) for _ in range(cfg.num_layers))
            self.norms.load_state_dict(model.norms.state_dict())
        self.head = nn.Linear(cfg.rnn_size, cfg.vocab_size)
        self.head.load_state_dict(model.head.state_dict())

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, ...]:
        x = self.embedding[tokens]  # (B, E)
        hs, cs = [], []
        for i in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_{i}"), getattr(self, f"weight_hh_{i}")
            b_ih, b_hh = getattr(self, f"bias_ih_{i}"), getattr(self, f"bias_hh_{i}")
            gi = x @ w_ih.t() + b_ih  # (B, G*H)
            gh = h[i] @ w_hh.t() + b_hh
            if self.lstm:
                assert c is not None
                i_gate, f_gate, g_gate, o_gate = (gi + gh).chunk(4, dim=1)
                c_new = torch.sigmoid(f_gate) * c[i] + torch.sigmoid(i_gate) * torch.tanh(g_gate)
                h_new = torch.sigmoid(o_gate) * torch.tanh(c_new)
                cs.append(c_new)
            else:
                r_i, z_i, n_i = gi.chunk(3, dim=1)
                r_h, z_h, n_h = gh.chunk(3, dim=1)
                r = torch.sigmoid(r_i + r_h)
                z = torch.sigmoid(z_i + z_h)
                n = torch.tanh(n_i + r * n_h)
                h_new = (1 - z) * n + z * h[i]
            hs.append(h_new)
            x = self.norms[i](h_new) if self.norms is not None else h_new
        logits = self.head(x)  # (B, V)
        if self.lstm:
            return logits, torch.stack(hs), torch.stack(cs)
        return logits, torch.stack(hs)


def export_onnx(run_dir: str | Path, output: str | Path, weights: str = "best", force: bool = False) -> ExportInfo:
    """Write ``run_dir``'s model as one ONNX step to ``output`` (atomically); see the module docstring."""
    from charpoet import __version__

    output = Path(output).expanduser()
    _check_output(output, force)
    from charpoet.sample import load

    lm = load(run_dir, weights=weights, device="cpu")  # checks the run, its config, vocabulary and weights
    config, tokenizer, model = lm.config, lm.tokenizer, lm.model
    meta = {"charpoet_version": __version__, "charpoet_config": json.dumps(config.to_dict()),
            "charpoet_vocab": json.dumps(tokenizer.to_dict(), ensure_ascii=False)}
    data = step_onnx(model, meta)
    m = config.model
    atomic_write_bytes(output, data)
    return ExportInfo(output, len(data), m.cell, m.num_layers, m.rnn_size, m.vocab_size)


def step_onnx(model: RNNLM, metadata: dict[str, str] | None = None) -> bytes:
    """``model``'s generation step as a serialized ONNX model (see the module docstring), with
    ``metadata`` in its metadata properties."""
    try:
        import onnx
    except ImportError:
        raise CharpoetError("exporting to ONNX needs the onnx package: pip install 'charpoet[export]'") from None
    from charpoet import __version__

    step = StepModule(model.cpu().eval()).eval()
    m = model.config
    B = 2  # any batch: the axis is dynamic
    tokens = torch.zeros(B, dtype=torch.int64)
    state = tuple(torch.zeros(m.num_layers, B, m.rnn_size) for _ in range(model.state_size))
    names = ["h", "c"][: model.state_size]
    outs = ["logits"] + [f"{n}_out" for n in names]
    dynamic = {"tokens": {0: "batch"}, "logits": {0: "batch"}}
    dynamic.update({n: {1: "batch"} for n in names + [f"{n}_out" for n in names]})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, still in torch 2.13
        torch.onnx.export(step, (tokens, *state), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["tokens", *names], output_names=outs, dynamic_axes=dynamic)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "charpoet", __version__
    return proto.SerializeToString()


def _check_output(output: Path, force: bool) -> None:
    if output.is_dir():
        raise ConfigError(f"-o {output}: is a directory; give a file name such as model.onnx")
    if not output.parent.is_dir():
        raise ConfigError(f"-o {output}: the directory {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise ConfigError(f"-o {output}: the directory {output.parent} is not writable")
    if output.exists() and not force:
        raise ConfigError(f"-o {output}: the file exists; give --force to replace it")
    from charpoet.checkpoint import CONFIG, RUN_FILES

    if output.name in RUN_FILES and (output.parent / CONFIG).is_file():
        raise ConfigError(f"-o {output}: that is a file of the run in {output.parent}; choose another name")
