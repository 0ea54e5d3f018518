"""The bad-input catalogue: every command and the Python API, fed what users get wrong.

Each command case runs in-process through the CLI runner and must give exit status 2, one
line on stderr starting ``error:`` that contains the expected words, no traceback, and leave
every run it was pointed at byte-identical. Each API case must raise a ``CharpoetError``.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import charpoet
from charpoet.cli import app
from charpoet.errors import CharpoetError


@dataclass
class World:
    """Files and runs the cases point at (built once for the module)."""

    root: Path
    run: Path  # a good run
    broken: dict[str, Path]  # damaged copies of it, by what is damaged
    files: dict[str, Path]  # text files: good, empty, binary, utf16, huge, ...
    library: Path  # a damaged book library directory

    def all_runs(self) -> list[Path]:
        return [self.run, *self.broken.values()]


def _hand_edit(path: Path, old: str, new: str) -> None:
    """Edit a JSON file as a person would: change a value and delete the checksum, as told to."""
    import re

    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(re.sub(r',\s*"crc32": "[0-9a-f]{8}"', "", text.replace(old, new)), encoding="utf-8")


def _damage(run: Path, root: Path) -> dict[str, Path]:
    """Copies of ``run`` with one file corrupt, truncated, missing or inconsistent."""
    out: dict[str, Path] = {}

    def copy(name: str, edit: Callable[[Path], None]) -> None:
        target = root / f"broken-{name}"
        shutil.copytree(run, target)
        edit(target)
        out[name] = target

    copy("config-garbage", lambda p: (p / "config.json").write_bytes(b"\x00\xff{not json"))
    copy("config-truncated", lambda p: (p / "config.json").write_bytes((p / "config.json").read_bytes()[:40]))
    copy("config-wrong-type", lambda p: _hand_edit(p / "config.json", '"rnn_size": 32', '"rnn_size": "big"'))
    copy("config-infinite", lambda p: _hand_edit(p / "config.json", '"rnn_size": 32', '"rnn_size": 1e999'))
    copy("config-stale-checksum", lambda p: (p / "config.json").write_text(
        (p / "config.json").read_text().replace('"rnn_size": 32', '"rnn_size": 33')))
    copy("config-list", lambda p: (p / "config.json").write_text("[1, 2, 3]"))
    copy("vocab-garbage", lambda p: (p / "vocab.json").write_text('{"kind": "char", "chars": 17}'))
    copy("vocab-truncated", lambda p: (p / "vocab.json").write_bytes((p / "vocab.json").read_bytes()[:25]))
    copy("vocab-mismatch", lambda p: (p / "vocab.json").write_text(
        (p / "vocab.json").read_text().replace('"a"', '"a", "\\u00e9"', 1)))
    copy("library-garbage", lambda p: (p / "sources.json").write_bytes(b"\x89not json at all"))
    copy("library-truncated", lambda p: (p / "sources.bin").write_bytes((p / "sources.bin").read_bytes()[:60]))
    copy("library-not-json", lambda p: (p / "sources.json").write_bytes(b"{oops"))
    copy("metrics-garbage", lambda p: (p / "metrics.json").write_text("{{{"))
    copy("metrics-not-evaluations", lambda p: (p / "metrics.json").write_text("[1, 2]"))
    copy("weights-truncated", lambda p: [(p / f).write_bytes((p / f).read_bytes()[:100])
                                         for f in ("best.safetensors", "last.safetensors")])
    copy("weights-garbage", lambda p: [(p / f).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
                                       for f in ("best.safetensors", "last.safetensors")])
    copy("weights-missing", lambda p: [(p / f).unlink() for f in ("best.safetensors", "last.safetensors")])
    return out


@pytest.fixture(scope="module")
def world(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bad-inputs")
    run = root / "run"
    shutil.copytree(trained_run, run)
    files = {
        "good": root / "good.txt", "empty": root / "empty.txt", "blank": root / "blank.txt",
        "binary": root / "image.png", "utf16": root / "utf16.txt", "huge": root / "huge.txt",
        "plainfile": root / "plain-file", "emptydir": root / "emptydir",
    }
    from conftest import make_text

    files["good"].write_text(make_text(50), encoding="utf-8")
    files["empty"].write_bytes(b"")
    files["blank"].write_text("\n\n   \n", encoding="utf-8")
    files["binary"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    files["utf16"].write_bytes("ROMEO: hello there\n".encode("utf-16"))
    with open(files["huge"], "wb") as f:
        f.truncate(200 << 30)  # 200 GB, sparse: more than this machine reads whole
    files["plainfile"].write_text("I am a file, not a directory\n", encoding="utf-8")
    files["emptydir"].mkdir()
    library = root / "damaged-library"
    library.mkdir()
    (library / "library.json").write_text("{ not json", encoding="utf-8")
    return World(root, run, _damage(run, root), files, library)


def _digest(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there
NO_NET = ["--retries", "0", "--timeout", "2", "--min-interval", "0"]


def _out_of_vocabulary_file(w: World) -> Path:
    """A text none of whose characters are in the good run's vocabulary (``evaluate`` has nothing to score)."""
    path = w.root / "out-of-vocabulary.txt"
    path.write_text("xzqQZ\u20ac" * 3, encoding="utf-8")
    return path


def _prefix(w: World, name: str, *parts: str) -> Path:
    """``--data-prefix ROOT/NAME`` with only ``NAME.PART.txt`` of ``parts`` written (good text)."""
    for part in parts:
        shutil.copy(w.files["good"], w.root / f"{name}.{part}.txt")
    return w.root / name

