"""The Dashboard's words: its status line, and the values shown under the mouse (see ``dashboard``)."""
from __future__ import annotations

import numpy as np

from .labels import describe_layer
from .plots import nearest_step


def _value_at(series, step):
    """(recorded step nearest ``step``, value there) of a scalar series."""
    j = nearest_step(series.steps, step)
    return series.steps[j], float(series.values[j])


def status_html(dash) -> str:
    """The status line: each run's step and numbers at the viewed step, whether the view follows training, a
    warning when the runs stand at different steps, the chosen layer in words, the last export note and error."""
    at, lines = dash.viewed_step, []
    for name, run in zip(dash.names, dash.runs):
        h, bits = run.history, []
        for key, label in (("loss/train", "train loss"), ("loss/test", "test loss"), ("loss/val", "val loss"),
                           ("acc/train", "train acc"), ("acc/test", "test acc")):
            if key in h and len(h[key]):
                bits.append(f"{label} {_value_at(h[key], at)[1]:.4g}")
        shown = f" · at step {at}: " + " · ".join(bits) if bits else " · nothing recorded yet"
        lines.append(f"<b>{name}</b>: step {run.step_count}{shown}")
    common = dash.common_step()
    if dash.following:
        lines.append(f"<span style='color:#070'>● following live — viewing step {at}, the newest</span>")
    else:
        lines.append(f"<span style='color:#a50'>❚❚ viewing step {at} of {common} — not following training; "
                     "press <b>live</b> (or End on the slider) to follow it</span>")
    steps = {name: run.history.last_step for name, run in zip(dash.names, dash.runs) if len(run.history)}
    if len(set(steps.values())) > 1:
        lines.append("⚠ the runs have trained to different steps (" +
                     ", ".join(f"{n}: {s}" for n, s in steps.items()) + f"): every panel marks step {at} "
                     f"≤ {common}, the last step all have recorded; step/play train the runs that are behind "
                     "first")
    if dash.layer.value:
        model = getattr(dash.runs[0], "model", None)
        lines.append(f"<small>{describe_layer(model, dash.layer.value)}</small>")
    if dash._note:
        lines.append(f"<small>{dash._note}</small>")
    if dash.error is not None:
        lines.append(f"<span style='color:#b00'>stopped: {type(dash.error).__name__}: {dash.error}</span>")
    return "<div style='line-height:1.35'>" + "<br>".join(lines) + "</div>"


def drop_hidden(ax, hidden) -> None:
    """Remove the lines of hidden runs (labelled ``"<run> · ..."``) and rescale to what is left."""
    if not hidden:
        return
    for ln in list(ax.get_lines()):
        if ln.get_label().split(" · ", 1)[0] in hidden:
            ln.remove()
    ax.relim()
    ax.autoscale_view()


def hover(ax) -> None:
    """Values on hover: the footer under an ipympl canvas shows ``ax.format_coord(x, y)`` — here, at the step (or
    index) under the mouse, every labelled line's value at its nearest point."""
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_") and len(ln.get_xdata()) > 0]
    if not lines:
        return
    xname = ax.get_xlabel().split(" (")[0] or "x"

    def format_coord(x, y, lines=lines):
        parts = []
        for ln in lines:
            xs = np.asarray(ln.get_xdata(), dtype=float)
            j = int(np.argmin(np.abs(xs - x)))
            parts.append(f"{ln.get_label()} {float(np.asarray(ln.get_ydata())[j]):.4g}")
        return f"{xname} {x:.0f}: " + " · ".join(parts)

    ax.format_coord = format_coord
