"""Empirical spectral density (ESD) and its power-law exponent α, exactly as WeightWatcher defines them.

Definitions (WeightWatcher 0.7.7's ``apply_esd`` / ``fit_powerlaw`` / ``WW_powerlaw.WWFit``, default settings):

* **ESD.** The eigenvalues of ``X = WᵀW``: ``λᵢ = σᵢ²`` for the singular values σ of the weight. They are *not*
  divided by N (WeightWatcher's ``normalize`` line is commented out), so ``λ_max = σ_max²``. A convolution kernel
  ``(out, in, *k)`` is cut into its ``∏k`` slices ``W[:, :, i, j]`` whose eigenvalues are pooled into one ESD
  (WeightWatcher's ``pool=True``; we apply the same rule to Conv1d/Conv3d kernels). WeightWatcher 0.7.7 also
  multiplies a Conv2d kernel by √(kh·kw/2) first (``conv2d_norm``); we do not, which leaves α unchanged (it is
  scale-free) but not ``alpha_weighted`` of convolutions.
* **Fit.** Only eigenvalues above ``EVALS_THRESH = 1e-5`` enter. Sorted ascending as x₀ ≤ … ≤ x_{N−1}, every
  x_i except the largest is a candidate x_min. For candidate i the tail is x_i … x_{N−1}, n = N − i values, and the
  Clauset–Shalizi–Newman MLE of the continuous power law ρ(λ) ∝ λ^(−α), λ ≥ x_min, is

      α_i = 1 + n / Σ_{j≥i} ln(x_j / x_i)

  with KS distance ``D_i = max_{j≥i} |1 − (x_j/x_i)^(1−α_i) − (j−i)/n|`` (theoretical CDF minus the empirical CDF
  taken just *below* each point, WWFit's ``np.arange(n)/n``). The fit keeps the candidate with the smallest D (the
  first one on a tie) and reports σ_α = (α−1)/√n there.
* **Small N.** With fewer than 20 values above the threshold, WeightWatcher 0.7.7 (``fit_powerlaw_smallN``) takes
  only tails of at least 8 values and the bias-corrected α_i = 1 + (n − 1) / Σ_{j≥i} ln(x_j / x_i); the
  smallest D still chooses (with no such tail, the whole sample is the tail).
* **Derived.** ``xmax`` = the largest eigenvalue; ``n_tail`` = #{λ ≥ x_min} (WW's ``num_pl_spikes``);
  ``alpha_weighted`` = α · log₁₀ λ_max; ``warning`` = ``"over-trained"`` if α < 2, ``"under-trained"`` if α > 6,
  else ``""``. Layers with fewer than ``MIN_EVALS = 8`` eigenvalues are skipped by WeightWatcher; the probe and
  ``alpha_over_time`` record NaN for them (a gap in plots), ``fit_power_law`` itself needs only two.

The candidate loop of WWFit is vectorised: the suffix sums of ln x give every α_i at once, and every D_i comes from
one (candidates × tail) array, built in blocks of rows to bound memory (``_ks_distances``). A 1000-eigenvalue fit
takes about 2–3 ms on one CPU thread (docs/esd.md gives the measurement).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from ..core.keys import key as make_key
from ..core.targets import Rules
from . import metrics
from .base import Probe, weight_matrices

EVALS_THRESH = 1e-5          # WeightWatcher's constants.EVALS_THRESH: smaller eigenvalues are numerical zeros
SMALL_N, SMALL_N_MIN_TAIL = 20, 8   # WeightWatcher 0.7.7's SMALL_N_CUTOFF and fit_powerlaw_smallN's k_min
MIN_EVALS = 8                # WeightWatcher 0.7.7's DEFAULT_MIN_EVALS (its docstring says 10; the code uses 8)
OVER_TRAINED, UNDER_TRAINED = 2.0, 6.0
_BLOCK_ELEMS = 1 << 22       # ≤ 4 M float64 (32 MiB) per block of the KS matrix


@dataclass(frozen=True)
class PowerLawFit:
    """Result of ``fit_power_law``; the field names are WeightWatcher's columns (``n_tail`` = ``num_pl_spikes``)."""
    alpha: float
    xmin: float
    xmax: float
    D: float
    sigma: float
    n_tail: int
    alpha_weighted: float
    warning: str


def _as_numpy(values, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{what} is empty; pass the eigenvalues (λ = σ²) of one weight matrix")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{what} holds {int(bad.sum())} non-finite value(s) (NaN or inf), e.g. {arr[bad][0]}; "
                         "the ESD of a finite weight is finite")
    return arr


