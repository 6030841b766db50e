"""Precision machine learning (Michaud, Liu & Tegmark 2023; Entropy 25:175; arXiv 2210.13447; code
ejmichaud/precision-ml).

**Claim.** Fitting a smooth low-dimensional function, a neural network can reach an RMSE "close to the limits allowed
by numerical precision" — but not with Adam, whose loss plateaus orders of magnitude higher: it takes float64, a
second-order optimizer on the full batch, steps in the low-curvature subspace of the Hessian, and boosting.

**The paper's tricks, as the official ``scripts/non-seml/combined-techniques-eqn-*.py`` run them** (each below):

1. **float64** throughout (``torch.float64`` data and parameters);
2. **full-batch BFGS** — ``scipy.optimize.minimize(method="BFGS", jac=autograd gradient, gtol=1e-60)`` on the MSE
   (``fit_bfgs``, the same call);
3. **low-curvature-subspace steps** — compute the full Hessian H of the MSE, eigendecompose it, project the gradient
   onto the eigenvectors with ``|λ| < 1e-15``, and line-search the step length on a log grid over
   ``[1e-12, 1e12]`` (15 points, 4 zoom levels) (``low_curvature_steps``). Near a minimum the MSE is flat in most
   directions to within float64 rounding; the gradient's component along the (numerically) zero-curvature
   directions is what BFGS's curvature model cannot use, so a long step along it still lowers the loss;
4. **boosting** — a second network of the same shape fitted (2 + 3) to the first one's residual scaled to unit mean
   absolute value, ``c = 1 / mean|y − f₁(x)|``; the prediction is ``f₁ + f₂ / c`` (``boost``).

**Setting** (the official scripts): ``1 → 20 → 20 → 1`` tanh MLPs (481 parameters), inputs uniform on the
equation's range (``equations.csv`` of the repository: ``Z.001`` is y = x² on [−1, 1], ``Z.002`` sin x on [0, 6]),
10⁵ training and 10⁴ test points, up to 25,000 BFGS iterations and 500 low-curvature steps per stage. Ours: the same
networks and equations with fewer points and iterations (``PrecisionSetting``; REPRODUCTIONS.md says which).
One deviation: a low-curvature step is taken only if its line-search minimum lowers the loss (the script steps
with the search's best point even when it is worse than not moving).

**KAN vs MLP at equal parameter count** (``kan_vs_mlp``): the KAN paper's precision claim (KAN [2, 5, 1] on
exp(sin πx + y²) reaching much lower RMSE than MLPs) checked with the same optimizer and step budget for both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..methods.base import check_positive

# name → (formula, function of the input columns, [(low, high) per variable]); from precision-ml's equations.csv.
EQUATIONS = {
    "Z.001": ("x**2", lambda x: x[:, 0] ** 2, [(-1.0, 1.0)]),
    "Z.002": ("sin(x)", lambda x: torch.sin(x[:, 0]), [(0.0, 6.0)]),
    "Z.003": ("sqrt(x)", lambda x: torch.sqrt(x[:, 0]), [(1.0, 5.0)]),
    "I.6.2a": ("exp(-theta**2/2)/sqrt(2*pi)", lambda x: torch.exp(-x[:, 0] ** 2 / 2) / math.sqrt(2 * math.pi),
               [(1.0, 3.0)]),
    "I.12.1": ("mu*Nn", lambda x: x[:, 0] * x[:, 1], [(1.0, 5.0), (1.0, 5.0)]),
    "I.6.2": ("exp(-(theta/sigma)**2/2)/(sqrt(2*pi)*sigma)",
              lambda x: torch.exp(-(x[:, 1] / x[:, 0]) ** 2 / 2) / (math.sqrt(2 * math.pi) * x[:, 0]),
              [(1.0, 3.0), (1.0, 3.0)]),
    # The KAN paper's (and pykan's hellokan) 2-D example, for kan_vs_mlp.
    "KAN.hello": ("exp(sin(pi*x)+y**2)", lambda x: torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2),
                  [(-1.0, 1.0), (-1.0, 1.0)]),
}


# ---- data -------------------------------------------------------------------------------------------------------
@dataclass
class EquationData:
    """Uniform random inputs on the equation's box and exact float64 targets ``[N, 1]`` (as the official scripts:
    ``np.random.uniform`` train and test sets from the same range)."""

    equation: str = "Z.002"
    n_train: int = 2000
    n_test: int = 10000
    seed: int = 0

    def __post_init__(self):
        if self.equation not in EQUATIONS:
            raise ValueError(f"unknown equation {self.equation!r}; choose one of {sorted(EQUATIONS)}")
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an int ≥ 2, got {v!r}")
        self.formula, f, ranges = EQUATIONS[self.equation]
        self.dim = len(ranges)
        lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)
        hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64)
        g = torch.Generator().manual_seed(self.seed)
        self.x_train = lo + (hi - lo) * torch.rand(self.n_train, self.dim, generator=g, dtype=torch.float64)
        self.x_test = lo + (hi - lo) * torch.rand(self.n_test, self.dim, generator=g, dtype=torch.float64)
        self.y_train, self.y_test = f(self.x_train)[:, None], f(self.x_test)[:, None]


def tanh_mlp(d_in: int = 1, width: int = 20, depth: int = 2, seed: int = 0) -> nn.Sequential:
    """The official scripts' network: ``depth`` tanh hidden layers of ``width``, float64, PyTorch's default init."""
    for name, v in (("d_in", d_in), ("width", width), ("depth", depth)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    torch.manual_seed(seed)
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.Tanh()]
        d = width
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers).double()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def rmse(predict, x: torch.Tensor, y: torch.Tensor) -> float:
    """Root-mean-square error of ``predict(x)`` (a model or any callable) against ``y``."""
    return torch.sqrt(torch.mean((predict(x) - y) ** 2)).item()


# ---- a model as a function of one flat parameter vector ---------------------------------------------------------
class FlatLoss:
    """``mse(θ)`` for the model's trainable parameters flattened into one float64 vector θ (``torch.func``), with
    its gradient and full Hessian — what BFGS and the low-curvature steps work on. ``set(θ)`` writes θ back."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model, x, y
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.shapes = [p.shape for n, p in model.named_parameters() if p.requires_grad]
        self.sizes = [math.prod(s) for s in self.shapes]

    def get(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters() if p.requires_grad]).clone()

    def _unflatten(self, theta: torch.Tensor) -> dict:
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(theta, self.sizes), self.shapes)}

    @torch.no_grad()
    def set(self, theta: torch.Tensor) -> None:
        params = dict(self.model.named_parameters())
        for n, t in self._unflatten(theta).items():
            params[n].copy_(t)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(self.model, self._unflatten(theta), (self.x,))
        return torch.mean((out - self.y) ** 2)

    def value_and_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        theta = theta.detach().requires_grad_(True)
        value = self(theta)
        (grad,) = torch.autograd.grad(value, theta)
        return value.item(), grad

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The full ``[P, P]`` Hessian (forward-over-reverse), symmetrized against rounding."""
        h = torch.func.hessian(self)(theta.detach())
        return 0.5 * (h + h.T)


# ---- trick 2: full-batch BFGS ------------------------------------------------------------------------------------
def fit_bfgs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, maxiter: int = 2000, gtol: float = 1e-60,
             patience: int = 0, rtol: float = 0.01) -> list[float]:
    """``scipy.optimize.minimize(method="BFGS")`` on the MSE with the autograd gradient, as the official scripts
    (``gtol=1e-60``: it runs until ``maxiter`` or until the line search can no longer lower the loss). The model is
    left at the result. Returns the training MSE after every iteration.

    ``patience`` > 0 adds a stop at convergence: after iteration k ≥ ``patience`` the run ends once the MSE has
    fallen by less than a fraction ``rtol`` over the last ``patience`` iterations (the callback raises
    ``StopIteration``, scipy's way to end a minimization early). Each iteration of scipy's BFGS updates the dense
    P × P inverse Hessian with two matrix products (O(P³): ~15 ms at P = 481, ten times the gradient's cost), so
    iterations that no longer lower the loss are the expensive part of a long run."""
    from scipy import optimize

    check_positive("maxiter", maxiter)
    check_positive("patience", patience, allow_zero=True)
    check_positive("rtol", rtol)
    loss = FlatLoss(model, x, y)
    history: list[float] = []

    def fun(theta_np):
        value, grad = loss.value_and_grad(torch.from_numpy(theta_np))
        fun.last = value
        return value, grad.numpy()

    def callback(xk):
        history.append(fun.last)            # the line search's last evaluation: the accepted point
        if patience and len(history) > patience and history[-1] > (1 - rtol) * history[-1 - patience]:
            raise StopIteration

    fun.last = float("nan")
    result = optimize.minimize(fun, loss.get().numpy(), jac=True, method="BFGS",
                               options=dict(gtol=gtol, maxiter=maxiter), callback=callback)
    loss.set(torch.from_numpy(result.x))
    history.append(loss(loss.get()).item())
    return history


# ---- trick 3: steps in the low-curvature subspace ----------------------------------------------------------------
def logarithmic_line_search(f, low: float = 1e-12, high: float = 1e12, points: int = 15, depth: int = 4):
    """The official ``logarithmic_line_search``: evaluate ``f`` on ``points`` log-spaced step lengths in
    ``[low, high]``, zoom into the bracket around the best one ``depth`` times (stopping when a zoom does not improve);
    returns ``(best step, its value)``."""
    best_alpha, best = None, float("inf")
    for _ in range(depth):
        alphas = np.exp(np.linspace(np.log(low), np.log(high), points))
        values = [f(a) for a in alphas]
        i = int(np.argmin(values))
        if values[i] >= best:
            break
        best_alpha, best = float(alphas[i]), float(values[i])
        if i == 0:
            low, high = alphas[0] ** 2 / alphas[1], alphas[1]
        elif i == points - 1:
            low, high = alphas[-2], alphas[-1] ** 2 / alphas[-2]
        else:
            low, high = alphas[i - 1], alphas[i + 1]
    return best_alpha, best


def low_curvature_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 100,
                        threshold: float = 1e-15) -> list[float]:
    """``steps`` times: Hessian H of the MSE, ``H = V diag(λ) Vᵀ``; direction ``d = Σ_{|λ_k| < threshold}
    (v_k·g) v_k`` (the gradient g projected onto the numerically flat subspace); step ``θ ← θ − α d`` with α from
    ``logarithmic_line_search`` — taken only if it lowers the MSE. Returns the training MSE after every step."""
    check_positive("steps", steps)
    loss = FlatLoss(model, x, y)
    theta = loss.get()
    history = []
    with torch.no_grad():
        current = loss(theta).item()
    for _ in range(steps):
        _, grad = loss.value_and_grad(theta)
        eigvals, eigvecs = torch.linalg.eigh(loss.hessian(theta))
        flat = eigvecs[:, eigvals.abs() < threshold]
        direction = flat @ (flat.T @ grad)
        if flat.shape[1] and torch.any(direction != 0):
            with torch.no_grad():
                alpha, value = logarithmic_line_search(lambda a: loss(theta - a * direction).item())
            if alpha is not None and value < current:
                theta, current = theta - alpha * direction, value
        history.append(current)
    loss.set(theta)
    return history


# ---- trick 4: boosting ------------------------------------------------------------------------------------------
@dataclass
class Boosted:
    """``f₁(x) + f₂(x) / c``: ``f₂`` was fitted to the scaled residual ``c·(y − f₁(x))``."""

    first: nn.Module
    second: nn.Module
    scale: float

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.first(x) + self.second(x) / self.scale


def boost(first: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 1, maxiter: int = 2000,
          lc_steps: int = 100, threshold: float = 1e-15, patience: int = 0,
          rtol: float = 0.01) -> tuple[Boosted, list[float], list[float]]:
    """Fit a second network of the official shape to ``c·(y − f₁(x))`` with ``c = 1 / mean|y − f₁(x)|`` (BFGS, then
    low-curvature steps; ``patience``/``rtol``: ``fit_bfgs``'s stop at convergence). Returns the boosted predictor
    and the two stages' training-MSE histories (of the scaled residual fit)."""
    with torch.no_grad():
        residual = y - first(x)
    scale = 1.0 / residual.abs().mean().item()
    width = next(m for m in first if isinstance(m, nn.Linear)).out_features
    depth = sum(isinstance(m, nn.Tanh) for m in first)
    second = tanh_mlp(x.shape[1], width, depth, seed=seed)
    h_bfgs = fit_bfgs(second, x, scale * residual, maxiter=maxiter, patience=patience, rtol=rtol)
    h_lc = low_curvature_steps(second, x, scale * residual, steps=lc_steps, threshold=threshold) if lc_steps else []
    return Boosted(first, second, scale), h_bfgs, h_lc


# ---- the baseline: Adam ------------------------------------------------------------------------------------------
def fit_adam(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 5000, lr: float = 1e-3,
             record_every: int = 10) -> list[float]:
    """Full-batch ``torch.optim.Adam`` on the MSE (the official baseline scripts sweep its lr); returns the training
    MSE every ``record_every`` steps and at the end."""
    check_positive("steps", steps)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in range(steps):
        opt.zero_grad()
        value = torch.mean((model(x) - y) ** 2)
        value.backward()
        opt.step()
        if step % record_every == 0:
            history.append(value.item())
    with torch.no_grad():
        history.append(torch.mean((model(x) - y) ** 2).item())
    return history


# ---- the whole pipeline ------------------------------------------------------------------------------------------
@dataclass
class PrecisionSetting:
    """One equation, the official network, and the budget of every stage."""

    equation: str = "Z.002"
    n_train: int = 2000
    n_test: int = 10000
    width: int = 20
    depth: int = 2
    bfgs_iter: int = 3000
    bfgs_patience: int = 0              # > 0: BFGS stops at convergence (fit_bfgs), else at bfgs_iter / line search
    bfgs_rtol: float = 0.01
    lc_steps: int = 100
    threshold: float = 1e-15
    adam_steps: int = 10000
    adam_lrs: tuple = (1e-2, 1e-3, 1e-4)
    seed: int = 0


@dataclass
class PrecisionResult:
    setting: PrecisionSetting
    test_rmse: dict = field(default_factory=dict)       # stage → test RMSE
    train_rmse: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)          # stage → training-MSE history
    adam_by_lr: dict = field(default_factory=dict)      # lr → (train, test) RMSE

    def table(self) -> str:
        rows = [f"{stage:<22} train {self.train_rmse[stage]:.3e}  test {self.test_rmse[stage]:.3e}"
                for stage in self.test_rmse]
        return "\n".join(rows)


def run_precision(setting: PrecisionSetting | None = None, *, progress: bool = False) -> PrecisionResult:
    """Adam (best of ``adam_lrs``) → BFGS → + low-curvature steps → + boosting (BFGS + low-curvature), all from the
    same initialization, recording train/test RMSE after each stage."""
    s = setting or PrecisionSetting()
    data = EquationData(s.equation, s.n_train, s.n_test, s.seed)
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    res = PrecisionResult(s)

    def record(stage, predict, curve):
        res.train_rmse[stage], res.test_rmse[stage] = rmse(predict, x, y), rmse(predict, xt, yt)
        res.curves[stage] = curve
        if progress:
            print(f"{stage}: train {res.train_rmse[stage]:.3e}, test {res.test_rmse[stage]:.3e}", flush=True)

    best = None
    for lr in s.adam_lrs:
        net = tanh_mlp(data.dim, s.width, s.depth, seed=s.seed)
        curve = fit_adam(net, x, y, steps=s.adam_steps, lr=lr)
        res.adam_by_lr[lr] = (rmse(net, x, y), rmse(net, xt, yt))
        if best is None or res.adam_by_lr[lr][0] < res.adam_by_lr[best[0]][0]:
            best = (lr, net, curve)
    record(f"Adam (lr {best[0]:g})", best[1], best[2])

    net = tanh_mlp(data.dim, s.width, s.depth, seed=s.seed)
    stop = dict(patience=s.bfgs_patience, rtol=s.bfgs_rtol)
    record("BFGS", net, fit_bfgs(net, x, y, maxiter=s.bfgs_iter, **stop))
    record("+ low-curvature", net, low_curvature_steps(net, x, y, steps=s.lc_steps, threshold=s.threshold))
    boosted, h_bfgs, h_lc = boost(net, x, y, seed=s.seed + 1, maxiter=s.bfgs_iter, lc_steps=s.lc_steps,
                                  threshold=s.threshold, **stop)
    record("+ boosting", boosted, h_bfgs + h_lc)
    return res


# ---- KAN vs MLP at the same parameter count -----------------------------------------------------------------------
def matched_mlp_width(target: int, d_in: int = 2, depth: int = 2) -> int:
    """The tanh-MLP width whose parameter count is closest to ``target``."""
    def count(w):
        return (d_in + 1) * w + (depth - 1) * (w + 1) * w + w + 1
    return min(range(1, 400), key=lambda w: abs(count(w) - target))


def fit_lbfgs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 200,
              before_step=None) -> list[float]:
    """``torch.optim.LBFGS`` (strong Wolfe, history 10, 20 iterations per step — pykan's ``fit`` settings);
    ``before_step(step)`` runs before every step (the KAN's grid updates)."""
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=20, history_size=10, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-32, tolerance_change=1e-32)
    history = []

    def closure():
        opt.zero_grad()
        value = torch.mean((model(x) - y) ** 2)
        value.backward()
        return value

    for step in range(steps):
        if before_step is not None:
            before_step(step)
        history.append(float(opt.step(closure).detach()))
    return history


