"""A Neural Scaling Law from Lottery Ticket Ensembling (Liu & Tegmark 2023; arXiv 2310.02258) — the y = x² toy.

**Claim.** Approximation theory (Sharma & Kaplan) predicts MSE ∝ N^(−4/d) = N^(−4) for a 1-D target, but a
two-layer network fitted to ``y = x²`` scales as **N^(−1)** in its width N. The proposed mechanism: with a smooth
activation σ (σ''(0) ≠ 0), a symmetric pair of neurons ``σ(ax) + σ(−ax) = 2σ(0) + σ''(0)a²x² + O(a⁴x⁴)`` is a
"lottery ticket" for x²; a wide network holds ~N such tickets with random residual errors, and their ensemble
averages the error down like 1/N (a central-limit effect).

**Caveat.** The authors' own note on the arXiv abstract reads: *"the theory in this paper is questionable; we are
trying our best to fix it. Empirical results still stand."* We reproduce the empirical scaling only.

**Setting.** No official code was found, and the stored copies of the paper's text that we could search (the
hf-mirror markdown and ar5iv HTML of arXiv 2310.02258, searched 2026-11-23) reach only the abstract and the opening
of the introduction: activation, input range and sampling, optimizer, steps, seeds and how the exponent is fitted
were *not* recovered. The setting here (SiLU, x on a uniform grid in [−1, 1], full-batch Adam with cosine decay) is
our reconstruction. What the abstract does fix: N is the parameter count of Sharma & Kaplan's law (a ``1 → N → 1``
net has 3N + 1 parameters, so the exponent in width and in parameters agree up to that offset), and ReLU networks
are said to follow approximation theory (N^(−4) in 1-D) — ``train(..., activation="relu")`` is that control.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..methods.base import check_positive
from ..tasks.base import Task


@dataclass
class Square1D(Task):
    """``y = x²`` on ``n_train`` evenly spaced points of ``[lo, hi]`` (float64); test on a 4× finer grid offset
    by half a step (so no test point is a training point)."""

    n_train: int = field(default=1000, metadata={"help": "training grid size"})
    lo: float = field(default=-1.0, metadata={"help": "left end of the interval"})
    hi: float = field(default=1.0, metadata={"help": "right end of the interval"})

    default_loss = "mse"
    has_accuracy = False

    def __post_init__(self):
        self._check_batch_size()
        if not isinstance(self.n_train, int) or self.n_train < 2:
            raise ValueError(f"n_train must be an int ≥ 2, got {self.n_train!r}")
        if not self.lo < self.hi:
            raise ValueError(f"need lo < hi, got lo={self.lo!r}, hi={self.hi!r}")
        self.x_train = torch.linspace(self.lo, self.hi, self.n_train, dtype=torch.float64)[:, None]
        n_test = 4 * self.n_train
        step = (self.hi - self.lo) / n_test
        self.x_test = torch.linspace(self.lo + step / 2, self.hi - step / 2, n_test, dtype=torch.float64)[:, None]
        self.y_train, self.y_test = self.x_train ** 2, self.x_test ** 2


def make_model(width: int, activation: str = "silu", seed: int = 0):
    """``1 → width → 1`` MLP in float64."""
    from ..models import MLP

    if not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive int, got {width!r}")
    torch.manual_seed(seed)
    return MLP(1, (width,), 1, activation=activation).double()


def train(width: int, *, steps: int = 5000, lr: float = 1e-2, min_ratio: float = 1e-3, activation: str = "silu",
          n_train: int = 1000, seed: int = 0, progress: bool = False):
    """Full-batch Adam with a cosine decay from ``lr`` to ``min_ratio·lr`` (a constant lr leaves an Adam noise
    floor that hides the width dependence); returns the ``Run`` (``test_mse(run)`` evaluates it)."""
    from ..training.run import Run
    from .common import ScheduledAdamW

    check_positive("steps", steps)
    task = Square1D(n_train=n_train)
    model = make_model(width, activation, seed)
    method = ScheduledAdamW(lr=lr, betas=(0.9, 0.999), total=steps, min_ratio=min_ratio)
    run = Run(model, task, method, probes=[], seed=seed, name=f"width {width}")
    return run.train(steps, progress=progress)


@torch.no_grad()
def test_mse(run) -> float:
    return torch.mean((run.model(run.task.x_test) - run.task.y_test) ** 2).item()


def mse_vs_width(widths, *, seeds=(0,), progress: bool = True, **kwargs):
    """``orthoscope.zoo.scaling.sweep`` over widths; metric ``mse`` (held-out)."""
    from .scaling import sweep

    return sweep(lambda w, s: {"mse": test_mse(train(int(w), seed=s, **kwargs))}, widths, seeds, progress=progress,
                 desc="y = x² width")


@dataclass
class SeedSlopes:
    """One power-law slope of held-out MSE vs width per seed, and their median and spread. The pooled fit over
    all seeds hides how much a single seed's line can swing (one badly fitted width moves it by ±1)."""

    seeds: list[int]
    slopes: list[float]

    @property
    def median(self) -> float:
        import statistics

        return statistics.median(self.slopes)

    @property
    def spread(self) -> tuple[float, float]:
        """(min, max) over seeds."""
        return min(self.slopes), max(self.slopes)

    def __str__(self) -> str:
        lo, hi = self.spread
        return (f"median slope {self.median:.2f} over {len(self.slopes)} seeds (range {lo:.2f} … {hi:.2f}; "
                f"per seed {', '.join(f'{s:.2f}' for s in self.slopes)})")


def slopes_by_seed(res, metric: str = "mse") -> SeedSlopes:
    """Fit ``metric ∝ width^slope`` separately for every seed of a ``sweep`` result (log-log least squares)."""
    from .scaling import fit_power_law

    seeds = sorted({r["seed"] for r in res.records})
    slopes = []
    for seed in seeds:
        rows = sorted((r["size"], r[metric]) for r in res.records if r["seed"] == seed)
        if len(rows) < 3:
            raise ValueError(f"seed {seed} has {len(rows)} width(s); a per-seed fit needs at least three")
        slopes.append(fit_power_law([w for w, _ in rows], [v for _, v in rows]).slope)
    return SeedSlopes(seeds, slopes)
