"""The Dashboard's figure: which panel goes where, at what size, and the one legend above them all.

Rows of three panels: loss | accuracy | spectrum at the viewed step, then the log-spectrum heat-maps — one per run
(small multiples, up to six in a row, one shared colorbar at the right end), then one panel per metric, the
training-signals panel (gradient norm, learning rate) and the ESD panels (``viz.esd``: the eigenvalue density at the
viewed step, WeightWatcher's α over time). One or two runs' heat-maps flow with the curve panels instead
of taking a row of their own. Each row is ``ROW_IN`` inches high, so at 80 dpi a default Dashboard of one run (two
metrics) is 3 rows, 840 × 520 px, and two runs, or six runs with three metrics, 4 rows, 840 × 684 px: it fits a
laptop window under its controls.

Legends never sit on data: ``figure_legend`` draws a single legend above the panels (``loc="outside upper center"``
with constrained layout) — runs by colour, splits by line style, and the grey step-0 reference.
"""
from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .plots import LINESTYLES, REFERENCE_COLOUR

ROW_IN = 2.05                 # inches per row of panels
LEGEND_IN = 0.35              # the legend strip above them
HEATMAPS_PER_ROW = 6
RC = {"font.size": 7.5, "axes.titlesize": 8.5, "axes.labelsize": 7.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "legend.fontsize": 7.5}


def build_figure(names: list[str], metrics: list[str], figsize, dpi: int, esd: bool = True):
    """(Figure, {panel name: Axes}) for runs ``names`` and curve panels ``metrics``. ``figsize`` = (width, height);
    a height of None is computed from the number of rows. Panel names: ``loss``, ``acc``, ``spectrum``,
    ``heatmap:<run>`` (and ``heatmap``, the first run's), ``metric:<m>``, ``signals``, ``esd``, ``alpha``,
    ``colorbar``."""
    import matplotlib

    n_runs = len(names)
    own_row = n_runs > 2       # one or two heat-maps flow with the curve panels; more get rows of their own
    flowing = ([] if own_row else [f"heatmap:{n}" for n in names]) + [f"metric:{m}" for m in metrics] + ["signals"]
    flowing += ["esd", "alpha"] if esd else []
    heat_rows = math.ceil(n_runs / HEATMAPS_PER_ROW) if own_row else 0
    flow_rows = math.ceil(len(flowing) / 3)
    n_rows = 1 + heat_rows + flow_rows
    width, height = figsize
    height = height or LEGEND_IN + ROW_IN * n_rows
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
        outer = fig.add_gridspec(n_rows, 1)
        axes = {}
        top = outer[0].subgridspec(1, 3)
        for j, name in enumerate(("loss", "acc", "spectrum")):
            axes[name] = fig.add_subplot(top[0, j])
        if heat_rows:
            cols = min(n_runs, HEATMAPS_PER_ROW)
            grid = outer[1:1 + heat_rows].subgridspec(heat_rows, cols + 1, width_ratios=[1] * cols + [0.06])
            for i, name in enumerate(names):
                axes[f"heatmap:{name}"] = fig.add_subplot(grid[i // cols, i % cols])
            axes["colorbar"] = fig.add_subplot(grid[:, -1])
        for r in range(flow_rows):
            cells = flowing[3 * r:3 * r + 3]
            grid = outer[1 + heat_rows + r].subgridspec(1, 3)
            for j, name in enumerate(cells):
                if name == f"heatmap:{names[-1]}":     # the last flowing heat-map has the shared colorbar beside it
                    sub = grid[0, j].subgridspec(1, 2, width_ratios=[1, 0.06], wspace=0.02)
                    axes[name] = fig.add_subplot(sub[0, 0])
                    axes["colorbar"] = fig.add_subplot(sub[0, 1])
                else:
                    axes[name] = fig.add_subplot(grid[0, j])
        axes["heatmap"] = axes[f"heatmap:{names[0]}"]
    return fig, axes


def figure_legend(fig, runs: list[tuple[int, str]], splits: list[str]):
    """Replace the figure's legend: one entry per shown run (colour C<i>), one per split (line style, as
    ``plots._style`` draws them) and the grey step-0 reference. Placed above every panel."""
    for legend in list(fig.legends):
        legend.remove()
    handles, labels = [], []
    for i, name in runs:
        handles.append(Line2D([], [], color=f"C{i % 10}", lw=2))
        labels.append(name)
    for k, split in enumerate(splits):
        handles.append(Line2D([], [], color="0.2" if runs else "C0", ls=LINESTYLES[k % len(LINESTYLES)]))
        labels.append(split)
    handles.append(Line2D([], [], color=REFERENCE_COLOUR, lw=1.2))
    labels.append("step 0 (spectrum)")
    ncol = min(len(handles), 8)
    return fig.legend(handles, labels, loc="outside upper center", ncols=ncol, frameon=False,
                      handlelength=1.8, columnspacing=1.2)
