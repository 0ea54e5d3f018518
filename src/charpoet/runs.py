"""Run names and run listings.

``%JOB%`` in a ``--checkpoint-path`` (or any path or URL) expands to a name made of the
corpus and the options that fix the checkpoint format (``config.ARCHITECTURE_KEYS``):

    shakespeare-char-lstm-2x256-emb64-norm
    verne-word10000-gru-3x512-emb128             max_vocab only for the word tokenizer
    tiny-char-lstm-2x384-emb64-valid0.05         valid_fraction only when not the default
    shakespeare-char-lstm-2xauto-emb64           sized to --max-minutes (``auto_size``)

Learning rate, batch size, sequence length, epochs... are left out, so changing them and
training again with the same ``%JOB%`` path continues the same run (the idea comes from
the ``--job-dir job/%JOB%`` convention of a TensorFlow char-RNN trainer).

``list_runs(root)`` summarises every run below ``root`` cheaply: it reads JSON files, the
first bytes of ``sources.json`` (``library.json.gz``) and only the header of ``last.safetensors``, never the
weights. A damaged run is still listed, with what could be read and an ``error``. The list
(a ``RunList``) and each ``RunSummary`` show as a table in Jupyter (``_repr_html_``).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import html
import json
import math
import os
import re
import struct
import time
import typing
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charpoet.checkpoint import CONFIG, LAST, LEGACY_LIBRARY, LIBRARY_MANIFEST, METRICS_LOG, RunDir
from charpoet.config import DataConfig, RunConfig
from charpoet.errors import CharpoetError, CheckpointError

JOB = "%JOB%"
MAX_NAME = 80
MAX_DEPTH = 3  # runs are searched in ROOT/a, ROOT/a/b and ROOT/a/b/c
_DEFAULT_VALID = DataConfig().valid_fraction
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


# --- names --------------------------------------------------------------------------
def _arch_parts(config: RunConfig) -> list[str]:
    """The architecture keys as name parts: ["char", "lstm", "2x384", "emb64", ...]."""
    m, d = config.model, config.data
    size = "auto" if m.auto_size else m.rnn_size  # chosen later, when training starts: the same
    parts = [d.tokenizer + (str(d.max_vocab) if d.tokenizer == "word" else ""),  # command finds the same run
             m.cell, f"{m.num_layers}x{size}", f"emb{m.embedding_size}"]
    if m.layer_norm:
        parts.append("norm")
    if float(d.valid_fraction) != _DEFAULT_VALID:
        parts.append(f"valid{float(d.valid_fraction)!r}")  # repr: shortest exact form, e.g. 0.05
    return parts


def _sanitise(text: str) -> str:
    """Lower-case ASCII letters, digits, '.', '_' and '-'; accents dropped, the rest -> '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"-{2,}", "-", _UNSAFE.sub("-", ascii_text.lower())).strip("-._")


def job_name(config: RunConfig, corpus_name: str) -> str:
    """``corpus-tokenizer-cell-LxH-embE[-norm][-validF]``: safe as a path part, <= 80 chars."""
    suffix = _sanitise("-".join(_arch_parts(config)))
    corpus = _sanitise(corpus_name) or "corpus"
    room = MAX_NAME - len(suffix) - 1
    if len(corpus) > room:  # keep the architecture; a hash keeps long corpus names apart
        digest = hashlib.sha256(corpus_name.encode("utf-8")).hexdigest()[:6]
        corpus = corpus[: max(room - 7, 1)].rstrip("-._") + "-" + digest
    return f"{corpus}-{suffix}"[:MAX_NAME]


def expand_job(path: str | os.PathLike[str], config: RunConfig, corpus_name: str) -> str:
    """Replace every ``%JOB%`` (case-sensitive) in a path or URL by ``job_name``."""
    text = os.fspath(path)
    return text.replace(JOB, job_name(config, corpus_name)) if JOB in text else text


