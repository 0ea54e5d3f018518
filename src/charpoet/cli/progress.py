"""Rich rendering of training events: a progress bar plus one line per evaluation."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from charpoet.train import TrainEvent

_SCALE = 1000  # the bar counts progress in thousandths (epochs or the time budget)


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
        if event.kind == "start":
            self._start(event.info)
        elif event.kind == "eval" or (event.kind == "end" and event.metrics):
            self.console.print(_eval_line(event))
        if event.kind == "end":
            reason = {"epochs": "all epochs done", "time": "time budget used", "steps": "step limit reached",
                      "interrupted": "interrupted; last state saved"}[event.info["stop_reason"]]
            self.console.print(f"stopped at step {event.step}: {reason}")
        elif event.kind == "step" and not self.console.is_terminal and event.step % 100 == 0:
            print(f"step {event.step} epoch {event.epoch:.2f} loss {event.loss:.4f} "
                  f"{event.chars_per_sec:,.0f} chars/s", file=sys.stderr)

    def _start(self, info: dict[str, Any]) -> None:
        verb = "continuing" if info["restored"] else "training"
        self.console.print(
            f"{verb} on {info['library']} ({info['sources']} sources, {info['train_tokens']:,} train / "
            f"{info['valid_tokens']:,} valid tokens, vocabulary {info['vocab_size']}) with "
            f"{info['parameters']:,} parameters on {info['device']} ({info['precision']}), batch {info['batch_size']}, "
            f"{info['steps_per_epoch']} steps/epoch"
        )


def _eval_line(event: TrainEvent) -> str:
    m = event.metrics or {}
    parts = [f"step {event.step}", f"epoch {event.epoch:.2f}"]
    if m.get("train_loss") is not None:
        parts.append(f"train {m['train_loss']:.4f}")
    if "val_loss" in m:
        parts += [f"val {m['val_loss']:.4f}", f"bpc {m['val_bpc']:.3f}", f"acc {m['val_accuracy']:.1%}"]
    return "  ".join(parts)
