"""The Dashboard's words: its status line, and the values shown under the mouse (see ``dashboard``)."""
from __future__ import annotations

import html

import numpy as np

from .labels import describe_layer
from .plots import nearest_step


def _value_at(series, step):
    """(recorded step nearest ``step``, value there) of a scalar series."""
    j = nearest_step(series.steps, step)
    return series.steps[j], float(series.values[j])


_WHY = {"live": "its newest", "scrubbed": "scrubbed back", "ended": "its last — it has not reached the slider's step",
        "hidden": "hidden", "empty": "nothing recorded yet"}


def status_html(dash) -> str:
    """The status line, from the Dashboard's view state (``viz.view_state``) — the one the panels were drawn from:
    each run's trained step, the step it is shown at and why, its numbers there; whether the view follows training;
    a warning when the runs stand at different steps; the chosen layer in words; the last export note and error."""
    view, lines = dash.view, []
    for name, run in zip(dash.names, dash.runs):
        rv, h, bits = view.of(name), run.history, []
        if rv.step is None:
            lines.append(f"<b>{name}</b>: step {run.step_count} · {_WHY[rv.why]}")
            continue
        for key, label in (("loss/train", "train loss"), ("loss/test", "test loss"), ("loss/val", "val loss"),
                           ("acc/train", "train acc"), ("acc/test", "test acc")):
            if key in h and len(h[key]):
                bits.append(f"{label} {_value_at(h[key], rv.step)[1]:.4g}")
        bits += throughput_bits(run, rv.step)
        numbers = ": " + " · ".join(bits) if bits else ""
        why = _WHY[rv.why]
        if rv.why == "live" and rv.step != rv.newest:     # spectra are recorded every few steps
            why = "its newest spectrum"
        lines.append(f"<b>{name}</b>: step {run.step_count} · at step {rv.step} ({why}){numbers}")
    steps, common = view.steps(), view.common()
    if dash.play.playing:
        lines.append(f"▶ playing: {dash.every} steps of each shown run per tick — ❚❚ pauses after the chunk in flight")
    if view.following:
        where = (f"viewing step {common}, the newest" if common is not None else
                 "each run at its newest step: " + ", ".join(f"{n} at {s}" for n, s in steps.items()))
        lines.append(f"<span style='color:#070'>● following live — {where}</span>")
    else:
        lines.append(f"<span style='color:#a50'>❚❚ viewing step {view.target} of {view.newest} — not following "
                     "training; press <b>live</b> (or End on the slider) to follow it</span>")
    trained = {n: run.history.last_step for n, run in zip(dash.names, dash.runs) if n in steps}
    if len(set(trained.values())) > 1:
        lines.append("⚠ the runs have trained to different steps (" +
                     ", ".join(f"{n}: {s}" for n, s in trained.items()) + "): each panel shows each run at the "
                     "step named above" + ("" if dash._watched_only() else
                                            "; step/play train the runs that are behind first"))
    if dash.layer.value:
        model = getattr(dash.runs[0], "model", None)
        lines.append(f"<small>{describe_layer(model, dash.layer.value)}</small>")
    if dash._note:
        lines.append(f"<small>{dash._note}</small>")
    if dash.error is not None:
        lines.append(f"<span style='color:#b00'>stopped: {type(dash.error).__name__}: {dash.error}</span>")
    return "<div style='line-height:1.35'>" + "<br>".join(lines) + "</div>"


def throughput_bits(run, step) -> list[str]:
    """The run's throughput at its record nearest ``step`` (``training.throughput``): tokens (or examples) per
    second, milliseconds per step, and MFU — or, where no device peak is known (a CPU), the achieved TFLOP/s and
    "MFU n/a" with the reason as its tooltip."""
    h = run.history
    if "throughput/step_s" not in h or not len(h["throughput/step_s"]):
        return []
    at = lambda key: _value_at(h[key], step)[1]
    bits = [f"{_si(at(f'throughput/{unit}_per_s'))} {unit}/s" for unit in ("tokens", "examples")
            if f"throughput/{unit}_per_s" in h and len(h[f"throughput/{unit}_per_s"])]
    bits.append(f"{1e3 * at('throughput/step_s'):.3g} ms/step")
    if "throughput/mfu" in h and len(h["throughput/mfu"]):
        bits.append(f"MFU {100 * at('throughput/mfu'):.3g}%")
    elif "throughput/tflops" in h and len(h["throughput/tflops"]):
        note = getattr(getattr(run, "throughput", None), "mfu_note", "") or "no device peak FLOP/s recorded"
        bits.append(f"{at('throughput/tflops'):.3g} TFLOP/s · <span title='{html.escape(note, quote=True)}'>MFU "
                    "n/a</span>")
    return bits


def _si(value: float) -> str:
    """``1234567`` → ``"1.23M"``: three significant digits and an SI prefix."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}"
    return f"{value:.3g}"


def drop_hidden(ax, hidden) -> None:
    """Remove every artist of a hidden run — lines, ESD histograms (patches), fills — labelled ``"<run> · ..."`` or
    ``"<run>"``, and rescale to what is left."""
    if not hidden:
        return
    for artist in list(ax.get_children()):
        label = artist.get_label() if hasattr(artist, "get_label") else ""
        if isinstance(label, str) and label.split(" · ", 1)[0] in hidden:
            artist.remove()
    ax.relim()
    ax.autoscale_view()


def hover(ax) -> None:
    """Values on hover: the footer under an ipympl canvas shows ``ax.format_coord(x, y)`` — here every labelled
    line's value at its recorded point nearest the mouse, labelled with *that point's* step (or index), so the step
    named is the step of the value shown. (The Dashboard clears the footer when the mouse leaves the figure.)"""
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_") and len(ln.get_xdata()) > 0]
    if not lines:
        return
    xname = ax.get_xlabel().split(" (")[0] or "x"

    def format_coord(x, y, lines=lines):
        points = []
        for ln in lines:
            xs = np.asarray(ln.get_xdata(), dtype=float)
            j = int(np.argmin(np.abs(xs - x)))
            points.append((xs[j], ln.get_label(), float(np.asarray(ln.get_ydata())[j])))
        if len({p[0] for p in points}) == 1:
            return f"{xname} {points[0][0]:g}: " + " · ".join(f"{label} {v:.4g}" for _, label, v in points)
        return " · ".join(f"{label} {v:.4g} ({xname} {at:g})" for at, label, v in points)

    ax.format_coord = format_coord
