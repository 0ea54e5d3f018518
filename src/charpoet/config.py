"""One typed configuration tree, written into every run.

``RunConfig`` groups the model, data and training settings. ``to_dict``/``from_dict``
round-trip through JSON; unknown keys are errors and values are coerced by their
annotation, so a run's ``config.json`` is the single source of truth. CLI flags use
the same names in kebab-case (``rnn_size`` -> ``--rnn-size``).

The defaults are chosen for quality on a laptop CPU: a 2 x 384 LSTM trained with AdamW
and a cosine schedule. With a time budget and ``auto_size`` (what the CLI does when
--max-minutes is given without a model size) the hidden size is chosen from the budget and
the measured speed instead (``charpoet.sizing``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from charpoet.cadence import Cadence
from charpoet.errors import ConfigError

CELLS = ("lstm", "gru")
TOKENIZERS = ("char", "word")
SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
MAX_LAYERS = 64  # far deeper than recurrent language models train well


@dataclass
class ModelConfig:
    """Embedding -> N stacked LSTM/GRU layers -> linear. These fix the checkpoint format."""

    cell: str = "lstm"  # lstm | gru
    num_layers: int = 2
    rnn_size: int = 384
    embedding_size: int = 64
    drop_rate: float = 0.25  # dropout between layers and before the output layer
    layer_norm: bool = False  # LayerNorm on each layer's output (unfused layers)
    vocab_size: int = 0  # set from the tokenizer when a run is created
    # With a time budget (TrainConfig.max_minutes), choose rnn_size when the run is created from
    # the budget and the measured speed (charpoet.sizing); the choice is stored in rnn_size, so a
    # continued run keeps it. The CLI sets this when --max-minutes is given without a model size.
    auto_size: bool = False
    # With auto_size: choose drop_rate with the size (charpoet.sizing): low for a model that the
    # time budget stops, the usual rate for one that makes all its passes over the data first.
    # The CLI sets this when it sets auto_size and --drop-rate is not given.
    auto_dropout: bool = False

    def validate(self) -> None:
        _choice("cell", self.cell, CELLS)
        _at_least("num-layers", self.num_layers, 1)
        if self.num_layers > MAX_LAYERS:  # each layer is a module: 100,000 of them fill memory with objects
            raise ConfigError(f"--num-layers must be at most {MAX_LAYERS}, got {self.num_layers}")
        _at_least("rnn-size", self.rnn_size, 1)
        _at_least("embedding-size", self.embedding_size, 1)
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"--drop-rate must be in [0, 1), got {self.drop_rate}")


@dataclass
class DataConfig:
    """Where the text comes from, how it is tokenized and batched."""

    text_path: list[str] = field(default_factory=list)  # files, directories, globs
    valid_path: list[str] = field(default_factory=list)  # validation sources (the training ones are then used whole)
    test_path: list[str] = field(default_factory=list)  # test sources, scored at the end of training
    data_prefix: str = ""  # DIR/NAME: NAME.train.txt, NAME.valid.txt and (if there) NAME.test.txt
    library: str = ""  # a book library (`charpoet corpus add`): name or directory
    corpus: str = "shakespeare"  # built-in corpus used when neither text_path nor library is set
    tokenizer: str = "char"  # char | word
    max_vocab: int = 10_000  # word tokenizer: most frequent tokens kept, rest -> <unk>
    valid_fraction: float = 0.1  # last fraction of every source held out
    batch_size: int = 64  # parallel contiguous streams
    seq_len: int = 128  # truncated BPTT length
    # Most validation tokens an evaluation reads (the head of each row's stretch; 0 = all). Fixed when
    # a run is created; runs made before it was introduced read all (0), so their losses stay comparable.
    eval_max_tokens: int = 1 << 22

    def validate(self) -> None:
        if self.text_path and self.library:
            raise ConfigError("give either --text-path or --library, not both")
        if self.data_prefix and (self.text_path or self.library or self.valid_path or self.test_path):
            raise ConfigError("--data-prefix names the training, validation and test files itself: give it without "
                              "--text-path, --library, --valid-path and --test-path")
        _choice("tokenizer", self.tokenizer, TOKENIZERS)
        _at_least("max-vocab", self.max_vocab, 2)
        if not 0.0 < self.valid_fraction < 1.0:
            raise ConfigError(f"--valid-fraction must be in (0, 1), got {self.valid_fraction}")
        _at_least("batch-size", self.batch_size, 1)
        _at_least("seq-len", self.seq_len, 1)
        _at_least("eval-max-tokens", self.eval_max_tokens, 0)


@dataclass
class TrainConfig:
    """Optimisation, schedule, stopping and evaluation."""

    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant
    weight_decay: float = 0.01
    clip_norm: float = 5.0  # global gradient norm; 0 disables clipping
    num_epochs: float = 20.0
    max_minutes: float = 0.0  # wall-clock budget; 0 means no limit
    stats_every: str = "3m"  # validation pass, statistics line, best checkpoint (duration or Nsteps)
    snapshot_every: str = "3m"  # last.safetensors: what a restart (or kill -9) resumes from
    sample_every: str = "10m"  # highlighted samples, once the training loss is below sample_below_loss
    sample_below_loss: float = 1.5  # nats/token
    sample_temperatures: list[float] = field(default_factory=lambda: [0.6, 0.8, 1.0])
    sample_length: int = 400  # tokens per sample
    early_stop_patience: int = 0  # stop after this many evaluations without a better val loss; 0 = off
    nan_lr_factor: float = 0.5  # after a non-finite loss: roll back and scale the learning rate by this
    max_rollbacks: int = 3  # consecutive rollbacks before giving up
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 (autocast for training steps)
    compile: bool = False  # torch.compile the training forward pass (worth it on GPUs; slow to start)

    def validate(self) -> None:
        for flag, value in (("learning-rate", self.learning_rate), ("min-lr-ratio", self.min_lr_ratio),
                            ("weight-decay", self.weight_decay), ("clip-norm", self.clip_norm),
                            ("num-epochs", self.num_epochs), ("max-minutes", self.max_minutes),
                            ("sample-below-loss", self.sample_below_loss), ("nan-lr-factor", self.nan_lr_factor),
                            *(("sample-temperatures", t) for t in self.sample_temperatures)):
            _finite(flag, value)
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        _at_least("warmup-steps", self.warmup_steps, 0)
        _choice("schedule", self.schedule, SCHEDULES)
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.clip_norm < 0:
            raise ConfigError(f"--clip-norm must be >= 0, got {self.clip_norm}")
        if not self.num_epochs > 0:
            raise ConfigError(f"--num-epochs must be > 0, got {self.num_epochs}")
        if self.max_minutes < 0:
            raise ConfigError(f"--max-minutes must be >= 0, got {self.max_minutes}")
        for flag, value in (("stats-every", self.stats_every), ("snapshot-every", self.snapshot_every),
                            ("sample-every", self.sample_every)):
            Cadence.parse(value, flag)
        if not self.sample_temperatures or any(t < 0 for t in self.sample_temperatures):
            raise ConfigError(f"--sample-temperatures must be numbers >= 0, got {self.sample_temperatures}")
        _at_least("sample-length", self.sample_length, 1)
        _at_least("early-stop-patience", self.early_stop_patience, 0)
        if self.early_stop_patience and not Cadence.parse(self.stats_every).enabled:
            raise ConfigError("--early-stop-patience needs evaluations: set --stats-every")
        if not 0.0 < self.nan_lr_factor < 1.0:
            raise ConfigError(f"--nan-lr-factor must be in (0, 1), got {self.nan_lr_factor}")
        _at_least("max-rollbacks", self.max_rollbacks, 0)
        check_seed(self.seed)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)


@dataclass
class RunConfig:
    """Everything that defines a training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        data = d.get("data") if isinstance(d, dict) else None
        if isinstance(data, dict) and "eval_max_tokens" not in data:  # runs written before the cap: read all
            d = {**d, "data": {**data, "eval_max_tokens": 0}}
        train = d.get("train") if isinstance(d, dict) else None
        if isinstance(train, dict) and "eval_every" in train:  # runs written before stats_every
            d = {**d, "train": {k: v for k, v in train.items() if k != "eval_every"}}
            d["train"].setdefault("stats_every", f"{int(train['eval_every'])}steps")
            d["train"].setdefault("snapshot_every", f"{int(train['eval_every'])}steps")
        return from_dict(cls, d)