def corpus_name(data: DataConfig) -> str:
    """The name the run's library will get, from the data options alone (texts unread).

    As ``load_library`` names it: a single text file's stem or directory's name (``custom``
    for several paths or a glob), a book library's name, else the built-in corpus.
    """
    if data.text_path:
        from charpoet.corpus.files import default_library_name

        return default_library_name(data.text_path)
    if data.library:
        from charpoet.corpus.gutenberg import open_library

        return open_library(data.library).name
    return data.corpus


# --- listing ------------------------------------------------------------------------
@dataclass
class RunSummary:
    """One row of ``charpoet runs``; None where a value is unknown."""

    path: Path
    name: str  # path relative to the listed directory
    corpus: str | None
    architecture: str | None  # e.g. "char lstm 2x384 emb64"
    steps: int | None
    best_val_loss: float | None  # nats/token
    best_val_bpc: float | None
    updated: float  # newest mtime of the run's files (seconds since the epoch)
    error: str | None = None  # what could not be read
    test_bpc: float | None = None  # on the test texts (--test-path), at the end of training

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}

    def cells(self, now: float | None = None) -> tuple[str, ...]:
        """The row as ``charpoet runs`` shows it (``HEADER``); "?" or "-" where unknown."""
        age = format_age((time.time() if now is None else now) - self.updated)
        return (self.name, self.corpus or "?", self.architecture or "?",
                "?" if self.steps is None else f"{self.steps:,}",
                "-" if self.best_val_loss is None else f"{self.best_val_loss:.4f}",
                "-" if self.best_val_bpc is None else f"{self.best_val_bpc:.3f}",
                "-" if self.test_bpc is None else f"{self.test_bpc:.3f}",
                f"{format_time(self.updated)} ({age})")

    def __repr__(self) -> str:
        steps = "steps unknown" if self.steps is None else f"{self.steps:,} steps"
        if self.best_val_loss is None:
            best = "not evaluated yet"
        else:
            bpc = "" if self.best_val_bpc is None else f" ({self.best_val_bpc:.3f} bpc)"
            best = f"best val loss {self.best_val_loss:.4f}{bpc}"
        error = f"; error: {self.error}" if self.error else ""
        return (f"RunSummary({self.name!r}: {self.corpus or 'corpus unknown'}, "
                f"{self.architecture or 'architecture unknown'}, {steps}, {best}, "
                f"updated {format_time(self.updated)}{error})")

    def _repr_html_(self) -> str:
        return _html_table([self])


class RunList(list[RunSummary]):
    """``list_runs``' answer: a plain list of ``RunSummary``, shown as a table in Jupyter."""

    def __init__(self, runs: Any = (), root: str | os.PathLike[str] | None = None):
        super().__init__(runs)
        self.root = None if root is None else Path(root)

    def _repr_html_(self) -> str:
        if not self:
            where = f" in {html.escape(str(self.root))}" if self.root is not None else ""
            return f"<p>no runs{where} (a run is a directory with a config.json)</p>"
        return _html_table(self)


HEADER = ("run", "corpus", "architecture", "steps", "val loss", "bpc", "test bpc", "updated")
NUMBERS = {"steps", "val loss", "bpc", "test bpc"}  # right-aligned, never wrapped


