"""Where ``ℓ ∝ 1/N`` has a mechanism: the Monte-Carlo error of a mean-field (1/N-scaled) ReLU layer.

This is **our construction**, not the paper's toy (Song, Liu, Tegmark & Gore 2024 — its body was not recovered;
``resource.py`` has our reconstruction of their sparsity toy, which does not give −1). It tests the "redundancy /
ensemble" picture that the resource model builds on (lottery-ticket ensembling; the mean-field limit of
Rotskoff & Vanden-Eijnden and Mei, Montanari & Nguyen): a layer ``f_N(x) = (1/N) Σ_i φ(x; θ_i)`` whose neurons
``θ_i`` are **independent** draws from a distribution μ with ``E_μ φ(x; θ) = f*(x)`` has, exactly,

    E ‖f_N − f*‖² = V / N,        V = E_x Var_μ φ(x; θ)

(the variance of a mean of N i.i.d. terms). For ``f* = s x²`` on [−1, 1] the ReLU representation is exact:
``x² = 1 − 2(x + 1) + ∫_{−1}^{1} 2 relu(x − t) dt``, so with knots ``t ~ U[−1, 1]`` (density ½) each neuron is
``φ(x; t) = s(1 − 2(x + 1) + 4 relu(x − t))``, ``E_t φ = s x²``, and with ``u = x + 1``:
``Var_t φ = s²(8u³/3 − u⁴)``, whose average over ``x ~ U[−1, 1]`` is ``V = (32/15) s²`` — the reference the tests
check the sampled error against.

**Composite task.** Subtask k gets N_k neurons and loss ``V_k/N_k``. Allocating a total N to minimise ``Σ V_k/N_k``
(Lagrange) gives ``N_k = N √V_k / Σ_j √V_j``: the allocation *ratios are constant* in N and the total loss is
``(Σ √V_k)² / N`` — the resource model's two claims, derived here from the mechanism, not observed in training.
``greedy_allocation`` adds neurons one at a time to the subtask whose expected loss falls most and reaches the same
ratios with integers.

**Trained counterpart** (``train_mean_field``): the same 1/N-scaled ReLU layer, all of ``a_i, w_i, b_i`` trained
jointly by full-batch gradient descent at the mean-field time scale (step ``lr·N`` per neuron). Training couples the
neurons (their errors cancel instead of averaging), so the loss need not follow 1/N; REPRODUCTIONS.md has what it
does.
"""
from __future__ import annotations

import numpy as np
import torch

from ..methods.base import check_positive
from .scaling import fit_power_law

V_UNIT = 32.0 / 15.0        # E_x Var_t φ(x; t) for s = 1 (module docstring)


def eval_grid(n: int = 501) -> torch.Tensor:
    """Evenly spaced points of [−1, 1] (float64): cell midpoints, so the MSE is the midpoint-rule x-average."""
    check_positive("n", n)
    return -1 + (2 * torch.arange(n, dtype=torch.float64) + 1) / n


def sample_knots(n_neurons: int, seed: int = 0) -> torch.Tensor:
    """``n_neurons`` i.i.d. knots ``t ~ U[−1, 1]`` (float64)."""
    check_positive("n_neurons", n_neurons)
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.rand(n_neurons, generator=g, dtype=torch.float64) - 1


