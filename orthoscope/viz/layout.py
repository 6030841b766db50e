"""The Dashboard's figure: which panel goes where, at what size, and the one legend above them all.

Rows of three panels: loss | accuracy | spectrum at the viewed step (narrower: the spectrum first), then the log-spectrum heat-maps — one per run
(small multiples, up to six in a row, one shared colorbar at the right end), then one panel per metric, the
training-signals panel (gradient norm, learning rate), the sharpness panel when asked (λ_max of the loss Hessian with
the 2/η line; ``probes.Sharpness``) and the ESD panels (``viz.esd``: the eigenvalue density at the
viewed step, WeightWatcher's α over time). One or two runs' heat-maps flow with the curve panels instead
of taking a row of their own. Each row is ``ROW_IN`` inches high, so at 80 dpi a default Dashboard of one run (two
metrics) is 3 rows, 840 × 520 px, and two runs, or six runs with three metrics, 4 rows, 840 × 684 px: it fits a
laptop window under its controls. In a narrower notebook column (``Dashboard.fit_width``) the same panels flow two
per row, or one (``columns_for``), and the figure grows taller instead of squeezing them.

Legends never sit on data: ``figure_legend`` draws a single legend above the panels (``loc="outside upper center"``
with constrained layout) — runs by colour, splits by line style, and the grey step-0 reference.
"""
from __future__ import annotations

import math

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .plots import LINESTYLES, REFERENCE_COLOUR

ROW_IN = 2.05                 # inches per row of panels
MIN_3_COLUMNS_PX = 600        # narrower figures get two panels per row (``columns_for``)
MIN_2_COLUMNS_PX = 420        # … and one below this
LEGEND_IN = 0.35              # the legend strip above them
HEATMAPS_PER_ROW = 6
RC = {"font.size": 7.5, "axes.titlesize": 8.5, "axes.labelsize": 7.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "legend.fontsize": 7.5}


def columns_for(width_px: float) -> int:
    """Panels per row at a figure ``width_px`` wide: three from ``MIN_3_COLUMNS_PX``, two from ``MIN_2_COLUMNS_PX``,
    else one — a panel narrower than ~190 px cannot hold its tick labels and title."""
    return 3 if width_px >= MIN_3_COLUMNS_PX else 2 if width_px >= MIN_2_COLUMNS_PX else 1


def _rows(names: list[str], metrics: list[str], esd: bool, n_cols: int, sharpness: bool = False) -> list[list[str]]:
    """The panel names row by row; ``"heatmaps:<i>"`` marks a row of heat-maps of their own (more than two runs)."""
    own_row = len(names) > 2   # one or two heat-maps flow with the curve panels; more get rows of their own
    flowing = ([] if own_row else [f"heatmap:{n}" for n in names]) + [f"metric:{m}" for m in metrics] + ["signals"]
    flowing += ["sharpness"] if sharpness else []
    flowing += ["esd", "alpha"] if esd else []
    # narrow (two or one per row): the spectrum first, right under the controls, so a Dashboard of many runs shows
    # its controls and a spectrum on one screen (issue 27: six runs at 900 px were 1680 px tall, spectrum below)
    panels = (["loss", "acc", "spectrum"] if n_cols >= 3 else ["spectrum", "loss", "acc"]) + flowing
    rows = [panels[i:i + n_cols] for i in range(0, len(panels), n_cols)]
    if own_row:
        heat_rows = math.ceil(len(names) / (HEATMAPS_PER_ROW * n_cols // 3))
        after = next(r for r, row in enumerate(rows) if "spectrum" in row) + 1
        rows[after:after] = [[f"heatmaps:{r}"] for r in range(heat_rows)]
    return rows


def figure_height(names: list[str], metrics: list[str], esd: bool, n_cols: int, sharpness: bool = False) -> float:
    """Inches: the legend strip and ``ROW_IN`` per row of panels."""
    return LEGEND_IN + ROW_IN * len(_rows(names, metrics, esd, n_cols, sharpness))


def build_figure(names: list[str], metrics: list[str], figsize, dpi: int, esd: bool = True, n_cols: int = 3,
                 sharpness: bool = False):
    """(Figure, {panel name: Axes}) for runs ``names`` and curve panels ``metrics``, ``n_cols`` panels per row.
    ``figsize`` = (width, height); a height of None is computed from the number of rows. Panel names: ``loss``,
    ``acc``, ``spectrum``, ``heatmap:<run>`` (and ``heatmap``, the first run's), ``metric:<m>``, ``signals``,
    ``esd``, ``alpha``, ``colorbar`` (and ``sharpness`` with ``sharpness=True``)."""
    width, height = figsize
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height or figure_height(names, metrics, esd, n_cols, sharpness)), dpi=dpi,
                     layout="constrained")
    return fig, add_panels(fig, names, metrics, esd, n_cols, sharpness)


