"""A resource model for neural scaling laws (Song, Liu, Tegmark & Gore 2024; arXiv 2402.05164).

**Claim** (abstract): a task decomposes into subtasks that compete for neurons. On toy problems (1) a subtask's
loss is inversely proportional to the number of neurons allocated to it, ``ℓ_k ∝ 1/N_k``; (2) in a composite task
every subtask's allocation grows in proportion as the model grows (constant ratios). Together: ``ℓ = Σ_k ℓ_k ∝
N^(−1)`` in the total number of allocated neurons — and, with width–depth scaling ``N_p ∝ N³``, ``ℓ ∝ N_p^(−1/3)``,
Chinchilla's exponent.

**What was recoverable of the toy** (no official code; the paper's text was not in the stored sources; the IAIFI
summary of the paper describes it): a one-hidden-layer network regressing ``y = x²`` with a **sparsity penalty**
whose strength α sets how many hidden neurons the network uses; a neuron counts as allocated when its weights exceed
**1e-3**; composite tasks put subtasks "in parallel" (done at the same time) or "in series" (one feeding the
other). Everything else here is our reconstruction, stated where it is chosen:

* **data** — ``n_train`` points uniform on ``[−1, 1]^k`` (float64), one input coordinate per subtask, a fresh test
  set of the same size;
* **parallel composite** — subtask k maps ``x_k`` to ``y_k = s_k x_k²`` (``scales`` s_k make the subtasks unequal),
  all from one shared hidden layer ``k → width → k``; the loss is the mean of the subtask MSEs;
* **model** — SiLU hidden layer (a smooth activation, as the lottery-ticket paper of the same group used for x²), or
  ReLU (``activation="relu"``: the second try, below);
* **sparsity** — ``α Σ |W|`` over both weight matrices (L1, biases free), applied by a proximal soft-threshold after
  every Adam step, so unused weights become exactly 0 (a plain L1 subgradient leaves them hovering at the step
  size);
* **allocation** — neuron i is allocated to subtask k when ``|W_in[i, k]| > 1e-3`` and ``|W_out[k, i]| > 1e-3``;
* **loss measured** — the test MSE *without* the penalty.

**A control that settles what the loss measures here** (``retrain``): prune every weight at or below the threshold,
then retrain the surviving weights *without* the penalty (Adam, cosine decay, the pruned ones held at 0). If the loss
were limited by the number of neurons, as ``ℓ ∝ 1/N`` says, it would stay ∝ 1/N. It does not: after 3,000 retraining
steps subtask 1 (y = x²) sits at 1.6–3.4e-5 test MSE for every allocation from 53 neurons down to 3
(REPRODUCTIONS.md) — two or three SiLU neurons already fit x² to the optimizer's floor, so the penalized runs' loss
is the L1 shrinkage's bias (set by α), not a capacity limit, and the loss-vs-neurons slope only traces how α sets
both. Under this reconstruction ``ℓ ∝ 1/N`` has no mechanism to show; the paper's toy (not recovered) must differ.

**Second try, ReLU** (2026-12-07): a ReLU net cannot fit x² with a few neurons (its error falls with the number of
kinks), so the count can limit the loss. It does — on x² alone the penalized runs and the retrained control agree —
but the slope is ≈ −1.6, not −1; the composite (shared 2-64-2 layer) trains to a ≈ 3e-5 floor above ~20 neurons,
slope ≈ −0.7, allocation share drifting (numbers: REPRODUCTIONS.md). So neither activation reproduces the paper
here. Where 1/N does hold — a 1/N-scaled layer of *independent* neurons (the Monte-Carlo error of a mean) — is in
``resource_meanfield`` (our construction of the mechanism, not the paper's experiment).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..methods.base import check_positive

THRESHOLD = 1e-3            # the paper's allocation threshold on weights


@dataclass
class CompositeSquares:
    """``k`` parallel subtasks ``y_k = s_k x_k²`` on ``x ~ U[−1, 1]^k`` (float64 train and test sets)."""

    scales: tuple = (1.0,)
    n_train: int = 1000
    seed: int = 0

    def __post_init__(self):
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {self.scales!r}")
        if not isinstance(self.n_train, int) or self.n_train < 2:
            raise ValueError(f"n_train must be an int ≥ 2, got {self.n_train!r}")
        g = torch.Generator().manual_seed(self.seed)
        k = len(self.scales)
        s = torch.tensor(self.scales, dtype=torch.float64)
        self.x_train = 2 * torch.rand(self.n_train, k, generator=g, dtype=torch.float64) - 1
        self.x_test = 2 * torch.rand(self.n_train, k, generator=g, dtype=torch.float64) - 1
        self.y_train, self.y_test = s * self.x_train ** 2, s * self.x_test ** 2

    @property
    def k(self) -> int:
        return len(self.scales)


ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU}


def make_model(k: int, width: int, seed: int = 0, activation: str = "silu") -> nn.Sequential:
    """``k → width → k`` with a SiLU or ReLU hidden layer, float64."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(k, width), ACTIVATIONS[activation](), nn.Linear(width, k)).double()


