"""Scaling sweeps and power-law fits with uncertainty — shared by every scaling-law toy in ``orthoscope.zoo``.

    result = sweep(lambda m, seed: train_and_return_loss(m, seed), sizes=[8, 16, 32, 64], seeds=[0, 1])
    fit = fit_power_law(*result.points())                 # log-log least squares, 95 % interval on the slope
    robust = fit_power_law(*result.points(), method="theil_sen")
    plot_power_law(ax, *result.points(), fit=fit)         # pure f(ax, ...): log-log scatter + fitted line + band

Model: ``y = C · x^b``, i.e. ``log y = log C + b · log x``. ``PowerLawFit.slope`` is ``b`` (negative for a falling
loss); ``exponent`` is ``−b``, the number papers quote ("L ∝ m^(−1)" has slope −1, exponent 1).

* ``method="ols"``: ordinary least squares on ``(log x, log y)``; the interval is ``b ± t_{n−2, (1+q)/2} · se(b)``
  with ``se(b)² = s² / Σ(log xᵢ − mean)²`` and ``s²`` the residual variance with n − 2 degrees of freedom.
* ``method="theil_sen"``: the median of all pairwise slopes (robust to up to ~29 % outliers); the interval is Sen's
  distribution-free one (``scipy.stats.theilslopes``); the intercept is the median of ``log y − b log x``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

METHODS = ("ols", "theil_sen")


@dataclass(frozen=True)
class PowerLawFit:
    """``y ≈ prefactor · x^slope``; ``ci`` is the ``confidence`` interval of the slope."""

    slope: float
    prefactor: float
    ci: tuple[float, float]
    method: str
    confidence: float
    n_points: int
    r2: float = field(default=float("nan"), metadata={"help": "coefficient of determination in log-log space"})

    @property
    def exponent(self) -> float:
        """``−slope``: the decay exponent as papers quote it (``L ∝ x^(−exponent)``)."""
        return -self.slope

    def predict(self, x) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** self.slope

    def contains(self, slope: float) -> bool:
        return self.ci[0] <= slope <= self.ci[1]

    def __str__(self) -> str:
        return (f"slope {self.slope:+.3f} [{self.ci[0]:+.3f}, {self.ci[1]:+.3f}] ({self.method}, "
                f"{self.confidence:.0%} CI, n={self.n_points})")


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"a power-law fit with an interval needs at least 3 points, got {x.size}")
    for name, v in (("x", x), ("y", y)):
        bad = ~np.isfinite(v) | (v <= 0)
        if bad.any():
            raise ValueError(f"{name} must be finite and > 0 for a log-log fit; bad value {v[bad][0]!r} "
                             f"at index {int(np.flatnonzero(bad)[0])}")
    if np.unique(x).size < 2:
        raise ValueError("x must take at least two distinct values")
    return x, y


def fit_power_law(x, y, *, method: str = "ols", confidence: float = 0.95) -> PowerLawFit:
    """Fit ``y = C x^b`` in log-log space. See the module docstring for the two methods and their intervals."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    x, y = _check_xy(x, y)
    lx, ly = np.log(x), np.log(y)
    from scipy import stats

    if method == "ols":
        n = lx.size
        xm, ym = lx.mean(), ly.mean()
        sxx = ((lx - xm) ** 2).sum()
        slope = ((lx - xm) * (ly - ym)).sum() / sxx
        intercept = ym - slope * xm
        resid = ly - (intercept + slope * lx)
        dof = n - 2
        se = math.sqrt((resid ** 2).sum() / dof / sxx) if dof > 0 else float("inf")
        half = stats.t.ppf(0.5 + confidence / 2, dof) * se
        lo, hi = slope - half, slope + half
    else:
        slope, intercept, lo, hi = stats.theilslopes(ly, lx, alpha=confidence)
        intercept = float(np.median(ly - slope * lx))
        resid = ly - (intercept + slope * lx)
    ss_tot = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (resid ** 2).sum() / ss_tot if ss_tot > 0 else float("nan")
    return PowerLawFit(slope=float(slope), prefactor=float(math.exp(intercept)), ci=(float(lo), float(hi)),
                       method=method, confidence=confidence, n_points=int(x.size), r2=float(r2))


