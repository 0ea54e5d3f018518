"""Watching a run: samples with source attribution, TensorBoard scalars and a loss curve.

``TrainingMonitor`` is an ``on_event`` sink for ``charpoet.train``, composed next to the
terminal display::

    with TrainingMonitor(run_dir, on_samples=display.show_samples) as monitor:
        train(config, run_dir, on_event=lambda e: (display(e), monitor(e)))

What it writes into the run directory:

    samples/step-0001234.html   the samples of one "sample" event, highlighted, one block per temperature
    samples.jsonl               one line per sample: step, temperature, text, copy_rate, longest, time
    tensorboard/                train/*, val/*, sample/* scalars and sample texts
    loss.png                    train (line) and validation (markers) loss against step, at "end"

Nothing here prints. A part that fails (sampling, TensorBoard, plotting) warns once with
``CharpoetWarning`` and is switched off, so monitoring never stops training.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charpoet.attribution import CorpusIndex, IndexTooLargeError
from charpoet.attribution_types import Attribution
from charpoet.checkpoint import SAMPLES_LOG, RunDir
from charpoet.corpus import Library
from charpoet.corpus.cache import append_bytes, atomic_write_bytes
from charpoet.errors import CharpoetError, CharpoetWarning, ConfigError
from charpoet.render import to_html
from charpoet.runfiles import LOSS_PNG, SAMPLES_DIR, TENSORBOARD_DIR
from charpoet.sample import LanguageModel
from charpoet.tokenizer import Tokenizer
from charpoet.train import TrainEvent

log = logging.getLogger("charpoet")

SamplesCallback = Callable[[int, list[tuple[float, Attribution]]], None]


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        return False


class TrainingMonitor:
    """Callable ``on_event`` sink: samples, TensorBoard and the loss plot; a context manager.

    ``tensorboard``: None = on when the package is installed, True = required
    (``ConfigError`` if missing), False = off. ``on_samples(step, [(temperature,
    attribution), ...])`` receives every batch of samples (e.g. to show them).
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool | None = None,
                 on_samples: SamplesCallback | None = None, min_quote: int = 20,
                 tensorboard_dir: str | Path | None = None):
        if tensorboard and not tensorboard_available():
            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard")
        self.run_dir = Path(run_dir)
        # RUN/tensorboard, or a directory of its own under a TensorBoard root shared by many runs
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir is not None else self.run_dir / TENSORBOARD_DIR
        self.on_samples = on_samples
        self.min_quote = min_quote
        self.enabled = {"samples": True, "tensorboard": tensorboard_available() if tensorboard is None
                        else tensorboard, "plot": True}
        self._writer: Any = None  # torch.utils.tensorboard.SummaryWriter, opened at "start"
        self._index: CorpusIndex | None = None  # built at the first sample event
        self._unindexed = False  # the library is above the index size limit: samples are not attributed
        self._val_step: int | None = None  # step of the last evaluation logged to TensorBoard

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __call__(self, event: TrainEvent) -> None:
        samples = None
        if event.kind in ("start", "rollback"):  # samples after the snapshot belong to a lost future
            self._guard("samples", self._cut_samples, int(event.info.get("start_step", event.info.get("to_step", 0))))
        if event.kind == "sample" and self.enabled["samples"]:
            samples = self._guard("samples", self._sample, event)
        if self.enabled["tensorboard"]:
            self._guard("tensorboard", self._log, event, samples)
        if event.kind == "end":
            if self.enabled["plot"]:
                self._guard("plot", plot_metrics, self.run_dir)
            self.close()

    def close(self) -> None:
        """Flush and close the TensorBoard writer (reopened by a later event if needed)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - closing must never raise into training
                pass

    def _guard(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one part; on an error warn once and switch the part off."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - monitoring must not kill training
            self.enabled[part] = False
            if part == "tensorboard":
                self.close()
            log.warning("monitor: %s switched off after an error: %r", part, exc)
            warnings.warn(f"{part} switched off after an error: {exc}", CharpoetWarning, stacklevel=3)
            return None

    # --- samples --------------------------------------------------------------------------
    def _sample(self, event: TrainEvent) -> list[tuple[float, Attribution]]:
        info = event.info
        model, tokenizer, library = info["model"], info["tokenizer"], info["library"]
        temperatures = [float(t) for t in info["temperatures"]]
        if self._index is None and not self._unindexed:
            try:
                self._index = CorpusIndex.build(library)
            except IndexTooLargeError as exc:  # the samples still matter: shown without highlighting
                self._unindexed = True
                log.warning("monitor: samples are not attributed: %s", exc)
                warnings.warn(f"training samples are not highlighted: {exc}", CharpoetWarning, stacklevel=3)
        was_training = model.training
        try:  # LanguageModel puts the live model in eval mode; it has its own seeded generator
            lm = LanguageModel(model, tokenizer, info["config"], meta={})
            prime = _prime(tokenizer, library)
            texts = [lm.generate(prime, length=int(info["length"]), temperature=t, seed=int(info["seed"]))[0]
                     for t in temperatures]
        finally:
            model.train(was_training)
        samples = [(t, self._attribute(text)) for t, text in zip(temperatures, texts)]
        self._write_samples(event.step, samples)
        for t, att in samples:
            if self._index is None:
                log.info("sample at step %d, T=%g (not attributed)", event.step, t)
                continue
            log.info("sample at step %d, T=%g: %.1f%% copied, longest copy %d chars", event.step, t,
                     100 * att.copy_rate, _longest(att))
        if self.on_samples is not None:
            self.on_samples(event.step, samples)
        return samples

    def _attribute(self, text: str) -> Attribution:
        """``text``'s attribution; without spans or sources when the library is not indexed."""
        if self._index is None:
            return Attribution(text, (), (), self.min_quote)
        return self._index.attribute(text, self.min_quote)

    def _write_samples(self, step: int, samples: list[tuple[float, Attribution]]) -> None:
        temps = ", ".join(f"{t:g}" for t, _ in samples)
        title = f"{self.run_dir.name}: samples at step {step} (T = {temps})"
        page = to_html([att for _, att in samples], standalone=True, title=title)
        atomic_write_bytes(self.run_dir / SAMPLES_DIR / f"step-{step:07d}.html", page.encode("utf-8"))
        now = time.time()
        attributed = self._index is not None  # else copy_rate and longest are unknown: null
        lines = [json.dumps({"step": step, "temperature": t, "text": att.text,
                             "copy_rate": att.copy_rate if attributed else None,
                             "longest": _longest(att) if attributed else None, "time": now}, ensure_ascii=False) + "\n"
                 for t, att in samples]
        append_bytes(self.run_dir / SAMPLES_LOG, "".join(lines).encode("utf-8"))  # whole lines or none

    def _cut_samples(self, step: int) -> None:
        """Keep only the samples written up to ``step``; a resumed or rolled-back run redoes the rest."""
        path = self.run_dir / SAMPLES_LOG
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").split("\n"):  # not splitlines: texts may hold U+2028
            if not line:
                continue
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a killed process
        atomic_write_bytes(path, "".join(kept).encode("utf-8"))
        for page in (self.run_dir / SAMPLES_DIR).glob("step-*.html"):
            if page.stem[5:].isdigit() and int(page.stem[5:]) > step:
                page.unlink(missing_ok=True)

    # --- TensorBoard ------------------------------------------------------------------------
    def _open(self, purge_step: int | None = None) -> Any:
        """A new SummaryWriter; ``purge_step`` hides earlier sessions' points at steps >= it."""
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        self._writer = SummaryWriter(str(self.tensorboard_dir), purge_step=purge_step)
        return self._writer

    def _log(self, event: TrainEvent, samples: list[tuple[float, Attribution]] | None) -> None:
        kind, step, info = event.kind, event.step, event.info
        if kind == "start":
            # Points after the snapshot being resumed (written by a killed process) are purged;
            # the snapshot's own step is kept, as the resumed loop never logs it again.
            start = int(info.get("start_step", step))
            old = any(self.tensorboard_dir.glob("events.out.tfevents.*"))
            self._open(start + 1 if start > 0 or old else None)
            return
        if kind == "rollback":  # the loop repeats the steps after the snapshot: drop the failed ones
            to_step = int(info.get("to_step", step))
            self._open(to_step + 1)
        writer = self._writer or self._open()
        scalars: dict[str, Any] = {}
        if kind == "step":
            scalars = {"train/loss": event.loss, "train/lr": event.lr, "train/chars_per_sec": event.chars_per_sec,
                       "train/grad_norm": info.get("grad_norm")}
        elif kind in ("eval", "end") and event.metrics and event.metrics.get("step") != self._val_step:
            m, self._val_step = event.metrics, event.metrics.get("step")  # "end" may bring a last evaluation
            scalars = {f"val/{key}": m.get(f"val_{key}") for key in ("loss", "bpc", "accuracy")}
        elif kind == "sample" and samples:
            for t, att in samples:
                if self._index is not None:  # no copy figures for samples that were not attributed
                    scalars[f"sample/copy_rate_T{t:g}"] = att.copy_rate
                    scalars[f"sample/longest_T{t:g}"] = _longest(att)
                writer.add_text(f"sample/T{t:g}", _markdown_code(att.text), step)
        elif kind == "rollback":
            scalars["train/rollbacks"] = info.get("rollbacks")
            note = (f"non-finite {info.get('reason') or 'loss'} at step {info.get('failed_at', '?')}: rolled back "
                    f"to step {step}, learning rate x{info.get('lr_scale', 1.0):g}")
            writer.add_text("train/rollback", _markdown_code(note), step)
        for tag, value in scalars.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(tag, value, step)
        if kind in ("eval", "snapshot", "rollback", "end"):
            writer.flush()