def _html_table(runs: list[RunSummary]) -> str:
    """The runs as ``charpoet runs`` lists them, as an HTML table; a run that failed to read is red,
    with the error as its tooltip."""
    now = time.time()
    style = {name: ' style="text-align:right"' if name in NUMBERS else ' style="text-align:left"' for name in HEADER}
    head = "".join(f"<th{style[name]}>{name}</th>" for name in HEADER)
    rows = []
    for run in runs:
        cells = [html.escape(c) for c in run.cells(now)]
        if run.error:
            cells[0] = f'<span style="color:#c00" title="{html.escape(run.error)}">{cells[0]}</span>'
        rows.append("<tr>" + "".join(f"<td{style[name]}>{c}</td>" for name, c in zip(HEADER, cells)) + "</tr>")
    return f'<table class="charpoet-runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def format_time(timestamp: float) -> str:
    """Local time to the minute: ``2026-11-22 17:03``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def format_age(seconds: float) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {'day' if unit == 'days' and count == 1 else unit} ago"
    return "just now"


def list_runs(root: str | os.PathLike[str]) -> RunList:
    """Every run (a directory with config.json) in ``root``, best validation loss first."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise CheckpointError(f"run directory {root} {what}")
    runs = [summarise_run(path, name) for path, name in _find_runs(root)]
    return RunList(sorted(runs, key=lambda r: (r.best_val_loss is None, r.best_val_loss or 0.0, r.name)), root)


def _find_runs(root: Path) -> list[tuple[Path, str]]:
    if (root / CONFIG).is_file():
        return [(root, root.resolve().name or str(root))]
    found: list[tuple[Path, str]] = []

    def walk(directory: Path, depth: int) -> None:
        try:
            children = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            if (child / CONFIG).is_file():
                found.append((child, child.relative_to(root).as_posix()))
            elif depth < MAX_DEPTH:
                walk(child, depth + 1)

    walk(root, 1)
    return found


def summarise_run(path: Path, name: str | None = None) -> RunSummary:
    """Read what can be read of one run; problems go into ``error``, never raise."""
    errors: list[str] = []
    config = _read_config(RunDir(path), errors)
    trainer = _read_trainer(path / LAST, errors)
    history = _read_history(path, errors)
    evals = [h for h in history if _finite(h.get("val_loss"))]
    best = min(evals, key=lambda h: h["val_loss"], default=None)
    best_loss = float(best["val_loss"]) if best else None
    if best_loss is None and _finite(trainer.get("best_val_loss")):
        best_loss = float(trainer["best_val_loss"])
    steps = trainer.get("step")
    if not isinstance(steps, int):
        known = [h["step"] for h in history if isinstance(h.get("step"), int)]
        steps = max(known) if known else None
    corpus = _run_corpus(path, config, errors)
    return RunSummary(
        path=path, name=name or path.name, corpus=corpus,
        architecture=" ".join(_arch_parts(config)) if config is not None else None,
        steps=steps, best_val_loss=best_loss,
        best_val_bpc=float(best["val_bpc"]) if best and _finite(best.get("val_bpc")) else None,
        updated=_newest_mtime(path), error="; ".join(errors) or None,
        test_bpc=next((float(h["test_bpc"]) for h in reversed(history) if _finite(h.get("test_bpc"))), None),
    )


def run_corpus(path: str | os.PathLike[str]) -> str | None:
    """The name of a run's library (read from the start of its manifest), else the one its
    configuration gives; None when neither can be read."""
    run = RunDir(path)
    return _run_corpus(run.path, _read_config(run, []), [])


def _run_corpus(path: Path, config: RunConfig | None, errors: list[str]) -> str | None:
    corpus = _library_name(path, errors)
    if corpus is None and config is not None:
        try:
            corpus = corpus_name(config.data)
        except CharpoetError:
            corpus = None
    return corpus


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_config(run: RunDir, errors: list[str]) -> RunConfig | None:
    try:
        return run.read_config()
    except CharpoetError as exc:
        errors.append(_short(exc, run.path))
    # A config from another charpoet version may carry keys this one does not know.
    try:
        raw = json.loads((run.path / CONFIG).read_text(encoding="utf-8"))
        known = {s: {f.name for f in dataclasses.fields(tp)} for s, tp in typing.get_type_hints(RunConfig).items()}
        kept = {s: {k: v for k, v in raw[s].items() if k in known[s]} for s in known if isinstance(raw.get(s), dict)}
        return RunConfig.from_dict(kept)
    except (OSError, ValueError, TypeError, AttributeError, CharpoetError):
        return None