def kan_vs_mlp(*, equation: str = "KAN.hello", kan_width=(2, 5, 1), grid: int = 10, steps: int = 200,
               n_train: int = 1000, n_test: int = 1000, seed: int = 0) -> dict:
    """KAN ``kan_width`` (grid ``grid``, cubic splines) against a two-hidden-layer tanh MLP with as many parameters,
    same data, both float64 and trained by the same L-BFGS for ``steps`` steps. Returns parameter counts and
    train/test RMSE of each."""
    from ..models.kan import KAN

    data = EquationData(equation, n_train, n_test, seed)
    torch.manual_seed(seed)
    kan = KAN(list(kan_width), grid=grid, k=3, dtype=torch.float64)
    mlp = tanh_mlp(data.dim, matched_mlp_width(n_params(kan), data.dim), 2, seed=seed)

    def kan_grid_updates(step):                # pykan's fit(): grids follow the data every 5 steps of the first 50
        if step < 50 and step % 5 == 0:
            kan.update_grid(data.x_train)

    out = {}
    for name, model, hook in (("KAN", kan, kan_grid_updates), ("MLP", mlp, None)):
        fit_lbfgs(model, data.x_train, data.y_train, steps=steps, before_step=hook)
        out[name] = dict(params=n_params(model), train=rmse(model, data.x_train, data.y_train),
                         test=rmse(model, data.x_test, data.y_test))
    return out


# ---- plots (pure) ---------------------------------------------------------------------------------------------
def plot_curves(ax, result: PrecisionResult):
    """Training RMSE against iteration, stage after stage on one axis (log scale), the final test RMSE of each
    stage in the legend. Returns ``ax``."""
    offset = 0
    for stage, curve in result.curves.items():
        if not curve:
            continue
        rmse_curve = np.sqrt(np.maximum(np.asarray(curve, dtype=float), 1e-300))
        it = offset + np.arange(len(rmse_curve))
        ax.plot(it, rmse_curve, label=f"{stage} (test {result.test_rmse[stage]:.1e})")
        offset = it[-1] + 1
    ax.set_yscale("log")
    ax.set_xlabel("iteration (stages one after another; Adam's recorded every 10 steps)")
    ax.set_ylabel("train RMSE (boosting: of the scaled residual)")
    ax.axhline(1e-10, color="gray", ls=":", lw=1)
    ax.legend(fontsize=8)
    return ax