# ---- sweeps -------------------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """Records ``{"size": s, "seed": r, <metric>: value, ...}`` from ``sweep``, one per (size, seed)."""

    records: list[dict]

    @property
    def sizes(self) -> list:
        return sorted({r["size"] for r in self.records})

    @property
    def metrics(self) -> list[str]:
        return [k for k in self.records[0] if k not in ("size", "seed")] if self.records else []

    def points(self, metric: str = "value") -> tuple[np.ndarray, np.ndarray]:
        """All ``(size, value)`` pairs of one metric — every seed is its own point (fit these for honest intervals)."""
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r} in this sweep; recorded: {self.metrics}")
        return (np.array([r["size"] for r in self.records], dtype=float),
                np.array([r[metric] for r in self.records], dtype=float))

    def mean(self, metric: str = "value") -> tuple[np.ndarray, np.ndarray]:
        """Per-size mean over seeds."""
        x, y = self.points(metric)
        sizes = np.unique(x)
        return sizes, np.array([y[x == s].mean() for s in sizes])

    def fit(self, metric: str = "value", **kwargs) -> PowerLawFit:
        return fit_power_law(*self.points(metric), **kwargs)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.records)


def sweep(fn: Callable[[int, int], float | dict], sizes: Sequence, seeds: Sequence[int] = (0,), *,
          progress: bool = True, desc: str = "sweep") -> SweepResult:
    """Call ``fn(size, seed)`` for every size × seed (tqdm progress bar) and collect the results.

    ``fn`` returns a float (stored as metric ``"value"``) or a dict of floats (one metric per key).
    """
    sizes, seeds = list(sizes), list(seeds)
    if not sizes:
        raise ValueError("sweep needs at least one size; got an empty `sizes`")
    if not seeds:
        raise ValueError("sweep needs at least one seed; got an empty `seeds`")
    from tqdm.auto import tqdm

    records = []
    with tqdm(total=len(sizes) * len(seeds), desc=desc, disable=not progress, leave=False) as bar:
        for size in sizes:
            for seed in seeds:
                out = fn(size, seed)
                values = dict(out) if isinstance(out, dict) else {"value": out}
                for k, v in values.items():
                    if not isinstance(v, (int, float, np.floating, np.integer)):
                        raise TypeError(f"sweep fn must return floats; metric {k!r} at size={size!r}, "
                                        f"seed={seed!r} is {type(v).__name__}")
                records.append({"size": size, "seed": seed, **{k: float(v) for k, v in values.items()}})
                bar.update(1)
    return SweepResult(records)


# ---- plotting (pure: draws on the axes it is given) ------------------------------------------------------------
def plot_power_law(ax, x, y, fit: PowerLawFit | None = None, *, label: str | None = None, color=None,
                   band: bool = True, reference_slope: float | None = None):
    """Log-log scatter of ``(x, y)``, the fitted line (legend shows the slope and its interval) and a shaded band
    spanned by the interval's two slopes pivoting at the data's geometric centre. ``reference_slope`` draws a
    dotted guide line (e.g. −1) through the same centre. Returns ``ax``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    pts = ax.scatter(x, y, s=18, color=color, label=label, zorder=3)
    color = pts.get_facecolor()[0] if color is None else color
    grid = np.geomspace(x.min(), x.max(), 100)
    lx0, ly0 = np.log(x).mean(), np.log(y).mean()
    if fit is not None:
        ax.plot(grid, fit.predict(grid), color=color, lw=1.5,
                label=f"fit: slope {fit.slope:+.2f} [{fit.ci[0]:+.2f}, {fit.ci[1]:+.2f}]")
        if band:
            centre = math.exp(math.log(fit.prefactor) + fit.slope * lx0)
            curves = [centre * (grid / math.exp(lx0)) ** s for s in fit.ci]
            ax.fill_between(grid, np.minimum(*curves), np.maximum(*curves), color=color, alpha=0.15, lw=0)
    if reference_slope is not None:
        ax.plot(grid, math.exp(ly0) * (grid / math.exp(lx0)) ** reference_slope, ":", color="gray",
                label=f"slope {reference_slope:+g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return ax