# (id, argv built from the world, words the error line must contain)
CASES: list[tuple[str, Callable[[World], list[object]], str]] = [
    # --- train: texts
    ("train-missing-file", lambda w: ["train", "--text-path", w.root / "nope.txt", "--checkpoint-path", w.root / "new"], "nope.txt"),
    ("train-empty-file", lambda w: ["train", "--text-path", w.files["empty"], "--checkpoint-path", w.root / "new"], "empty"),
    ("train-blank-file", lambda w: ["train", "--text-path", w.files["blank"], "--checkpoint-path", w.root / "new"], "empty"),
    ("train-binary-file", lambda w: ["train", "--text-path", w.files["binary"], "--checkpoint-path", w.root / "new"], "binary"),
    ("train-utf16-file", lambda w: ["train", "--text-path", w.files["utf16"], "--checkpoint-path", w.root / "new"], "UTF-16"),
    ("train-huge-file", lambda w: ["train", "--text-path", w.files["huge"], "--checkpoint-path", w.root / "new"], "NUL bytes"),  # streamed: no size limit, and its zeros are binary
    ("train-empty-directory", lambda w: ["train", "--text-path", w.files["emptydir"], "--checkpoint-path", w.root / "new"], "no (non-hidden) files"),
    ("train-glob-matches-nothing", lambda w: ["train", "--text-path", w.root / "*.nothing", "--checkpoint-path", w.root / "new"], "no files match"),
    ("train-unknown-url-protocol", lambda w: ["train", "--text-path", "nosuch://bucket/books", "--checkpoint-path", w.root / "new"], "unknown protocol nosuch://"),
    ("train-missing-url", lambda w: ["train", "--text-path", "memory://charpoet-bad-inputs/none.txt", "--checkpoint-path", w.root / "new"], "no such file or directory"),
    ("train-url-glob-matches-nothing", lambda w: ["train", "--text-path", "memory://charpoet-bad-inputs/*.txt", "--checkpoint-path", w.root / "new"], "no files match"),
    ("train-unknown-library", lambda w: ["train", "--library", "no-such-library", "--checkpoint-path", w.root / "new"], "no-such-library"),
    ("train-damaged-library", lambda w: ["train", "--library", w.library, "--checkpoint-path", w.root / "new"], "library.json"),
    ("train-unknown-corpus", lambda w: ["train", "--corpus", "klingon-poetry", "--checkpoint-path", w.root / "new"], "klingon-poetry"),
    ("train-text-and-library", lambda w: ["train", "--text-path", w.files["good"], "--library", "x", "--checkpoint-path", w.root / "new"], "only one of"),
    # --- train: validation and test sources given apart
    ("train-valid-path-missing", lambda w: ["train", "--text-path", w.files["good"], "--valid-path", w.root / "no-valid.txt", "--checkpoint-path", w.root / "new"], "no-valid.txt"),
    ("train-valid-path-empty", lambda w: ["train", "--text-path", w.files["good"], "--valid-path", w.files["empty"], "--checkpoint-path", w.root / "new"], "empty"),
    ("train-valid-path-binary", lambda w: ["train", "--text-path", w.files["good"], "--valid-path", w.files["binary"], "--checkpoint-path", w.root / "new"], "binary"),
    ("train-test-path-missing", lambda w: ["train", "--text-path", w.files["good"], "--test-path", w.root / "no-test.txt", "--checkpoint-path", w.root / "new"], "no-test.txt"),
    ("train-test-path-empty", lambda w: ["train", "--text-path", w.files["good"], "--test-path", w.files["empty"], "--checkpoint-path", w.root / "new"], "empty"),
    ("train-test-path-binary", lambda w: ["train", "--text-path", w.files["good"], "--test-path", w.files["binary"], "--checkpoint-path", w.root / "new"], "binary"),
    ("train-valid-path-and-fraction", lambda w: ["train", "--text-path", w.files["good"], "--valid-path", w.files["good"], "--valid-fraction", "0.2", "--checkpoint-path", w.root / "new"], "--valid-fraction"),
    ("train-data-prefix-no-files", lambda w: ["train", "--data-prefix", _prefix(w, "nothing"), "--checkpoint-path", w.root / "new"], "nothing.train.txt"),
    ("train-data-prefix-no-valid", lambda w: ["train", "--data-prefix", _prefix(w, "halfway", "train", "test"), "--checkpoint-path", w.root / "new"], "halfway.valid.txt"),
    ("train-data-prefix-no-train", lambda w: ["train", "--data-prefix", _prefix(w, "untrained", "valid"), "--checkpoint-path", w.root / "new"], "untrained.train.txt"),
    ("train-data-prefix-and-text-path", lambda w: ["train", "--data-prefix", _prefix(w, "both", "train", "valid"), "--text-path", w.files["good"], "--checkpoint-path", w.root / "new"], "--data-prefix"),
    # --- train: sizes and numbers
    ("train-zero-rnn-size", lambda w: ["train", "--text-path", w.files["good"], "--rnn-size", "0", "--checkpoint-path", w.root / "new"], "--rnn-size"),
    ("train-impossible-rnn-size", lambda w: ["train", "--text-path", w.files["good"], "--rnn-size", "10000000", "--checkpoint-path", w.root / "new"], "memory"),
    ("train-absurd-depth", lambda w: ["train", "--text-path", w.files["good"], "--num-layers", "100000", "--checkpoint-path", w.root / "new"], "--num-layers"),
    ("train-impossible-embedding", lambda w: ["train", "--text-path", w.files["good"], "--embedding-size", "4000000000", "--checkpoint-path", w.root / "new"], "memory"),
    ("train-not-a-number", lambda w: ["train", "--text-path", w.files["good"], "--rnn-size", "many", "--checkpoint-path", w.root / "new"], "--rnn-size"),
    ("train-seq-len-beyond-text", lambda w: ["train", "--text-path", w.files["good"], "--seq-len", "100000", "--checkpoint-path", w.root / "new"], "--seq-len"),
    ("train-zero-batch", lambda w: ["train", "--text-path", w.files["good"], "--batch-size", "0", "--checkpoint-path", w.root / "new"], "--batch-size"),
    ("train-nan-learning-rate", lambda w: ["train", "--text-path", w.files["good"], "--learning-rate", "nan", "--checkpoint-path", w.root / "new"], "--learning-rate"),
    ("train-infinite-learning-rate", lambda w: ["train", "--text-path", w.files["good"], "--learning-rate", "inf", "--checkpoint-path", w.root / "new"], "--learning-rate"),
    ("train-negative-learning-rate", lambda w: ["train", "--text-path", w.files["good"], "--learning-rate", "-0.1", "--checkpoint-path", w.root / "new"], "--learning-rate"),
    ("train-tiny-learning-rate", lambda w: ["train", "--text-path", w.files["good"], "--learning-rate", "1e-400", "--checkpoint-path", w.root / "new"], "--learning-rate"),
    ("train-nan-weight-decay", lambda w: ["train", "--text-path", w.files["good"], "--weight-decay", "nan", "--checkpoint-path", w.root / "new"], "--weight-decay"),
    ("train-nan-clip-norm", lambda w: ["train", "--text-path", w.files["good"], "--clip-norm", "nan", "--checkpoint-path", w.root / "new"], "--clip-norm"),
    ("train-nan-epochs", lambda w: ["train", "--text-path", w.files["good"], "--num-epochs", "nan", "--checkpoint-path", w.root / "new"], "--num-epochs"),
    ("train-infinite-epochs", lambda w: ["train", "--text-path", w.files["good"], "--num-epochs", "inf", "--checkpoint-path", w.root / "new"], "--num-epochs"),
    ("train-nan-minutes", lambda w: ["train", "--text-path", w.files["good"], "--max-minutes", "nan", "--checkpoint-path", w.root / "new"], "--max-minutes"),
    ("train-negative-minutes", lambda w: ["train", "--text-path", w.files["good"], "--max-minutes", "-1", "--checkpoint-path", w.root / "new"], "--max-minutes"),
    ("train-nan-valid-fraction", lambda w: ["train", "--text-path", w.files["good"], "--valid-fraction", "nan", "--checkpoint-path", w.root / "new"], "--valid-fraction"),
    ("train-zero-valid-fraction", lambda w: ["train", "--text-path", w.files["good"], "--valid-fraction", "0", "--checkpoint-path", w.root / "new"], "--valid-fraction"),
    ("train-nan-drop-rate", lambda w: ["train", "--text-path", w.files["good"], "--drop-rate", "nan", "--checkpoint-path", w.root / "new"], "--drop-rate"),
    ("train-nan-sample-loss", lambda w: ["train", "--text-path", w.files["good"], "--sample-below-loss", "nan", "--checkpoint-path", w.root / "new"], "--sample-below-loss"),
    ("train-nan-sample-temperature", lambda w: ["train", "--text-path", w.files["good"], "--sample-temperatures", "0.5,nan", "--checkpoint-path", w.root / "new"], "--sample-temperatures"),
    ("train-bad-sample-temperatures", lambda w: ["train", "--text-path", w.files["good"], "--sample-temperatures", "warm", "--checkpoint-path", w.root / "new"], "--sample-temperatures"),
    ("train-big-nan-lr-factor", lambda w: ["train", "--text-path", w.files["good"], "--nan-lr-factor", "2", "--checkpoint-path", w.root / "new"], "--nan-lr-factor"),
    ("train-negative-warmup", lambda w: ["train", "--text-path", w.files["good"], "--warmup-steps", "-1", "--checkpoint-path", w.root / "new"], "--warmup-steps"),
    ("train-patience-without-stats", lambda w: ["train", "--text-path", w.files["good"], "--early-stop-patience", "3", "--stats-every", "off", "--checkpoint-path", w.root / "new"], "--stats-every"),
    # --- train: choices and cadences
    ("train-unknown-cell", lambda w: ["train", "--text-path", w.files["good"], "--cell", "transformer", "--checkpoint-path", w.root / "new"], "--cell"),
    ("train-unknown-tokenizer", lambda w: ["train", "--text-path", w.files["good"], "--tokenizer", "bpe", "--checkpoint-path", w.root / "new"], "--tokenizer"),
    ("train-unknown-device", lambda w: ["train", "--text-path", w.files["good"], "--device", "tpu", "--checkpoint-path", w.root / "new"], "--device"),
    ("train-unknown-precision", lambda w: ["train", "--text-path", w.files["good"], "--precision", "fp8", "--checkpoint-path", w.root / "new"], "--precision"),
    ("train-unknown-schedule", lambda w: ["train", "--text-path", w.files["good"], "--schedule", "linear", "--checkpoint-path", w.root / "new"], "--schedule"),
    ("train-bad-cadence", lambda w: ["train", "--text-path", w.files["good"], "--stats-every", "3 fortnights", "--checkpoint-path", w.root / "new"], "--stats-every"),
    ("train-negative-cadence", lambda w: ["train", "--text-path", w.files["good"], "--snapshot-every", "-5steps", "--checkpoint-path", w.root / "new"], "--snapshot-every"),
    ("train-unknown-option", lambda w: ["train", "--text-path", w.files["good"], "--rnn-sise", "8"], "--rnn-sise"),
    # --- train: where the run goes
    ("train-run-under-a-file", lambda w: ["train", "--text-path", w.files["good"], "--checkpoint-path", w.files["plainfile"] / "run"], "plain-file"),
    ("train-run-is-a-file", lambda w: ["train", "--text-path", w.files["good"], "--checkpoint-path", w.files["plainfile"]], "plain-file"),
    ("train-unknown-protocol", lambda w: ["train", "--text-path", w.files["good"], "--checkpoint-path", "nosuchproto://bucket/run"], "nosuchproto"),
    ("train-other-texts", lambda w: ["train", "--text-path", w.files["good"], "--checkpoint-path", w.run], "--fresh"),
    ("train-restore-missing", lambda w: ["train", "--restore", "--checkpoint-path", w.root / "nowhere"], "does not exist"),
    ("train-restore-new-architecture", lambda w: ["train", "--restore", "--checkpoint-path", w.run, "--rnn-size", "64"], "--rnn-size"),
    # --- train: damaged runs
    ("train-restore-config-garbage", lambda w: ["train", "--checkpoint-path", w.broken["config-garbage"]], "config.json"),
    ("train-restore-config-truncated", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["config-truncated"]], "config.json"),
    ("train-restore-config-wrong-type", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["config-wrong-type"]], "rnn_size"),
    ("train-restore-config-infinite", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["config-infinite"]], "rnn_size"),
    ("train-restore-vocab-garbage", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["vocab-garbage"]], "vocab.json"),
    ("train-restore-library-truncated", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["library-truncated"]], "sources.bin"),
    ("train-restore-library-not-json", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["library-not-json"]], "sources.json"),
    ("train-restore-metrics-garbage", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["metrics-garbage"]], "metrics.json"),
    ("train-restore-metrics-not-evaluations", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["metrics-not-evaluations"]], "metrics.json"),
    ("train-seed-too-large", lambda w: ["train", "--text-path", w.files["good"], "--seed", str(10**23), "--checkpoint-path", w.root / "new"], "--seed"),
    ("train-restore-weights-truncated", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["weights-truncated"]], "last.safetensors"),
    ("train-restore-weights-garbage", lambda w: ["train", "--restore", "--checkpoint-path", w.broken["weights-garbage"]], "last.safetensors"),
    # --- generate
    ("generate-nan-temperature", lambda w: ["generate", "--checkpoint-path", w.run, "--temperature", "nan"], "--temperature"),
    ("generate-infinite-temperature", lambda w: ["generate", "--checkpoint-path", w.run, "--temperature", "inf"], "--temperature"),
    ("generate-negative-temperature", lambda w: ["generate", "--checkpoint-path", w.run, "--temperature", "-1"], "--temperature"),
    ("generate-negative-top-k", lambda w: ["generate", "--checkpoint-path", w.run, "--top-k", "-3"], "--top-k"),
    ("generate-nan-top-p", lambda w: ["generate", "--checkpoint-path", w.run, "--top-p", "nan"], "--top-p"),
    ("generate-negative-length", lambda w: ["generate", "--checkpoint-path", w.run, "--length", "-5"], "--length"),
    ("generate-zero-samples", lambda w: ["generate", "--checkpoint-path", w.run, "--num-samples", "0"], "--num-samples"),
    ("generate-impossible-samples", lambda w: ["generate", "--checkpoint-path", w.run, "--num-samples", "1000000000000"], "--num-samples"),
    ("generate-zero-min-quote", lambda w: ["generate", "--checkpoint-path", w.run, "--min-quote", "0"], "--min-quote"),
    ("generate-unknown-weights", lambda w: ["generate", "--checkpoint-path", w.run, "--weights", "newest"], "--weights"),
    ("generate-unknown-device", lambda w: ["generate", "--checkpoint-path", w.run, "--device", "tpu"], "--device"),
    ("generate-empty-prime", lambda w: ["generate", "--checkpoint-path", w.run, "--prime", ""], "empty"),
    ("generate-unknown-characters", lambda w: ["generate", "--checkpoint-path", w.run, "--prime", "Zebra€"], "'€'"),
    ("generate-prime-and-file", lambda w: ["generate", "--checkpoint-path", w.run, "--prime", "a", "--prime-file", w.files["good"]], "not both"),
    ("generate-prime-file-missing", lambda w: ["generate", "--checkpoint-path", w.run, "--prime-file", w.root / "nope.txt"], "nope.txt"),
    ("generate-prime-file-empty", lambda w: ["generate", "--checkpoint-path", w.run, "--prime-file", w.files["empty"]], "empty"),
    ("generate-prime-file-binary", lambda w: ["generate", "--checkpoint-path", w.run, "--prime-file", w.files["binary"]], "binary"),
    ("generate-prime-file-utf16", lambda w: ["generate", "--checkpoint-path", w.run, "--prime-file", w.files["utf16"]], "UTF-16"),
    ("generate-prime-file-huge", lambda w: ["generate", "--checkpoint-path", w.run, "--prime-file", w.files["huge"]], "200.0 GB"),
    ("generate-html-in-missing-directory", lambda w: ["generate", "--checkpoint-path", w.run, "--length", "5", "--html", w.root / "no" / "such" / "dir" / "page.html"], "does not exist"),
    ("generate-seed-too-large", lambda w: ["generate", "--checkpoint-path", w.run, "--seed", str(10**23)], "--seed"),
    ("generate-html-over-the-run-config", lambda w: ["generate", "--checkpoint-path", w.run, "--length", "5", "--html", w.run / "config.json"], "file of the run"),
    ("generate-html-is-a-directory", lambda w: ["generate", "--checkpoint-path", w.run, "--length", "5", "--html", w.files["emptydir"]], "is a directory"),
    ("attribute-html-over-the-run-weights", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.run, "--html", w.run / "best.safetensors"], "file of the run"),
    ("attribute-html-under-a-file", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.run, "--html", w.files["plainfile"] / "a.html"], "not a directory"),
    ("generate-run-missing", lambda w: ["generate", "--checkpoint-path", w.root / "nowhere"], "does not exist"),
    ("generate-run-is-a-file", lambda w: ["generate", "--checkpoint-path", w.files["good"]], "good.txt"),
    ("generate-unknown-protocol", lambda w: ["generate", "--checkpoint-path", "nosuchproto://bucket/run"], "nosuchproto"),
    ("generate-config-garbage", lambda w: ["generate", "--checkpoint-path", w.broken["config-garbage"]], "config.json"),
    ("generate-config-list", lambda w: ["generate", "--checkpoint-path", w.broken["config-list"]], "config.json"),
    ("generate-config-infinite", lambda w: ["generate", "--checkpoint-path", w.broken["config-infinite"]], "rnn_size"),
    ("generate-config-stale-checksum", lambda w: ["generate", "--checkpoint-path", w.broken["config-stale-checksum"]], "checksum"),
    ("train-restore-config-stale-checksum", lambda w: ["train", "--checkpoint-path", w.broken["config-stale-checksum"]], "checksum"),
    ("generate-vocab-truncated", lambda w: ["generate", "--checkpoint-path", w.broken["vocab-truncated"]], "vocab.json"),
    ("generate-vocab-mismatch", lambda w: ["generate", "--checkpoint-path", w.broken["vocab-mismatch"]], "vocab"),
    ("generate-weights-truncated", lambda w: ["generate", "--checkpoint-path", w.broken["weights-truncated"]], "best.safetensors"),
    ("generate-weights-garbage", lambda w: ["generate", "--checkpoint-path", w.broken["weights-garbage"], "--weights", "last"], "last.safetensors"),
    ("generate-weights-missing", lambda w: ["generate", "--checkpoint-path", w.broken["weights-missing"]], "missing"),
    ("generate-library-garbage", lambda w: ["generate", "--checkpoint-path", w.broken["library-garbage"], "--length", "5"], "sources.json"),
    # --- chat
    ("chat-nan-temperature", lambda w: ["chat", "--checkpoint-path", w.run, "--temperature", "nan"], "--temperature"),
    ("chat-zero-max-length", lambda w: ["chat", "--checkpoint-path", w.run, "--max-length", "0"], "--max-length"),
    ("chat-min-above-max", lambda w: ["chat", "--checkpoint-path", w.run, "--min-length", "9", "--max-length", "3"], "--min-length"),
    ("chat-seed-too-large", lambda w: ["chat", "--checkpoint-path", w.run, "--seed", str(-10**23)], "--seed"),
    ("chat-empty-stop", lambda w: ["chat", "--checkpoint-path", w.run, "--stop", ""], "--stop"),
    ("chat-config-truncated", lambda w: ["chat", "--checkpoint-path", w.broken["config-truncated"]], "config.json"),
    ("chat-weights-garbage", lambda w: ["chat", "--checkpoint-path", w.broken["weights-garbage"]], "best.safetensors"),
    ("chat-run-missing", lambda w: ["chat", "--checkpoint-path", w.root / "nowhere"], "does not exist"),
    # --- attribute
    ("attribute-nothing-to-check-against", lambda w: ["attribute", w.files["good"]], "--checkpoint-path"),
    ("attribute-run-and-texts", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.run, "--text-path", w.files["good"]], "--checkpoint-path"),
    ("attribute-missing-file", lambda w: ["attribute", w.root / "nope.txt", "--checkpoint-path", w.run], "nope.txt"),
    ("attribute-binary-file", lambda w: ["attribute", w.files["binary"], "--checkpoint-path", w.run], "binary"),
    ("attribute-huge-file", lambda w: ["attribute", w.files["huge"], "--checkpoint-path", w.run], "200.0 GB"),
    ("attribute-zero-min-quote", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.run, "--min-quote", "0"], "--min-quote"),
    ("attribute-empty-sources", lambda w: ["attribute", w.files["good"], "--text-path", w.files["empty"]], "empty"),
    ("attribute-unknown-url-protocol", lambda w: ["attribute", w.files["good"], "--text-path", "nosuch://x"], "unknown protocol"),
    ("attribute-library-truncated", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.broken["library-truncated"]], "sources.bin"),
    ("attribute-not-a-run", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.files["emptydir"]], "not a charpoet run"),
    # --- evaluate
    ("evaluate-no-texts", lambda w: ["evaluate", "--checkpoint-path", w.run], "give the texts"),
    ("evaluate-missing-file", lambda w: ["evaluate", w.root / "nope.txt", "--checkpoint-path", w.run], "nope.txt"),
    ("evaluate-empty-file", lambda w: ["evaluate", w.files["empty"], "--checkpoint-path", w.run], "empty"),
    ("evaluate-blank-file", lambda w: ["evaluate", w.files["blank"], "--checkpoint-path", w.run], "empty"),
    ("evaluate-binary-file", lambda w: ["evaluate", w.files["binary"], "--checkpoint-path", w.run], "binary"),
    ("evaluate-utf16-file", lambda w: ["evaluate", w.files["utf16"], "--checkpoint-path", w.run], "UTF-16"),
    ("evaluate-empty-directory", lambda w: ["evaluate", w.files["emptydir"], "--checkpoint-path", w.run], "no (non-hidden) files"),
    ("evaluate-glob-matches-nothing", lambda w: ["evaluate", w.root / "*.nothing", "--checkpoint-path", w.run], "no files match"),
    ("evaluate-all-out-of-vocabulary", lambda w: ["evaluate", _out_of_vocabulary_file(w), "--checkpoint-path", w.run], "nothing to score"),
    ("evaluate-stdin-twice", lambda w: ["evaluate", "-", "-", "--checkpoint-path", w.run], "more than once"),
    ("evaluate-run-missing", lambda w: ["evaluate", w.files["good"], "--checkpoint-path", w.root / "nowhere"], "does not exist"),
    ("evaluate-not-a-run", lambda w: ["evaluate", w.files["good"], "--checkpoint-path", w.files["emptydir"]], "not a charpoet run"),
    ("evaluate-unknown-protocol", lambda w: ["evaluate", w.files["good"], "--checkpoint-path", "nosuchproto://bucket/run"], "nosuchproto"),
    ("evaluate-unknown-weights", lambda w: ["evaluate", w.files["good"], "--checkpoint-path", w.run, "--weights", "newest"], "--weights"),
    ("evaluate-unknown-device", lambda w: ["evaluate", w.files["good"], "--checkpoint-path", w.run, "--device", "tpu"], "--device"),
    ("evaluate-weights-garbage", lambda w: ["evaluate", w.files["good"], "--checkpoint-path", w.broken["weights-garbage"]], "best.safetensors"),
    ("evaluate-config-truncated", lambda w: ["evaluate", w.files["good"], "--checkpoint-path", w.broken["config-truncated"]], "config.json"),
    # --- runs
    ("runs-missing-directory", lambda w: ["runs", w.root / "nowhere"], "does not exist"),
    ("runs-on-a-file", lambda w: ["runs", w.files["good"]], "not a directory"),
    # --- serve (every case fails before a port is opened)
    ("serve-missing-runs-directory", lambda w: ["serve", "--runs", w.root / "nowhere", "--port", "0"], "does not exist"),
    ("serve-runs-on-a-file", lambda w: ["serve", "--runs", w.files["good"], "--port", "0"], "not a directory"),
    ("serve-runs-and-run", lambda w: ["serve", "--runs", w.root, "--checkpoint-path", w.run, "--port", "0"], "not both"),
    ("serve-run-missing", lambda w: ["serve", "--checkpoint-path", w.root / "nowhere", "--port", "0"], "does not exist"),
    ("serve-not-a-run", lambda w: ["serve", "--checkpoint-path", w.files["emptydir"], "--port", "0"], "not a charpoet run"),
    ("serve-unknown-weights", lambda w: ["serve", "--checkpoint-path", w.run, "--weights", "newest", "--port", "0"], "--weights"),
    ("serve-port-too-large", lambda w: ["serve", "--checkpoint-path", w.run, "--port", "70000"], "--port"),
    ("serve-negative-port", lambda w: ["serve", "--checkpoint-path", w.run, "--port", "-1"], "--port"),
    ("serve-port-not-a-number", lambda w: ["serve", "--checkpoint-path", w.run, "--port", "http"], "--port"),
    ("serve-zero-max-length", lambda w: ["serve", "--checkpoint-path", w.run, "--max-length", "0", "--port", "0"], "--max-length"),
    ("serve-zero-streams", lambda w: ["serve", "--checkpoint-path", w.run, "--max-streams-per-client", "0", "--port", "0"], "--max-streams-per-client"),
    ("serve-negative-workers", lambda w: ["serve", "--checkpoint-path", w.run, "--workers", "-1", "--port", "0"], "--workers"),
    ("serve-zero-min-quote", lambda w: ["serve", "--checkpoint-path", w.run, "--min-quote", "0", "--port", "0"], "--min-quote"),
    # --- export
    ("export-missing-run", lambda w: ["export", w.root / "nowhere", "-o", w.root / "m.onnx"], "does not exist"),
    ("export-not-a-run", lambda w: ["export", w.files["emptydir"], "-o", w.root / "m.onnx"], "emptydir"),
    ("export-unknown-format", lambda w: ["export", w.run, "--format", "keras", "-o", w.root / "m.onnx"], "--format"),
    ("export-output-directory-missing", lambda w: ["export", w.run, "-o", w.root / "no" / "m.onnx"], "does not exist"),
    ("export-output-is-a-directory", lambda w: ["export", w.run, "-o", w.root], "is a directory"),
    ("export-over-a-run-file", lambda w: ["export", w.run, "-o", w.run / "config.json", "--force"], "file of the run"),
    # --- corpus
    ("corpus-add-dead-mirror", lambda w: ["corpus", "add", "84", "--library", w.root / "lib", "--mirror", DEAD, *NO_NET], "127.0.0.1:9"),
    ("corpus-add-unknown-protocol", lambda w: ["corpus", "add", "84", "--library", w.root / "lib", "--mirror", "gopher://example/"], "gopher"),
    ("corpus-add-missing-local-mirror", lambda w: ["corpus", "add", "84", "--library", w.root / "lib", "--mirror", w.root / "no-mirror"], "no-mirror"),
    ("corpus-add-nan-interval", lambda w: ["corpus", "add", "84", "--min-interval", "nan", "--mirror", DEAD], "--min-interval"),
    ("corpus-add-zero-timeout", lambda w: ["corpus", "add", "84", "--timeout", "0", "--mirror", DEAD], "--timeout"),
    ("corpus-add-negative-retries", lambda w: ["corpus", "add", "84", "--retries", "-1", "--mirror", DEAD], "--retries"),
    ("corpus-add-bad-book-number", lambda w: ["corpus", "add", "eighty-four", "--mirror", DEAD], "eighty-four"),
    ("corpus-add-bad-library-name", lambda w: ["corpus", "add", "84", "--library", "my library!", "--mirror", DEAD], "library name"),
    ("corpus-add-damaged-library", lambda w: ["corpus", "add", "84", "--library", w.library, "--mirror", DEAD, *NO_NET], "library.json"),
    ("corpus-search-unknown-language", lambda w: ["corpus", "search", "--language", "Klingon", "--mirror", DEAD], "unknown language"),
    ("corpus-search-missing-local-mirror", lambda w: ["corpus", "search", "--author", "austen", "--mirror", w.root / "no-mirror", "--refresh"], "no-mirror"),
    ("corpus-show-superscript-number", lambda w: ["corpus", "show", "\u00b2"], "neither a book number nor a library"),
    ("corpus-add-superscript-number", lambda w: ["corpus", "add", "\u00b2", "--mirror", DEAD], "not a book number"),
    ("corpus-show-unknown-name", lambda w: ["corpus", "show", "tinny"], "neither a book number nor a library"),
    ("corpus-list-unknown-library", lambda w: ["corpus", "list", "--library", "no-such-library"], "no-such-library"),
    ("corpus-remove-unknown-library", lambda w: ["corpus", "remove", "84", "--library", "no-such-library"], "no-such-library"),
    ("corpus-split-bad-share", lambda w: ["corpus", "split", "--text-path", w.files["good"], "--valid", "1.5", "-o", w.root / "split"], "--valid"),
    ("corpus-split-nan-share", lambda w: ["corpus", "split", "--text-path", w.files["good"], "--test", "nan", "-o", w.root / "split"], "--test"),
    ("corpus-split-unknown-by", lambda w: ["corpus", "split", "--text-path", w.files["good"], "--by", "chapter", "-o", w.root / "split"], "--by"),
    ("corpus-split-out-is-a-file", lambda w: ["corpus", "split", "--text-path", w.files["good"], "--by", "text", "-o", w.files["plainfile"]], "plain-file"),
    ("corpus-split-missing-url", lambda w: ["corpus", "split", "--text-path", "memory://charpoet-bad-inputs/none", "-o", w.root / "split"], "no such file or directory"),
    ("corpus-clean-missing-file", lambda w: ["corpus", "clean", w.root / "nope.txt"], "nope.txt"),
    ("corpus-clean-binary-file", lambda w: ["corpus", "clean", w.files["binary"]], "binary"),
    ("corpus-clean-huge-file", lambda w: ["corpus", "clean", w.files["huge"]], "200.0 GB"),
    ("corpus-clean-output-over-a-run-file", lambda w: ["corpus", "clean", w.files["good"], "-o", w.run / "vocab.json"], "file of the run"),
    ("corpus-clean-output-is-a-directory", lambda w: ["corpus", "clean", w.files["good"], "-o", w.files["emptydir"]], "is a directory"),
    ("corpus-clean-output-under-a-file", lambda w: ["corpus", "clean", w.files["good"], "-o", w.files["plainfile"] / "out.txt"], "plain-file"),
]


