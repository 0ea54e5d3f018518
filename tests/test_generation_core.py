"""The generation core: the stepper against RNNLM.forward, the sampler against the distribution it
claims, and the compiled paths against the plain ones."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from charpoet import stepper as stepper_module
from charpoet.config import ModelConfig
from charpoet.model import RNNLM
from charpoet.sample import LanguageModel, load
from charpoet.sampling import Sampler, SamplingOptions, filtered_probabilities
from charpoet.stepper import Stepper
from charpoet.tokenizer import CharTokenizer

TOL = dict(atol=1e-5, rtol=1e-5)  # float32 sums in another order: |got - want| <= 1e-5 (1 + |want|)
# "threads": the compiled backend with each layer's units shared among two threads (kernels.run_threads)
BACKENDS = ["compiled", "threads", "torch"] if stepper_module.kernels is not None else ["torch"]
MODELS = {
    "lstm": dict(cell="lstm"),
    "gru": dict(cell="gru"),
    "lstm-layer-norm": dict(cell="lstm", layer_norm=True),
    "gru-layer-norm-1-layer": dict(cell="gru", layer_norm=True, num_layers=1),
    "word-sized": dict(cell="lstm", vocab_size=3000),  # a larger output layer, and no folded table
}


def make_model(seed: int = 0, **overrides) -> RNNLM:
    torch.manual_seed(seed)
    config = dict(vocab_size=40, rnn_size=24, num_layers=3, embedding_size=8) | overrides
    model = RNNLM(ModelConfig(**config)).eval()
    with torch.no_grad():  # livelier than the initial weights, so differences would show
        for p in model.parameters():
            p.mul_(2.0)
    return model


def make_stepper(model: RNNLM, backend: str) -> Stepper:
    if backend == "threads":
        return Stepper(model, "compiled", threads=2)
    return Stepper(model, backend, threads=1 if backend == "compiled" else None)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    return request.param


@pytest.mark.parametrize("name", MODELS)
def test_stepper_matches_the_full_sequence_forward(name, backend, monkeypatch):
    if name == "word-sized":
        monkeypatch.setattr(stepper_module, "TABLE_MAX_BYTES", 0)  # embedding, then layer 0's product
    model = make_model(**MODELS[name])
    V = model.config.vocab_size
    ids = torch.randint(0, V, (3, 30))  # 3 streams
    with torch.no_grad():
        expected, expected_state = model(ids)  # (3, 30, V)
    stepper = make_stepper(model, backend)
    # step by step, all three streams at once (the batched path) and one at a time (the single path)
    state = stepper.init_state(3)
    for t in range(30):
        logits, state = stepper.step(ids[:, t].numpy(), state)
        np.testing.assert_allclose(logits, expected[:, t].numpy(), **TOL)
    for got, want in zip(state, expected_state):
        np.testing.assert_allclose(np.asarray(got), want.numpy(), **TOL)
    for row in range(3):
        state = stepper.init_state(1)
        for t in range(30):
            logits, state = stepper.step(ids[row:row + 1, t].numpy(), state)
            np.testing.assert_allclose(logits[0], expected[row, t].numpy(), **TOL)
        # the whole sequence at once, and in two pieces carrying the state
        logits, fed = stepper.feed(ids[row].numpy())
        np.testing.assert_allclose(logits[0], expected[row, -1].numpy(), **TOL)
        _, half = stepper.feed(ids[row, :11].numpy())
        logits, fed2 = stepper.feed(ids[row, 11:].numpy(), half)
        np.testing.assert_allclose(logits[0], expected[row, -1].numpy(), **TOL)
        for a, b, want in zip(fed, fed2, expected_state):
            np.testing.assert_allclose(np.asarray(a), want[:, row:row + 1].numpy(), **TOL)
            np.testing.assert_allclose(np.asarray(b), want[:, row:row + 1].numpy(), **TOL)


def test_step_never_changes_the_state_it_is_given(backend):
    stepper = make_stepper(make_model(), backend)
    _, state = stepper.feed(np.array([1, 2, 3]))
    before = [np.array(s, copy=True) for s in state]
    stepper.step(np.array([4]), state)
    stepper.feed(np.array([5, 6]), state)
    stepper.decode(Sampler(SamplingOptions(seed=0), 40), np.zeros((1, 40), np.float32), state, 5)
    for a, b in zip(before, state):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(stepper_module.compiled_threads() < 2, reason="numba has no thread-safe threading layer here")
@pytest.mark.parametrize("model", [dict(cell="lstm"), dict(cell="gru", layer_norm=True),
                                   dict(cell="lstm", rnn_size=26, vocab_size=3000)])  # parts of 16 and 10 units
def test_threads_compute_exactly_what_one_thread_does(model, monkeypatch):
    monkeypatch.setattr(stepper_module, "TABLE_MAX_BYTES", 0 if model.get("vocab_size") else 64 << 20)
    model = make_model(**model)
    one, two = Stepper(model, threads=1), Stepper(model, threads=2)
    assert (one.threads, two.threads) == (1, 2)
    prime = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    (logits1, state1), (logits2, state2) = one.feed(prime), two.feed(prime)
    np.testing.assert_array_equal(logits1, logits2)
    for streams in (1, 2):  # the fused decode, sampling included
        start = (np.repeat(logits1, streams, axis=0), one.repeat(state1, streams))
        ids1, last1, end1 = one.decode(Sampler(SamplingOptions(seed=3), model.config.vocab_size), *start, 60)
        ids2, last2, end2 = two.decode(Sampler(SamplingOptions(seed=3), model.config.vocab_size), *start, 60)
        np.testing.assert_array_equal(ids1, ids2)
        np.testing.assert_array_equal(last1, last2)
        for a, b in zip(end1, end2):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork") or stepper_module.compiled_threads() < 2,
                    reason="needs fork() and numba's thread-safe threading layer")
def test_a_forked_child_writes_the_same_text_without_openmp():
    """GNU OpenMP cannot run in a child made by fork() after the parent used it (numba aborts the
    child), so a forked child steps on one thread, with the same numbers."""
    stepper = Stepper(make_model(), threads=2)
    logits, state = stepper.feed(np.array([1, 2, 3]))
    ids, *_ = stepper.decode(Sampler(SamplingOptions(seed=5), 40), logits, state, 30)  # OpenMP now in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its tokens through the pipe, then leave without pytest's cleanup
        try:
            child, *_ = stepper.decode(Sampler(SamplingOptions(seed=5), 40), logits, state, 30)
            os.write(write, child.astype(np.int64).tobytes())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        got = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(np.frombuffer(got, np.int64).reshape(ids.shape), ids)


def test_threads_are_used_where_they_pay(monkeypatch):
    if stepper_module.kernels is not None:
        most = stepper_module.compiled_threads()
        assert Stepper(make_model(rnn_size=2 * stepper_module.UNITS_PER_THREAD, num_layers=1)).threads == min(2, most)
        assert Stepper(make_model(rnn_size=stepper_module.UNITS_PER_THREAD - 8, num_layers=1)).threads == 1
        monkeypatch.setattr("numba.config.THREADING_LAYER", "workqueue")  # not thread-safe, and slow to start
        stepper_module.compiled_threads.cache_clear()
        try:
            assert stepper_module.compiled_threads() == 1
        finally:
            monkeypatch.undo()
            stepper_module.compiled_threads.cache_clear()
    assert Stepper(make_model(rnn_size=512, num_layers=1), "torch").threads == 1
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            Stepper(make_model(), threads=bad)


def test_long_primes_are_fed_in_chunks(monkeypatch):
    monkeypatch.setattr(stepper_module, "FEED_CHUNK", 7)
    model = make_model(cell="gru", layer_norm=True)
    ids = torch.randint(0, 40, (1, 50))
    with torch.no_grad():
        expected, _ = model(ids)
    logits, _ = Stepper(model, "torch").feed(ids[0].numpy())
    np.testing.assert_allclose(logits[0], expected[0, -1].numpy(), **TOL)


@pytest.mark.parametrize("streams", [1, 2, 5])
@pytest.mark.parametrize("options", [SamplingOptions(temperature=0), SamplingOptions(temperature=1.3, seed=4),
                                     SamplingOptions(temperature=0.9, top_k=5, top_p=0.8, seed=9)])
@pytest.mark.parametrize("model", [dict(cell="lstm", layer_norm=True), dict(cell="gru")])
def test_decode_draws_the_same_tokens_as_picking_and_stepping(backend, streams, options, model):
    stepper = make_stepper(make_model(**model), backend)
    logits, state = stepper.feed(np.array([3, 1, 4, 1, 5]))
    logits, state = np.repeat(logits, streams, axis=0), stepper.repeat(state, streams)
    ids, last_logits, last_state = stepper.decode(Sampler(options, 40, banned=[7]), logits, state, 40, finish=False)
    sampler, expected = Sampler(options, 40, banned=[7], compiled=False), []  # the plain loop
    for _ in range(40):
        expected.append(sampler.pick(logits))
        logits, state = stepper.step(expected[-1], state)
    np.testing.assert_array_equal(ids, np.stack(expected))
    assert not (ids == 7).any()
    np.testing.assert_allclose(last_logits, logits, **TOL)
    np.testing.assert_allclose(np.asarray(last_state[0]), np.asarray(state[0]), **TOL)


def test_greedy_text_is_the_same_on_every_backend(trained_run):
    lm = load(trained_run)
    texts = set()
    for backend in BACKENDS:
        lm.__dict__["stepper"] = make_stepper(lm.model, backend)
        texts.add(lm.generate("ROMEO:", length=300, temperature=0)[0])
    assert len(texts) == 1


# --- the sampler ---------------------------------------------------------------------------------

LOGITS = np.array([[2.0, 1.5, 1.0, 0.2, -0.5, -1.0, -3.0, 0.9]], dtype=np.float32)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("options", [SamplingOptions(temperature=1.0), SamplingOptions(temperature=0.5),
                                     SamplingOptions(temperature=2.0, top_k=4),
                                     SamplingOptions(temperature=1.0, top_p=0.7),
                                     SamplingOptions(temperature=0.8, top_k=6, top_p=0.9)])
def test_draw_frequencies_follow_the_filtered_probabilities(options, compiled):
    """Pearson's chi-square over 40,000 draws; the masks must be exact (a masked token never drawn)."""
    banned = [3]
    sampler = Sampler(SamplingOptions(**{**options.__dict__, "seed": 11}), 8, banned=banned, compiled=compiled)
    draws = 40_000
    counts = np.bincount(sampler.pick(np.repeat(LOGITS, draws, axis=0)), minlength=8)
    probs = filtered_probabilities(LOGITS, options.temperature, options.top_k, options.top_p,
                                   np.isin(np.arange(8), banned))[0]
    assert (counts[probs == 0] == 0).all()
    assert (probs > 0).sum() >= 2
    expected = probs[probs > 0] * draws
    chi2 = ((counts[probs > 0] - expected) ** 2 / expected).sum()
    # 99.9th percentile of chi-square with up to 6 degrees of freedom is 22.46
    assert chi2 < 22.46, (counts, expected)


