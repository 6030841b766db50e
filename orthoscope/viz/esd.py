"""The empirical-spectral-density panel: ``plot_esd`` (log-log histogram of λ = σ² with the fitted power-law tail)
and ``plot_alpha`` (WeightWatcher's α over time). Pure ``plot_*(ax, history, ...) -> list[Artist]`` like
``viz.plots``; definitions in ``orthoscope.probes.esd`` and docs/esd.md.

    plot_esd(ax, run.history, "layers.0", step=400)                  # grey = step 0, colour = step 400
    plot_alpha(ax2, [("wd=1", run_a), ("wd=0", run_b)], "layers.0")  # α against step, WW bands at 2 and 6

Axes stay fixed over the whole run (all recorded steps of all runs), so scrubbing shows the spectrum moving rather
than the axes rescaling.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from ..core.keys import key as make_key
from ..probes.esd import EVALS_THRESH, OVER_TRAINED, UNDER_TRAINED, alpha_over_time, esd_eigenvalues, fit_power_law
from .plots import _as_runs, _sv_key, nearest_step, step_for

N_BINS = 40
REFERENCE_COLOUR = "0.6"     # the step-0 ESD, grey
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # History -> {key: [ESD per record]}


def _esds(h, key: str) -> list[np.ndarray]:
    """The ascending λ of every record of ``key``, cached per History (append-only, so only new records are done)."""
    cache = _CACHE.setdefault(h, {}).setdefault(key, [])
    values = h[key].values
    for sv in values[len(cache):]:
        cache.append(esd_eigenvalues(sv))
    return cache[:len(values)]


def _positive(lam: np.ndarray) -> np.ndarray:
    return lam[lam > EVALS_THRESH]    # numerical zeros have no place on a log axis (WeightWatcher drops them too)


def _bins(all_esds) -> np.ndarray:
    """Log-spaced bin edges spanning every recorded λ > EVALS_THRESH of every run (fixed for the whole run)."""
    lo = min((float(_positive(l).min()) for l in all_esds if _positive(l).size), default=None)
    if lo is None:
        raise ValueError(f"every recorded eigenvalue is ≤ EVALS_THRESH={EVALS_THRESH:g}: the weights are zero, "
                         "there is no ESD to draw")
    hi = max(float(l.max()) for l in all_esds)
    if hi <= lo * (1 + 1e-9):                  # a flat spectrum (e.g. an orthogonal matrix): one decade around it
        lo, hi = lo / math.sqrt(10), hi * math.sqrt(10)
    return np.geomspace(lo, hi * (1 + 1e-9), N_BINS + 1)


def _density(lam: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Histogram density in λ (integrates to the fraction of λ inside the bins); empty bins are NaN (a gap on
    a log axis instead of a drop to −inf)."""
    counts, _ = np.histogram(lam, bins=bins)
    dens = counts / (lam.size * np.diff(bins))
    return np.where(counts > 0, dens, np.nan)


def _tail_line(lam: np.ndarray):
    """(λ grid, density) of the fitted power law over [x_min, x_max], scaled to the tail's share of the ESD; None
    when WeightWatcher would not fit this layer (fewer than MIN_EVALS = 8 eigenvalues)."""
    from ..probes.esd import MIN_EVALS

    if lam.size < MIN_EVALS or _positive(lam).size < 2:
        return None, None
    fit = fit_power_law(lam)
    grid = np.geomspace(fit.xmin, fit.xmax, 50)
    share = fit.n_tail / lam.size
    # Pareto density on [x_min, ∞): (α−1)/x_min · (λ/x_min)^(−α), times the tail's share of all eigenvalues.
    return fit, (grid, share * (fit.alpha - 1) / fit.xmin * (grid / fit.xmin) ** (-fit.alpha))


