"""Superposition yields robust neural scaling (Liu, Liu, Gore 2025; arXiv 2505.10465; code liuyz0/SuperpositionScaling).

**Data.** ``n`` features, each active independently with probability ``p_i ∝ i^(−a)`` (``Σ p_i = 1``, so about one
feature is active per sample; ``density`` scales that), with value ``U(0, 2)`` when active:
``x_i = Bernoulli(p_i) · U(0, 2)``. The target is the input itself.

**Model** (Anthropic's toy with ``m < n`` hidden dimensions): ``ŷ = ReLU(W Wᵀ x + b)``, ``W ∈ R^{n×m}``
(init ``N(0, 1/m)``), ``b ∈ R^n`` (init ``N(0, 1)``); loss ``mean (ŷ − x)²`` over batch and features.
``W`` is stored as ``features.weight`` of an ``nn.Linear(m, n)`` so weight probes and spectra see it.

**Weight decay controls superposition** (the paper's custom AdamW, applied to ``W`` only, before the Adam update,
with the scheduled lr):

* ``wd ≥ 0``: ``W ← W (1 − lr·wd)`` — rare features decay to zero norm: *weak* superposition,
  ``L ≈ Σ_{i > m} p_i ∝ m^{−(a−1)}``;
* ``wd < 0``: ``W_i ← W_i + lr·wd·W_i (1 − 1/‖W_i‖)`` — every row is pulled to unit norm, all ``n`` features are
  represented and overlap: *strong* superposition, ``L ∝ 1/m`` because squared overlaps of ``n ≫ m`` unit vectors
  scale as ``1/m``. (Plain ``W ← W(1 − lr·wd)`` with ``wd < 0`` grows without bound.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..methods.base import Intervention, Method, check_positive
from ..probes.base import Probe
from ..tasks.base import Task
from .common import WarmupCosine, zipf_frequencies


# ---- task -----------------------------------------------------------------------------------------------------
def sample_features(p: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``x_i = Bernoulli(p_i) · U(0, 2)`` from ONE uniform per entry: with ``u ~ U(0,1)``, ``x_i = 2u/p_i`` if
    ``u < p_i`` else 0. Exact in distribution — given ``u < p``, ``u/p`` is ``U(0,1)`` — and half the RNG cost."""
    u = torch.rand(batch, p.numel(), generator=generator)
    p32 = p.to(torch.float32)
    return torch.where(u < p32, 2.0 * u / p32, torch.zeros(()))


@dataclass
class Superposition(Task):
    """Sparse features with Zipf frequencies; ``batch`` returns ``(x, x)`` (autoencoding)."""

    n_features: int = field(default=1000, metadata={"help": "number of features n"})
    exponent: float = field(default=1.2, metadata={"help": "p_i ∝ i^(−exponent) (the paper's 1 + α), > 0"})
    density: float = field(default=1.0, metadata={"help": "expected number of active features per sample"})
    batch_size: int | None = field(default=512, metadata={"help": "fresh samples per step"})
    eval_size: int = field(default=8192, metadata={"help": "size of the fixed evaluation batch"})
    seed: int = field(default=0, metadata={"help": "seed of the evaluation batch"})

    default_loss = "mse"
    has_accuracy = False

    def __post_init__(self):
        if not isinstance(self.n_features, int) or self.n_features <= 0:
            raise ValueError(f"n_features must be a positive int, got {self.n_features!r}")
        check_positive("density", self.density)
        if self.batch_size is None or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int (data are sampled fresh), got {self.batch_size!r}")
        self.probs = zipf_frequencies(self.n_features, self.exponent) * self.density
        if self.probs.max() > 1:
            raise ValueError(f"density={self.density} makes p_1 = {self.probs.max().item():.3f} > 1")
        x = sample_features(self.probs, self.eval_size, torch.Generator().manual_seed(self.seed))
        self.x_test = self.y_test = x

    def batch(self, generator: torch.Generator):
        x = sample_features(self.probs, self.batch_size, generator)
        return x, x

    def eval_sets(self):
        return {"test": (self.x_test, self.y_test)}


