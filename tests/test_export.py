"""``charpoet export --format onnx``: the exported step against the PyTorch model, and its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import charpoet
from charpoet.cli import app
from charpoet.config import ModelConfig
from charpoet.export import export_onnx, step_onnx
from charpoet.model import RNNLM

ort = pytest.importorskip("onnxruntime")
MODELS = {
    "lstm-1": dict(cell="lstm", num_layers=1),
    "lstm-4": dict(cell="lstm", num_layers=4),
    "gru-2": dict(cell="gru", num_layers=2),
    "gru-3-layer-norm": dict(cell="gru", num_layers=3, layer_norm=True),
    "lstm-2-layer-norm": dict(cell="lstm", num_layers=2, layer_norm=True),
}


def session(data: bytes):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def make_model(**overrides) -> RNNLM:
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(**(dict(vocab_size=50, rnn_size=48, embedding_size=16) | overrides))).eval()
    with torch.no_grad():  # livelier than the initial weights, so differences would show
        for p in model.parameters():
            p.mul_(2.0)
    return model


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", MODELS)
def test_the_onnx_step_equals_the_model_over_200_steps(name, batch):
    model = make_model(**MODELS[name])
    sess = session(step_onnx(model))
    ids = torch.randint(0, 50, (batch, 200))
    with torch.no_grad():
        expected, _ = model(ids)  # (B, 200, V), the whole sequence at once
    state = [np.zeros((model.config.num_layers, batch, 48), np.float32) for _ in range(model.state_size)]
    names = ["h", "c"][: model.state_size]
    for t in range(200):
        logits, *state = sess.run(None, {"tokens": ids[:, t].numpy(), **dict(zip(names, state))})
        np.testing.assert_allclose(logits, expected[:, t].numpy(), atol=1e-4, rtol=1e-4)


def test_an_exported_run_writes_the_same_greedy_text_and_carries_its_config_and_vocabulary(trained_run, tmp_path):
    path = tmp_path / "model.onnx"
    info = export_onnx(trained_run, path)
    assert info.bytes == path.stat().st_size and not list(tmp_path.glob("*.data"))  # one file, weights inside
    sess = session(path.read_bytes())
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["charpoet_version"] == charpoet.__version__
    config, vocab = json.loads(meta["charpoet_config"]), json.loads(meta["charpoet_vocab"])
    lm = charpoet.load(trained_run)
    assert config == lm.config.to_dict() and vocab == lm.tokenizer.to_dict()
    # greedy decoding with onnxruntime alone, from the metadata's vocabulary
    prime = "ROMEO:"
    ids = lm.tokenizer.encode(prime)
    m = lm.config.model
    state = {"h": np.zeros((m.num_layers, 1, m.rnn_size), np.float32), "c": np.zeros((m.num_layers, 1, m.rnn_size), np.float32)}
    out = []
    token = None
    for t in range(len(ids) + 200):
        token = ids[t] if t < len(ids) else token
        logits, h, c = sess.run(None, {"tokens": np.array([token], np.int64), **state})
        state = {"h": h, "c": c}
        if t >= len(ids) - 1:
            token = int(logits[0].argmax())
            out.append(token)
    text = "".join(lm.tokenizer.token_text(i) for i in out[:200])
    assert text == lm.generate(prime, length=200, temperature=0)[0]


def test_the_export_command_and_its_bad_input(trained_run, tmp_path):
    runner = CliRunner()
    path = tmp_path / "m.onnx"
    ok = runner.invoke(app, ["export", str(trained_run), "-o", str(path)])
    assert ok.exit_code == 0 and path.is_file() and "wrote" in ok.output
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    for args, words in [
        (["export", str(trained_run), "-o", str(path)], "give --force"),
        (["export", str(tmp_path / "missing"), "-o", str(tmp_path / "x.onnx")], "does not exist"),
        (["export", str(trained_run), "--format", "tflite", "-o", str(tmp_path / "x.onnx")], "--format"),
        (["export", str(trained_run), "-o", str(tmp_path / "no" / "x.onnx")], "does not exist"),
        (["export", str(trained_run), "-o", str(tmp_path)], "is a directory"),
        (["export", str(trained_run), "-o", str(trained_run / "best.safetensors"), "--force"], "file of the run"),
        (["export", str(trained_run), "--weights", "newest", "-o", str(tmp_path / "x.onnx")], "--weights"),
    ]:
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and words in bad.output, (args, bad.output)
        assert len(bad.output.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()} == before  # the run untouched
    again = runner.invoke(app, ["export", str(trained_run), "-o", str(path), "--force", "--weights", "last"])
    assert again.exit_code == 0