def test_top_k_and_top_p_masks_are_exact():
    x = np.log(np.array([[0.4, 0.3, 0.2, 0.1]]))
    assert (filtered_probabilities(x, 1.0, top_k=2)[0] > 0).tolist() == [True, True, False, False]
    assert (filtered_probabilities(x, 1.0, top_p=0.7)[0] > 0).tolist() == [True, True, False, False]
    assert (filtered_probabilities(x, 1.0, top_p=0.71)[0] > 0).tolist() == [True, True, True, False]
    np.testing.assert_allclose(filtered_probabilities(x, 1.0, top_p=0.7)[0], [4 / 7, 3 / 7, 0, 0])
    tie = np.array([[1.0, 1.0, 0.0]])
    assert (filtered_probabilities(tie, 1.0, top_k=1)[0] > 0).tolist() == [True, True, False]  # ties stay


@pytest.mark.parametrize("compiled", [True, False])
def test_extreme_temperatures(compiled):
    greedy = Sampler(SamplingOptions(temperature=1e-300, seed=1), 8, compiled=compiled)
    assert set(greedy.pick(np.repeat(LOGITS, 500, axis=0)).tolist()) == {0}
    flat = Sampler(SamplingOptions(temperature=1e300, seed=1), 8, compiled=compiled)
    counts = np.bincount(flat.pick(np.repeat(LOGITS, 8000, axis=0)), minlength=8)
    assert counts.min() > 850 and counts.max() < 1150  # near uniform (1000 each)
    zero = Sampler(SamplingOptions(temperature=0), 8, banned=[0], compiled=compiled)
    assert set(zero.pick(np.repeat(LOGITS, 5, axis=0)).tolist()) == {1}  # argmax of the allowed


