"""Pure plotting functions: ``plot_*(ax, history, ...) -> list[Artist]``.

Each function draws on the axes it is given and returns the artists it added; none calls ``plt.show`` or
``savefig``, none creates a figure. ``history`` is a ``History``, a ``Run`` (its ``.history`` is used, its name labels
the lines) or, where an overlay makes sense (``plot_curves``, ``plot_loss_accuracy``, ``plot_metric``,
``plot_spectrum_at``), a list of runs or ``(label, history)`` pairs — each drawn in its own colour, with a legend.

Keys follow ``History``: ``"<metric>/<module path>"``; spectra are the array series ``sv/<module>``.

    fig, ax = plt.subplots()
    plot_spectrum_heatmap(ax, run.history, "layers.0")            # x = step, y = index i, colour = log10 σ_i
    plot_metric(ax2, [("wd=1", run_a), ("wd=0", run_b)], "sv_entropy", modules=["layers.0"])
"""
from __future__ import annotations

import numpy as np

from ..core.keys import key as make_key, metric_of, where_of

LINESTYLES = ("-", "--", ":", "-.")
LOG_FLOOR = 1e-12   # σ below LOG_FLOOR·max σ is drawn at that floor: log10(0) would be −inf and blank the heat-map
REFERENCE_COLOUR = "0.6"   # the step-0 spectrum, drawn behind the current one

# metric -> (a title a student can read, the y-axis label). Unknown metrics fall back to their key.
METRIC_LABELS = {
    "sv_entropy": ("singular-value entropy", "entropy (1 = flat spectrum)"),
    "he_s1": ("hyperspherical energy (s = 1)", "energy (lower = rows spread out)"),
    "he_s2": ("hyperspherical energy (s = 2)", "energy (lower = rows spread out)"),
    "stable_rank": ("stable rank", "‖W‖²_F / σ₁²"),
    "condition_number": ("condition number", "σ₁ / σ_min"),
    "sv_drift": ("spectrum drift from step 0", "‖σ_t − σ_0‖ / ‖σ_0‖"),
    "weight_norm": ("weight norm", "‖W‖_F"),
    "grad_norm": ("gradient norm", "‖∇L‖"),
    "spectral_norm": ("spectral norm σ₁", "σ₁ (largest singular value)"),
    "alpha": ("power-law exponent α of the ESD", "α"),
    "lr": ("learning rate", "learning rate"),
    "sharpness": ("sharpness (top Hessian eigenvalue)", "λ_max of ∇²L"),
    "two_over_lr": ("edge of stability 2/η", "2/η"),
    "hessian_eig": ("Hessian eigenvalue", "λ_i of ∇²L"),
    "hessian_trace": ("Hessian trace (Hutchinson)", "tr ∇²L"),
}


def metric_title(metric: str, module: str | None = None) -> str:
    """``"singular-value entropy of layers.0"`` for ``("sv_entropy", "layers.0")``; the key itself if unknown."""
    name = METRIC_LABELS.get(metric, (metric.replace("_", " "), metric))[0]     # never a raw key in a title
    return f"{name} of {module}" if module and module != "total" else name


def metric_ylabel(metric: str) -> str:
    return METRIC_LABELS.get(metric, (metric, metric.replace("_", " ")))[1]


def smooth_ema(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with weight ``weight`` ∈ [0, 1), debiased so the
    first points are not pulled toward 0 (divide by 1 − weightᵗ). ``weight = 0`` returns the values unchanged.
    Non-finite values are skipped (the average carries over them)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight!r}")
    y = np.asarray(values, dtype=float)
    if weight == 0.0 or y.size == 0:
        return y
    out, acc, norm = np.empty_like(y), 0.0, 0.0
    for i, v in enumerate(y):
        if np.isfinite(v):
            acc = weight * acc + (1 - weight) * v
            norm = weight * norm + (1 - weight)
        out[i] = acc / norm if norm > 0 else np.nan
    return out


