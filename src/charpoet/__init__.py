"""charpoet: train character- and word-level LSTM/GRU language models on a library of
texts and generate new text from them.

    import charpoet
    result = charpoet.train(charpoet.RunConfig(), "runs/demo")     # built-in Shakespeare
    lm = charpoet.load("runs/demo")
    text = lm.generate("ROMEO:", length=200, temperature=0.8)[0]
    attribution = charpoet.index_for_run("runs/demo").attribute(text, min_len=20)
    print(attribution.copy_rate, attribution.spans)     # shows highlighted in Jupyter
    chat = charpoet.Conversation(lm)                     # chat.say("Who's there?"), undo(), reset()
"""

__version__ = "0.1.0"

from charpoet.attribution import CorpusIndex, index_for_run  # noqa: E402
from charpoet.attribution_types import Attribution, Span  # noqa: E402
from charpoet.chat import ChatOptions, Conversation  # noqa: E402
from charpoet.checkpoint import RunWriteError  # noqa: E402
from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from charpoet.errors import CharpoetError, CharpoetWarning  # noqa: E402
from charpoet.sample import LanguageModel, SampleOptions, load  # noqa: E402
from charpoet.train import TrainEvent, TrainResult, train  # noqa: E402

__all__ = [
    "Attribution",
    "CorpusIndex",
    "Span",
    "index_for_run",
    "ChatOptions",
    "CharpoetError",
    "Conversation",
    "CharpoetWarning",
    "DataConfig",
    "LanguageModel",
    "ModelConfig",
    "RunConfig",
    "RunWriteError",
    "SampleOptions",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "__version__",
    "load",
    "train",
]