def monte_carlo_square(x: torch.Tensor, knots: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``f_N(x) = (s/N) Σ_i (1 − 2(x + 1) + 4 relu(x − t_i))``: the Monte-Carlo estimate of ``s x²``."""
    hidden = torch.relu(x[:, None] - knots[None, :])                    # [points, N]
    return scale * (1 - 2 * (x + 1) + 4 * hidden.mean(1))


def monte_carlo_mse(n_neurons: int, seed: int = 0, scale: float = 1.0, x: torch.Tensor | None = None) -> float:
    """The MSE of one draw of ``n_neurons`` neurons against ``s x²`` on the test grid."""
    x = eval_grid() if x is None else x
    return float(torch.mean((monte_carlo_square(x, sample_knots(n_neurons, seed), scale) - scale * x ** 2) ** 2))


def sweep_widths(widths, seeds=range(8), scale: float = 1.0) -> list[dict]:
    """One row per width: the per-seed MSEs, their mean, and ``N · mean`` (→ ``V = (32/15) s²`` if ℓ = V/N)."""
    x = eval_grid()
    rows = []
    for n in widths:
        losses = [monte_carlo_mse(n, 1000 * n + s, scale, x) for s in seeds]
        rows.append(dict(neurons=n, losses=losses, mean=float(np.mean(losses)), n_times_loss=n * float(np.mean(losses))))
    return rows


def fit_rows(rows, key: str = "mean"):
    """Power-law fit of ``row[key]`` against ``row['neurons']``."""
    return fit_power_law([r["neurons"] for r in rows], [r[key] for r in rows])


def optimal_allocation(variances, total: float) -> np.ndarray:
    """``N_k = N √V_k / Σ √V_j``: the minimiser of ``Σ V_k / N_k`` at ``Σ N_k = N`` (continuous)."""
    root = np.sqrt(np.asarray(variances, dtype=float))
    if root.size == 0 or np.any(root <= 0):
        raise ValueError(f"variances must be positive, got {variances!r}")
    return total * root / root.sum()


def greedy_allocation(variances, total: int) -> list[int]:
    """Integer allocation: one neuron to each subtask, then each further neuron to the subtask whose expected loss
    ``V_k / N_k`` falls most (by ``V_k / (N_k (N_k + 1))``)."""
    v = [float(x) for x in variances]
    if total < len(v):
        raise ValueError(f"total ({total}) must be at least the number of subtasks ({len(v)})")
    n = [1] * len(v)
    for _ in range(total - len(v)):
        k = max(range(len(v)), key=lambda j: v[j] / (n[j] * (n[j] + 1)))
        n[k] += 1
    return n


def composite_sweep(scales=(1.0, 3.0), totals=(8, 16, 32, 64, 128, 256), seeds=range(8)) -> list[dict]:
    """Parallel subtasks ``y_k = s_k x_k²``: each total N is split by ``greedy_allocation`` (``V_k = (32/15) s_k²``),
    each subtask gets its own i.i.d. neurons; per-subtask MSE averaged over seeds, and the total (their sum)."""
    x = eval_grid()
    rows = []
    for total in totals:
        alloc = greedy_allocation([V_UNIT * s ** 2 for s in scales], total)
        per = [float(np.mean([monte_carlo_mse(n_k, 7919 * k + 1000 * total + s, sc, x) for s in seeds]))
               for k, (n_k, sc) in enumerate(zip(alloc, scales))]
        rows.append(dict(total_neurons=total, neurons=alloc, losses=per, total_loss=sum(per)))
    return rows


# ---- the trained counterpart: the same layer, neurons trained jointly ----------------------------------------
def train_mean_field(width: int, *, steps: int = 1000, lr: float = 0.5, n_train: int = 300, seed: int = 0,
                     scale: float = 1.0) -> float:
    """``f(x) = (1/N) Σ a_i relu(w_i x + b_i)`` with ``a, w, b ~ N(0, 1)``, full-batch gradient descent on the
    MSE to ``s x²`` with step ``lr·N`` (the mean-field time scale: each neuron's gradient is O(1/N)); training
    points uniform on [−1, 1]; returns the MSE on the test grid."""
    check_positive("width", width)
    check_positive("steps", steps)
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.rand(n_train, generator=g, dtype=torch.float64) - 1
    w, b, a = (torch.randn(width, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))

    def f(z):
        return torch.relu(z[:, None] * w + b) @ a / width

    opt = torch.optim.SGD([w, b, a], lr=lr * width)
    for _ in range(steps):
        opt.zero_grad()
        torch.mean((f(x) - scale * x ** 2) ** 2).backward()
        opt.step()
    xt = eval_grid()
    with torch.no_grad():
        return float(torch.mean((f(xt) - scale * xt ** 2) ** 2))


def trained_sweep(widths, seeds=range(3), **kwargs) -> list[dict]:
    """``train_mean_field`` per (width, seed): rows as ``sweep_widths``."""
    rows = []
    for n in widths:
        losses = [train_mean_field(n, seed=s, **kwargs) for s in seeds]
        rows.append(dict(neurons=n, losses=losses, mean=float(np.mean(losses)), n_times_loss=n * float(np.mean(losses))))
    return rows
