import pytest
import torch
import torch.nn.functional as F

from charpoet.config import ModelConfig
from charpoet.model import RNNLM
from charpoet.shards import MIN_ROWS, ShardedStep, shard_bounds, shard_count


def _model(cell="lstm", drop=0.0, layer_norm=False):
    torch.manual_seed(0)
    return RNNLM(ModelConfig(cell=cell, num_layers=2, rnn_size=24, embedding_size=8, drop_rate=drop,
                             layer_norm=layer_norm, vocab_size=11)).train()


def test_shards_cover_the_batch_one_per_core():
    assert shard_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert shard_count(64, 2) == 2 and shard_count(64, 16) == 64 // MIN_ROWS
    assert shard_count(8, 2) == 1 and shard_count(64, 1) == 1


@pytest.mark.parametrize("cell,layer_norm", [("lstm", False), ("gru", True)])
def test_sharded_step_equals_one_backward_over_the_whole_batch(cell, layer_norm):
    """Slow, obvious code: the mean loss of the whole batch and loss.backward()."""
    model = _model(cell, layer_norm=layer_norm)
    x = torch.randint(0, 11, (2 * MIN_ROWS + 3, 9))
    y = torch.randint(0, 11, x.shape)
    state = tuple(torch.randn(2, x.shape[0], 24) for _ in range(model.state_size))
    logits, want_state = model(x, state)
    want = F.cross_entropy(logits.reshape(-1, 11), y.reshape(-1))
    want.backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    stepper = ShardedStep(model, x.shape[0], torch.device("cpu"), cores=2)
    try:
        assert stepper.shards == 2
        loss, got_state = stepper.step(x, y, state, torch.float32)
    finally:
        stepper.close()
    torch.testing.assert_close(loss, want.detach())
    for a, b in zip(got_state, want_state):
        torch.testing.assert_close(a, b.detach())
    for p, g in zip(model.parameters(), want_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_sharded_dropout_is_seeded_by_the_global_generator():
    model = _model(drop=0.5)
    x = torch.randint(0, 11, (2 * MIN_ROWS, 7))
    runs = []
    for _ in range(2):
        stepper = ShardedStep(model, x.shape[0], torch.device("cpu"), cores=2)
        try:
            torch.manual_seed(3)
            loss, _ = stepper.step(x, x, None, torch.float32)
        finally:
            stepper.close()
        runs.append((loss, [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_validation_over_shards_equals_one_pass():
    from charpoet.train import estimate_loss

    model = _model()
    rows = torch.randint(0, 11, (5, 300))
    stepper = ShardedStep(model, 2 * MIN_ROWS, torch.device("cpu"), cores=2)
    try:
        sharded = estimate_loss(model, rows, 1.0, chunk=64, shards=stepper)
    finally:
        stepper.close()
    whole = estimate_loss(model, rows, 1.0, chunk=64)
    assert sharded["val_tokens"] == whole["val_tokens"] == 5 * 299
    assert sharded["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-6)
    assert sharded["val_accuracy"] == whole["val_accuracy"]
    assert model.training


def test_a_sharded_run_resumes_bit_for_bit(tiny_corpus, tiny_config, tmp_path):
    from dataclasses import replace

    from safetensors.torch import load_file

    from charpoet.checkpoint import RunDir
    from charpoet.train import train

    config = tiny_config(tiny_corpus, num_epochs=1.0, stats_every="5steps")
    config = replace(config, data=replace(config.data, batch_size=2 * MIN_ROWS, seq_len=16))
    whole = train(config, tmp_path / "whole", stop_after_steps=8)
    train(config, tmp_path / "split", stop_after_steps=4)
    second = train(RunDir(tmp_path / "split").read_config(), tmp_path / "split", restore=True, stop_after_steps=4)
    assert second.step == whole.step == 8
    a, b = load_file(str(tmp_path / "whole" / "last.safetensors")), load_file(str(tmp_path / "split" / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng."))
