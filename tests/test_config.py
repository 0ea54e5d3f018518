import json

import pytest

from charpoet.config import ModelConfig, RunConfig
from charpoet.errors import ConfigError


def test_round_trip_through_json():
    config = RunConfig()
    config.model.rnn_size = 77
    config.data.text_path = ["a.txt", "b/"]
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_unknown_keys_are_errors():
    d = RunConfig().to_dict()
    d["model"]["hidden"] = 3
    with pytest.raises(ConfigError, match="hidden"):
        RunConfig.from_dict(d)


def test_values_are_coerced_by_annotation():
    d = RunConfig().to_dict()
    d["model"]["rnn_size"] = "256"
    d["model"]["layer_norm"] = "true"
    d["train"]["learning_rate"] = "0.01"
    config = RunConfig.from_dict(d)
    assert config.model.rnn_size == 256 and config.model.layer_norm is True
    assert config.train.learning_rate == 0.01


@pytest.mark.parametrize("value", ["abc", 2.5, [1]])
def test_bad_values_are_errors(value):
    d = RunConfig().to_dict()
    d["model"]["rnn_size"] = value
    with pytest.raises(ConfigError, match="rnn_size"):
        RunConfig.from_dict(d)


@pytest.mark.parametrize(
    "section,key,value,flag",
    [
        ("model", "cell", "rnn", "--cell"),
        ("model", "num_layers", 0, "--num-layers"),
        ("model", "drop_rate", 1.0, "--drop-rate"),
        ("data", "tokenizer", "bpe", "--tokenizer"),
        ("data", "valid_fraction", 0.0, "--valid-fraction"),
        ("data", "batch_size", 0, "--batch-size"),
        ("train", "learning_rate", 0.0, "--learning-rate"),
        ("train", "num_epochs", -1.0, "--num-epochs"),
        ("train", "device", "tpu", "--device"),
        ("train", "precision", "fp8", "--precision"),
    ],
)
def test_validation_names_the_flag(section, key, value, flag):
    config = RunConfig()
    setattr(getattr(config, section), key, value)
    with pytest.raises(ConfigError, match=flag):
        config.validate()


def test_defaults_are_not_shared_between_instances():
    a, b = RunConfig(), RunConfig()
    a.data.text_path.append("x")
    assert b.data.text_path == []
    assert ModelConfig() == ModelConfig()
