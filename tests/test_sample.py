from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import TINY_LINES

from charpoet.errors import CharpoetWarning, CheckpointError, ConfigError, TokenizerError
from charpoet.sample import SampleOptions, load
from charpoet.sampling import filtered_probabilities
from charpoet.train import train


def test_stateful_generation_matches_refeeding_the_whole_text(trained_run):
    lm = load(trained_run)
    text = lm.generate("ROMEO:", length=40, temperature=0)[0]
    # slow, obviously correct: feed the whole text so far at every step, take the argmax
    ids = lm.tokenizer.encode("ROMEO:").tolist()
    for _ in range(40):
        logits, _ = lm.model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    assert text == lm.tokenizer.decode(ids[len("ROMEO:"):])


def test_seeded_samples_are_reproducible_and_batched(trained_run):
    lm = load(trained_run)
    a = lm.generate("The", length=60, temperature=1.0, num_samples=3, seed=7)
    b = lm.generate("The", length=60, temperature=1.0, num_samples=3, seed=7)
    c = lm.generate("The", length=60, temperature=1.0, num_samples=3, seed=8)
    assert a == b and a != c
    assert len(a) == 3 and all(len(s) == 60 for s in a)
    assert len(set(a)) > 1  # samples in a batch differ


def test_greedy_batch_rows_are_identical(trained_run):
    lm = load(trained_run)
    samples = lm.generate("A dog", length=30, temperature=0, num_samples=2)
    assert samples[0] == samples[1]


def test_trained_model_writes_its_corpus_lines(trained_run):
    lm = load(trained_run)
    text = lm.generate("\n", length=200, temperature=0.3, seed=1)[0]
    assert sum(line in text for line in TINY_LINES) >= 2  # whole lines of the corpus, written back


def test_stream_yields_one_piece_per_token(trained_run):
    lm = load(trained_run)
    steps = list(lm.stream("The", length=12, seed=3, num_samples=2))
    assert len(steps) == 12 and all(len(s) == 2 for s in steps)
    assert "".join(s[0] for s in steps) == lm.generate("The", length=12, seed=3, num_samples=2)[0]


def test_filtered_probabilities_against_a_naive_version():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 50)).astype(np.float32)
    k, p, t = 7, 0.6, 0.7
    out = filtered_probabilities(logits, t, k, p)
    for row, got in zip(logits.astype(np.float64) / t, out):
        # top-k first, then the smallest most-likely prefix of the renormalised top-k whose mass reaches p
        top = sorted(range(50), key=lambda i: -row[i])[:k]
        probs = np.exp(row[top] - row[top].max())
        probs /= probs.sum()
        allowed, total = [], 0.0
        for i, prob in zip(top, probs):
            allowed.append(i)
            total += prob
            if total >= p:
                break
        assert {i for i in range(50) if got[i] > 0} == set(allowed)
        # the same distribution, renormalised over the allowed tokens
        expected = np.exp(row[allowed] - row.max())
        np.testing.assert_allclose(got[allowed], expected / expected.sum(), rtol=1e-12)


def test_tiny_temperatures_reach_the_greedy_limit_without_nan():
    logits = np.array([[0.5, 3.0, -1.0, 2.9], [1.0, 1.0, 0.0, -2.0]], dtype=np.float32)
    for t in (1e-40, 1e-300, 5e-324):
        probs = filtered_probabilities(logits, t)
        assert not np.isnan(probs).any()
        assert probs[0].tolist() == [0.0, 1.0, 0.0, 0.0]  # the best token only
        assert probs[1].tolist() == [0.5, 0.5, 0.0, 0.0]  # a tie stays a tie


def test_bad_sampling_options_are_errors(trained_run):
    lm = load(trained_run)
    for bad, flag in [({"temperature": -1}, "--temperature"), ({"top_p": 0}, "--top-p"),
                      ({"top_p": 1.5}, "--top-p"), ({"top_k": -2}, "--top-k"),
                      ({"num_samples": 0}, "--num-samples"), ({"length": -1}, "--length")]:
        with pytest.raises(ConfigError, match=flag):
            lm.generate("The", **bad)
    with pytest.raises(TokenizerError, match="'Z'"):
        lm.stream("Zebra")  # raises at once, before anything is generated
    with pytest.raises(ConfigError, match="empty"):
        lm.generate("")


def test_word_runs_never_write_unk(tiny_corpus, tiny_config, tmp_path):
    config = tiny_config(tiny_corpus, num_epochs=1.0)
    config = replace(config, data=replace(config.data, tokenizer="word", max_vocab=8, seq_len=8))
    train(config, tmp_path / "run")
    lm = load(tmp_path / "run")
    assert lm.tokenizer.vocab_size == 8
    text = lm.generate("the", length=200, temperature=1.5, seed=0)[0]
    assert "<unk>" not in text
    with pytest.warns(CharpoetWarning, match="zebra"):
        lm.generate("the zebra", length=5)


def test_load_rejects_missing_and_corrupt_runs(trained_run, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a charpoet run"):
        load(tmp_path / "empty")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    data = (broken / "best.safetensors").read_bytes()
    (broken / "best.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load(broken)
    (broken / "vocab.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="vocab.json"):
        load(broken)


def test_options_object_validates():
    assert SampleOptions().validate().temperature == 0.8
