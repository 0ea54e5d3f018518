"""charpoet: train character- and word-level LSTM/GRU language models on a library of
texts and generate new text from them.

    import charpoet
    result = charpoet.train(charpoet.RunConfig(), "runs/demo")     # built-in Shakespeare
    lm = charpoet.load("runs/demo")
    text = lm.generate("ROMEO:", length=200, temperature=0.8)[0]
    attribution = charpoet.index_for_run("runs/demo").attribute(text, min_len=20)
    print(attribution.copy_rate, attribution.spans)     # shows highlighted in Jupyter
    scores = charpoet.evaluate_texts(lm, ["test.txt"])   # loss, bpc, accuracy per text and in total
    chat = charpoet.Conversation(lm)                     # chat.say("Who's there?"), undo(), reset()
    charpoet.list_runs("runs")                           # RunSummary rows; a table in Jupyter

    import charpoet.notebook                             # in Jupyter: live progress, loss plot, samples
    charpoet.notebook.train(charpoet.RunConfig(), "runs/demo")   # run the cell again to continue
    charpoet.notebook.plot_history(["runs/demo", "runs/other"], "val_bpc")

The public names are imported on first use (PEP 562), so ``import charpoet`` and the
commands that need no model (``charpoet --help``, ``corpus``, ``runs``) never import torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_SOURCES = {
    "Attribution": "charpoet.attribution_types",
    "Span": "charpoet.attribution_types",
    "CorpusIndex": "charpoet.attribution",
    "index_for_run": "charpoet.attribution",
    "ChatOptions": "charpoet.chat",
    "Conversation": "charpoet.chat",
    "RunWriteError": "charpoet.checkpoint",
    "DataConfig": "charpoet.config",
    "ModelConfig": "charpoet.config",
    "RunConfig": "charpoet.config",
    "TrainConfig": "charpoet.config",
    "CharpoetError": "charpoet.errors",
    "CharpoetWarning": "charpoet.errors",
    "Evaluation": "charpoet.evaluate",
    "evaluate_texts": "charpoet.evaluate",
    "LanguageModel": "charpoet.sample",
    "SampleOptions": "charpoet.sample",
    "load": "charpoet.sample",
    "Sampler": "charpoet.sampling",
    "SamplingOptions": "charpoet.sampling",
    "RunSummary": "charpoet.runs",
    "list_runs": "charpoet.runs",
    "Stepper": "charpoet.stepper",
    "TrainEvent": "charpoet.train",
    "TrainResult": "charpoet.train",
    "train": "charpoet.train",
}

if TYPE_CHECKING:
    from charpoet.attribution import CorpusIndex, index_for_run
    from charpoet.attribution_types import Attribution, Span
    from charpoet.chat import ChatOptions, Conversation
    from charpoet.checkpoint import RunWriteError
    from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from charpoet.errors import CharpoetError, CharpoetWarning
    from charpoet.evaluate import Evaluation, evaluate_texts
    from charpoet.runs import RunSummary, list_runs
    from charpoet.sample import LanguageModel, SampleOptions, load
    from charpoet.sampling import Sampler, SamplingOptions
    from charpoet.stepper import Stepper
    from charpoet.train import TrainEvent, TrainResult, train

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
    "Evaluation",
    "LanguageModel",
    "ModelConfig",
    "RunConfig",
    "RunSummary",
    "RunWriteError",
    "SampleOptions",
    "Sampler",
    "SamplingOptions",
    "Stepper",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "__version__",
    "evaluate_texts",
    "list_runs",
    "load",
    "train",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value  # imported once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """Importing the submodule ``charpoet.train`` binds it on the package; keep the function there."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return  # ``charpoet.train`` stays the function (``sys.modules`` holds the module)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
