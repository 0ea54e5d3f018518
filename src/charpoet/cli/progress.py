"""Rich rendering of training events: a progress bar, statistics, samples and notes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from charpoet.attribution_types import Attribution
from charpoet.event_text import copy_figures, eval_line, hms, rollback_line, stop_line
from charpoet.render import to_rich

if TYPE_CHECKING:
    from charpoet.train import TrainEvent

_SCALE = 1000  # the bar counts progress in thousandths (epochs or the time budget)
_PLAIN_EVERY = 60.0  # training seconds between step lines when stderr is not a terminal


class TrainDisplay:
    """Callable ``on_event`` sink for ``charpoet.train``; use as a context manager."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]}[/] ep {task.fields[epoch]:.2f}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[rate]} chars/s  lr {task.fields[lr]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task("train", total=_SCALE, step=0, epoch=0.0, loss="-", rate="-", lr="-")
        self._plain_at: float | None = None  # elapsed time of the last plain step line

    def __enter__(self) -> TrainDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, event: TrainEvent) -> None:
        fields: dict[str, Any] = {"step": event.step, "epoch": event.epoch}
        if event.loss is not None:
            fields["loss"] = f"{event.loss:.4f}"
        if event.chars_per_sec:
            fields["rate"] = f"{event.chars_per_sec:,.0f}"
        if event.lr:
            fields["lr"] = f"{event.lr:.2e}"
        self.progress.update(self.task, completed=round(event.progress * _SCALE), **fields)
        kind, info = event.kind, event.info
        if kind == "start":
            self._start(info)
        elif kind == "eval" or (kind == "end" and event.metrics):
            self._stats(event)
        elif kind == "snapshot":
            self.console.print(Text(f"snapshot saved at step {event.step}", style="dim"))
        elif kind == "rollback":
            self.console.print(Text(rollback_line(event), style="yellow"))
        elif kind == "step" and not self.console.is_terminal and event.loss is not None:
            if self._plain_at is None or event.elapsed - self._plain_at >= _PLAIN_EVERY:
                self._plain_at = event.elapsed
                self.console.print(Text(f"step {event.step} epoch {event.epoch:.2f} loss {event.loss:.4f} "
                                        f"{event.chars_per_sec:,.0f} chars/s"))
        if kind == "end":
            self.console.print(stop_line(event), markup=False)

    def show_samples(self, step: int, samples: list[tuple[float, Attribution]]) -> None:
        """Each sample highlighted by source, under a header with its copy metrics."""
        for temperature, att in samples:
            if not att.sources:  # not attributed (a library above the index limit): the text alone
                self.console.print(Text(f"sample at step {step}, T={temperature:g} (not highlighted)", style="bold"))
                self.console.print(Text(att.text))
                continue
            self.console.print(Text(f"sample at step {step}, T={temperature:g}: {copy_figures(att)}", style="bold"))
            self.console.print(to_rich(att))

    def _start(self, info: dict[str, Any]) -> None:
        verb = "continuing from step {}".format(info.get("start_step", "?")) if info["restored"] else "training"
        self.console.print(
            f"{verb} on {info['library']} ({info['sources']} sources, {info['train_tokens']:,} train / "
            f"{info['valid_tokens']:,} valid tokens, vocabulary {info['vocab_size']}) with "
            f"{info['parameters']:,} parameters on {info['device']} ({info['precision']}), batch {info['batch_size']}, "
            f"{info['steps_per_epoch']} steps/epoch",
            markup=False,
        )

    def _stats(self, event: TrainEvent) -> None:
        self.console.print(Text(eval_line(event), style="bold"))
        self.console.print(Text(_rate_line(event), style="dim"))
        preview = event.info.get("preview")
        if preview:
            self.console.print(_preview(preview["y"], preview["yp"], self.console.width), no_wrap=True, crop=True)


def _rate_line(event: TrainEvent) -> str:
    m = event.metrics or {}
    lr, rate = m.get("lr", event.lr), m.get("chars_per_sec", event.chars_per_sec)
    parts = [f"lr {lr:.2e}"] + ([f"{rate:,.0f} chars/s"] if rate else [])
    parts.append(f"elapsed {hms(m.get('elapsed', event.elapsed))}")
    if m.get("remaining") is not None:
        parts.append(f"remaining {hms(m['remaining'])}")
    return "  ".join(parts)


def _preview(y: str, yp: str, width: int) -> Text:
    """Target over prediction, cut to ``width``; predicted characters that are wrong in red."""
    n = max(width - 4, 1)
    y, yp = y.replace("\n", "⏎")[:n], yp.replace("\n", "⏎")[:n]
    line = Text("y:  ")
    line.append(y)
    line.append("\nyp: ")
    for i, c in enumerate(yp):
        line.append(c, style=None if i < len(y) and y[i] == c else "red")
    return line
