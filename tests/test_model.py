import pytest
import torch

from charpoet.config import ModelConfig
from charpoet.model import RNNLM, detach_state, fast_dropout


def _model(cell="lstm", layers=2, layer_norm=False, drop=0.0, vocab=11):
    torch.manual_seed(0)
    return RNNLM(ModelConfig(cell=cell, num_layers=layers, rnn_size=24, embedding_size=8,
                             drop_rate=drop, layer_norm=layer_norm, vocab_size=vocab))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_stateful_chunks_equal_full_sequence(cell, layers, layer_norm):
    model = _model(cell, layers, layer_norm).eval()
    idx = torch.randint(0, 11, (3, 40))
    full, full_state = model(idx)
    state, parts = None, []
    for chunk in idx.split([7, 1, 13, 19], dim=1):
        logits, state = model(chunk, state)
        parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
    for a, b in zip(state, full_state):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_same_interface_for_every_variant(cell):
    model = _model(cell, layers=10)
    logits, state = model(torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape == (2, 5, 11)
    assert len(state) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (10, 2, 24) for s in state)
    assert all(not s.requires_grad for s in detach_state(state))


def test_stepwise_lstm_matches_a_naive_cell_loop():
    """The fused layers compute exactly the textbook LSTM equations."""
    model = _model("lstm", layers=2).eval()
    idx = torch.randint(0, 11, (2, 9))
    logits, _ = model(idx)
    x = model.embedding(idx)
    for layer in model.layers:
        w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
        h = c = torch.zeros(2, 24)
        outs = []
        for t in range(idx.shape[1]):
            i, f, g, o = (x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        x = torch.stack(outs, dim=1)
    torch.testing.assert_close(model.head(x), logits, rtol=1e-4, atol=1e-5)


def test_fast_dropout_keeps_the_right_share_and_scale():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = fast_dropout(x, 0.3)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert fast_dropout(x, 0.0) is x


def test_fast_dropout_gradient_is_the_mask():
    x = torch.randn(1000, requires_grad=True)
    torch.manual_seed(1)
    y = fast_dropout(x, 0.5)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)


def test_dropout_is_seeded_and_off_in_eval_mode():
    model = _model(drop=0.5)
    idx = torch.randint(0, 11, (2, 6))
    torch.manual_seed(5)
    a, _ = model(idx)
    torch.manual_seed(5)
    b, _ = model(idx)
    torch.testing.assert_close(a, b)
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(("layers", "layer_norm"), [(1, False), (3, True)])
def test_count_parameters_matches_the_built_model(cell, layers, layer_norm):
    from charpoet.model import count_parameters

    config = ModelConfig(cell=cell, num_layers=layers, rnn_size=24, embedding_size=8, layer_norm=layer_norm,
                         vocab_size=30)
    assert count_parameters(config) == RNNLM(config).num_parameters()


def test_an_impossible_model_is_a_config_error_before_any_allocation():
    from charpoet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^a model of [\d,]+ parameters needs about .* TB of memory.*--rnn-size"):
        RNNLM(ModelConfig(rnn_size=10_000_000, vocab_size=30))
