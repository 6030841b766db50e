"""Pieces several toys share: Zipf frequencies, a warmup + cosine learning-rate schedule as an intervention,
first-crossing times, and a quiet ``train`` helper."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..methods.base import AdamW, Intervention, check_positive


def zipf_frequencies(n: int, exponent: float, *, offset: int = 0) -> torch.Tensor:
    """``p_i ∝ (i + offset)^(−exponent)`` for ``i = 1..n``, normalized so ``Σ p_i = 1`` (float64)."""
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not exponent > 0:
        raise ValueError(f"Zipf exponent must be > 0, got {exponent!r} (p_i ∝ i^(−exponent) must decrease)")
    i = torch.arange(1, n + 1, dtype=torch.float64) + offset
    p = i ** (-float(exponent))
    return p / p.sum()


@dataclass
class WarmupCosine(Intervention):
    """Sets every param group's lr before each update: linear warmup over ``warmup`` steps, then cosine decay from
    ``lr`` to ``min_ratio · lr`` at ``total`` steps (the schedule of the superposition paper's ``get_lr``)."""

    lr: float
    total: int
    warmup: int = 0
    min_ratio: float = 0.05

    def __post_init__(self):
        check_positive("lr", self.lr)
        check_positive("total", self.total)
        check_positive("warmup", self.warmup, allow_zero=True)
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must lie in [0, 1], got {self.min_ratio!r}")

    def value(self, step: int) -> float:
        """lr for the update with 0-based index ``step`` (steps past ``total`` keep the final value)."""
        s = step + 1
        lo = self.min_ratio * self.lr
        if 0 < self.warmup < self.total:
            if s < self.warmup:
                return self.lr * s / self.warmup
            frac = (s - self.warmup) / (self.total - self.warmup)
        else:
            frac = s / self.total
        return lo + (self.lr - lo) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    def before_step(self, run) -> None:
        lr = self.value(run.step_count)
        for group in run.optimizer.param_groups:
            group["lr"] = lr


@dataclass
class ScheduledAdamW(AdamW):
    """``AdamW`` under ``WarmupCosine``: linear warmup over ``warmup`` steps, then cosine decay from ``lr`` to
    ``min_ratio · lr`` at step ``total`` — or, with ``total=None``, a constant ``lr`` after the warmup."""

    warmup: int = 0
    total: int | None = None
    min_ratio: float = 0.05

    def interventions(self, model=None):
        if self.total is None:
            sched = WarmupCosine(self.lr, total=10 ** 12, warmup=self.warmup, min_ratio=1.0)
        else:
            sched = WarmupCosine(self.lr, total=self.total, warmup=self.warmup, min_ratio=self.min_ratio)
        return [sched, *super().interventions(model)]


class BatchedAdamW(torch.optim.Optimizer):
    """AdamW for an *ensemble*: every parameter has a leading member axis ``K`` and each member has its own lr and
    weight decay (``lr``/``weight_decay`` are floats or length-K sequences, per param group). Member k's update is
    exactly ``torch.optim.AdamW``'s with ``lr[k]``, ``weight_decay[k]``:

        p ← p (1 − lr·wd);  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
        p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε)

    so one batched run of K members replaces K separate runs of a sweep (the sweep's K overheads become one)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @staticmethod
    def _per_member(value, p: torch.Tensor, name: str) -> torch.Tensor:
        v = torch.as_tensor(value, dtype=p.dtype)
        if v.dim() == 0:
            return v
        if v.dim() != 1 or v.numel() != p.shape[0]:
            raise ValueError(f"{name} must be a float or a length-{p.shape[0]} sequence (one per ensemble member), "
                             f"got shape {tuple(v.shape)}")
        return v.reshape(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                lr = self._per_member(group["lr"], p, "lr")
                wd = self._per_member(group["weight_decay"], p, "weight_decay")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(())
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()
                p.mul_(1 - lr * wd)
                state["exp_avg"].lerp_(p.grad, 1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - b2 ** t)).add_(group["eps"])
                p.sub_(lr / (1 - b1 ** t) * state["exp_avg"] / denom)
        return loss


def first_crossing(steps, values, threshold: float) -> int | None:
    """First step whose value is ≥ ``threshold`` (None if never): "the step at which accuracy reached 90 %"."""
    for s, v in zip(steps, values):
        if v >= threshold:
            return int(s)
    return None


def quiet_train(run, steps: int, progress: bool = False):
    """``run.train(steps)`` without a progress bar by default (sweeps show their own bar)."""
    return run.train(steps, progress=progress)
