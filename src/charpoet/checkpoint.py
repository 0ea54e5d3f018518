"""The run directory: everything needed to resume training or generate, and no pickle.

    RUN/
      config.json        the resolved RunConfig (+ charpoet version)
      vocab.json         the tokenizer (characters or word list)
      sources.json       the sources the run trains on: names, titles, sizes, offsets, digests
      sources.bin        ... and their texts, copied in (charpoet.corpus.store; older runs: library.json.gz)
      tokens/            the library's token ids, memory-mapped (derived: rebuilt when missing)
      metrics.json       evaluation history, one entry per evaluation
      metrics.jsonl      every logged step and evaluation, one JSON object per line (appended;
                         cut back to the snapshot's step when a run resumes)
      best.safetensors   weights with the lowest validation loss (plain state_dict keys)
      last.safetensors   model.* weights, optim.* AdamW state, rng.* generator states and
                         hidden.* carried TBPTT state; metadata "trainer" holds step, epoch,
                         data cursor, schedule position and best loss as JSON
      train.log          human-readable log

Every file is written to a temporary file in the same directory, flushed, fsynced and
renamed over the old one, so a crash at any moment leaves the previous version intact.
The training state lives inside ``last.safetensors`` itself, so weights and cursor can
never disagree. A write that fails (a full disk, a read-only directory) removes its temporary
file, leaves the old version in place and raises ``RunWriteError``; appends to the logs go
in whole or not at all.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from charpoet.config import ARCHITECTURE_KEYS, RunConfig
from charpoet.corpus import Library, load_library_file
from charpoet.corpus.cache import append_bytes, atomic_write_bytes, remove_temp_files
from charpoet.errors import CharpoetError, CheckpointError, ConfigError
from charpoet.integrity import CRC_KEY, PLACEHOLDER, seal_json, seal_safetensors, unseal_json, verify_safetensors

if TYPE_CHECKING:  # torch and the tokenizer (numpy) are imported where tensors or a vocabulary are read
    import torch

    from charpoet.tokenizer import Tokenizer

from charpoet.runfiles import (  # noqa: F401 - the names other modules take from here
    BEST, CONFIG, LAST, LEGACY_LIBRARY, LIBRARY_MANIFEST, LIBRARY_PARTS, LIBRARY_TEXTS, METRICS, METRICS_LOG, RUN_FILES,
    SAMPLES_LOG, TEST_MANIFEST, TEST_TEXTS, TOKENS_DIR, TRAIN_LOG, VALID_MANIFEST, VALID_TEXTS, VOCAB,
)


class RunWriteError(CheckpointError):
    """A file of a run could not be written (full disk, read-only, no permission); ``errno`` says why."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code

    @property
    def disk_full(self) -> bool:
        return self.errno in (errno.ENOSPC, errno.EDQUOT)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into a one-line ``RunWriteError``."""
    try:
        yield
    except OSError as exc:
        raise RunWriteError(f"cannot write {path}: {_reason(exc)}", exc.errno) from None


def write_json(path: Path, obj: Any) -> None:
    with writing(path):
        atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt: {exc}") from None


class RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def exists(self) -> bool:
        return (self.path / CONFIG).is_file()

    def check_writable(self) -> None:
        """Fail with one line, before any work, if the run directory cannot be created or written.

        Writes and removes a probe file (so a read-only mount counts, even for root); changes nothing else.
        """
        path, where = self.path, self.path
        try:
            if path.exists() and not path.is_dir():
                raise RunWriteError(f"{path} is a file, not a run directory: choose another --checkpoint-path")
            while not where.exists() and where != where.parent:  # the directory that would hold it
                where = where.parent
            if not where.is_dir():
                raise RunWriteError(f"cannot create the run directory {path}: {where} is a file",
                                    errno.ENOTDIR)
            fd, probe = tempfile.mkstemp(dir=where, prefix=".charpoet-write-check.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
            for name in (METRICS_LOG, TRAIN_LOG):  # appended to in place, not replaced
                if (path / name).exists() and not os.access(path / name, os.W_OK):
                    raise RunWriteError(f"cannot write {path / name}: permission denied", errno.EACCES)
        except OSError as exc:
            what = "write to the run directory" if where == path else "create the run directory"
            raise RunWriteError(f"cannot {what} {path}: {_reason(exc)}", exc.errno) from None

    def require(self) -> RunDir:
        if not self.path.exists():
            raise CheckpointError(f"run directory {self.path} does not exist")
        if not self.exists():
            raise CheckpointError(f"{self.path} is not a charpoet run (no {CONFIG})")
        return self

    # --- JSON parts -------------------------------------------------------------------
    def write_config(self, config: RunConfig) -> None:
        from charpoet import __version__

        write_json(self.path / CONFIG, seal_json({"charpoet_version": __version__, **config.to_dict()}))

    def read_config(self) -> RunConfig:
        d = read_json(self.path / CONFIG)
        if not isinstance(d, dict):
            raise CheckpointError(f"{self.path / CONFIG} is corrupt: not a mapping")
        d = unseal_json(d, self.path / CONFIG)
        d.pop("charpoet_version", None)
        try:
            return RunConfig.from_dict(d)
        except ConfigError as exc:
            raise CheckpointError(f"{self.path / CONFIG} is invalid: {exc}") from None

    def write_vocab(self, tokenizer: Tokenizer) -> None:
        write_json(self.path / VOCAB, seal_json(tokenizer.to_dict()))

    def read_vocab(self) -> Tokenizer:
        from charpoet.tokenizer import tokenizer_from_dict

        d = read_json(self.path / VOCAB)
        if not isinstance(d, dict):
            raise CheckpointError(f"{self.path / VOCAB} is corrupt: not a mapping")
        d = unseal_json(d, self.path / VOCAB)
        try:
            return tokenizer_from_dict(d)
        except CheckpointError as exc:
            raise CheckpointError(f"{self.path / VOCAB} is corrupt: {exc}") from None

    def write_library(self, library: Library, part: str = "train") -> Library:
        """Copy sources into the run (streamed: ``sources.json`` + ``sources.bin``, or the validation or
        test ``part``'s files); returns the stored library, which reads from the run from now on."""
        from charpoet.corpus.store import write_library_store

        manifest, texts = LIBRARY_PARTS[part]
        remove_temp_files(self.path, texts)  # a copy a killed process left (as big as the texts)
        with writing(self.path / texts):
            stored = write_library_store(library, self.path / manifest, self.path / texts)
        if part == "train":
            (self.path / LEGACY_LIBRARY).unlink(missing_ok=True)
        return stored

    def read_library(self, part: str = "train") -> Library:
        """The run's sources (streamed from the run); older runs keep ``library.json.gz``. ``part``:
        ``valid`` or ``test`` for the validation or test sources given apart (``has_library`` first)."""
        from charpoet.corpus.store import read_library_store

        manifest = LIBRARY_PARTS[part][0]
        try:
            if part == "train" and not (self.path / manifest).exists() and (self.path / LEGACY_LIBRARY).exists():
                return load_library_file(self.path / LEGACY_LIBRARY)
            return read_library_store(self.path / manifest)
        except CharpoetError as exc:
            raise CheckpointError(str(exc)) from None

    def has_library(self, part: str = "train") -> bool:
        return (self.path / LIBRARY_PARTS[part][0]).is_file() or (part == "train" and (self.path / LEGACY_LIBRARY).is_file())

    def library_stamp(self) -> float | None:
        """Modification time of the run's library (to notice that it was replaced), None without one."""
        for name in (LIBRARY_MANIFEST, LEGACY_LIBRARY):
            try:
                return (self.path / name).stat().st_mtime
            except OSError:
                continue
        return None

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        write_json(self.path / METRICS, history)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not (self.path / METRICS).exists():
            return []
        history = read_json(self.path / METRICS)
        if not isinstance(history, list) or not all(isinstance(h, dict) and isinstance(h.get("step"), int)
                                                    for h in history):
            raise CheckpointError(f"{self.path / METRICS} is corrupt: not a list of evaluations (each with its step)")
        return history

    def append_metrics_log(self, record: dict[str, Any], sync: bool = False) -> None:
        """Append one JSON line to ``metrics.jsonl``, whole or not at all; ``sync`` also fsyncs it."""
        line = json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n"
        with writing(self.path / METRICS_LOG):
            append_bytes(self.path / METRICS_LOG, line.encode("utf-8"), sync=sync)

    def read_metrics_log(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``; a torn or malformed line (a killed process) is skipped."""
        try:
            lines = (self.path / METRICS_LOG).read_text(encoding="utf-8").split("\n")  # JSON may hold U+2028
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{self.path / METRICS_LOG} is unreadable: {exc}") from None
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
        return records

    def cut_metrics_log(self, step: int) -> None:
        """Keep only the records up to ``step`` (what the snapshot being resumed had seen)."""
        if not (self.path / METRICS_LOG).exists():
            return
        kept = [r for r in self.read_metrics_log() if r["step"] <= step]
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        with writing(self.path / METRICS_LOG):
            atomic_write_bytes(self.path / METRICS_LOG, data.encode("utf-8"))

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temporary files a killed process left behind (``.NAME.*.tmp``)."""
        return remove_temp_files(self.path)

    # --- tensors ----------------------------------------------------------------------
    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Write a safetensors file whose metadata holds ``meta`` as JSON strings."""
        from safetensors.torch import save as safetensors_bytes

        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        metadata = {k: json.dumps(v) for k, v in meta.items()} | {CRC_KEY: PLACEHOLDER}
        data = seal_safetensors(safetensors_bytes(tensors, metadata=metadata))
        with writing(self.path / name):
            atomic_write_bytes(self.path / name, data)

    def load_tensors(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from safetensors.torch import load as safetensors_load

        path = self.path / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing")
        try:
            data = path.read_bytes()
            verify_safetensors(data, path)
            tensors = safetensors_load(data)
            size = int.from_bytes(data[:8], "little")
            metadata = json.loads(data[8:8 + size]).get("__metadata__") or {}
            metadata.pop(CRC_KEY, None)
            return tensors, {k: json.loads(v) for k, v in metadata.items()}
        except (SafetensorError, OSError, ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path} is corrupt: {_first_line(exc)}") from None

    def snapshot_step(self) -> int | None:
        """The step of the snapshot in ``last.safetensors``, or None if there is none or it is unreadable."""
        try:
            with safe_open(str(self.path / LAST), framework="pt", device="cpu") as f:
                step = json.loads((f.metadata() or {})["trainer"])["step"]
        except (SafetensorError, OSError, ValueError, KeyError, TypeError):
            return None
        return step if isinstance(step, int) else None

    def best_loss(self) -> float | None:
        """Validation loss recorded in ``best.safetensors``' metadata, if any."""
        path = self.path / BEST
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
            loss = json.loads(meta.get("metrics", "{}")).get("val_loss")
        except (SafetensorError, OSError, ValueError, AttributeError):
            return None
        return float(loss) if isinstance(loss, int | float) and math.isfinite(loss) else None

    def weights_file(self, which: str) -> str:
        if which not in ("best", "last"):
            raise ConfigError(f"--weights must be best or last, got {which!r}")
        name = BEST if which == "best" else LAST
        if which == "best" and not (self.path / BEST).exists() and (self.path / LAST).exists():
            name = LAST  # a run interrupted before its first evaluation
        return name

    def load_weights(self, which: str = "best") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Model state_dict and metadata of the best or last checkpoint."""
        tensors, meta = self.load_tensors(self.weights_file(which))
        if any(k.startswith("model.") for k in tensors):
            tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        return tensors, meta


class RunLogHandler(logging.Handler):
    """A log file (``RUN/train.log``) that gets whole lines or none; a failed write raises
    ``RunWriteError`` into the code that logged, so training stops instead of going on unlogged."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        with writing(self.path):  # an unwritable log fails now, not after the model is built
            if self.path.exists():  # opened, not changed: a command that fails early leaves no trace
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
            elif not os.access(self.path.parent, os.W_OK):
                raise PermissionError(errno.EACCES, "permission denied", str(self.path))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - a bad format string is logging's own business
            self.handleError(record)
            return
        with writing(self.path):
            append_bytes(self.path, line.encode("utf-8"))


def check_compatible(stored: RunConfig, requested: dict[str, dict[str, Any]]) -> None:
    """Reject overrides that would change the checkpoint format or the vocabulary."""
    for section, keys in ARCHITECTURE_KEYS.items():
        for key in keys:
            if key not in requested.get(section, {}):
                continue
            old, new = getattr(getattr(stored, section), key), requested[section][key]
            if old != new and not (isinstance(old, float) and float(new) == old):
                flag = "--" + key.replace("_", "-")
                raise CheckpointError(
                    f"cannot restore with {flag} {new}: the run was trained with {flag} {old}; "
                    "drop the option or start a new run in another --checkpoint-path"
                )


@dataclass
class TrainingState:
    """Everything ``last.safetensors`` holds besides the configuration."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # an optimizer state_dict
    rng_cpu: torch.Tensor
    rng_cuda: list[torch.Tensor]
    hidden: tuple[torch.Tensor, ...] | None  # carried TBPTT state, None at an epoch boundary
    trainer: dict[str, Any]  # step, epoch, cursor, elapsed, best_val_loss, batch layout


def save_training_state(run: RunDir, ts: TrainingState) -> None:
    tensors = {f"model.{k}": v for k, v in ts.model.items()}
    optim_tensors, optim_meta = optimizer_to_tensors(ts.optimizer)
    tensors.update(optim_tensors)
    tensors["rng.cpu"] = ts.rng_cpu
    tensors.update({f"rng.cuda.{i}": r for i, r in enumerate(ts.rng_cuda)})
    tensors.update({f"hidden.{i}": h for i, h in enumerate(ts.hidden or ())})
    run.save_tensors(LAST, tensors, {"trainer": ts.trainer, "optimizer": optim_meta})


def load_training_state(run: RunDir) -> TrainingState:
    tensors, meta = run.load_tensors(LAST)
    try:
        hidden = [tensors[f"hidden.{i}"] for i in range(2) if f"hidden.{i}" in tensors]
        cuda = [tensors[f"rng.cuda.{i}"] for i in range(len(tensors)) if f"rng.cuda.{i}" in tensors]
        return TrainingState(
            model={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
            optimizer=optimizer_from_tensors(tensors, meta["optimizer"]),
            rng_cpu=tensors["rng.cpu"], rng_cuda=cuda, hidden=tuple(hidden) or None,
            trainer=dict(meta["trainer"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{run.path / LAST} is incomplete: missing {exc}") from None


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors and JSON-able parts (no pickle)."""
    import torch

    tensors, scalars = {}, {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}