@pytest.mark.parametrize(("args", "words"), [pytest.param(a, m, id=i) for i, a, m in CASES])
def test_bad_input_is_one_line_and_exit_2(world: World, args: Callable[[World], list[object]], words: str) -> None:
    before = {run: _digest(run) for run in world.all_runs()}
    try:
        result = CliRunner().invoke(app, [str(a) for a in args(world)])
        left = [p.name for p in (world.root / "new", world.root / "lib") if p.exists()]
    finally:  # one failing case must not spoil the next
        for name in ("new", "lib"):
            shutil.rmtree(world.root / name, ignore_errors=True)
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("error: "), result.stderr
    assert all(line.startswith("warning: ") for line in lines[:-1]), result.stderr
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert words in lines[-1], lines[-1]
    after = {run: _digest(run) for run in world.all_runs()}
    changed = [f"{run.name}/{name}" for run in before for name in before[run].keys() | after[run].keys()
               if before[run].get(name) != after[run].get(name)]
    assert not changed  # nothing was written to a run
    assert not left  # nor was a new run or library begun


# Sources above the attribution index's size limit (made tiny here): ``attribute``, whose only job is
# attribution, stops; generate and chat go on without highlighting (tests/test_attribution_disk.py).
INDEX_LIMIT_CASES = [
    ("attribute-run-above-the-index-limit", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.run], "--force-index"),
    ("attribute-texts-above-the-index-limit", lambda w: ["attribute", w.files["good"], "--text-path", w.files["good"]], "--force-index"),
]


