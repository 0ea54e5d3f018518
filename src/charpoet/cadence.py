"""How often something happens during training: a duration or a number of steps.

    Cadence.parse("3m")        every 3 minutes of training time
    Cadence.parse("20s")       every 20 seconds;  "1h", "1h30m", "90" (seconds) work too
    Cadence.parse("500steps")  every 500 optimizer steps ("500 steps", "500step")
    Cadence.parse("off")       never ("0" too)

Training time is the run's elapsed training time (evaluation and sampling excluded), so
a cadence keeps its meaning across restarts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from charpoet.errors import ConfigError

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(h|min|m|sec|s)")
_STEPS = re.compile(r"(\d+)\s*steps?")


@dataclass(frozen=True)
class Cadence:
    """Every ``amount`` seconds or steps; ``unit`` is "seconds", "steps" or "off"."""

    unit: str
    amount: float = 0.0

    @classmethod
    def parse(cls, text: str, flag: str = "cadence") -> Cadence:
        value = str(text).strip().lower()
        if value in ("off", "never", "none", "0", "0s", "0steps"):
            return cls("off")
        if m := _STEPS.fullmatch(value):
            steps = int(m.group(1))
            return cls("steps", float(steps)) if steps > 0 else cls("off")
        if re.fullmatch(r"\d+(?:\.\d*)?", value):
            return cls("seconds", float(value)) if float(value) > 0 else cls("off")
        parts = _DURATION.findall(value)
        if parts and _DURATION.sub("", value).strip() == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
            return cls("seconds", seconds) if seconds > 0 else cls("off")
        raise ConfigError(
            f"--{flag} must be a duration (20s, 3m, 1h30m), a step count (500steps) or off; got {text!r}"
        )

    def __str__(self) -> str:
        if self.unit == "off":
            return "off"
        if self.unit == "steps":
            return f"{int(self.amount)}steps"
        return f"{self.amount:g}s"

    @property
    def enabled(self) -> bool:
        return self.unit != "off"

    def due(self, step: int, elapsed: float, last_step: int, last_elapsed: float) -> bool:
        """Whether it is time again, given the step and training time of the last occurrence.

        Step cadences fire on multiples of the count (500, 1000, ...), so a resumed run
        evaluates at the same steps as an uninterrupted one; durations count from the last time.
        """
        if self.unit == "steps":
            return step // int(self.amount) > last_step // int(self.amount)
        if self.unit == "seconds":
            return elapsed - last_elapsed >= self.amount
        return False