@torch.no_grad()
def soft_threshold_(w: torch.Tensor, amount: float) -> None:
    """The L1 proximal step ``w ← sign(w) max(|w| − amount, 0)``."""
    w.copy_(torch.sign(w) * (w.abs() - amount).clamp_min(0.0))


def _cosine(lr: float, step: int, steps: int, min_ratio: float) -> float:
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * step / steps)))


def train(task: CompositeSquares, *, width: int = 64, alpha: float = 1e-4, steps: int = 4000, lr: float = 1e-2,
          min_ratio: float = 1e-3, seed: int = 0, activation: str = "silu") -> nn.Sequential:
    """Full-batch Adam on the mean subtask MSE with a cosine lr decay from ``lr`` to ``min_ratio·lr``; after every
    step the L1 proximal step with threshold ``lr_t · alpha`` on both weight matrices."""
    check_positive("steps", steps)
    check_positive("alpha", alpha, allow_zero=True)
    model = make_model(task.k, width, seed, activation)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    weights = [model[0].weight, model[2].weight]
    for step in range(steps):
        lr_t = _cosine(lr, step, steps, min_ratio)
        for group in opt.param_groups:
            group["lr"] = lr_t
        opt.zero_grad()
        torch.mean((model(task.x_train) - task.y_train) ** 2).backward()
        opt.step()
        for w in weights:
            soft_threshold_(w, lr_t * alpha)
    return model


def retrain(model: nn.Sequential, task: CompositeSquares, *, steps: int = 3000, lr: float = 1e-3,
            threshold: float = THRESHOLD) -> nn.Sequential:
    """Prune, then retrain without the penalty: weights with ``|w| ≤ threshold`` are set to 0 and held there (masked
    after every step); the rest, and the biases, are trained by full-batch Adam with a cosine decay to 0. In place;
    returns ``model``. The allocation (``allocation``) cannot grow."""
    check_positive("steps", steps)
    weights = [model[0].weight, model[2].weight]
    masks = [(w.detach().abs() > threshold).to(w.dtype) for w in weights]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps + 1):
        with torch.no_grad():
            for w, m in zip(weights, masks):
                w.mul_(m)
        if step == steps:
            break
        for group in opt.param_groups:
            group["lr"] = _cosine(lr, step, steps, 0.0)
        opt.zero_grad()
        torch.mean((model(task.x_train) - task.y_train) ** 2).backward()
        opt.step()
    return model


@torch.no_grad()
def allocation(model: nn.Sequential, threshold: float = THRESHOLD) -> list[int]:
    """Neurons allocated to each subtask: ``|W_in[i, k]| > threshold`` and ``|W_out[k, i]| > threshold``."""
    w_in, w_out = model[0].weight.abs(), model[2].weight.abs()          # [width, k], [k, width]
    return [int(((w_in[:, k] > threshold) & (w_out[k] > threshold)).sum()) for k in range(w_in.shape[1])]