# ---- inputs ------------------------------------------------------------------------------------------------------
def _as_runs(history) -> list[tuple[str, object]]:
    """Normalize ``history`` to ``[(label, History)]``. A bare History or Run gives one unlabelled entry; in a list,
    a Run is labelled with its ``name``, a History with ``run <i>``."""
    from ..core.history import History

    def one(item, default_label):
        if isinstance(item, History):
            return default_label, item
        if isinstance(getattr(item, "history", None), History):
            return getattr(item, "name", None) or default_label, item.history
        raise TypeError(f"history must be a History, a Run, or a list of them / of (label, history) pairs; "
                        f"got {type(item).__name__}")

    if isinstance(history, (list, tuple)):
        if not history:
            raise ValueError("history is an empty list; pass a History, a Run, or a non-empty list of them")
        runs = []
        for i, item in enumerate(history):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                label, (_, h) = item[0], one(item[1], item[0])
                runs.append((label, h))
            else:
                runs.append(one(item, f"run {i}"))
        return runs
    return [("", one(history, "")[1])]   # a lone run needs no label in its legend


def _single(history, what: str):
    runs = _as_runs(history)
    if len(runs) != 1:
        raise ValueError(f"{what} draws one run; got {len(runs)} — call it once per run (one axes each)")
    return runs[0][1]


def _is_array(h, key: str) -> bool:
    return h[key].is_array


def scalar_keys(runs) -> list[str]:
    """The History keys holding numbers (not spectra) in any of ``runs`` (``[(label, History)]``), first seen first."""
    seen = {}
    for _, h in runs:
        for k in h.keys():
            if not _is_array(h, k):
                seen.setdefault(k, None)
    return list(seen)


def _sv_key(runs, module: str) -> str:
    module = module[len("sv/"):] if module.startswith("sv/") else module
    key = make_key("sv", module)
    if not any(key in h for _, h in runs):
        recorded = sorted({m for _, h in runs for m in h.modules("sv")})
        raise ValueError(f"no singular values recorded for module {module!r}; recorded modules: {recorded} "
                         "(add a Spectrum probe that selects it)")
    return key


def _style(i_run: int, i_key: int, n_runs: int, labelled: bool) -> dict:
    """Several runs: colour = run, line style = key. One run: colour = key."""
    if n_runs > 1 or labelled:
        return {"color": f"C{i_run % 10}", "linestyle": LINESTYLES[i_key % len(LINESTYLES)]}
    return {"color": f"C{i_key % 10}", "linestyle": "-"}


def _label(prefix: str, run_label: str, key: str) -> str:
    return f"{prefix}{run_label + ' · ' if run_label else ''}{key}"


def _xy(series, upto_step=None, smooth: float = 0.0):
    steps = np.asarray(series.steps, dtype=float)
    values = smooth_ema(np.asarray(series.values, dtype=float), smooth)
    if upto_step is not None:
        keep = steps <= upto_step
        steps, values = steps[keep], values[keep]
    return steps, values


# ---- scalar curves -----------------------------------------------------------------------------------------------
def _default_curve_keys(runs) -> list[str]:
    keys = [k for k in scalar_keys(runs) if metric_of(k) in ("loss", "acc") and k != "loss/batch"]
    if not keys:
        keys = [k for k in scalar_keys(runs) if k == "loss/batch"]
    if not keys:
        raise ValueError(f"no loss/* or acc/* series recorded (add an Evaluate probe); recorded keys: "
                         f"{scalar_keys(runs)[:40]}")
    return keys


def _check_keys(runs, keys) -> list[str]:
    keys = [keys] if isinstance(keys, str) else list(keys)
    scalars = scalar_keys(runs)
    for k in keys:
        if k in scalars:
            continue
        if any(k in h for _, h in runs):
            raise ValueError(f"{k!r} is an array series (one vector per step); plot it with plot_spectrum_heatmap/"
                             "plot_spectrum_lines/plot_spectrum_at")
        raise ValueError(f"unknown key {k!r}; recorded scalar keys: {scalars[:60]}")
    return keys


