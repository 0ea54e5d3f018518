"""What the web app serves, without HTTP: runs addressed by name, each loaded once, token streams
pumped in a bounded pool of threads, and conversations kept by id.

    service = Service(Path("runs"))
    service.runs.summaries()                      # what ``charpoet runs`` lists, as dicts
    lm = service.runs.model("shakespeare")        # loaded once; reloaded when its weights change
    pump = Pump(lm.stream("ROMEO.", options))     # drained from a worker thread, a batch at a time

Everything here raises ``CharpoetError`` subclasses for what a client can cause; ``web.app`` turns
them into JSON errors with a 4xx status.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charpoet.checkpoint import BEST, CONFIG, LAST, METRICS_LOG, SAMPLES_LOG, RunDir
from charpoet.errors import CharpoetError, ConfigError
from charpoet.runs import MAX_DEPTH, list_runs, read_jsonl, summarise_run

if TYPE_CHECKING:
    from charpoet.attribution import CorpusIndex
    from charpoet.attribution_types import Attribution
    from charpoet.chat import Conversation
    from charpoet.sample import LanguageModel

MAX_TRAIN_RECORDS = 2000  # training-step records sent for a run's curves
MAX_NAME_CHARS = 255


class NotFound(CharpoetError):
    """A run or conversation that is not there (HTTP 404)."""


class Busy(CharpoetError):
    """Over a concurrency limit, or a conversation that is already answering (HTTP 429 / 409)."""

    def __init__(self, message: str, status: int = 429):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request, and one client, may ask of the server (``charpoet serve --max-…``)."""

    max_prompt_chars: int = 10_000  # a prompt or a chat turn
    max_length: int = 5_000  # tokens per sample
    max_samples: int = 8  # samples per generation
    max_streams_per_client: int = 4  # concurrent generations and answers of one client address
    max_attribute_chars: int = 200_000  # text sent to /api/attribute
    max_conversations: int = 256  # kept in memory; the least recently used goes first
    conversation_ttl: float = 3600.0  # seconds a conversation is kept after its last use
    workers: int = 0  # threads that compute tokens; 0 = the cores this process may use

    def validate(self) -> Limits:
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name == "workers" else 1
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < least:
                flag = "--" + f.name.replace("_", "-")
                raise ConfigError(f"{flag} must be a number >= {least}, got {value!r}")
        return self

    @property
    def worker_threads(self) -> int:
        return self.workers or _cores()


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_run_name(name: Any) -> list[str]:
    """The parts of a run name as the run list gives it (``a`` or ``a/b``); ``ConfigError`` for
    anything else: absolute paths, ``..``, hidden parts, backslashes, control characters, lone surrogates."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise ConfigError("a run is named by its name in the run list, e.g. \"shakespeare\" or \"books/verne\"")
    if any(ord(ch) < 32 or ch == "\\" or 0xD800 <= ord(ch) < 0xE000 for ch in name) or name.startswith("/"):
        raise ConfigError(f"bad run name {name!r}: give the name from the run list, not a path")
    parts = name.split("/")
    if len(parts) > MAX_DEPTH or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise ConfigError(f"bad run name {name!r}: give the name from the run list, not a path")
    return parts


class Runs:
    """The runs a server offers: every run below ``root`` (as ``charpoet runs`` finds them), or one
    run. Models and attribution indexes are loaded on first use and kept; a model is loaded again
    when its weights file changes (a run that is still training)."""

    def __init__(self, root: Path | None = None, run: Path | None = None, weights: str = "best"):
        if (root is None) == (run is None):
            raise ValueError("give a runs directory or one run")
        self.weights = weights
        self.root = Path(root if root is not None else run).expanduser()  # type: ignore[arg-type]
        self.single = run is not None or (self.root / CONFIG).is_file()  # --runs RUN: that one run
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise ConfigError(f"{'run' if self.single else 'runs directory'} {self.root} {what}")
        if self.single and not (self.root / CONFIG).is_file():
            raise ConfigError(f"{self.root} is not a charpoet run (no {CONFIG})")
        self.threads_per_stream: int | None = None  # most threads of one stream's step (None: the stepper's choice)
        self._lock = threading.Lock()
        self._models: dict[str, tuple[float, LanguageModel]] = {}
        self._indexes: dict[str, tuple[Any, CorpusIndex | str]] = {}  # (stamp, index or why there is none)
        self._loading: dict[str, threading.Lock] = {}

    @property
    def single_name(self) -> str:
        return self.root.resolve().name

    def summaries(self) -> list[dict[str, Any]]:
        """Name, corpus, architecture, steps, best loss and bpc, last update: best first."""
        if self.single:
            rows = [summarise_run(self.root, self.single_name)]
        else:
            rows = list_runs(self.root)
        out = []
        for row in rows:
            if not self.single:
                try:
                    self.path(row.name)
                except CharpoetError:
                    continue  # listed but not served: a symlink out of the directory, a name that is a path
            d = row.to_dict()
            d.pop("path")
            out.append(d)
        return out

    def path(self, name: Any) -> Path:
        """The directory of the run called ``name``; ``NotFound`` if there is none, ``ConfigError``
        for a name that is a path. A symlink may not lead out of the runs directory."""
        parts = check_run_name(name)
        if self.single:
            if name != self.single_name:
                raise NotFound(f"no run named {name!r}; this server serves {self.single_name!r}")
            return self.root
        root = self.root.resolve()
        path = root.joinpath(*parts)
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(f"no run named {name!r}") from None
        if real != root and root not in real.parents:
            raise NotFound(f"no run named {name!r}")  # a symlink out of the runs directory
        if not (real / CONFIG).is_file():
            raise NotFound(f"no run named {name!r}")
        return real

    def model(self, name: str) -> LanguageModel:
        """The run's model for generation (``best`` weights unless the server was told otherwise)."""
        path = self.path(name)
        stamp = _mtime(path / (BEST if self.weights == "best" else LAST))
        with self._lock:
            cached = self._models.get(name)
            gate = self._loading.setdefault(name, threading.Lock())
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with gate:  # one load per run at a time; the others wait for it
            with self._lock:
                cached = self._models.get(name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            from charpoet.sample import load
            from charpoet.stepper import Stepper, auto_threads

            lm = load(path, weights=self.weights, device="cpu")
            most = auto_threads(lm.model.config.rnn_size)
            lm.stepper = Stepper(lm.model, threads=min(most, self.threads_per_stream or most))
            with self._lock:
                self._models[name] = (stamp, lm)
            return lm

    def index(self, name: str) -> CorpusIndex:
        """The attribution index of the run's sources (built once, cached in the run directory;
        built again when the run's sources change, e.g. a run started over with other texts).

        Sources above the index size limit raise ``IndexTooLargeError`` (a ``ConfigError``: HTTP
        400), remembered until they change; the server never forces such an index.
        """
        path = self.path(name)
        stamp = RunDir(path).library_stamp()
        with self._lock:
            found = self._indexes.get(name)
            gate = self._loading.setdefault(f"{name}\0index", threading.Lock())
        if found is None or found[0] != stamp:
            with gate:
                with self._lock:
                    found = self._indexes.get(name)
                if found is None or found[0] != stamp:
                    from charpoet.attribution import IndexTooLargeError, index_for_run

                    try:
                        found = (stamp, index_for_run(path))
                    except IndexTooLargeError as exc:  # not worked out again for every request
                        found = (stamp, str(exc))
                    with self._lock:
                        self._indexes[name] = found
        if isinstance(found[1], str):
            from charpoet.attribution import IndexTooLargeError

            raise IndexTooLargeError(found[1])
        return found[1]

    def metrics(self, name: str, most: int = MAX_TRAIN_RECORDS) -> list[dict[str, Any]]:
        """The run's metrics history (``metrics.jsonl``), oldest first; torn lines skipped. Of the
        training-step records at most ``most`` are kept, evenly spaced, the last always among them
        (a long run logs hundreds of thousands); evaluations and the rest are all kept."""
        records = _read_jsonl(self.path(name) / METRICS_LOG)
        train = [i for i, r in enumerate(records) if r.get("kind") == "train"]
        if len(train) <= most:
            return records
        stride = math.ceil(len(train) / most)
        dropped = set(train[:-1]) - set(train[len(train) - 1::-stride])
        return [r for i, r in enumerate(records) if i not in dropped]

    def samples(self, name: str, limit: int, min_quote: int) -> list[dict[str, Any]]:
        """The run's latest ``limit`` training samples, oldest first, each with its attribution."""
        path = self.path(name)
        records = _read_jsonl(path / SAMPLES_LOG)[-limit:] if limit else []
        from charpoet.attribution import IndexTooLargeError

        out = []
        try:
            index = self.index(name) if records else None
        except IndexTooLargeError:  # the samples are shown without highlighting
            index = None
        for r in records:
            text = r.get("text")
            if not isinstance(text, str):
                continue
            att = attribution_json(index.attribute(text, min_quote)) if index is not None else unattributed_json(text)
            out.append({"step": r.get("step"), "temperature": r.get("temperature"), "time": r.get("time"),
                        "attribution": att})
        return out

    def training(self, name: str, within: float = 120.0) -> bool:
        """Whether the run looks like it is training: its metrics changed in the last ``within`` s."""
        return time.time() - _mtime(self.path(name) / METRICS_LOG) < within


def attribution_json(att: Attribution, prefix: str = "") -> dict[str, Any]:
    """``Attribution.to_dict`` plus the legend the page shows (number, title, colour per cited
    source, as every renderer colours them) and each span's legend number."""
    from charpoet.render import legend

    entries = legend(att)
    number = {e["source"]: e["number"] for e in entries}
    d = att.to_dict()
    for span in d["spans"]:
        span["number"] = number[span["source"]]
    d["legend"] = entries
    d["prefix"] = prefix
    return d


def unattributed_json(text: str, prefix: str = "") -> dict[str, Any]:
    """A text shown without highlighting, in ``attribution_json``'s shape (no metrics: none known)."""
    return {"text": text, "prefix": prefix, "spans": [], "legend": []}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return 0.0


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """``read_jsonl`` with NaN and infinities as None (JSON has no such numbers)."""
    return [_finite_json(r) for r in read_jsonl(path)]


def _finite_json(value: Any) -> Any:
    """NaN and infinities (a diverged step) as None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_json(v) for v in value]
    return value


class Pump:
    """A token iterator drained by worker threads a batch at a time, and stopped from any thread.

    ``pull`` (in a worker) returns the next items: at most ``most``, and no later than ``seconds``
    after it began (but at least one); an empty list once the iterator is done or cancelled.
    ``cancel`` stops it: at once if no pull is running, else after the running pull's next item.
    The iterator is closed in the thread that drives it (so a conversation's answer that was cut
    short leaves the conversation as it was), and then ``on_close`` runs, once: whatever the
    stream held (a client's slot, a conversation's lock) is given back only when nothing runs.
    """

    def __init__(self, iterator: Iterator[Any], on_close: Callable[[], None] = lambda: None):
        self._it = iterator
        self._on_close = on_close
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._closed = False
        self.finished = False  # the iterator ran to its end

    def pull(self, most: int, seconds: float) -> list[Any]:
        with self._lock:
            out = self._pull(most, seconds)
        if self._cancelled.is_set():  # a cancel that came after this pull's last look could not close it
            self.cancel()
            return []
        return out

    def _pull(self, most: int, seconds: float) -> list[Any]:
        if self._closed or self._cancelled.is_set():
            self._close()
            return []
        out: list[Any] = []
        deadline = time.perf_counter() + seconds
        try:
            while len(out) < most:
                try:
                    item = next(self._it)
                except StopIteration:
                    self.finished = True
                    self._close()
                    break
                if self._cancelled.is_set():
                    self._close()
                    return []
                out.append(item)
                if time.perf_counter() >= deadline:
                    break
        except BaseException:
            self._close()
            raise
        return out

    def cancel(self) -> None:
        self._cancelled.set()
        if self._lock.acquire(blocking=False):  # no pull running: close it here
            try:
                self._close()
            finally:
                self._lock.release()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


class ClientSlots:
    """Concurrent generations per client address, at most ``limit`` each."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}

    def acquire(self, client: str) -> Callable[[], None]:
        """A release function; ``Busy`` if the client already has ``limit`` streams."""
        with self._lock:
            n = self._active.get(client, 0)
            if n >= self.limit:
                raise Busy(f"too many generations at once from this client (at most {self.limit}); "
                           f"wait for one to end or stop it")
            self._active[client] = n + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                left = self._active.get(client, 1) - 1
                if left > 0:
                    self._active[client] = left
                else:
                    self._active.pop(client, None)
        return release

    @property
    def active(self) -> int:
        with self._lock:
            return sum(self._active.values())


@dataclass
class ChatSession:
    run: str
    conversation: Conversation
    lock: threading.Lock
    used: float


class Conversations:
    """Conversations by id: random ids, at most ``limit`` kept, each dropped ``ttl`` seconds after
    its last use (or earlier, least recently used first, when the limit is reached)."""

    def __init__(self, limit: int, ttl: float):
        self.limit, self.ttl = limit, ttl
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, ChatSession] = OrderedDict()

    def create(self, run: str, conversation: Conversation) -> str:
        cid = secrets.token_urlsafe(16)
        with self._lock:
            self._expire()
            while len(self._sessions) >= self.limit:  # the least recently used that is not answering
                idle = next((c for c, s in self._sessions.items() if not s.lock.locked()), None)
                if idle is None:
                    raise Busy(f"the server holds {self.limit} conversations that are all answering; try again soon")
                del self._sessions[idle]
            self._sessions[cid] = ChatSession(run, conversation, threading.Lock(), time.monotonic())
        return cid

    def get(self, cid: Any) -> ChatSession:
        if not isinstance(cid, str) or not cid:
            raise ConfigError("give the conversation's id")
        with self._lock:
            self._expire()
            session = self._sessions.get(cid)
            if session is None:
                raise NotFound("no such conversation (it may have expired); start a new one")
            session.used = time.monotonic()
            self._sessions.move_to_end(cid)
            return session

    def _expire(self) -> None:
        now = time.monotonic()
        for cid in [c for c, s in self._sessions.items() if now - s.used > self.ttl and not s.lock.locked()]:
            del self._sessions[cid]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


class Service:
    """Everything one server holds: its runs, limits, worker pool, client slots and conversations."""

    def __init__(self, root: Path | None = None, run: Path | None = None, limits: Limits | None = None,
                 weights: str = "best", min_quote: int = 20):
        from charpoet.attribution import check_min_quote

        self.limits = (limits or Limits()).validate()
        self.min_quote = check_min_quote(min_quote)
        self.runs = Runs(root, run, weights)
        # each worker computes one stream at a time: its step gets the cores the workers leave free
        self.runs.threads_per_stream = max(1, _cores() // self.limits.worker_threads)
        self.pool = ThreadPoolExecutor(max_workers=self.limits.worker_threads, thread_name_prefix="charpoet-serve")
        self.slots = ClientSlots(self.limits.max_streams_per_client)
        self.conversations = Conversations(self.limits.max_conversations, self.limits.conversation_ttl)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
