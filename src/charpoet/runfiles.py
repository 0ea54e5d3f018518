"""The files of a run directory, declared once: who writes each, what generation needs, what is mirrored.

Every module that names a run file takes the name from here (``checkpoint`` reads and writes
them, ``storage`` mirrors the ``synced`` ones to remote storage, ``runs`` lists runs, the
surfaces refuse to overwrite them with an output option). Nothing here imports torch.

    name                            writer        generate  synced   what
    config.json                     checkpoint    yes       yes      the resolved RunConfig
    vocab.json                      checkpoint    yes       yes      the tokenizer
    best.safetensors                train         yes       yes      weights with the lowest validation loss
    last.safetensors                train         yes       yes      weights + optimizer, cursor, hidden state
    sources.json, sources.bin       checkpoint    no        yes      the sources (manifest; texts)
    valid.json, valid.bin           checkpoint    no        yes      validation sources (--valid-path)
    test.json, test.bin             checkpoint    no        yes      test sources (--test-path)
    library.json.gz                 checkpoint    no        yes      the sources of older runs (read only)
    metrics.json, metrics.jsonl     train         no        yes      evaluations; every logged step
    samples.jsonl, samples/         monitor       no        yes      training samples
    tensorboard/, loss.png          monitor       no        yes      TensorBoard events; the loss plot
    train.log                       cli train     no        yes      human-readable log
    attribution.index.safetensors   attribution   no        yes      suffix-array cache (rebuilt when stale)
    tokens/                         data          no        no       token ids of the library (rebuilt when missing)

("generate": ``charpoet generate`` and ``chat`` need it to produce text; attribution also needs
the library. "synced": uploaded to and fetched from a remote ``--checkpoint-path``; the rest is
derived on each machine.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunFile:
    name: str
    writer: str  # the component that writes it
    for_generation: bool  # generate/chat need it to produce text
    synced: bool  # mirrored to remote storage (pushed and pulled)
    folder: bool = False


CONFIG = "config.json"
VOCAB = "vocab.json"
BEST = "best.safetensors"
LAST = "last.safetensors"
LIBRARY_MANIFEST = "sources.json"
LIBRARY_TEXTS = "sources.bin"
LEGACY_LIBRARY = "library.json.gz"
VALID_MANIFEST, VALID_TEXTS = "valid.json", "valid.bin"
TEST_MANIFEST, TEST_TEXTS = "test.json", "test.bin"
# the run's stored libraries: its training sources, and the validation and test sources given apart
LIBRARY_PARTS = {"train": (LIBRARY_MANIFEST, LIBRARY_TEXTS), "valid": (VALID_MANIFEST, VALID_TEXTS),
                 "test": (TEST_MANIFEST, TEST_TEXTS)}
METRICS = "metrics.json"
METRICS_LOG = "metrics.jsonl"
SAMPLES_LOG = "samples.jsonl"
SAMPLES_DIR = "samples"
TENSORBOARD_DIR = "tensorboard"
LOSS_PNG = "loss.png"
TRAIN_LOG = "train.log"
ATTRIBUTION_INDEX = "attribution.index.safetensors"
TOKENS_DIR = "tokens"

DECLARED = (
    RunFile(CONFIG, "checkpoint", True, True),
    RunFile(VOCAB, "checkpoint", True, True),
    RunFile(BEST, "train", True, True),
    RunFile(LAST, "train", True, True),
    RunFile(LIBRARY_MANIFEST, "checkpoint", False, True),
    RunFile(LIBRARY_TEXTS, "checkpoint", False, True),
    RunFile(LEGACY_LIBRARY, "checkpoint", False, True),
    RunFile(VALID_MANIFEST, "checkpoint", False, True),
    RunFile(VALID_TEXTS, "checkpoint", False, True),
    RunFile(TEST_MANIFEST, "checkpoint", False, True),
    RunFile(TEST_TEXTS, "checkpoint", False, True),
    RunFile(METRICS, "train", False, True),
    RunFile(METRICS_LOG, "train", False, True),
    RunFile(SAMPLES_LOG, "monitor", False, True),
    RunFile(SAMPLES_DIR, "monitor", False, True, folder=True),
    RunFile(TENSORBOARD_DIR, "monitor", False, True, folder=True),
    RunFile(LOSS_PNG, "monitor", False, True),
    RunFile(TRAIN_LOG, "cli train", False, True),
    RunFile(ATTRIBUTION_INDEX, "attribution", False, True),
    RunFile(TOKENS_DIR, "data", False, False, folder=True),
)

RUN_FILES = frozenset(f.name for f in DECLARED if not f.folder)  # names an output option must never overwrite
RUN_FOLDERS = frozenset(f.name for f in DECLARED if f.folder)
SYNCED_FILES = tuple(f.name for f in DECLARED if f.synced and not f.folder)
SYNCED_FOLDERS = tuple(f.name for f in DECLARED if f.synced and f.folder)