def _twin(ax):
    """The right-hand axes of ``ax`` made by a previous call, cleared; or a new one."""
    twin = getattr(ax, "_orthoscope_twin", None)
    if twin is None or twin.figure is None or twin not in ax.figure.axes:
        twin = ax.twinx()
        ax._orthoscope_twin = twin
    else:
        twin.clear()
    twin.yaxis.tick_right()
    twin.yaxis.set_label_position("right")
    return twin


def plot_curves(ax, history, keys=None, logx: bool = False, logy: bool = False, label_prefix: str = "") -> list:
    """Scalar series against step. Default keys: every ``loss/*`` (not ``loss/batch``) on ``ax`` and every
    ``acc/*`` on a right-hand twin axes (0–1, dashed) — the two scales differ. Explicit ``keys`` share ``ax``.
    ``logy`` applies to ``ax`` only (accuracy stays linear)."""
    runs = _as_runs(history)
    labelled = isinstance(history, (list, tuple))
    default = keys is None
    keys = _default_curve_keys(runs) if default else _check_keys(runs, keys)
    acc_keys = [k for k in keys if k.startswith("acc/")] if default else []
    left_keys = [k for k in keys if k not in acc_keys]
    twin = _twin(ax) if (acc_keys and left_keys) else None
    artists = []
    for i_run, (run_label, h) in enumerate(runs):
        for i_key, key in enumerate(keys):
            if key not in h:
                continue
            target = twin if (twin is not None and key in acc_keys) else ax
            style = _style(i_run, i_key, len(runs), labelled)
            if target is twin and not (len(runs) > 1 or labelled):
                style["linestyle"] = "--"
            x, y = _xy(h[key])
            artists += target.plot(x, y, label=_label(label_prefix, run_label, key), **style)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    if twin is not None:
        twin.set_ylim(-0.02, 1.02)
        twin.set_ylabel("accuracy")
        ax.set_ylabel("loss")
    elif len({metric_of(k) for k in left_keys}) == 1:    # one kind of quantity: name it on the axis
        prefix = metric_of(left_keys[0])
        ax.set_ylabel({"loss": "loss", "acc": "accuracy"}.get(prefix, metric_ylabel(prefix)))
    if artists:   # one legend for both axes
        ax.legend(artists, [a.get_label() for a in artists], fontsize="x-small")
    return artists


def plot_loss_accuracy(axes_pair, history, smooth: float = 0.0, legend: bool = True) -> list:
    """Loss (log y) on ``axes_pair[0]`` and accuracy on ``axes_pair[1]``, one line per split (train solid,
    test dashed when runs are overlaid; colour = split for one run, = run for several). ``smooth``: EMA weight
    (``smooth_ema``); ``legend=False`` leaves the legend to the caller (the Dashboard draws one for the figure)."""
    if len(axes_pair) != 2:
        raise ValueError(f"axes_pair must hold exactly 2 axes (loss, accuracy), got {len(axes_pair)}")
    ax_loss, ax_acc = axes_pair
    runs = _as_runs(history)
    scalars = scalar_keys(runs)
    loss_keys = [k for k in scalars if k.startswith("loss/") and k != "loss/batch"]
    acc_keys = [k for k in scalars if k.startswith("acc/")]
    if not loss_keys and not acc_keys:
        raise ValueError(f"no loss/<split> or acc/<split> series recorded (add an Evaluate probe); recorded keys: "
                         f"{scalars[:40]}")
    labelled = isinstance(history, (list, tuple))
    artists = []
    for ax, keys, title in ((ax_loss, loss_keys, "loss"), (ax_acc, acc_keys, "accuracy")):
        for i_run, (run_label, h) in enumerate(runs):
            for i_key, key in enumerate(keys):
                if key in h:
                    x, y = _xy(h[key], smooth=smooth)
                    artists += ax.plot(x, y, label=_label("", run_label, where_of(key)),
                                       **_style(i_run, i_key, len(runs), labelled))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(title)
        if keys and legend:
            ax.legend(fontsize="x-small")
    ax_loss.set_yscale("log")
    ax_acc.set_ylim(-0.02, 1.02)
    return artists


