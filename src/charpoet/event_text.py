"""The words for training events, shared by the terminal display (``charpoet.cli.progress``) and the
notebook display (``charpoet.notebook``). Nothing here imports torch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charpoet.attribution_types import Attribution
    from charpoet.train import TrainEvent

STOP_REASONS = {
    "epochs": "all epochs done", "time": "time budget used", "steps": "step limit of this session reached",
    "interrupted": "interrupted; last state saved", "early-stop": "validation loss stopped improving",
    "diverged": "gave up after repeated non-finite losses (try a lower --learning-rate)",
}


def stop_line(event: TrainEvent) -> str:
    reason = event.info.get("stop_reason", "")
    return f"stopped at step {event.step:,}: {STOP_REASONS.get(reason, reason)}"


def eval_line(event: TrainEvent, remaining: bool = False) -> str:
    """``step 812  epoch 1.46  train 1.7173  val 1.6767  bpc 2.419  acc 50.4%`` (and the time left)."""
    m = event.metrics or {}
    parts = [f"step {event.step}", f"epoch {event.epoch:.2f}"]
    if is_number(m.get("train_loss")):
        parts.append(f"train {m['train_loss']:.4f}")
    if is_number(m.get("val_loss")):
        parts += [f"val {m['val_loss']:.4f}", f"bpc {m['val_bpc']:.3f}", f"acc {m['val_accuracy']:.1%}"]
    if remaining and is_number(m.get("remaining")):
        parts.append(f"remaining {hms(m['remaining'])}")
    return "  ".join(parts)


def rollback_line(event: TrainEvent) -> str:
    info = event.info
    what = f"non-finite {info.get('reason') or 'loss'}"
    count = f"rollback {info.get('rollbacks', '?')}"
    if info.get("max_rollbacks"):
        count += f" of {info['max_rollbacks']}"
    return (f"{what} at step {info.get('failed_at', event.step)}: rolled back to step "
            f"{info.get('to_step', event.step)}, learning rate x{info.get('lr_scale', 1.0):g} ({count})")


def copy_figures(att: Attribution) -> str:
    """``23.2% copied, longest 144 chars``, or why a sample was not highlighted."""
    if not att.sources:
        return "not highlighted (the library is too large to index)"
    longest = 0 if att.longest is None else att.longest.length
    return f"{att.copy_rate:.1%} copied, longest {longest} chars"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def hms(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    s = max(int(round(seconds)), 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