def plot_metrics(run_dir: str | Path) -> Path | None:
    """Draw ``RUN/metrics.jsonl`` into ``RUN/loss.png``; None (and no file) when there is nothing to draw."""
    run_dir = Path(run_dir)
    records = RunDir(run_dir).read_metrics_log()  # skips torn and malformed lines
    train = _series(records, "train", "loss") or _series(records, "eval", "train_loss")
    val = _series(records, "eval", "val_loss")
    if not train and not val:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)  # draw off-screen: no pyplot, no display
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), linewidth=0.8, label="train")
    if val:
        ax.plot(*zip(*val), marker="o", markersize=4, linewidth=1.2, label="validation")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(run_dir / LOSS_PNG, buffer.getvalue())


def _series(records: list[dict[str, Any]], kind: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of the finite ``key`` of each ``kind`` record; the last record of a step wins."""
    points: dict[int, float] = {}
    for r in records:
        value = r.get(key)
        if r.get("kind") == kind and isinstance(value, (int, float)) and math.isfinite(value):
            points[r["step"]] = float(value)
    return sorted(points.items())


def _prime(tokenizer: Tokenizer, library: Library) -> str:
    """A newline if the vocabulary has one, else the first token of the library."""
    try:
        ids = tokenizer.encode("\n")
    except CharpoetError:
        ids = None
    unk = getattr(tokenizer, "unk_id", None)
    if ids is not None and len(ids) and (unk is None or unk not in ids):
        return "\n"
    text = next((s.text for s in library if s.text), "")
    return tokenizer.pieces(text[:100])[0]


def _longest(att: Attribution) -> int:
    longest = att.longest
    return 0 if longest is None else longest.length


def _markdown_code(text: str) -> str:
    """``text`` as a Markdown code block (4-space indent), so TensorBoard shows it verbatim."""
    return "\n".join("    " + line for line in text.split("\n"))