# Options that change the checkpoint format or the vocabulary: fixed once a run exists.
ARCHITECTURE_KEYS = {
    "model": ("cell", "num_layers", "rnn_size", "embedding_size", "layer_norm"),
    "data": ("tokenizer", "max_vocab", "valid_fraction"),
}


def resolve_prefix(data: DataConfig) -> DataConfig:
    """``--data-prefix DIR/NAME`` as the paths it names (the TF-Estimator seed's convention; ``charpoet
    corpus split`` writes the same names): NAME.train.txt, NAME.valid.txt and NAME.test.txt if it exists."""
    if not data.data_prefix:
        return data
    import os

    prefix = os.path.expanduser(data.data_prefix)
    named = {part: f"{prefix}.{part}.txt" for part in ("train", "valid", "test")}
    missing = [path for part, path in named.items() if part != "test" and not os.path.isfile(path)]
    if missing:
        raise ConfigError(f"--data-prefix {data.data_prefix}: {' and '.join(missing)} not found "
                          f"(it reads PREFIX.train.txt, PREFIX.valid.txt and, if there, PREFIX.test.txt)")
    return dataclasses.replace(data, data_prefix="", text_path=[named["train"]], valid_path=[named["valid"]],
                               test_path=[named["test"]] if os.path.isfile(named["test"]) else [])


def from_dict(cls: type, d: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``d``: unknown keys are errors, values coerced by type."""
    if not isinstance(d, dict):
        raise ConfigError(f"config section {where or cls.__name__!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) in {where or 'config'}: {', '.join(unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}".lstrip(".")) for k, v in d.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {where} must be a list, got {value!r}")
        return [_coerce(item, v, where) for v in value]
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return tp(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"config key {where} must be {tp.__name__}, got {value!r}") from None


def check_seed(seed: int | None, flag: str = "--seed") -> None:
    """A random seed torch accepts: an integer in [-2**63, 2**64)."""
    if seed is not None and not -(1 << 63) <= seed < (1 << 64):
        raise ConfigError(f"{flag} must be an integer from -2**63 to 2**64 - 1, got {seed}")


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"--{name} must be a finite number, got {value}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{name} must be one of {', '.join(choices)}; got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"--{name} must be >= {low}, got {value}")