@pytest.mark.parametrize(("args", "words"), [pytest.param(a, m, id=i) for i, a, m in INDEX_LIMIT_CASES])
def test_an_index_above_the_size_limit_is_one_line_and_exit_2(world: World, args: Callable[[World], list[object]],
                                                               words: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import charpoet.attribution

    monkeypatch.setattr(charpoet.attribution, "MAX_INDEX_BYTES", 64)
    (world.run / "attribution.index.safetensors").unlink(missing_ok=True)  # a cached index is used whatever its size
    test_bad_input_is_one_line_and_exit_2(world, args, words)
    with pytest.raises(CharpoetError, match="force=True"):
        charpoet.index_for_run(world.run)


def test_the_catalogue_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 60 and len({i for i, _, _ in CASES}) == len(CASES)
    commands = {i.split("-")[0] for i, _, _ in CASES} | {"-".join(i.split("-")[:2]) for i, _, _ in CASES}
    assert {"train", "generate", "chat", "attribute", "evaluate", "runs", "serve", "export", "corpus-add", "corpus-search", "corpus-show",
            "corpus-list", "corpus-remove", "corpus-split", "corpus-clean"} <= commands


# --- the Python API: the same checks raise CharpoetError -------------------------------------

def _api_cases() -> list[tuple[str, Callable[[World], object]]]:
    from charpoet.chat import ChatOptions, Conversation
    from charpoet.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    def tiny(w: World, **train: object) -> RunConfig:
        return RunConfig(model=ModelConfig(rnn_size=8, embedding_size=4),
                         data=DataConfig(text_path=[str(w.files["good"])], batch_size=2, seq_len=8),
                         train=TrainConfig(device="cpu", **train))  # type: ignore[arg-type]

    return [
        ("load-missing", lambda w: charpoet.load(w.root / "nowhere")),
        ("load-config-garbage", lambda w: charpoet.load(w.broken["config-garbage"])),
        ("load-config-infinite", lambda w: charpoet.load(w.broken["config-infinite"])),
        ("load-vocab-mismatch", lambda w: charpoet.load(w.broken["vocab-mismatch"])),
        ("load-weights-garbage", lambda w: charpoet.load(w.broken["weights-garbage"], weights="last")),
        ("load-unknown-weights", lambda w: charpoet.load(w.run, weights="newest")),
        ("generate-nan-temperature", lambda w: charpoet.load(w.run).generate("a", temperature=math.nan)),
        ("generate-empty-prime", lambda w: charpoet.load(w.run).generate("")),
        ("generate-impossible-samples", lambda w: charpoet.load(w.run).generate("a", num_samples=10**12)),
        ("stream-top-p", lambda w: charpoet.load(w.run).stream("a", top_p=0.0)),
        ("chat-bad-options", lambda w: Conversation(charpoet.load(w.run), ChatOptions(top_p=2.0))),
        ("index-missing-run", lambda w: charpoet.index_for_run(w.root / "nowhere")),
        ("evaluate-missing-run", lambda w: charpoet.evaluate_texts(w.root / "nowhere", [w.files["good"]])),
        ("evaluate-nothing-to-score", lambda w: charpoet.evaluate_texts(w.run, [_out_of_vocabulary_file(w)])),
        ("evaluate-unknown-weights", lambda w: charpoet.evaluate_texts(w.run, [w.files["good"]], weights="newest")),
        ("index-library-garbage", lambda w: charpoet.index_for_run(w.broken["library-garbage"])),
        ("train-nan-learning-rate", lambda w: charpoet.train(tiny(w, learning_rate=math.nan), w.root / "new")),
        ("train-impossible-model", lambda w: charpoet.train(
            RunConfig(model=ModelConfig(rnn_size=10**7), data=tiny(w).data, train=tiny(w).train), w.root / "new")),
        ("train-run-under-a-file", lambda w: charpoet.train(tiny(w), w.files["plainfile"] / "run")),
        ("train-valid-path-binary", lambda w: charpoet.train(
            RunConfig(model=tiny(w).model, data=DataConfig(text_path=[str(w.files["good"])], valid_path=[str(w.files["binary"])]),
                      train=tiny(w).train), w.root / "new")),
        ("train-test-path-missing", lambda w: charpoet.train(
            RunConfig(model=tiny(w).model, data=DataConfig(text_path=[str(w.files["good"])], test_path=[str(w.root / "no-test.txt")]),
                      train=tiny(w).train), w.root / "new")),
        ("train-restore-config-truncated", lambda w: charpoet.train(tiny(w), w.broken["config-truncated"], restore=True)),
        ("config-from-dict-infinite", lambda w: RunConfig.from_dict({"model": {"rnn_size": math.inf}})),
    ]


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in _api_cases()])
def test_python_api_raises_charpoet_error(world: World, case: tuple[str, Callable[[World], object]]) -> None:
    before = {run: _digest(run) for run in world.all_runs()}
    with pytest.raises(CharpoetError) as info:
        case[1](world)
    assert "\n" not in str(info.value).strip()
    assert {run: _digest(run) for run in world.all_runs()} == before
    assert not (world.root / "new").exists()