@torch.no_grad()
def subtask_losses(model: nn.Sequential, task: CompositeSquares) -> list[float]:
    """Test MSE of each subtask (no penalty)."""
    return torch.mean((model(task.x_test) - task.y_test) ** 2, 0).tolist()


def sweep_alpha(alphas, *, scales=(1.0,), width: int = 64, steps: int = 4000, n_train: int = 1000, seeds=(0,),
                retrain_steps: int = 0, **kwargs) -> list[dict]:
    """One trained network per (α, seed): its allocation and test loss per subtask and in total (the sum). With
    ``retrain_steps`` > 0 each row also has ``retrained_losses`` / ``retrained_total``: the same network pruned and
    retrained without the penalty (``retrain``) — the loss its allocated neurons can reach."""
    rows = []
    task = CompositeSquares(tuple(scales), n_train)
    for seed in seeds:
        for alpha in alphas:
            model = train(task, width=width, alpha=alpha, steps=steps, seed=seed, **kwargs)
            n_k, l_k = allocation(model), subtask_losses(model, task)
            row = dict(alpha=alpha, seed=seed, neurons=n_k, losses=l_k, total_neurons=sum(n_k), total_loss=sum(l_k))
            if retrain_steps:
                lr_k = subtask_losses(retrain(model, task, steps=retrain_steps), task)
                row.update(retrained_losses=lr_k, retrained_total=sum(lr_k))
            rows.append(row)
    return rows


def fit_loss_vs_neurons(rows, subtask: int | None = None):
    """Power-law fit of loss against allocated neurons (a subtask's, or the totals with ``subtask=None``) over the
    rows with at least one allocated neuron; ``orthoscope.zoo.scaling.fit_power_law``."""
    from .scaling import fit_power_law

    if subtask is None:
        pts = [(r["total_neurons"], r["total_loss"]) for r in rows if r["total_neurons"] > 0]
    else:
        pts = [(r["neurons"][subtask], r["losses"][subtask]) for r in rows if r["neurons"][subtask] > 0]
    if len({n for n, _ in pts}) < 2 or len(pts) < 3:
        raise ValueError(f"need ≥ 3 runs with ≥ 2 distinct allocations for a fit, got {pts}")
    return fit_power_law([n for n, _ in pts], [v for _, v in pts])


def allocation_ratios(rows) -> np.ndarray:
    """``N_k / Σ N`` per row (runs with no allocated neuron are dropped): constant across α if growth is
    homogeneous."""
    return np.array([[n / r["total_neurons"] for n in r["neurons"]] for r in rows if r["total_neurons"] > 0])


# ---- plots (pure) ---------------------------------------------------------------------------------------------
def plot_loss_vs_neurons(ax, rows, fit=None):
    """Each subtask's test loss against its allocated neurons, and the totals, on log-log axes, with a 1/N guide.
    Returns ``ax``."""
    k = len(rows[0]["neurons"])
    for sub in range(k):
        pts = [(r["neurons"][sub], r["losses"][sub]) for r in rows if r["neurons"][sub] > 0]
        ax.loglog(*zip(*pts), "o", ms=4, label=f"subtask {sub}")
    tot = [(r["total_neurons"], r["total_loss"]) for r in rows if r["total_neurons"] > 0]
    ax.loglog(*zip(*tot), "k^", ms=5, label="total")
    n = np.array(sorted({t for t, _ in tot}), dtype=float)
    ref = fit.prefactor * n ** fit.slope if fit is not None else tot[0][1] * tot[0][0] / n
    ax.loglog(n, ref, "k:", lw=1, label=f"fit slope {fit.slope:+.2f}" if fit is not None else "∝ 1/N")
    ax.set_xlabel("allocated neurons")
    ax.set_ylabel("test MSE")
    ax.legend(fontsize=8)
    return ax