def esd_eigenvalues(singular_values) -> np.ndarray:
    """The ESD of a matrix from its singular values: λ = σ², float64, ascending, not normalised by N (as WW)."""
    sv = _as_numpy(singular_values, "singular_values")
    if (sv < 0).any():
        raise ValueError(f"singular values are ≥ 0; got {int((sv < 0).sum())} negative, e.g. {sv[sv < 0][0]}")
    return np.sort(sv * sv)


def layer_eigenvalues(w: torch.Tensor) -> np.ndarray:
    """ESD of one weight with WeightWatcher's layer rules: a matrix gives σ² of itself; a convolution kernel
    ``(out, in, *k)`` pools σ² of its ``∏k`` slices ``W[:, :, i, j]`` (each ``out × in``)."""
    if w.dim() <= 2:
        return esd_eigenvalues(metrics.singular_values(w))
    slices = w.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)       # (∏k, out, in)
    slices = slices if slices.dtype == torch.float64 else slices.float()
    return esd_eigenvalues(torch.linalg.svdvals(slices).reshape(-1))


def _ks_distances(logx: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """D_i for every candidate i < N−1 (see the module docstring).

    Row i of a sliding window over ln x, padded on the right with +inf, is the tail ln x_i … ln x_{N−1} at columns
    k = j − i = 0 … n_i − 1. In the padding the theoretical CDF is exactly 1 (exp(−inf) = 0) and the empirical one,
    clipped at 1, is 1 too, so the padding adds |1 − 1| = 0 and never wins the row maximum. Rows go in blocks of about
    N/16, each only as wide as its longest tail: the work is about N²/2 exponentials with no Python loop per
    candidate."""
    N = logx.size
    # α = inf (a tail tied with x_i) as a huge finite slope: ln ratio 0 → exp(0) = 1 as in x**(1−α); > 0 → 0.
    slope = 1.0 - np.where(np.isinf(alphas), 1e300, alphas)
    window = sliding_window_view(np.concatenate([logx, np.full(N - 1, np.inf)]), N)
    k = np.arange(N, dtype=np.float64)
    out = np.empty(N - 1)
    rows = max(1, min(_BLOCK_ELEMS // N, -(-N // 16)))
    for start in range(0, N - 1, rows):
        i = np.arange(start, min(start + rows, N - 1))
        width = N - start                                           # the longest tail in this block
        gap = window[i, :width] - logx[i][:, None]                  # ln(x_j / x_i) ≥ 0
        gap *= slope[i][:, None]
        np.exp(gap, out=gap)                                        # (x_j / x_i)^(1−α_i) = 1 − theoretical CDF
        empirical = np.outer(1.0 / (N - i), k[:width])              # (j − i) / n_i, just below each point
        np.minimum(empirical, 1.0, out=empirical)
        gap += empirical
        gap -= 1.0                                                  # −(theory − empirical)
        np.abs(gap, out=gap)
        out[i] = gap.max(axis=1)
    return out


def _small_n_candidates(logx: np.ndarray, n: np.ndarray, log_ratio_sum: np.ndarray):
    """WeightWatcher 0.7.7's fit for N < 20 (``WWFit.fit_powerlaw_smallN`` as its ``__init__`` then uses it):
    only tails of at least 8 values with Σ ln(x_j/x_i) > 1e-12 are candidates, α is the bias-corrected
    1 + (n − 1)/Σ ln(x_j/x_i), and the candidate with the smallest KS distance wins (the J objective that function
    computes is overridden by ``__init__``'s argmin of D). With no candidate the whole sample is the tail."""
    valid = (n >= SMALL_N_MIN_TAIL) & (log_ratio_sum > 1e-12)
    if not valid.any():
        valid[0] = log_ratio_sum[0] > 1e-12
        if not valid[0]:
            raise ValueError(f"all {n[0]:.0f} eigenvalues above EVALS_THRESH are equal: no power law to fit")
    safe = np.where(valid, log_ratio_sum, 1.0)
    alphas = np.where(valid, 1.0 + (n - 1.0) / safe, 0.0)
    Ds = np.where(valid, _ks_distances(logx, np.where(valid, alphas, 2.0)), 1.0)
    return alphas, Ds


def fit_power_law(eigenvalues, small_n: bool = True) -> PowerLawFit:
    """WeightWatcher's power-law fit of an ESD (see the module docstring for every formula). ``small_n=False`` uses
    the standard fit for every N (WeightWatcher before its small-N fit, and the textbook CSN estimator)."""
    lam = _as_numpy(eigenvalues, "eigenvalues")
    if (lam < 0).any():
        raise ValueError(f"eigenvalues of WᵀW are ≥ 0; got {int((lam < 0).sum())} negative, e.g. "
                         f"{lam[lam < 0][0]} (pass λ = σ², e.g. esd_eigenvalues(singular_values))")
    x = np.sort(lam[lam > EVALS_THRESH])
    if x.size < 2:
        raise ValueError(f"a power-law fit needs at least 2 eigenvalues above EVALS_THRESH={EVALS_THRESH:g} "
                         f"(one candidate x_min plus a tail); got {x.size} of {lam.size}")
    N = x.size
    logx = np.log(x)
    n = (N - np.arange(N - 1)).astype(np.float64)                  # tail sizes of candidates 0 … N−2
    log_ratio_sum = np.cumsum(logx[::-1])[::-1][:-1] - n * logx[:-1]   # Σ_{j≥i} ln(x_j / x_i)
    if small_n and N < SMALL_N:
        alphas, Ds = _small_n_candidates(logx, n, log_ratio_sum)
    else:
        with np.errstate(divide="ignore"):
            alphas = 1.0 + n / log_ratio_sum                       # = inf when the whole tail ties with x_i
        Ds = _ks_distances(logx, alphas)
    best = int(np.argmin(Ds))
    alpha = float(alphas[best])
    lam_max = float(lam.max())
    warning = "over-trained" if alpha < OVER_TRAINED else "under-trained" if alpha > UNDER_TRAINED else ""
    return PowerLawFit(alpha=alpha, xmin=float(x[best]), xmax=float(x[-1]), D=float(Ds[best]),
                       sigma=float((alpha - 1.0) / math.sqrt(n[best])), n_tail=int((lam >= x[best]).sum()),
                       alpha_weighted=float(alpha * math.log10(lam_max)), warning=warning)


def _alpha_pair(lam: np.ndarray) -> tuple[float, float]:
    """(α, α̂) of one ESD, NaN for layers WeightWatcher skips (< MIN_EVALS eigenvalues or < 2 above threshold)."""
    if lam.size < MIN_EVALS or int((lam > EVALS_THRESH).sum()) < 2:
        return math.nan, math.nan
    fit = fit_power_law(lam)
    return fit.alpha, fit.alpha_weighted


class ESD(Probe):
    """Power-law exponent of every selected weight's ESD: ``alpha/<path>`` and ``alpha_weighted/<path>``
    (WeightWatcher's α and α̂ = α·log₁₀λ_max; NaN for layers with fewer than 8 eigenvalues)."""

    name = "esd"
    needs_matrices = True

    def __init__(self, every: int = 10, modules: Rules = None, exclude: Rules = None):
        super().__init__(every)
        self.modules, self.exclude = modules, exclude

    @torch.no_grad()
    def __call__(self, view) -> dict:
        out = {}
        for path, w in weight_matrices(view.model, self.modules, self.exclude):
            alpha, alpha_weighted = _alpha_pair(layer_eigenvalues(w))
            out[make_key("alpha", path)] = alpha
            out[make_key("alpha_weighted", path)] = alpha_weighted
        return out


# ---- α from recorded spectra ---------------------------------------------------------------------------------------
_FITTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # History -> {key: [α per record]}


def _history_of(history):
    from ..core.history import History

    if isinstance(history, History):
        return history
    if isinstance(getattr(history, "history", None), History):
        return history.history
    raise TypeError(f"history must be a History or a Run, got {type(history).__name__}")


def alpha_over_time(history, module: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, alphas)`` of WeightWatcher's α for the recorded ``sv/<module>`` spectra, without re-running.

    The spectra are those the ``Spectrum`` probe stored: for a convolution that is the reshaped ``(out, in·∏k)``
    matrix, not WeightWatcher's pooled slices (use the ``ESD`` probe for those); for Linear/Embedding layers the two
    agree exactly. Fits are cached per History and only new records are fitted (a History is append-only)."""
    h = _history_of(history)
    module = module[len("sv/"):] if module.startswith("sv/") else module
    key = make_key("sv", module)
    if key not in h:
        raise ValueError(f"no singular values recorded for module {module!r}; recorded modules: "
                         f"{sorted(h.modules('sv'))} (add a Spectrum probe that selects it)")
    series = h[key]
    cache = _FITTED.setdefault(h, {}).setdefault(key, [])
    for sv in series.values[len(cache):]:
        cache.append(_alpha_pair(esd_eigenvalues(sv))[0])
    n = len(series.steps)
    return np.asarray(series.steps[:n], dtype=float), np.asarray(cache[:n], dtype=float)


__all__ = ["ESD", "PowerLawFit", "fit_power_law", "esd_eigenvalues", "layer_eigenvalues", "alpha_over_time",
           "EVALS_THRESH", "MIN_EVALS"]