def test_seeds_and_saved_states_repeat_the_draws():
    logits = np.repeat(LOGITS, 50, axis=0)
    a = Sampler(SamplingOptions(temperature=1.0, seed=3), 8)
    b = Sampler(SamplingOptions(temperature=1.0, seed=3), 8, compiled=False)
    first = a.pick(logits)
    np.testing.assert_array_equal(first, b.pick(logits))  # compiled or not, the same tokens
    saved = a.get_state()
    second = a.pick(logits)
    a.set_state(saved)
    np.testing.assert_array_equal(a.pick(logits), second)
    assert not np.array_equal(first, second)
    a.reseed(3)
    np.testing.assert_array_equal(a.pick(logits), first)


@pytest.mark.parametrize("compiled", [True, False])
def test_every_seed_and_top_k_that_validation_accepts_works(compiled):
    for seed in (-(1 << 63), -1, 0, (1 << 64) - 1):
        a = Sampler(SamplingOptions(seed=seed), 8, compiled=compiled).pick(LOGITS)
        b = Sampler(SamplingOptions(seed=seed), 8, compiled=compiled).pick(LOGITS)
        np.testing.assert_array_equal(a, b)
    huge = Sampler(SamplingOptions(seed=2, top_k=1 << 70), 8, compiled=compiled).pick(np.repeat(LOGITS, 500, 0))
    off = Sampler(SamplingOptions(seed=2), 8, compiled=compiled).pick(np.repeat(LOGITS, 500, 0))
    np.testing.assert_array_equal(huge, off)  # a k beyond the vocabulary keeps every token


