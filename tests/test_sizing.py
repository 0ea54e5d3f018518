from dataclasses import replace

import pytest

from charpoet import sizing
from charpoet.checkpoint import RunDir
from charpoet.config import ModelConfig, RunConfig, TrainConfig
from charpoet.model import count_parameters
from charpoet.runs import job_name
from charpoet.sizing import LADDER, TOKENS_PER_PARAMETER, matmul_work, pick_size, tokens_allowed
from charpoet.train import train


def _config(minutes=10.0, epochs=1000.0):
    return RunConfig(model=ModelConfig(vocab_size=65), train=TrainConfig(max_minutes=minutes, num_epochs=epochs))


def _sized(config, size):
    return replace(config, model=replace(config.model, rnn_size=size))


@pytest.mark.parametrize("rate", [5e3, 2e4, 6e4])
def test_the_largest_size_with_k_tokens_per_parameter(rate):
    config = _config()
    probe = _sized(config, 256)
    size = pick_size(config, rate, probe, train_tokens=10**9)
    chosen, bigger = _sized(config, size), _sized(config, LADDER[LADDER.index(size) + 1])
    assert tokens_allowed(chosen, rate, probe, 10**9) >= TOKENS_PER_PARAMETER * count_parameters(chosen.model)
    assert tokens_allowed(bigger, rate, probe, 10**9) < TOKENS_PER_PARAMETER * count_parameters(bigger.model)


def test_a_faster_cpu_or_a_longer_budget_gets_a_bigger_model():
    config = _config()
    probe = _sized(config, 256)
    sizes = [pick_size(config, rate, probe, 10**9) for rate in (1e4, 1.7e4, 5e4, 2e5)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert pick_size(_config(minutes=60), 1e4, probe, 10**9) > sizes[0]


def test_the_epoch_limit_caps_the_tokens():
    config = _config(epochs=1.0)
    probe = _sized(config, 256)
    assert tokens_allowed(config, 1e6, probe, train_tokens=1000) == 1000
    assert pick_size(config, 1e6, probe, train_tokens=1000) == LADDER[0]


def test_when_the_data_runs_out_first_the_budget_still_buys_the_model():
    config, passes = _config(minutes=10.0, epochs=20.0), 20 * 1_000_000
    probe = _sized(config, 256)

    def fits(size):  # all passes within the budget, with at least K / 2 tokens per parameter
        by_time = 75e3 * 600 * matmul_work(probe) / matmul_work(_sized(config, size))
        return by_time >= passes >= TOKENS_PER_PARAMETER / 2 * count_parameters(_sized(config, size).model)

    size = pick_size(config, 75e3, probe, train_tokens=1_000_000)  # a fast CPU: 45M tokens in 10 minutes
    assert fits(size) and not fits(LADDER[LADDER.index(size) + 1])
    # bigger than K tokens per parameter alone would allow: that model would stop after 4.5 minutes
    assert passes < TOKENS_PER_PARAMETER * count_parameters(_sized(config, size).model)


def test_the_chosen_size_is_stored_and_a_continued_run_keeps_it(tiny_corpus, tiny_config, tmp_path, monkeypatch):
    probes = []

    def measure(config, device, dtype, **kwargs):
        probes.append(config.model.rnn_size)
        return 1e9  # tokens/s: as big as the tiny corpus's epochs allow

    monkeypatch.setattr(sizing, "measure_rate", measure)
    config = tiny_config(tiny_corpus, max_minutes=0.5, num_epochs=0.2)
    config = replace(config, model=replace(config.model, auto_size=True, rnn_size=384))
    first = train(config, tmp_path / "run", stop_after_steps=2)
    stored = RunDir(tmp_path / "run").read_config()
    assert probes and stored.model.auto_size and stored.model.rnn_size in LADDER
    assert stored.model.rnn_size == LADDER[0]  # 0.2 epochs of a tiny corpus: the smallest
    probes.clear()
    second = train(config, tmp_path / "run", restore=True, stop_after_steps=2)
    assert not probes and second.step == first.step + 2
    assert RunDir(tmp_path / "run").read_config().model.rnn_size == stored.model.rnn_size


def test_the_cli_sizes_new_runs_with_a_budget_and_no_model_size(tiny_corpus, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from charpoet.cli import app

    monkeypatch.setattr(sizing, "measure_rate", lambda *a, **k: 1e9)
    common = ["train", "--text-path", str(tiny_corpus), "--num-epochs", "0.05", "--stats-every", "off",
              "--no-tensorboard", "--sample-every", "off"]

    def run(name, *flags):
        result = CliRunner().invoke(app, [*common, "--checkpoint-path", str(tmp_path / name), *flags])
        assert result.exit_code == 0, result.output
        return RunDir(tmp_path / name).read_config().model

    auto = run("auto", "--max-minutes", "1")  # so fast that the tiny corpus runs out first: the usual dropout
    assert auto.auto_size and auto.auto_dropout and auto.drop_rate == 0.25
    monkeypatch.setattr(sizing, "measure_rate", lambda *a, **k: 1.0)  # so slow that the budget stops it
    slow = run("slow", "--max-minutes", "1")
    assert slow.auto_size and slow.rnn_size == LADDER[0] and slow.drop_rate == sizing.TIME_LIMITED_DROP_RATE == 0.1
    assert run("slow", "--max-minutes", "2").drop_rate == 0.1  # continuing keeps the run's own
    assert run("own-dropout", "--max-minutes", "1", "--drop-rate", "0.3").drop_rate == 0.3
    sized = run("sized", "--max-minutes", "1", "--rnn-size", "32")
    assert not sized.auto_size and sized.rnn_size == 32 and sized.drop_rate == 0.25
    assert not run("no-budget").auto_size
    old = run("no-budget", "--max-minutes", "1")  # a budget for a run made without one: nothing re-chosen
    assert not old.auto_size and old.drop_rate == 0.25
    # %JOB% names an auto-sized run by its rule, not by the default size; the same command finds it again
    for minutes in ("1", "2"):
        result = CliRunner().invoke(app, [*common, "--checkpoint-path", str(tmp_path / "jobs" / "%JOB%"),
                                          "--max-minutes", minutes])
        assert result.exit_code == 0, result.output
    (job,) = (tmp_path / "jobs").iterdir()
    assert job.name == "corpus-char-lstm-2xauto-emb64" and "continuing" in result.output
    assert RunDir(job).read_config().model.rnn_size in sizing.LADDER


def test_job_names_say_auto_for_a_size_chosen_from_the_budget():
    auto = RunConfig(model=ModelConfig(auto_size=True)).validate()
    assert job_name(auto, "shakespeare") == "shakespeare-char-lstm-2xauto-emb64"
    assert job_name(RunConfig().validate(), "shakespeare") == "shakespeare-char-lstm-2x384-emb64"