def plot_esd(ax, history, module: str, step, reference_step=0) -> list:
    """Log-log histogram of λ = σ² of ``sv/<module>`` at the recorded step nearest ``step`` (a mapping {run label:
    step}: each run's own), one colour per run, with
    the ESD at ``reference_step`` in grey (``None``: no reference) and the fitted power-law tail dashed (α in the
    legend). Bins and both axis limits cover every recorded step of every run, so they do not move while scrubbing."""
    runs = _as_runs(history)
    labelled = isinstance(history, (list, tuple))
    key = _sv_key(runs, module)
    present = [(label, h) for label, h in runs if key in h]
    all_esds = [lam for _, h in present for lam in _esds(h, key)]
    bins = _bins(all_esds)
    densities = np.array([_density(lam, bins) for lam in all_esds])
    finite = densities[np.isfinite(densities)]
    artists, shown = [], []
    for i_run, (run_label, h) in enumerate(present):
        steps, esds = h[key].steps, _esds(h, key)
        prefix = run_label + " · " if run_label else ""
        if reference_step is not None:
            r = nearest_step(steps, reference_step)
            artists.append(ax.stairs(_density(esds[r], bins), bins, baseline=None, color=REFERENCE_COLOUR, lw=1.2,
                                     label=f"{prefix}step {steps[r]} (reference)"))
        j = nearest_step(steps, step_for(step, run_label))
        shown.append(steps[j])
        colour = f"C{i_run % 10}" if (len(present) > 1 or labelled) else "C0"
        artists.append(ax.stairs(_density(esds[j], bins), bins, baseline=None, color=colour, lw=1.6,
                                 label=f"{prefix}step {steps[j]}"))
        fit, line = _tail_line(esds[j])
        if fit is not None:
            artists += ax.plot(*line, color=colour, ls="--", lw=1.2,
                               label=f"{prefix}power law α = {fit.alpha:.2f} (λ ≥ {fit.xmin:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(bins[0], bins[-1])
    if finite.size:
        ax.set_ylim(finite.min() / 2, finite.max() * 2)
    ax.set_xlabel("λ = σ²")
    ax.set_ylabel("density")
    steps_txt = ", ".join(str(s) for s in dict.fromkeys(shown))
    ax.set_title(f"eigenvalue density (ESD) of {key[3:]} @ step {steps_txt}")
    ax.legend(fontsize="x-small")
    return artists


def n_eigenvalues(history, module: str) -> int:
    """How many eigenvalues (singular values) the newest spectrum of ``module`` has, over the runs (0: none)."""
    key = make_key("sv", module)
    return max((int(h[key].values[-1].numel()) for _, h in _as_runs(history) if key in h and len(h[key])),
               default=0)


def fit_at(h, module: str, step):
    """WeightWatcher's fit of the ESD at the recorded step nearest ``step``: (recorded step, ``PowerLawFit``, number
    of eigenvalues), the fit None where WeightWatcher would not fit (fewer than ``MIN_EVALS`` eigenvalues)."""
    key = make_key("sv", module)
    j = nearest_step(h[key].steps, step)
    lam = _esds(h, key)[j]
    fit, _ = _tail_line(lam)
    return h[key].steps[j], fit, int(lam.size)


def _alpha_series(h, module: str):
    """α over time: the ``ESD`` probe's ``alpha/<module>`` if recorded (WeightWatcher's conv pooling included),
    else fitted from the ``sv/<module>`` records."""
    key = make_key("alpha", module)
    if key in h:
        s = h[key]
        return np.asarray(s.steps, dtype=float), np.asarray(s.values, dtype=float)
    return alpha_over_time(h, module)


def plot_alpha(ax, history, module: str, upto_step=None) -> list:
    """WeightWatcher's power-law exponent α of ``module`` against step, one line per run, with the α < 2
    ("over-trained") and α > 6 ("under-trained") regions shaded. ``upto_step`` cuts the lines there."""
    runs = _as_runs(history)
    labelled = isinstance(history, (list, tuple))
    module = module[len("sv/"):] if module.startswith("sv/") else module
    present = [(label, h) for label, h in runs if make_key("alpha", module) in h or make_key("sv", module) in h]
    if not present:
        _sv_key(runs, module)      # raises the "no singular values recorded … recorded modules: …" error
    artists, top = [], UNDER_TRAINED + 1
    for i_run, (run_label, h) in enumerate(present):
        steps, alphas = _alpha_series(h, module)
        if upto_step is not None:
            keep = steps <= upto_step
            steps, alphas = steps[keep], alphas[keep]
        if np.isfinite(alphas).any():
            top = max(top, float(np.nanmax(alphas)) * 1.05)
        colour = f"C{i_run % 10}" if (len(present) > 1 or labelled) else "C0"
        artists += ax.plot(steps, alphas, color=colour, marker=".", ms=3, label=run_label or f"α — {module}")
    bottom = 1.0                   # α > 1 always (the MLE is 1 + n / Σ ln(λ/x_min))
    artists.append(ax.axhspan(bottom, OVER_TRAINED, color="tab:red", alpha=0.08, lw=0,
                              label=f"α < {OVER_TRAINED:g}: over-trained (WW)"))
    artists.append(ax.axhspan(UNDER_TRAINED, top, color="tab:blue", alpha=0.08, lw=0,
                              label=f"α > {UNDER_TRAINED:g}: under-trained (WW)"))
    ax.set_ylim(bottom, top)
    # the bands named on the panel itself, at its right edge (x in axes fractions, y in α)
    band = ax.get_yaxis_transform()
    ax.text(0.98, (bottom + OVER_TRAINED) / 2, f"over-trained (α < {OVER_TRAINED:g})", transform=band, ha="right",
            va="center", fontsize="x-small", color="tab:red", label="_band")
    ax.text(0.98, (UNDER_TRAINED + top) / 2, f"under-trained (α > {UNDER_TRAINED:g})", transform=band, ha="right",
            va="center", fontsize="x-small", color="tab:blue", label="_band")
    ax.set_xlabel("step")
    ax.set_ylabel("α (power-law exponent)")
    ax.set_title(f"power-law exponent α of {module}")
    ax.legend(fontsize="x-small")
    return artists


__all__ = ["plot_esd", "plot_alpha", "fit_at", "n_eigenvalues"]
