"""charpoet: train character- and word-level LSTM/GRU language models on a library of
texts and generate new text from them.

    import charpoet
    result = charpoet.train(charpoet.RunConfig(), "runs/demo")     # built-in Shakespeare
    lm = charpoet.load("runs/demo")
    print(lm.generate("ROMEO:", length=200, temperature=0.8)[0])
"""

__version__ = "0.1.0"

from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from charpoet.errors import CharpoetError, CharpoetWarning  # noqa: E402
from charpoet.sample import LanguageModel, SampleOptions, load  # noqa: E402
from charpoet.train import TrainEvent, TrainResult, train  # noqa: E402

__all__ = [
    "CharpoetError",
    "CharpoetWarning",
    "DataConfig",
    "LanguageModel",
    "ModelConfig",
    "RunConfig",
    "SampleOptions",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "__version__",
    "load",
    "train",
]