def _read_trainer(path: Path, errors: list[str]) -> dict[str, Any]:
    """The "trainer" metadata of a safetensors file, from its header only.

    A safetensors file starts with an 8-byte little-endian header length and a JSON header
    whose "__metadata__" maps names to strings; ours hold JSON.
    """
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:  # the format's own limit
                raise ValueError(f"header of {size} bytes")
            header = f.read(size)
            if len(header) != size:
                raise ValueError("truncated header")
        trainer = json.loads(json.loads(header)["__metadata__"]["trainer"])
        if not isinstance(trainer, dict):
            raise ValueError("trainer metadata is not a mapping")
        return trainer
    except FileNotFoundError:
        return {}
    except (OSError, struct.error, ValueError, KeyError, TypeError) as exc:
        errors.append(f"{LAST} is corrupt: {exc}")
        return {}


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A run's evaluations, oldest first: the "eval" lines of metrics.jsonl, else metrics.json;
    none when they cannot be read."""
    return _read_history(Path(path), [])


def _read_history(path: Path, errors: list[str]) -> list[dict[str, Any]]:
    """Evaluations from metrics.jsonl ("eval" and "test" lines) if present, else metrics.json."""
    try:
        if (path / METRICS_LOG).is_file():
            return [r for r in read_jsonl(path / METRICS_LOG) if r.get("kind") in ("eval", "test")]
        return [h for h in RunDir(path).read_metrics() if isinstance(h, dict)]
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"metrics are unreadable: {exc}")
    except CharpoetError as exc:
        errors.append(_short(exc, path))
    return []


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file of a run (metrics.jsonl, samples.jsonl), oldest first: a line
    torn by a killed process is skipped; a missing file has none; an unreadable one is a CharpoetError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CharpoetError(f"{path.name} cannot be read: {exc}") from None
    out = []
    for line in text.split("\n"):  # not splitlines: texts may hold U+2028
        try:
            record = json.loads(line) if line else None
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _library_name(run: Path, errors: list[str], limit: int = 1 << 20) -> str | None:
    """The top-level "name" of a run's library (``sources.json``, or an older run's gzip
    ``library.json.gz``), decoding only the start of the file.

    Both put "name" before the sources, so a few hundred bytes suffice.
    """
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False
    path = run / LIBRARY_MANIFEST
    if not path.exists() and (run / LEGACY_LIBRARY).exists():
        path = run / LEGACY_LIBRARY
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
            def more() -> None:
                nonlocal buf, eof
                chunk = f.read(4096)
                eof = not chunk or len(buf) + len(chunk) > limit
                buf += chunk

            def next_value(expect: str | None = None) -> Any:
                nonlocal pos
                while True:
                    while pos < len(buf) and buf[pos] in " \t\r\n,:":
                        pos += 1
                    if expect is not None:
                        if pos < len(buf):
                            if buf[pos] != expect:
                                raise ValueError(f"expected {expect!r}")
                            pos += 1
                            return None
                    else:
                        try:
                            value, pos = decoder.raw_decode(buf, pos)
                            return value
                        except json.JSONDecodeError:
                            pass
                    if eof:
                        raise ValueError("no library name near the start")
                    more()

            next_value("{")
            while True:
                key = next_value()
                value = next_value()
                if key == "name":
                    return value if isinstance(value, str) else None
    except FileNotFoundError:
        return None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        errors.append(f"{path.name} is corrupt: {exc}")
    except ValueError:
        pass  # not our layout: fall back to the configuration
    return None


def _newest_mtime(path: Path) -> float:
    times = []
    try:
        for entry in os.scandir(path):
            try:
                if entry.is_file():
                    times.append(entry.stat().st_mtime)
            except OSError:
                continue
    except OSError:
        pass
    if not times:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0
    return max(times)


def _short(exc: Exception, run: Path) -> str:
    """An error message with the run's own path left out (the row already names the run)."""
    return str(exc).replace(str(run) + os.sep, "").replace(str(run), "run")