# ---- model ----------------------------------------------------------------------------------------------------
class SuperpositionModel(nn.Module):
    """``ReLU(x W Wᵀ + b)`` with ``W = features.weight`` of shape ``[n, m]``; needs ``m ≤ n``."""

    def __init__(self, n_features: int, m: int, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(m, int) or m <= 0:
            raise ValueError(f"m (hidden dims) must be a positive int, got {m!r}")
        if n_features < m:
            raise ValueError(f"superposition needs n_features ≥ m, got n_features={n_features} < m={m}")
        self.features = nn.Linear(m, n_features)
        with torch.no_grad():
            self.features.weight.copy_(torch.randn(n_features, m, generator=generator) / math.sqrt(m))
            self.features.bias.copy_(torch.randn(n_features, generator=generator))

    @property
    def W(self) -> torch.Tensor:
        return self.features.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.features.weight                       # (B, m): the compressed code
        return F.relu(self.features(h))                    # (B, n): h Wᵀ + b


# ---- the paper's weight-decay rule and method -----------------------------------------------------------------
@dataclass
class RowNormDecay(Intervention):
    """Decay of the feature matrix before each update (see module docstring); ``wd < 0`` pulls rows to unit norm.
    Uses the lr of the optimizer's first param group, so it follows a schedule set earlier in the same step."""

    weight_decay: float
    param: str = "features.weight"
    eps: float = 1e-8

    def before_step(self, run) -> None:
        w = run.model.get_parameter(self.param)
        lr = run.optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            row_norm_decay_(w, lr, self.weight_decay, self.eps)


def row_norm_decay_(w: torch.Tensor, lr: float, wd: float, eps: float = 1e-8) -> torch.Tensor:
    """In place: ``w ← w(1 − lr·wd)`` for ``wd ≥ 0``; ``w_i ← w_i + lr·wd·w_i(1 − 1/(‖w_i‖ + eps))`` for ``wd < 0``."""
    if wd >= 0:
        return w.mul_(1.0 - lr * wd)
    norms = w.norm(dim=1, keepdim=True) + eps
    return w.add_(w * (1.0 - 1.0 / norms), alpha=lr * wd)


@dataclass
class SuperpositionAdamW(Method):
    """Adam (β = 0.9, 0.999) with the paper's weight-decay rule on ``W`` (none on ``b``), linear warmup and cosine
    decay to ``min_ratio·lr`` over ``total_steps``."""

    lr: float = field(default=1e-2, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=-1.0, metadata={"help": "< 0: strong superposition; ≥ 0: weak"})
    total_steps: int = field(default=4000, metadata={"help": "length of the cosine schedule"})
    warmup: int = field(default=400, metadata={"help": "linear warmup steps"})
    min_ratio: float = field(default=0.05, metadata={"help": "final lr as a fraction of lr"})

    def __post_init__(self):
        check_positive("lr", self.lr)
        check_positive("total_steps", self.total_steps)

    def make_optimizer(self, model):
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.lr, betas=(0.9, 0.999))

    def interventions(self, model=None):
        return [WarmupCosine(self.lr, self.total_steps, self.warmup, self.min_ratio),
                RowNormDecay(self.weight_decay), *super().interventions(model)]


# ---- probes ---------------------------------------------------------------------------------------------------
def feature_geometry(w: torch.Tensor, threshold: float = 0.5) -> dict[str, torch.Tensor | float]:
    """Feature norms ``‖W_i‖``, the fraction represented (norm > ``threshold``), and the interference
    ``Σ_{j≠i} (Ŵ_i · W_j)²`` per feature (how much other features leak into feature i's readout), with its mean
    over represented features. For ``n ≫ m`` random unit rows the mean interference is ≈ ``(n − 1)/m``."""
    norms = w.norm(dim=1)
    unit = w / norms.clamp_min(1e-12)[:, None]
    overlap = (unit @ w.T) ** 2
    interference = overlap.sum(1) - overlap.diagonal()
    rep = norms > threshold
    return {"norms": norms, "interference": interference, "represented": rep.float().mean().item(),
            "mean_interference": interference[rep].mean().item() if rep.any() else float("nan")}


class FeatureGeometry(Probe):
    """``feature_norm/features`` (array), ``represented/features``, ``interference/features`` (mean over represented)."""

    name = "feature_geometry"

    def __init__(self, every: int = 100, threshold: float = 0.5):
        super().__init__(every)
        self.threshold = threshold

    @torch.no_grad()
    def __call__(self, run) -> dict:
        g = feature_geometry(run.model.features.weight, self.threshold)
        return {"feature_norm/features": g["norms"], "represented/features": g["represented"],
                "interference/features": g["mean_interference"]}


# ---- one run and the sweep ------------------------------------------------------------------------------------
def train(m: int, *, n_features: int = 1000, exponent: float = 1.2, weight_decay: float = -1.0, steps: int = 4000,
          batch_size: int = 512, lr: float = 1e-2, warmup_frac: float = 0.1, seed: int = 0, probes=(),
          progress: bool = False):
    """Train one toy of width ``m``; returns the ``Run`` (``final_loss(run)`` evaluates it)."""
    from ..training.run import Run

    task = Superposition(n_features=n_features, exponent=exponent, batch_size=batch_size, seed=seed + 10_000)
    model = SuperpositionModel(n_features, m, generator=torch.Generator().manual_seed(seed))
    method = SuperpositionAdamW(lr=lr, weight_decay=weight_decay, total_steps=steps, warmup=int(warmup_frac * steps))
    run = Run(model, task, method, probes=list(probes), seed=seed, name=f"m={m}, wd={weight_decay:g}")
    return run.train(steps, progress=progress)


