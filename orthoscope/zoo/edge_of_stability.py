"""Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability (Cohen, Kaur, Li, Kolter & Talwalkar,
ICLR 2021; arXiv 2103.00065).

**Claim.** Full-batch gradient descent at step size η first *sharpens*: the top Hessian eigenvalue λ_max (the
sharpness) rises during training ("progressive sharpening"). It rises until it reaches 2/η — the value above which
GD on a quadratic of that curvature diverges — and then **hovers just above 2/η** for the rest of training, while
the loss keeps falling, non-monotonically over short times ("edge of stability"). The paper shows it on CIFAR-10
subsets (5k images) with fully connected tanh/ReLU networks, CNNs and transformers, for MSE and cross-entropy, for
several η (its Fig. 1: a tanh network, MSE, η = 2/30 … 2/200, sharpness settling at each 2/η).

**Our setting** (a CPU-minutes stand-in): sklearn's 8×8 digits (the package's ``Digits`` split, 1,000 training
images, pixels standardized per feature), a tanh MLP 64-200-200-10, MSE to one-hot targets (``mse_onehot``),
full-batch GD (``SGD`` without momentum) at three step sizes, and the ``Sharpness`` probe (Lanczos on the whole
training set) every ``every`` steps. The check: from the first measurement at which λ_max reaches 2/η, every
measurement from 200 steps after it first reached 2/η (the crossing overshoots briefly) lies within ±10 % of 2/η.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..methods.base import check_positive
from ..tasks.base import Task


@dataclass
class StandardizedDigits(Task):
    """``Digits`` (same seeded split) with every pixel standardized by the training set's mean and std, full batch.
    Standardized inputs make the network sharpen within a few hundred steps (the [0, 1] pixels sharpen slowly)."""

    n_train: int = field(default=1000, metadata={"help": "training images (the rest are held out)"})
    seed: int = field(default=0, metadata={"help": "seed of the train/test split"})

    n_classes = 10
    d_in = 64

    def __post_init__(self):
        from ..tasks.digits import Digits

        self._check_batch_size()
        raw = Digits(n_train=self.n_train, seed=self.seed)
        mean, std = raw.x_train.mean(0), raw.x_train.std(0) + 1e-6       # constant border pixels: std 0
        self.x_train, self.x_test = (raw.x_train - mean) / std, (raw.x_test - mean) / std
        self.y_train, self.y_test = raw.y_train, raw.y_test


def make_model(width: int = 200, depth: int = 2, seed: int = 0):
    """A tanh MLP 64 → width × depth → 10 (PyTorch's default init, seeded)."""
    from ..models import MLP

    torch.manual_seed(seed)
    return MLP(64, (width,) * depth, 10, activation="tanh")


def train(lr: float, *, steps: int = 3000, every: int = 100, width: int = 200, n_train: int = 1000, iters: int = 20,
          seed: int = 0, probes=(), progress: bool = False):
    """Full-batch GD at step size ``lr`` with the ``Sharpness`` probe every ``every`` steps (plus any ``probes``);
    returns the ``Run`` (its History: ``sharpness/total``, ``two_over_lr/total``, ``loss/batch``, …)."""
    from ..methods.base import SGD
    from ..probes.sharpness import Sharpness
    from ..training.run import Run

    check_positive("lr", lr)
    task = StandardizedDigits(n_train=n_train)
    probe = Sharpness((task.x_train, task.y_train), "mse_onehot", every=every, iters=iters, seed=seed)
    run = Run(make_model(width, seed=seed), task, SGD(lr=lr), loss="mse_onehot", probes=[probe, *probes], seed=seed,
              name=f"GD η = 2/{2 / lr:.3g}")
    return run.train(steps, progress=progress)


@dataclass
class EdgeOfStability:
    """Sharpness against 2/η in the edge-of-stability phase: ``reached`` (the first step with λ_max ≥ 2/η, None if
    never), ``ratios`` (λ_max/(2/η) at every measurement from ``reached + settle`` on), whether all lie within
    ``tolerance``, and ``crossing`` (the ratios of the ``settle`` steps right after crossing, not judged)."""

    lr: float
    reached: int | None
    ratios: list[float]
    tolerance: float = 0.1
    settle: int = 0
    crossing: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.reached is not None and len(self.ratios) >= 3 and \
            all(abs(r - 1) <= self.tolerance for r in self.ratios)

    def __str__(self) -> str:
        if self.reached is None:
            return f"η = 2/{2 / self.lr:.3g}: sharpness never reached 2/η"
        lo, hi = min(self.ratios), max(self.ratios)
        mean = sum(self.ratios) / len(self.ratios)
        overshoot = f" (largest in the {self.settle} steps after: {max(self.crossing):.3f})" if self.crossing else ""
        return (f"η = 2/{2 / self.lr:.3g}: λ_max reached 2/η at step {self.reached}{overshoot}; from step "
                f"{self.reached + self.settle} on λ_max·η/2 has mean {mean:.3f}, range {lo:.3f} … {hi:.3f} over "
                f"{len(self.ratios)} measurements")


def edge_of_stability(run, tolerance: float = 0.1, settle: int = 200) -> EdgeOfStability:
    """Read a run's sharpness and 2/η series. The phase starts ``settle`` steps after the first measurement with
    λ_max ≥ 2/η: right at the crossing λ_max overshoots for a few steps (the loss spikes, then GD self-stabilizes)
    before it hovers."""
    lam, edge = run.history["sharpness/total"], run.history["two_over_lr/total"]
    ratios = [s / e for s, e in zip(lam.values, edge.values)]
    first = next((i for i, r in enumerate(ratios) if r >= 1.0), None)
    lr = 2.0 / edge.values[-1]
    if first is None:
        return EdgeOfStability(lr, None, [], tolerance, settle)
    start = lam.steps[first] + settle
    return EdgeOfStability(lr, lam.steps[first], [r for s, r in zip(lam.steps, ratios) if s >= start], tolerance,
                           settle, [r for s, r in zip(lam.steps, ratios) if lam.steps[first] <= s < start])


__all__ = ["StandardizedDigits", "make_model", "train", "edge_of_stability", "EdgeOfStability"]
