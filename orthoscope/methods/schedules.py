"""Learning-rate schedules for long runs: ``torch.optim.lr_scheduler.LambdaLR`` driven by a ``Run``, checkpointed.

    add_schedule(run, warmup=100, decay="cosine", min_ratio=0.1, total=10_000)

Every parameter group's learning rate is ``base_lr × f(step)``: a linear warmup from ``1/warmup`` to 1 over
``warmup`` steps, then ``decay`` ("constant", "linear" or "cosine") from 1 to ``min_ratio`` at step ``total``
(held there afterwards). The scheduler steps after every update (an ``Intervention``), and its ``state_dict`` travels
in the run's checkpoint as JSON bytes, so a resumed run continues the same curve.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from .base import Intervention
from ..core.validate import ConfigError, bounded, shown_key

DECAYS = ("constant", "linear", "cosine")
SCHEDULE_KEYS = ("warmup", "decay", "min_ratio", "total")


def check_schedule(spec) -> None:
    """Raise ``ConfigError`` naming the key for a malformed ``schedule`` section (None is allowed: no schedule)."""
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise ConfigError(f"schedule must be null or a mapping with keys {list(SCHEDULE_KEYS)}, got {bounded(spec)}")
    unknown = [k for k in spec if k not in SCHEDULE_KEYS]
    if unknown:
        raise ConfigError(f"schedule.{shown_key(unknown[0])}: unknown key; valid keys: {list(SCHEDULE_KEYS)}")
    warmup, decay = spec.get("warmup", 0), spec.get("decay", "cosine")
    min_ratio, total = spec.get("min_ratio", 0.1), spec.get("total")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ConfigError(f"schedule.warmup must be an integer >= 0, got {bounded(warmup)}")
    if not isinstance(decay, str) or decay not in DECAYS:
        raise ConfigError(f"schedule.decay must be one of {list(DECAYS)}, got {bounded(decay)}")
    if not isinstance(min_ratio, (int, float)) or isinstance(min_ratio, bool) or not 0 <= min_ratio <= 1:
        raise ConfigError(f"schedule.min_ratio must be a number in [0, 1], got {bounded(min_ratio)}")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total <= warmup):
        raise ConfigError(f"schedule.total must be null (the run's steps) or an integer > warmup ({warmup}), "
                          f"got {bounded(total)}")


@dataclass
class LRFactor:
    """``f(step)``: the multiplier of every base learning rate (module docstring). Picklable and pure."""

    warmup: int
    decay: str
    min_ratio: float
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 1.0 - progress if self.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * shape


class LRSchedule(Intervention):
    """Steps a ``LambdaLR`` over ``optimizer`` after every update; its state is checkpointed as JSON bytes."""

    scheduled_hyperparameters = ("lr",)        # checkpoints hold the scheduled lr, not the method's (run_state)

    def __init__(self, optimizer: torch.optim.Optimizer, factor: LRFactor):
        self.factor = factor
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def after_step(self, run) -> None:
        self.scheduler.step()

    def spec(self) -> dict:
        f = self.factor
        return {"warmup": f.warmup, "decay": f.decay, "min_ratio": f.min_ratio, "total": f.total}

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
        return {"scheduler": torch.frombuffer(bytearray(json.dumps(state).encode()), dtype=torch.uint8)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "scheduler" in state:
            saved = json.loads(bytes(state["scheduler"].tolist()).decode())
            self.scheduler.load_state_dict({**saved, "lr_lambdas": [None] * len(self.scheduler.lr_lambdas)})


def add_schedule(run, warmup: int = 0, decay: str = "cosine", min_ratio: float = 0.1, total: int | None = None):
    """Attach a learning-rate schedule to ``run`` (module docstring); returns the ``LRSchedule``.

    ``total`` defaults to the run's planned steps (``run.config_extra["steps"]``) when the run came from a config."""
    spec = {"warmup": warmup, "decay": decay, "min_ratio": min_ratio, "total": total}
    check_schedule(spec)
    if total is None:
        total = getattr(run, "config_extra", {}).get("steps")
        if total is None:
            raise ValueError("add_schedule needs total= (the step at which the decay ends)")
    schedule = LRSchedule(run.optimizer, LRFactor(warmup, decay, float(min_ratio), int(total)))
    run.interventions.append(schedule)
    return schedule