def test_a_ban_that_would_leave_nothing_is_ignored():
    sampler = Sampler(SamplingOptions(temperature=1.0, seed=0), 1, banned=[0])
    assert sampler.pick(np.zeros((3, 1), np.float32)).tolist() == [0, 0, 0]


def test_without_numba_the_torch_path_writes_the_same_text(trained_run, monkeypatch):
    import charpoet.sampling as sampling_module

    lm = load(trained_run)
    expected = lm.generate("ROMEO:", length=200, temperature=0.9, top_k=20, seed=3, num_samples=2)
    monkeypatch.setattr(stepper_module, "kernels", None)
    monkeypatch.setattr(sampling_module, "kernels", None)
    plain = load(trained_run)
    assert plain.stepper.backend == "torch" and not plain.sampler(SamplingOptions()).compiled
    assert plain.generate("ROMEO:", length=200, temperature=0.9, top_k=20, seed=3, num_samples=2) == expected


def test_token_ids_are_checked_and_never_written_through(backend):
    stepper = make_stepper(make_model(), backend)
    frozen = np.array([1, 2, 3])
    frozen.flags.writeable = False  # e.g. a cached prime, np.frombuffer or a memmap
    logits, state = stepper.feed(frozen)
    stepper.step(frozen[:1], state)
    for bad in ([40], [-1]):
        with pytest.raises(ValueError, match="token ids"):
            stepper.step(np.array(bad), state)
        with pytest.raises(ValueError, match="token ids"):
            stepper.feed(np.array([0, *bad]))


def test_the_stepper_is_a_snapshot_of_the_weights(backend):
    model = make_model()
    stepper = make_stepper(model, backend)
    before, _ = stepper.feed(np.array([1, 2]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(stepper.feed(np.array([1, 2]))[0], before)


@pytest.mark.parametrize("compiled", [True, False])
def test_non_finite_logits_are_an_error_not_garbage(compiled, backend):
    from charpoet.errors import CheckpointError

    for bad in (np.nan, np.inf):
        logits = LOGITS.copy()
        logits[0, 2] = bad
        with pytest.raises(CheckpointError, match="not finite"):
            Sampler(SamplingOptions(temperature=0.7, seed=1), 8, compiled=compiled).pick(logits)
    for damaged in ("head.bias", "layers.0.weight_hh_l0"):  # NaN straight into the logits, or through the cells
        model = make_model()
        with torch.no_grad():
            model.get_parameter(damaged).view(-1)[3] = float("nan")
        stepper = make_stepper(model, backend)
        logits, state = stepper.feed(np.array([1, 2]))
        with pytest.raises(CheckpointError, match="not finite"):
            stepper.decode(Sampler(SamplingOptions(seed=0), 40, compiled=compiled), logits, state, 10)


def test_options_are_keyword_only_and_typed():
    from charpoet.chat import ChatOptions
    from charpoet.errors import ConfigError
    from charpoet.sample import SampleOptions

    for cls in (SamplingOptions, SampleOptions, ChatOptions):
        with pytest.raises(TypeError):
            cls(0.8)
    with pytest.raises(ConfigError, match="--top-k must be a whole number"):
        SamplingOptions(top_k=2.5).validate()
    assert SamplingOptions(temperature=np.float32(0.5), top_k=np.int64(3)).validate().top_k == 3