def plot_metric(ax, history, metric: str, modules=None, smooth: float = 0.0, legend: bool = True) -> list:
    """One line per module of a per-module scalar metric (``"sv_entropy"``, ``"he_s1"``, ``"stable_rank"``, …).
    ``modules``: a name or list of names (default: every module recorded for the metric). The title and y label are
    the metric's readable name (``METRIC_LABELS``), e.g. "singular-value entropy of layers.0" for one module."""
    runs = _as_runs(history)
    labelled = isinstance(history, (list, tuple))
    scalar_metrics = sorted({metric_of(k) for k in scalar_keys(runs)})
    if metric not in scalar_metrics:
        arrays = sorted({m for _, h in runs for m in h.metrics()} - set(scalar_metrics))
        extra = f" ({metric!r} holds arrays: use the plot_spectrum_* functions)" if metric in arrays else ""
        raise ValueError(f"unknown metric {metric!r}{extra}; recorded scalar metrics: {scalar_metrics}")
    recorded = list(dict.fromkeys(m for _, h in runs for m in h.modules(metric)))
    if modules is None:
        modules = recorded
    else:
        modules = [modules] if isinstance(modules, str) else list(modules)
        bad = [m for m in modules if m not in recorded]
        if bad:
            raise ValueError(f"metric {metric!r} has no series for module(s) {bad}; recorded modules: {recorded}")
    curves = []                  # (label, x, y, style)
    for i_run, (run_label, h) in enumerate(runs):
        for i_mod, module in enumerate(modules):
            key = make_key(metric, module)
            if key in h:
                x, y = _xy(h[key], smooth=smooth)
                curves.append((_label("", run_label, module), x, y, _style(i_run, i_mod, len(runs), labelled)))
    title, ylabel = metric_title(metric, modules[0] if len(modules) == 1 else None), metric_ylabel(metric)
    first = [y[np.isfinite(y)][0] for _, _, y, _ in curves if np.isfinite(y).any()]
    if near_constant([y for _, _, y, _ in curves]):
        # Drawn as is, matplotlib would label the axis with an offset ("1e−7+8.93274e−1") and the 5e-7 wobble would
        # fill the panel like a large change: draw the change from the first recorded value, and state the value.
        curves = [(label, x, y - (y[np.isfinite(y)][0] if np.isfinite(y).any() else 0.0), style)
                  for label, x, y, style in curves]
        values = ", ".join(dict.fromkeys(f"{v:.6g}" for v in first))
        title = f"change of {title} from step 0 (≈ {values} throughout)"
        ylabel = f"Δ {ylabel}"
    artists = []
    for label, x, y, style in curves:
        artists += ax.plot(x, y, label=label, **style)
    if ax.get_yscale() == "linear":
        try:
            ax.ticklabel_format(axis="y", useOffset=False)
        except AttributeError:          # a formatter other than matplotlib's ScalarFormatter: it has no offset
            pass
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if artists and legend:
        ax.legend(fontsize="x-small")
    return artists


NEAR_CONSTANT = 1e-3   # a spread below this share of the values' size: matplotlib would switch to an offset label


def near_constant(ys) -> bool:
    """True when the curves ``ys`` together vary by less than ``NEAR_CONSTANT`` of their size (and by something):
    the change, not the value, is what can be drawn (``plot_metric``)."""
    finite = [np.asarray(y, dtype=float)[np.isfinite(y)] for y in ys]
    values = np.concatenate([f for f in finite if f.size] or [np.zeros(0)])
    if values.size < 2:
        return False
    span, size = float(values.max() - values.min()), float(np.abs(values).max())
    return 0 < span < NEAR_CONSTANT * size