@torch.no_grad()
def final_loss(run) -> float:
    x, y = run.task.x_test, run.task.y_test
    return run.loss_fn(run.model(x), y).item()


def loss_vs_m(ms, *, seeds=(0,), progress: bool = True, **kwargs):
    """``orthoscope.zoo.scaling.sweep`` over widths: metrics ``loss``, ``represented``, ``interference``."""
    from .scaling import sweep

    def one(m, seed):
        run = train(int(m), seed=seed, **kwargs)
        g = feature_geometry(run.model.features.weight.detach())
        return {"loss": final_loss(run), "represented": g["represented"], "interference": g["mean_interference"]}

    return sweep(one, ms, seeds, progress=progress, desc="superposition m")


@dataclass
class SlopeProfile:
    """How straight ``log L`` vs ``log m`` is: the slope between neighbouring widths (on per-width means over seeds)
    and a quadratic fit ``log L = a + b·log m + c·(log m)²`` (natural logs) whose local slope is ``b + 2c·log m``; a
    power law has ``c = 0`` and equal local slopes."""

    ms: list[float]
    mean_loss: list[float]
    local: list[float]                 # slope between ms[i] and ms[i+1]
    curvature: float                   # c
    quadratic_slope: list[float]       # b + 2c log m at each m
    overall: object                    # the straight power-law fit over all points (PowerLawFit)

    def __str__(self) -> str:
        pairs = ", ".join(f"{a:g}→{b:g}: {s:+.2f}" for a, b, s in zip(self.ms, self.ms[1:], self.local))
        return (f"straight fit {self.overall}; local slopes {pairs}; curvature c = {self.curvature:+.3f} per "
                f"(ln m)² (local slope of the quadratic fit {self.quadratic_slope[0]:+.2f} at m = {self.ms[0]:g} "
                f"→ {self.quadratic_slope[-1]:+.2f} at m = {self.ms[-1]:g})")


def slope_profile(result, metric: str = "loss") -> SlopeProfile:
    """``SlopeProfile`` of a ``loss_vs_m`` sweep (needs ≥ 3 widths)."""
    import numpy as np

    from .scaling import fit_power_law

    ms, mean = result.mean(metric)
    if len(ms) < 3:
        raise ValueError(f"a slope profile needs at least 3 widths, got {list(ms)}")
    lm, ll = np.log(ms), np.log(mean)
    local = list(np.diff(ll) / np.diff(lm))
    x, y = result.points(metric)
    c, b, _ = np.polyfit(np.log(x), np.log(y), 2)
    return SlopeProfile(list(map(float, ms)), list(map(float, mean)), [float(v) for v in local], float(c),
                        [float(b + 2 * c * v) for v in lm], fit_power_law(x, y))


# ---- plots (pure) ---------------------------------------------------------------------------------------------
def plot_feature_norms(ax, model: SuperpositionModel, probs: torch.Tensor | None = None):
    """Feature norm ``‖W_i‖`` against feature rank i (and frequency ``p_i`` on a twin axis). Returns ``ax``."""
    g = feature_geometry(model.features.weight.detach())
    ax.plot(range(1, len(g["norms"]) + 1), g["norms"].numpy(), ".", ms=3, label="‖W_i‖")
    ax.set_xscale("log")
    ax.set_xlabel("feature rank i (most frequent first)")
    ax.set_ylabel("‖W_i‖")
    ax.set_title(f"represented {g['represented']:.0%}, mean interference {g['mean_interference']:.2f}")
    if probs is not None:
        tw = ax.twinx()
        tw.plot(range(1, len(probs) + 1), probs.numpy(), color="gray", lw=1)
        tw.set_yscale("log")
        tw.set_ylabel("p_i", color="gray")
    return ax


def plot_interference(ax, model: SuperpositionModel, k: int = 64):
    """Heat map of ``W Wᵀ`` for the ``k`` most frequent features: a unit diagonal with small off-diagonal leaks is
    strong superposition; zero rows below the diagonal are unrepresented features (weak). Returns ``ax``."""
    w = model.features.weight.detach()[:k]
    gram = (w @ w.T).numpy()
    im = ax.imshow(gram, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_title(f"W Wᵀ (first {len(w)} features)")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax
