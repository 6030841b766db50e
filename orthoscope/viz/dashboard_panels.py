"""The Dashboard's panels that are more than one ``plots`` call (``viz.dashboard`` lays them out and calls them).

Each draws on the axes it is given from ``(name, History)`` pairs and raises ``ValueError`` with a sentence for
what is missing — the Dashboard writes that sentence in the panel instead of breaking the others. ``visible`` are
the pairs of the runs shown (the per-run checkboxes); ``names`` all runs' names, so run i keeps colour C<i>.
"""
from __future__ import annotations

import math

from ..core.keys import key as make_key
from ..probes.esd import MIN_EVALS
from .plots import (metric_title, metric_ylabel, plot_spectrum_at, plot_spectrum_heatmap, smooth_ema,
                    spectrum_limits)


def spectrum_panel(ax, pairs, visible, layer: str, view, fixed: bool) -> None:
    """σ_i of ``layer``, each run at its step of ``view`` (``viz.view_state``), with the step-0 spectrum in grey;
    ``fixed``: the y-range of every recorded step of the shown runs (so scrubbing shows motion, not a rescaled
    axis). The title names the steps of the view, as the status line and the markers do."""
    ylim = spectrum_limits(visible, layer) if fixed else None
    plot_spectrum_at(ax, pairs, layer, _steps(pairs, view), reference_step=0, ylim=ylim, legend=False)
    ax.set_title(f"spectrum of {layer} at {view.steps_text()}")


def _steps(pairs, view) -> dict:
    """{run name: its step in ``view``} for every pair (a hidden run is drawn, then removed: any step of its)."""
    steps = view.steps()
    return {name: steps.get(name, 0) for name, _ in pairs}


def heatmap_panel(ax, name: str, history, visible, layer: str, shown: bool, several: bool):
    """One run's log10 σ heat-map over time, on the colour scale shared by every shown run's; returns its mesh."""
    if not shown:
        raise ValueError(f"{name} hidden")
    if make_key("sv", layer) not in history:
        raise ValueError(f"{name} records no spectrum of {layer}")
    # one colour scale for every run's heat-map, so colours compare across the small multiples
    lo, hi = spectrum_limits(visible, layer, margin=1.0)
    (mesh,) = plot_spectrum_heatmap(ax, history, layer, vmin=math.log10(lo), vmax=math.log10(hi))
    # small multiples: the run's name is the title (the layer is named by the spectrum panel and the status line)
    ax.set_title(name if several else f"log10 σ of {layer}")
    if getattr(ax, "_orthoscope_beside_heatmap", False):     # same index axis as the heat-map to its left
        ax.set_ylabel("")
        ax.tick_params(labelleft=False)
    return mesh


def esd_panel(ax, pairs, layer: str, view) -> None:
    """WeightWatcher's view of the layer at the viewed step: the log-log density of λ = σ² (grey: step 0; dashed:
    the fitted power-law tail), and each shown run's α there with its standard error and how many eigenvalues the
    tail holds — a small tail makes α noisy, and the panel says so. Its axes are fixed over the whole history by
    ``plot_esd`` itself."""
    from .esd import fit_at, plot_esd

    steps = _steps(pairs, view)
    plot_esd(ax, pairs, layer, steps, reference_step=0)
    ax.get_legend().remove()             # the figure legend names the runs; α is the next panel
    ax.set_title(f"ESD (λ = σ²) of {layer} at {view.steps_text()}, fit dashed")
    notes = []
    for i, (name, h) in enumerate(pairs):
        if name not in view.steps() or make_key("sv", layer) not in h:
            continue
        _, fit, n = fit_at(h, layer, steps[name])
        who = f"{name}: " if len(pairs) > 1 else ""
        if fit is None:
            notes.append(f"{who}no fit (< {MIN_EVALS} eigenvalues)")
        else:
            # the MLE's standard error (α − 1)/√n_tail (Clauset, Shalizi & Newman 2009, eq. 3.2; WW's ``sigma``)
            notes.append(f"{who}α = {fit.alpha:.2f} ± {fit.sigma:.2f} from a tail of {fit.n_tail} of "
                         f"{n} λ")
    if notes:
        ax.text(0.98, 0.97, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize="x-small",
                label="_alpha note")


def alpha_panel(ax, pairs, layer: str) -> None:
    """WeightWatcher's power-law exponent α of the layer over time — only where WeightWatcher would fit it: a layer
    with fewer than ``MIN_EVALS`` eigenvalues gets the reason instead (the panel is greyed, ``Dashboard``)."""
    from .esd import n_eigenvalues, plot_alpha

    n = n_eigenvalues(pairs, layer)
    # WeightWatcher skips layers with fewer than min_evals eigenvalues: probes.esd.MIN_EVALS = 8 follows
    # WeightWatcher 0.7.7's code; its constants.py (calculatedcontent/weightwatcher, found with the `search` tool:
    # DEFAULT_MIN_EVALS = 10, MIN_NUM_EVALS = 10) and 0.7.7's docstring say 10 — the fits here use 8, so does this.
    if 0 < n < MIN_EVALS:
        raise ValueError(f"α not shown: {layer} has {n} eigenvalues, and WeightWatcher fits a power law only to "
                         f"layers with at least {MIN_EVALS}")
    plot_alpha(ax, pairs, layer)
    ax.get_legend().remove()
    ax.set_title(f"power-law exponent α of {layer}")


def colorbar_panel(fig, cax, mesh) -> None:
    """The heat-maps' shared colorbar (hidden when no heat-map was drawn)."""
    cax.clear()
    if mesh is None:
        cax.set_axis_off()
        return
    cax.set_axis_on()
    fig.colorbar(mesh, cax=cax, label="log10 σ")


def signals_panel(ax, visible, names: list[str], smooth: float) -> None:
    """Gradient norm (log y) and, on a right-hand axis, the learning rate when an ``lr/*`` series exists."""
    several = len(names) > 1
    drawn = []
    for name, h in visible:
        colour = f"C{names.index(name) % 10}" if several else "C0"
        if "grad_norm/total" in h:
            s = h["grad_norm/total"]
            drawn += ax.plot(s.steps, smooth_ema(s.values, smooth), color=colour,
                             label=f"{name} · gradient norm" if several else "gradient norm")
    if not drawn:
        raise ValueError("no gradient norm recorded (add a GradNorm probe)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric_ylabel("grad_norm"))
    title = metric_title("grad_norm")
    if any(h.keys("lr") for _, h in visible):
        twin = ax.twinx()
        ax._orthoscope_twin = twin                 # removed with the panel at the next redraw
        for name, h in visible:
            colour = f"C{names.index(name) % 10}" if several else "C0"
            for k in h.keys("lr"):
                twin.plot(h[k].steps, h[k].values, color=colour, ls="--", lw=0.9,
                          label=f"{name} · {k}" if several else k)
        twin.set_ylabel("learning rate (dashed)")
        title += " & learning rate"
    ax.set_title(title)


def sharpness_panel(ax, visible, names: list[str], smooth: float) -> None:
    """λ_max of the loss Hessian over steps (``sharpness/total``, a ``probes.Sharpness``), and dashed in the run's
    colour the edge of stability 2/η of the learning rate at each measurement (``two_over_lr/total``): full-batch
    GD's sharpness rises to that line and hovers there (Cohen et al. 2021)."""
    several = len(names) > 1
    drawn = []
    for name, h in visible:
        colour = f"C{names.index(name) % 10}" if several else "C0"
        if "sharpness/total" in h:
            s = h["sharpness/total"]
            drawn += ax.plot(s.steps, smooth_ema(s.values, smooth), color=colour,
                             label=f"{name} · λ_max" if several else "λ_max")
        if "two_over_lr/total" in h:
            e = h["two_over_lr/total"]
            ax.plot(e.steps, e.values, color=colour, ls="--", lw=0.9, drawstyle="steps-post",
                    label=f"{name} · 2/η" if several else "2/η")
    if not drawn:
        raise ValueError("no sharpness recorded (add a Sharpness probe: orthoscope.probes.Sharpness(batch))")
    ax.set_xlabel("step")
    ax.set_ylabel(metric_ylabel("sharpness"))
    ax.set_title(metric_title("sharpness") + " and 2/η (dashed)")


__all__ = ["spectrum_panel", "heatmap_panel", "esd_panel", "alpha_panel", "colorbar_panel", "signals_panel",
           "sharpness_panel"]
