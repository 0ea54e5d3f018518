"""Training and comparing runs in Jupyter (and Colab): a live display, a loss plot, samples.

    import charpoet.notebook as nb
    result = nb.train(config, "runs/demo")       # progress bar, statistics, loss plot, samples
    nb.plot_history(["runs/demo", "runs/wide"])  # evaluation curves of several runs, one figure

``train`` is ``charpoet.train`` with a ``NotebookDisplay`` and a ``TrainingMonitor`` (samples,
``samples.jsonl``, ``loss.png``) wired as ``charpoet train`` wires its terminal display. The
kernel's Interrupt button stops training cleanly after the current step and keeps the last state;
running the cell again continues the run.

``NotebookDisplay`` keeps one output area per training session, updated in place through
display handles (``IPython.display.display(..., display_id=True)``)::

    header      run, model size, corpus, device, precision          (at "start")
    progress    <progress> bar, step, epoch, loss, chars/s, times   (every "step", throttled)
    statistics  validation loss, bpc, accuracy; the y/yp preview    (every "eval")
    status      snapshot, rollback, why training stopped            (snapshot, rollback, end)
    plot        train and validation loss against step, bpc axis    (every "eval", throttled)
    samples     highlighted, one block per temperature, appended    (each sample batch)

Outside a kernel (a script, a terminal IPython) it prints one plain line per event instead.
IPython is imported only inside the functions that display, so this module imports without it.
"""

from __future__ import annotations

import html
import importlib
import io
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from charpoet.errors import CharpoetError, ConfigError
from charpoet.event_text import copy_figures, eval_line, hms, is_number, rollback_line, stop_line

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from charpoet.attribution_types import Attribution
    from charpoet.config import RunConfig
    from charpoet.corpus import Library
    from charpoet.runs import RunSummary
    from charpoet.train import TrainEvent, TrainResult

__all__ = ["NotebookDisplay", "in_notebook", "plot_history", "train"]

LN2 = math.log(2.0)
_CONTINUES = ("interrupted", "steps")  # stops after which running the same cell again goes on training


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (Jupyter, Colab, VS Code): IPython with a kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookDisplay:
    """An ``on_event`` sink for ``charpoet.train`` that draws in a notebook, or prints plain lines.

    ``notebook``: None = HTML when running in a kernel (``in_notebook``), True = HTML (needs
    IPython), False = plain lines to ``file`` (stdout). Redraws are throttled: the progress bar
    at most every ``progress_every`` seconds, the plot every ``plot_every``; plain step lines
    every ``print_every``. What was held back is drawn at the next evaluation and at the end.
    ``show_samples`` is the ``TrainingMonitor(on_samples=...)`` callback.
    """

    def __init__(self, *, notebook: bool | None = None, progress_every: float = 0.5, plot_every: float = 2.0,
                 print_every: float = 30.0, file: IO[str] | None = None):
        if notebook is None:
            notebook = in_notebook()
        self._ipd: Any = None  # the IPython.display module, in notebook mode
        if notebook:
            try:
                self._ipd = importlib.import_module("IPython.display")
            except ImportError:
                raise ConfigError("NotebookDisplay(notebook=True) needs IPython: pip install ipykernel") from None
        self.file = file
        self.progress_every, self.plot_every, self.print_every = progress_every, plot_every, print_every
        self._handles: dict[str, Any] = {}  # area -> display handle, created in order at the first event
        self._drawn: dict[str, float] = {}  # area -> monotonic time of its last redraw
        self._pending: set[str] = set()  # areas with news held back by the throttle
        self._last: TrainEvent | None = None  # the latest "step" event: loss and speed for the progress bar
        self.run_dir: Path | None = None
        self._eval_step: int | None = None  # step of the evaluation shown
        self.train_points: list[tuple[int, float]] = []  # (step, training loss)
        self.val_points: list[tuple[int, float, float | None]] = []  # (step, val loss, val bpc)

    @property
    def notebook(self) -> bool:
        return self._ipd is not None

    # --- events ---------------------------------------------------------------------------
    def on_event(self, event: TrainEvent) -> None:
        kind = event.kind
        if kind == "start":
            self._start(event)
        elif kind == "step":
            if event.loss is not None:
                self.train_points.append((event.step, event.loss))
            self._last = event
            self._progress(event)
        elif kind == "eval" or (kind == "end" and event.metrics):
            self._eval(event)
        if kind == "snapshot":
            self._status(f"snapshot saved at step {event.step:,}", "#555")
        elif kind == "rollback":
            self._rollback(event)
        elif kind == "end":
            self._end(event)

    __call__ = on_event

    def show_samples(self, step: int, samples: list[tuple[float, Attribution]]) -> None:
        """Each sample highlighted by source under a line with its temperature and copy figures;
        appended below the plot (a notebook) or printed."""
        if not self.notebook:
            for t, att in samples:
                self._print(f"sample at step {step}, T={t:g}: {copy_figures(att)}")
                self._print(att.text)
            return
        from charpoet.render import to_html

        blocks = [f"<h4 style='margin:0.6em 0 0.2em'>samples at step {step:,}</h4>"]
        for t, att in samples:
            blocks.append(f"<p style='margin:0.3em 0'><b>T={t:g}</b> · {html.escape(copy_figures(att))}</p>")
            if att.sources:
                blocks.append(to_html(att, standalone=False))
            else:  # not attributed (a library above the index limit): the text alone
                blocks.append(f"<pre style='white-space:pre-wrap'>{html.escape(att.text)}</pre>")
        text = "\n".join(f"sample at step {step}, T={t:g}: {copy_figures(att)}\n{att.text}" for t, att in samples)
        self._ipd.display(Markup(f"<div class='charpoet-samples'>{''.join(blocks)}</div>", text))

    def flush(self) -> None:
        """Draw whatever the throttle held back."""
        if "progress" in self._pending and self._last is not None:  # (only step events are held back)
            self._progress(self._last, force=True)
        if "plot" in self._pending:
            self._plot(force=True)

    # --- the parts ----------------------------------------------------------------------
    def _start(self, event: TrainEvent) -> None:
        info = event.info
        self.run_dir = Path(info["run_dir"]) if info.get("run_dir") is not None else None
        start = int(info.get("start_step", event.step))
        self.train_points, self.val_points = self._history(start)
        model = info.get("model") or {}
        arch = (f"{str(model.get('cell', '?')).upper()} {model.get('num_layers', '?')}\u00d7{model.get('rnn_size', '?')}, "
                f"emb {model.get('embedding_size', '?')}")
        verb = f"continuing from step {start:,}" if info.get("restored") else "training"
        run = str(self.run_dir) if self.run_dir is not None else "run"
        parts = [f"{verb} {run}", f"{arch}, {info.get('parameters', 0):,} parameters",
                 f"corpus {info.get('library', '?')} ({info.get('sources', '?')} sources, "
                 f"{info.get('train_tokens', 0):,} train / {info.get('valid_tokens', 0):,} valid tokens, "
                 f"vocabulary {info.get('vocab_size', '?')})",
                 f"{info.get('device', '?')} ({info.get('precision', '?')}), batch {info.get('batch_size', '?')}, "
                 f"{info.get('steps_per_epoch', '?')} steps/epoch"]
        if not self.notebook:
            self._print("; ".join(parts))
            return
        self._handles = {}  # a display used again draws in the cell that runs now
        self._drawn, self._pending, self._last, self._eval_step = {}, set(), None, None
        for area in ("header", "progress", "stats", "status", "plot"):  # one output area, in this order
            self._show(area, Markup("", ""))
        self._show("header", Markup(f"<b>{html.escape(parts[0])}</b><br>" + " · ".join(html.escape(p) for p in parts[1:]),
                                    "; ".join(parts)))
        self._progress(event, force=True)
        if self.val_points:
            self._plot(force=True)

    def _progress(self, event: TrainEvent, force: bool = False) -> None:
        """The bar at ``event``'s position, with the loss and speed of the latest step event."""
        now = time.monotonic()
        if not self.notebook:
            if event.kind == "step" and event.loss is not None and self._due("progress", now, self.print_every):
                self._print(f"step {event.step:,} epoch {event.epoch:.2f} loss {event.loss:.4f} "
                            f"{event.chars_per_sec:,.0f} chars/s {event.progress:.1%}")
            return
        if not force and not self._due("progress", now, self.progress_every):
            self._pending.add("progress")
            return
        self._pending.discard("progress")
        self._drawn["progress"] = now
        p = min(max(event.progress, 0.0), 1.0)
        parts = [f"{p:.1%}", f"step {event.step:,}", f"epoch {event.epoch:.2f}"]
        if self._last is not None and self._last.loss is not None:
            parts.append(f"loss {self._last.loss:.4f}")
        if self._last is not None and self._last.chars_per_sec:
            parts.append(f"{self._last.chars_per_sec:,.0f} chars/s")
        parts.append(f"elapsed {hms(event.elapsed)}")
        if 0 < p < 1 and event.elapsed > 0:
            parts.append(f"remaining {hms(event.elapsed / p * (1 - p))}")
        bar = f'<progress value="{p:.4f}" max="1" style="width:40%;vertical-align:middle"></progress> '
        self._show("progress", Markup(bar + html.escape(" · ".join(parts)), "  ".join(parts)))

    def _eval(self, event: TrainEvent) -> None:
        m = event.metrics or {}
        if event.kind == "end" and self._eval_step == event.step:  # the last evaluation, already shown
            return
        self._eval_step = event.step
        if isinstance(m.get("val_loss"), (int, float)):
            self.val_points = [v for v in self.val_points if v[0] != event.step]
            bpc = m.get("val_bpc")
            self.val_points.append((event.step, float(m["val_loss"]), float(bpc) if isinstance(bpc, (int, float)) else None))
        line = eval_line(event, remaining=True)
        if not self.notebook:
            self._print(line)
            return
        text = f"<b>{html.escape(line)}</b>"
        preview = event.info.get("preview")
        if preview:
            text += _preview_html(preview["y"], preview["yp"])
        self._show("stats", Markup(text, line))
        if event.kind == "eval":
            self._progress(event, force=True)
        self._plot()

    def _rollback(self, event: TrainEvent) -> None:
        to_step = int(event.info.get("to_step", event.step))
        self.train_points = [p for p in self.train_points if p[0] <= to_step]
        self.val_points = [p for p in self.val_points if p[0] <= to_step]
        self._status(rollback_line(event), "#b60")

    def _end(self, event: TrainEvent) -> None:
        reason = str(event.info.get("stop_reason", ""))
        line = stop_line(event)
        if reason in _CONTINUES:
            line += "; run the cell again to continue" if self.notebook else "; run it again to continue"
        if self.notebook:
            self._progress(event, force=True)
            self.flush()
        self._status(line, "#c00" if reason == "diverged" else "#000")

    def _status(self, line: str, colour: str) -> None:
        if self.notebook:
            self._show("status", Markup(f'<span style="color:{colour}">{html.escape(line)}</span>', line))
        else:
            self._print(line)

    def _plot(self, force: bool = False) -> None:
        if not self.notebook or (not self.train_points and not self.val_points):
            return
        now = time.monotonic()
        if not force and not self._due("plot", now, self.plot_every):
            self._pending.add("plot")
            return
        self._pending.discard("plot")
        self._drawn["plot"] = now
        png = _loss_png(self.train_points, self.val_points, self.run_dir.name if self.run_dir else "")
        self._show("plot", self._ipd.Image(data=png, format="png"))

    # --- helpers ------------------------------------------------------------------------
    def _history(self, start: int) -> tuple[list[tuple[int, float]], list[tuple[int, float, float | None]]]:
        """The curves so far of a run being continued, from its metrics.jsonl (up to its snapshot)."""
        if self.run_dir is None or start <= 0:
            return [], []
        from charpoet.checkpoint import RunDir

        try:
            records = RunDir(self.run_dir).read_metrics_log()
        except CharpoetError:
            return [], []
        train = {r["step"]: float(r["loss"]) for r in records if r.get("kind") == "train" and is_number(r.get("loss"))
                 and isinstance(r.get("step"), int) and r["step"] <= start}
        val = {r["step"]: (float(r["val_loss"]), float(r["val_bpc"]) if is_number(r.get("val_bpc")) else None)
               for r in records if r.get("kind") == "eval" and is_number(r.get("val_loss"))
               and isinstance(r.get("step"), int) and r["step"] <= start}
        return sorted(train.items()), [(s, *v) for s, v in sorted(val.items())]

    def _due(self, area: str, now: float, every: float) -> bool:
        last = self._drawn.get(area)
        if last is not None and now - last < every:
            return False
        self._drawn[area] = now
        return True

    def _show(self, area: str, obj: Any) -> None:
        """Draw ``obj`` (anything IPython displays) in ``area``, in place once it exists."""
        handle = self._handles.get(area)
        if handle is None:
            if area not in self._handles:  # an event before "start": open the areas now
                self._handles[area] = self._ipd.display(obj, display_id=True)
        else:
            handle.update(obj)

    def _print(self, line: str) -> None:
        print(line, file=self.file or sys.stdout, flush=True)