# --- a full disk: every write under the test's directory fails with ENOSPC -------------------

FULL_DISK_CASES: list[tuple[str, Callable[[World], list[object]]]] = [
    ("train-new-run", lambda w: ["train", "--text-path", w.files["good"], "--checkpoint-path", w.root / "new",
                                 "--rnn-size", "8", "--embedding-size", "4", "--batch-size", "2", "--seq-len", "8"]),
    ("train-continue-run", lambda w: ["train", "--checkpoint-path", w.run, "--num-epochs", "50"]),
    ("generate-html", lambda w: ["generate", "--checkpoint-path", w.run, "--length", "20", "--no-highlight",
                                 "--html", w.root / "page.html"]),
    ("attribute-html", lambda w: ["attribute", w.files["good"], "--checkpoint-path", w.run, "--html",
                                  w.root / "page.html"]),
    ("corpus-clean-output", lambda w: ["corpus", "clean", w.files["good"], "-o", w.root / "clean.txt"]),
    ("corpus-split", lambda w: ["corpus", "split", "--text-path", w.files["good"], "--by", "text", "-o",
                                w.root / "split"]),
]


@pytest.mark.parametrize("args", [pytest.param(a, id=i) for i, a in FULL_DISK_CASES])
def test_a_full_disk_is_one_line_and_exit_2(world: World, args: Callable[[World], list[object]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from test_disk_faults import FullDisk

    (world.run / "attribution.index.safetensors").unlink(missing_ok=True)  # built and cached on use
    before = {run: _digest(run) for run in world.all_runs()}
    disk = FullDisk(monkeypatch, world.root)
    disk.full = True
    try:
        result = CliRunner().invoke(app, [str(a) for a in args(world)])
    finally:
        disk.free()
        monkeypatch.undo()
    left = [p for p in (world.root / "new", world.root / "page.html", world.root / "clean.txt") if p.exists()]
    temps = [p for p in world.root.rglob("*.tmp")]
    for p in (world.root / "new", world.root / "split"):
        shutil.rmtree(p, ignore_errors=True)
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "no space left on device" in lines[-1].lower(), result.stderr
    assert "Traceback" not in result.output
    assert not left and not temps  # no half-written output, no temporary file
    assert {run: _digest(run) for run in world.all_runs()} == before


def test_a_failed_first_add_never_deletes_what_was_in_the_directory(world: World) -> None:
    """`corpus add --library DIR` into a folder of the user's that got no book leaves it as it was."""
    folder = world.root / "my-folder"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".notes.tmp").write_text("mine")
    empty_mirror = world.root / "empty-mirror"
    empty_mirror.mkdir(exist_ok=True)
    result = CliRunner().invoke(app, ["corpus", "add", "84", "--library", str(folder), "--mirror", str(empty_mirror),
                                      "--retries", "0", "--min-interval", "0"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 book could not be added: book 84")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [".git", ".git/HEAD", ".notes.tmp"]
    shutil.rmtree(folder)
