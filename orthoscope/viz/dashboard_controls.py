"""The Dashboard's widgets, built (``viz.dashboard`` wires their events): every control with a tooltip and a CSS
class the browser tests find it by."""
from __future__ import annotations

from types import SimpleNamespace


def make_controls(every: int, names: list[str], export_dir, interval_ms: int) -> SimpleNamespace:
    """``play``, ``step_button``, ``live_button``, ``layer``, ``fixed_axes``, ``smooth``, ``export_button``,
    ``export_anim_button``, ``run_boxes`` (one per run when there are several) and ``status``."""
    import ipywidgets as W

    each = "each run" if len(names) > 1 else "the run"
    c = SimpleNamespace()
    c.play = W.Play(value=0, min=0, max=10**9, step=1, interval=interval_ms, description="play",
                    tooltip=f"▶ train {every} steps of {each} per tick · ❚❚ pause: stops after the chunk in "
                            "flight · ■ stop: pause and return the view to the newest step", show_repeat=False)
    c.step_button = W.Button(description="step", icon="step-forward", layout=W.Layout(width="auto"),
                             tooltip=f"train {every} steps of {each} (runs that are behind catch up first)")
    c.live_button = W.Button(description="live", icon="fast-forward", layout=W.Layout(width="auto"),
                             tooltip="return the view to the newest step and follow training")
    c.layer = W.Dropdown(options=[], description="layer", layout=W.Layout(width="250px", max_width="100%"),
                         tooltip="the weight matrix whose spectrum, heat-map and metrics are shown")
    c.fixed_axes = W.ToggleButton(value=True, description="fixed axes", icon="lock", layout=W.Layout(width="auto"),
                                  tooltip="keep the spectrum's y-range fixed over the whole recorded history, so "
                                          "scrubbing shows motion (off: fit the viewed step)")
    c.smooth = W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="smooth", continuous_update=False,
                             layout=W.Layout(width="230px"),
                             tooltip="exponential moving average of the curves (0 = raw values)")
    c.export_button = W.Button(description="export PNG", icon="download", layout=W.Layout(width="auto"),
                               tooltip=f"write the figure as shown to a PNG in {str(export_dir)!r}")
    c.export_anim_button = W.Button(description="export animation", icon="film", layout=W.Layout(width="auto"),
                                    tooltip="write an offline HTML player of the chosen layer's spectrum over "
                                            f"training (every shown run) to {str(export_dir)!r}")
    c.run_boxes = [W.Checkbox(value=True, description=name, indent=False, layout=W.Layout(width="auto"),
                              tooltip=f"show or hide {name} in every panel")
                   for name in names] if len(names) > 1 else []
    c.status = W.HTML()
    for widget, name in ((c.play, "play"), (c.step_button, "step"), (c.live_button, "live"), (c.layer, "layer"),
                         (c.fixed_axes, "fixed"), (c.smooth, "smooth"), (c.export_button, "export"),
                         (c.export_anim_button, "export-anim"), (c.status, "status")):
        widget.add_class(f"orthoscope-{name}")
    return c


def make_slider(maximum: int, continuous: bool):
    """A fresh step slider over [0, maximum], at ``maximum``. ipywidgets 8's slider (noUiSlider 15) keeps the range
    it was *created* with for its Home/End keys even after ``max`` changes, so End would jump to a stale step: the
    Dashboard re-creates the slider whenever its range grows, and keyboard and mouse always see the current range."""
    import ipywidgets as W

    slider = W.IntSlider(value=maximum, min=0, max=maximum, description="step", continuous_update=continuous,
                         layout=W.Layout(width="340px"), tooltip="scrub the recorded history (Home/End: first/newest "
                                                                 "step)")
    slider.add_class("orthoscope-slider")
    return slider


__all__ = ["make_controls", "make_slider"]