# ---- spectra -----------------------------------------------------------------------------------------------------
def _spectra(h, key: str, upto_step=None) -> tuple[np.ndarray, np.ndarray]:
    series = h[key]
    steps = np.asarray(series.steps, dtype=float)
    lengths = {int(v.numel()) for v in series.values}
    if len(lengths) != 1:
        raise ValueError(f"{key!r} changes length over time ({sorted(lengths)}); cannot draw it as one array")
    S = series.stack().double().numpy()
    if upto_step is not None:
        keep = steps <= upto_step
        if not keep.any():
            raise ValueError(f"upto_step={upto_step} is before the first recorded step {int(steps[0])} of {key!r}")
        steps, S = steps[keep], S[keep]
    return steps, S


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges half-way between consecutive centres (steps need not be evenly spaced)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def log_spectrum(S: np.ndarray) -> np.ndarray:
    """log10 σ with σ clamped at ``LOG_FLOOR · max σ`` (exact zeros of rank-deficient layers stay finite)."""
    top = float(np.max(S)) if S.size else 1.0
    return np.log10(np.maximum(S, LOG_FLOOR * top if top > 0 else LOG_FLOOR))


def plot_spectrum_heatmap(ax, history, module: str, upto_step=None, colorbar: bool = False, cmap: str = "viridis",
                          vmin: float | None = None, vmax: float | None = None):
    """``sv/<module>`` over time: x = step, y = index i (σ_1 largest, at the bottom), colour = log10 σ_i.
    ``vmin``/``vmax`` fix the colour scale (in log10 σ) — give several runs the same ones to compare them.
    Returns ``[QuadMesh]``; pass it to ``fig.colorbar`` yourself or use ``colorbar=True``."""
    h = _single(history, "plot_spectrum_heatmap")
    key = _sv_key([("", h)], module)
    steps, S = _spectra(h, key, upto_step)
    y_edges = np.arange(S.shape[1] + 1) + 0.5
    mesh = ax.pcolormesh(_edges(steps), y_edges, log_spectrum(S).T, shading="flat", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xlabel("step")
    ax.set_ylabel("index i")
    ax.set_title(f"log10 σ of {key[3:]}")
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="log10 σ")
    return [mesh]