def add_panels(fig, names: list[str], metrics: list[str], esd: bool = True, n_cols: int = 3,
               sharpness: bool = False) -> dict:
    """Lay the panels out on ``fig`` (cleared first), ``n_cols`` per row; returns {panel name: Axes}. A heat-map
    with a heat-map to its left has ``_orthoscope_beside_heatmap`` set (it shares that one's index axis)."""
    rows = _rows(names, metrics, esd, n_cols, sharpness)
    fig.clear()
    with matplotlib.rc_context(RC):
        outer = fig.add_gridspec(len(rows), 1)
        axes = {}
        heat_rows = [r for r, row in enumerate(rows) if row[0].startswith("heatmaps:")]
        if heat_rows:
            cols = min(len(names), HEATMAPS_PER_ROW * n_cols // 3)
            grid = outer[heat_rows[0]:heat_rows[-1] + 1].subgridspec(len(heat_rows), cols + 1,
                                                                      width_ratios=[1] * cols + [0.06])
            for i, name in enumerate(names):
                axes[f"heatmap:{name}"] = fig.add_subplot(grid[i // cols, i % cols])
                axes[f"heatmap:{name}"]._orthoscope_beside_heatmap = i % cols > 0
            axes["colorbar"] = fig.add_subplot(grid[:, -1])
        for r, row in enumerate(rows):
            if r in heat_rows:
                continue
            grid = outer[r].subgridspec(1, n_cols)
            for j, name in enumerate(row):
                if name == f"heatmap:{names[-1]}":     # the last flowing heat-map has the shared colorbar beside it
                    sub = grid[0, j].subgridspec(1, 2, width_ratios=[1, 0.06], wspace=0.02)
                    axes[name] = fig.add_subplot(sub[0, 0])
                    axes[name]._orthoscope_title_share = 0.55     # the colorbar's ticks and label take the rest
                    axes["colorbar"] = fig.add_subplot(sub[0, 1])
                else:
                    axes[name] = fig.add_subplot(grid[0, j])
                if name.startswith("heatmap:"):
                    axes[name]._orthoscope_beside_heatmap = j > 0 and row[j - 1].startswith("heatmap:")
        axes["heatmap"] = axes[f"heatmap:{names[0]}"]
    return axes


def label_room(fig) -> tuple:
    """What decides how much room the panels' tick labels and titles take, cheaply (no tick is computed): per axis
    the decade of its largest limit and of its span (tick labels gain a digit or a decimal when one changes) and the
    sign of its lower limit; per panel its title's number of lines. Constrained layout re-runs when this changes."""
    def decade(v: float) -> int:
        return math.floor(math.log10(v)) if v > 0 and math.isfinite(v) else 0

    room = []
    for ax in fig.axes:
        for lo, hi in (ax.get_xlim(), ax.get_ylim()):
            room.append((decade(max(abs(lo), abs(hi))), decade(abs(hi - lo)), min(lo, hi) < 0))
        room.append(ax.get_title().count("\n"))
    return tuple(room)


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