class Markup:
    """HTML for the notebook, with the same news as plain text for frontends that show only text
    (``jupyter console``)."""

    def __init__(self, markup: str, text: str):
        self.markup, self.text = markup, text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def train(config: RunConfig, run_dir: str | Path, *, restore: bool | None = None, library: Library | None = None,
          stop_after_steps: int | None = None, tensorboard: bool | None = False,
          display: NotebookDisplay | None = None, **kwargs: Any) -> TrainResult:
    """``charpoet.train`` shown live in the notebook (``NotebookDisplay``), with the samples,
    ``samples.jsonl``, ``samples/*.html`` and ``loss.png`` that ``charpoet train`` writes, and the
    log in ``RUN/train.log``. Calling it again on the same run continues it (``restore`` as in
    ``charpoet.train``). TensorBoard is off unless ``tensorboard`` is True or None (= if installed).
    Other keyword arguments go to ``charpoet.train`` (``log_every``, and ``on_event``, which is
    called after the display's).
    """
    from charpoet.checkpoint import TRAIN_LOG, RunDir, RunLogHandler
    from charpoet.monitor import TrainingMonitor
    from charpoet.train import train as train_run

    display = display or NotebookDisplay()
    extra = kwargs.pop("on_event", None)
    run = RunDir(run_dir)
    created = not run.path.exists()
    run.path.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("charpoet")
    level = logger.level
    handler = RunLogHandler(run.path / TRAIN_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with TrainingMonitor(run.path, tensorboard=tensorboard, on_samples=display.show_samples) as monitor:
            def on_event(event: TrainEvent) -> None:
                display(event)
                monitor(event)
                if extra is not None:
                    extra(event)

            return train_run(config, run.path, restore=restore, library=library, on_event=on_event,
                             stop_after_steps=stop_after_steps, **kwargs)
    finally:
        display.flush()
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
        if created and not run.exists():  # a new run that failed before it began leaves nothing behind
            shutil.rmtree(run.path, ignore_errors=True)


def plot_history(run_dir_or_dirs: str | Path | RunSummary | Iterable[str | Path | RunSummary],
                 metric: str = "val_bpc", *, x: str = "step") -> Figure:
    """A matplotlib ``Figure`` of ``metric`` (a key of the evaluation records: val_bpc, val_loss,
    val_accuracy, train_loss, lr ...) against ``x`` (step, epoch or elapsed minutes of training)
    for one run or several (directories, or ``list_runs`` rows). It shows itself in Jupyter and
    can be saved with ``fig.savefig(path)``.
    """
    from charpoet.checkpoint import RunDir
    from charpoet.runs import RunSummary, read_history

    if isinstance(run_dir_or_dirs, (str, Path, RunSummary)):
        run_dir_or_dirs = [run_dir_or_dirs]
    paths = [Path(r.path if isinstance(r, RunSummary) else r) for r in run_dir_or_dirs]
    if not paths:
        raise ConfigError("plot_history needs at least one run directory")
    if x not in ("step", "epoch", "elapsed"):
        raise ConfigError(f"x must be step, epoch or elapsed, got {x!r}")
    for path in paths:
        if not RunDir(path).exists():
            raise ConfigError(f"{path} is not a run directory (no config.json)")
    histories = {path: read_history(path) for path in paths}
    keys = {k for history in histories.values() for h in history for k, v in h.items() if is_number(v)}
    if keys and metric not in keys:
        raise ConfigError(f"no run has {metric!r} in its evaluations; try one of {', '.join(sorted(keys))}")
    names = [p.name for p in paths]
    fig = _figure_class()(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    for path, name in zip(paths, names):
        points: dict[float, float] = {}
        for h in histories[path]:
            if is_number(h.get(metric)) and is_number(h.get(x)):
                points[h[x] / 60 if x == "elapsed" else h[x]] = float(h[metric])  # the last record of a step wins
        label = str(path) if names.count(name) > 1 else name
        if points:
            ax.plot(*zip(*sorted(points.items())), marker="o", markersize=3, linewidth=1.2, label=label)
        else:
            ax.plot([], [], label=f"{label} (no evaluations)")
    ax.set(xlabel={"step": "step", "epoch": "epoch", "elapsed": "training minutes"}[x],
           ylabel=_METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


_METRIC_LABELS = {"val_bpc": "validation bits per character", "val_loss": "validation loss (nats/token)",
                  "val_accuracy": "validation next-token accuracy", "train_loss": "training loss (nats/token)"}


@cache
def _figure_class() -> type[Figure]:
    """A ``Figure`` drawn off-screen (Agg, no pyplot: nothing to close) that shows itself as PNG in Jupyter."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    class HistoryFigure(Figure):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            FigureCanvasAgg(self)

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", bbox_inches="tight")
            return buffer.getvalue()

    return HistoryFigure


def _loss_png(train: list[tuple[int, float]], val: list[tuple[int, float, float | None]], title: str) -> bytes:
    """Training loss (line) and validation loss (markers) against step, with a bits-per-character
    axis on the right when the evaluations give the ratio; PNG bytes."""
    fig = _figure_class()(figsize=(7, 3.6), dpi=90)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), linewidth=0.8, label="train")
    if val:
        ax.plot([s for s, _, _ in val], [v for _, v, _ in val], marker="o", markersize=4, linewidth=1.2,
                label="validation")
        ratios = [b / v for _, v, b in val if b is not None and v > 0]  # bpc per nat (1/ln2/chars per token)
        if ratios:
            r = ratios[-1]
            bpc_axis = ax.secondary_yaxis("right", functions=(lambda y: y * r, lambda y: y / r))
            bpc_axis.set_ylabel("bits per character")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig._repr_png_()


def _preview_html(y: str, yp: str, width: int = 120) -> str:
    """The target over the argmax prediction, wrong predictions in red (as the terminal shows)."""
    y, yp = y.replace("\n", "⏎")[:width], yp.replace("\n", "⏎")[:width]
    guessed = "".join(html.escape(c) if i < len(y) and y[i] == c else f'<span style="color:#c00">{html.escape(c)}</span>'
                      for i, c in enumerate(yp))
    return (f'<pre style="margin:0.2em 0;font-size:90%">y:  {html.escape(y)}\nyp: {guessed}</pre>')