def plot_spectrum_lines(ax, history, module: str, upto_step=None, max_lines: int = 32, cmap: str = "viridis"):
    """Each σ_i against step (log y), colour by index; at most ``max_lines`` evenly spaced indices (first and last
    always included)."""
    if not isinstance(max_lines, int) or max_lines < 1:
        raise ValueError(f"max_lines must be a positive integer, got {max_lines!r}")
    import matplotlib

    h = _single(history, "plot_spectrum_lines")
    key = _sv_key([("", h)], module)
    steps, S = _spectra(h, key, upto_step)
    n = S.shape[1]
    idx = np.unique(np.linspace(0, n - 1, min(n, max_lines)).round().astype(int))
    colours = matplotlib.colormaps[cmap](np.linspace(0, 1, len(idx)))
    artists = []
    for c, i in zip(colours, idx):
        artists += ax.plot(steps, S[:, i], color=c, lw=1, label=f"σ_{i + 1}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("σ_i")
    ax.set_title(f"singular values — {key[3:]}")
    return artists


def step_for(step, label):
    """``step`` itself, or — given a mapping {run label: step}, as a Dashboard passes (``viz.view_state``) — that
    run's own step."""
    return step[label] if isinstance(step, dict) else step


def nearest_step(steps, step) -> int:
    """Index of the recorded step nearest ``step`` (the earlier one on a tie)."""
    steps = np.asarray(steps, dtype=float)
    if steps.size == 0:
        raise ValueError("nothing recorded yet")
    return int(np.argmin(np.abs(steps - float(step))))


def spectrum_limits(history, module: str, upto_step=None, margin: float = 1.15) -> tuple[float, float]:
    """(low, high) of σ over every recorded step (≤ ``upto_step``) of every run given, widened by ``margin`` on a log
    scale — fixed y-limits for ``plot_spectrum_at``, so scrubbing or playing shows motion, not a rescaled axis. σ is
    floored as in ``log_spectrum`` (a rank-deficient layer's zeros would put the low end at −∞)."""
    runs = _as_runs(history)
    key = _sv_key(runs, module)
    lo, hi = np.inf, 0.0
    for _, h in runs:
        if key in h and len(h[key]):
            _, S = _spectra(h, key, upto_step)
            top = float(S.max())
            lo = min(lo, float(np.maximum(S, LOG_FLOOR * top if top > 0 else LOG_FLOOR).min()))
            hi = max(hi, top)
    if not np.isfinite(lo) or hi <= 0:
        raise ValueError(f"no non-zero singular values recorded for {key[3:]!r}")
    return lo / margin, hi * margin


def plot_spectrum_at(ax, history, module: str, step, reference_step=None, ylim=None, legend: bool = True) -> list:
    """The spectrum σ_i against i (log y) at the recorded step nearest ``step`` (or, for a mapping {run label: step},
    each run's own); one line per run. With
    ``reference_step`` (e.g. 0) each run's spectrum at that step is drawn behind it in grey, so change since then
    reads at a glance; ``ylim`` fixes the y-range (``spectrum_limits``). Returns the coloured lines only."""
    runs = _as_runs(history)
    labelled = isinstance(history, (list, tuple))
    key = _sv_key(runs, module)
    artists, shown, refs = [], [], []
    for i_run, (run_label, h) in enumerate(runs):
        if key not in h or not len(h[key]):
            continue
        series = h[key]
        j = nearest_step(series.steps, step_for(step, run_label))
        sv = series.values[j].double().numpy()
        shown.append(series.steps[j])
        label = f"{run_label + ' · ' if run_label else ''}step {series.steps[j]}"
        colour = f"C{i_run % 10}" if (len(runs) > 1 or labelled) else "C0"
        artists += ax.plot(np.arange(1, sv.size + 1), sv, marker=".", ms=3, color=colour, label=label, zorder=3)
    for i_run, (run_label, h) in enumerate(runs):      # after the coloured lines: ax.lines[i] is still run i's
        if reference_step is None or key not in h or not len(h[key]):
            continue
        series = h[key]
        r = nearest_step(series.steps, reference_step)
        ref = series.values[r].double().numpy()
        refs += ax.plot(np.arange(1, ref.size + 1), ref, color=REFERENCE_COLOUR, lw=1.2, zorder=2,
                        ls=LINESTYLES[i_run % len(LINESTYLES)] if len(runs) > 1 else "-",
                        label=f"{run_label + ' · ' if run_label else ''}step {series.steps[r]} (reference)")
    if not artists:
        raise ValueError(f"nothing recorded yet for {key[3:]!r}")
    ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("index i (largest first)")
    ax.set_ylabel("singular value σ_i")
    steps_txt = ", ".join(str(s) for s in dict.fromkeys(shown))
    ax.set_title(f"spectrum of {key[3:]} at step {steps_txt}")
    if legend and (len(artists) > 1 or refs):
        ax.legend(fontsize="x-small")
    return artists


__all__ = ["plot_curves", "plot_loss_accuracy", "plot_metric", "plot_spectrum_heatmap", "plot_spectrum_lines",
           "plot_spectrum_at", "spectrum_limits", "nearest_step", "log_spectrum", "smooth_ema", "metric_title",
           "METRIC_LABELS", "near_constant"]
