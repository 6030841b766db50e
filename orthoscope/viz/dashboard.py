"""Dashboard: watch one or several runs train, live, in JupyterLab (ipywidgets 8 + ipympl).

    %matplotlib widget
    Dashboard(run)                       # a bare Dashboard in a cell displays itself
    Dashboard([run_wd1, run_wd0])        # comparison: every panel draws each run in its own colour, named by run.name

The controls, panels and comparisons, with pictures: docs/dashboard.md. Below: how it works.

How "play" stays pausable. A Python loop in a widget callback would hold the kernel, so *pause* could not be handled
until training ended. Instead the *browser* drives training: the ``Play`` widget ticks every ``interval_ms``, and
the kernel trains one chunk, redraws and returns. Ticks that queued up while a chunk ran (sent more than half an
interval before the freshest; without a kernel: arrived within half an interval of the last chunk's end) are dropped,
so after *pause* at most the chunk in flight finishes. JupyterLab 4.4+ (ipykernel 7) handles widget messages on a
thread of their own while cells run, and matplotlib and torch are not thread-safe: drawing and training through a
Dashboard hold one lock (``dashboard_support.DASHBOARD_LOCK``).

Drawing. With ipympl (``%matplotlib widget``) each redraw pushes the image at once, so the Dashboard also follows
``run.train(...)`` in another cell (``run.on_step``, at most one redraw per ``live_every_s``); without, a PNG.

Scrubbing is cheap (``scrub``). Only the spectrum and ESD panels depend on the viewed step; the others mark it with a
dotted line. Those panels and the markers are matplotlib *animated* artists, left out of a full render whose pixels
are kept as a background; a slider move re-plots the two panels, moves the markers and paints them over it
(blitting): ~0.1 s against ~0.4 s for a full redraw, the same picture pixel for pixel (tested).

Width (``fit_width``). The browser reports the notebook column's width (``viz.column``) and the figure follows it, at
most ``width_px`` wide, its panels flowing two or one per row when narrow (an ipympl canvas cannot be scaled by CSS
without breaking its mouse positions). Where JavaScript outputs do not run, it stays ``width_px`` wide.
"""
from __future__ import annotations

import io
import math
import time
import warnings
from pathlib import Path

import numpy as np

from .column import column_box, column_script, fitted_width
from . import live
from .dashboard_support import (_CSS, _as_run_list, _copy_observers, _unique_names, _watched, message_age, serialized,
                                show_sharpness)
from .dashboard_text import status_html
from ..core.keys import metric_of, where_of
from .layout import RC, add_panels, build_figure, columns_for, figure_height, figure_legend, label_room
from .dashboard_controls import make_controls, make_slider
from .dashboard_export import export_animation, export_png
from .dashboard_panels import alpha_panel, colorbar_panel, heatmap_panel, sharpness_panel, signals_panel
from .plots import plot_loss_accuracy, plot_metric, scalar_keys
from .dashboard_view import DashboardView
from .view_state import newest_step

_BACKLOG_S = 0.02         # the least gap that makes a tick fresh, however short the interval
_RELAYOUT_S = 5.0
_FALLBACK_WARNED = False


def ipympl_active() -> bool:
    """True when matplotlib's backend is ipympl's (``%matplotlib widget`` / ``%matplotlib ipympl``)."""
    import matplotlib

    backend = str(matplotlib.get_backend()).lower()
    return "ipympl" in backend or backend == "widget"


def _warn_fallback_once() -> None:
    global _FALLBACK_WARNED
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        warnings.warn("orthoscope Dashboard: ipympl is not the active matplotlib backend, so the figure is redrawn "
                      "as a static PNG. Run `%matplotlib widget` before creating the Dashboard for an interactive "
                      "canvas.", stacklevel=4)


class Dashboard(DashboardView):
    """Live view of ``run_or_runs`` (a ``Run`` or a list of them); see the module docstring.

    Args:
        every: training steps per *step* press and per *play* tick (each run), also the redraw period while playing.
        metrics: per-module scalar metrics drawn as curves for the chosen layer (one panel each).
        layer: module path whose spectrum is shown first (default: the first ``sv/*`` recorded).
        interval_ms: the play timer's period in the browser.
        live_every_s: redraw at most this often when the runs are trained elsewhere (``run.train`` in another cell);
            ``None`` turns those live redraws off. (A live round started by another Dashboard of the same run draws
            this one too, so the Dashboards of a run stay in step: ``viz.live``.)
        live_share: live redraws take at most this share of the kernel's time, shared by every Dashboard in the
            process (``viz.live``: two Dashboards on one run redraw together, not in turn).
        width_px: the figure's most width in pixels (a narrower notebook column narrows it; the height follows the
            number of panel rows). figsize, dpi: matplotlib's (``figsize`` overrides ``width_px``).
        export_dir: where *export PNG* writes. esd: draw the ESD panels (``viz.esd``). sharpness: ``show_sharpness``.

    Its widgets and parts (``play``, ``slider``, ``layer``, ``fig``, ``axes`` by panel name, …): docs/dashboard.md.
    """

    def __init__(self, run_or_runs, every: int = 10, metrics=("sv_entropy", "he_s1"), *, layer: str | None = None,
                 interval_ms: int = 300, live_every_s: float | None = 1.0, live_share: float = live.LIVE_SHARE,
                 width_px: int = 840, figsize=None, dpi: int = 80, export_dir=".", esd: bool = True,
                 sharpness: bool | None = None):
        if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"every must be a positive integer (steps per tick), got {every!r}")
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if not all(isinstance(m, str) for m in metrics):
            raise TypeError(f"metrics must be metric names such as 'sv_entropy', got {metrics!r}")
        if not isinstance(interval_ms, int) or interval_ms < 10:
            raise ValueError(f"interval_ms must be an integer ≥ 10, got {interval_ms!r}")
        if not 0 < live_share <= 1:
            raise ValueError(f"live_share must be in (0, 1] (the share of the kernel's time for live redraws), got "
                             f"{live_share!r}")
        if not isinstance(width_px, int) or width_px < 300:
            raise ValueError(f"width_px must be an integer ≥ 300 (pixels), got {width_px!r}")
        self.runs = _as_run_list(run_or_runs)
        self.names = _unique_names(self.runs)
        self.every, self.metrics, self.live_every_s, self.esd = every, metrics, live_every_s, bool(esd)
        self.live_share = live_share
        self.interval_s = interval_ms / 1000
        self.export_dir, self.exported = Path(export_dir), None
        self._check_metrics()
        self.sharpness = show_sharpness(self.runs, sharpness)
        self.error: Exception | None = None
        self.interactive = ipympl_active()
        self._dpi = dpi
        self._max_width_px = round(figsize[0] * dpi) if figsize else width_px
        self._make_figure(figsize or (width_px / dpi, None), dpi)
        self._make_controls(layer, interval_ms)
        self._advancing, self._chunk_end, self._last_draw, self._last_layout = False, -math.inf, 0.0, -math.inf
        self._note, self._min_age, self._drawn_steps = "", math.inf, None
        self._background, self._drawn_view, self._markers, self._laid_out_room = None, None, [], None
        self._view, self._drawn_marks = None, None
        self._unsubscribe = [r.on_step(self._on_run_step) for r in self.runs]
        live.SCHEDULER.register(self)
        self.redraw()

    # ---- construction ------------------------------------------------------------------------------------------
    def _check_metrics(self) -> None:
        recorded = sorted({metric_of(k) for k in scalar_keys(self._pairs())})
        if recorded:   # a fresh run records nothing until its first step: check then (the panel says what is missing)
            bad = [m for m in self.metrics if m not in recorded]
            if bad:
                raise ValueError(f"metrics {bad} are not recorded by these runs; recorded scalar metrics: {recorded}")

    def _make_figure(self, figsize, dpi) -> None:
        self._n_cols = columns_for(figsize[0] * dpi)
        self.fig, self.axes = build_figure(self.names, self.metrics, figsize, dpi, self.esd, self._n_cols, self.sharpness)
        if self.interactive:
            # The canvas is built directly rather than through pyplot, so the figure is not registered with pyplot:
            # a later plt.close("all") in the notebook cannot blank the dashboard, and it never shows twice.
            from ipympl.backend_nbagg import Canvas, FigureManager

            self.canvas = Canvas(self.fig)
            FigureManager(self.canvas, 0)
            self.canvas.header_visible = False
            self.canvas.toolbar_visible = False      # export PNG replaces its download button; the footer stays
            self.canvas.footer_visible = True        # for the values under the mouse (format_coord)
            self.canvas.resizable = True
            self.canvas.draw = serialized(self.canvas.draw)   # ipympl draws on the browser's request, too
            self.fig.canvas.mpl_connect("resize_event", self._on_resize)
            # the values under the mouse go when the mouse does (matplotlib leaves the last message standing)
            self.fig.canvas.mpl_connect("figure_leave_event", self._clear_hover)
        else:
            import ipywidgets as W
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            _warn_fallback_once()
            FigureCanvasAgg(self.fig)
            self.canvas = W.Image(format="png")
        self.canvas.add_class("orthoscope-figure")
        self.fig.canvas.mpl_connect("draw_event", self._on_draw_event)

    def _clear_hover(self, event=None) -> None:
        self.canvas._message = ""

    def _make_controls(self, layer, interval_ms) -> None:
        import ipywidgets as W

        controls = make_controls(self.every, self.names, self.export_dir, interval_ms)
        self.play, self.step_button, self.live_button = controls.play, controls.step_button, controls.live_button
        self.layer, self.fixed_axes, self.smooth = controls.layer, controls.fixed_axes, controls.smooth
        self.export_button, self.export_anim_button = controls.export_button, controls.export_anim_button
        self.run_boxes, self.status = controls.run_boxes, controls.status
        self._tooltips = {"step": self.step_button.tooltip, "play": self.play.tooltip}
        self.slider = self._new_slider(0)
        self._wanted_layer, self._quiet = layer, False
        self._controls = W.HBox([self.play, self.step_button, self.live_button, self.slider, self.layer],
                                layout=W.Layout(flex_flow="row wrap"))
        self._refresh_controls()   # raises here, not later, for a layer= that the runs do not record
        self.play.observe(self._on_tick, names="value")
        self.play.observe(self._on_playing, names="playing")
        self.step_button.on_click(lambda _: self._advance_from_widget())
        self.live_button.on_click(lambda _: self.go_live())
        self.export_button.on_click(lambda _: self._export_from_widget(self.export_png))
        self.export_anim_button.on_click(lambda _: self._export_from_widget(self.export_animation))
        for w in (self.layer, self.fixed_axes, self.smooth, *self.run_boxes):
            w.observe(self._on_control, names="value")
        options = W.HBox([self.fixed_axes, self.smooth, *self.run_boxes, self.export_button, self.export_anim_button],
                         layout=W.Layout(flex_flow="row wrap"))
        self._column = column_box()          # the browser types the column's width into it (viz.column)
        self._column.observe(lambda change: self.fit_width(change["new"]) if change["new"] > 0 else None,
                             names="value")
        rows = [self._controls, options, self.status, W.HTML(_CSS), self.canvas, self._column]
        if not self.interactive:
            rows.insert(3, W.HTML("<small>static redraws (ipympl not active — run <code>%matplotlib widget</code> "
                                  "before creating the Dashboard for an interactive canvas)</small>"))
        self.widget = W.VBox(rows, layout=W.Layout(max_width="100%"))
        self.widget.add_class("orthoscope-dashboard")

    def _new_slider(self, maximum: int):
        slider = make_slider(maximum, continuous=self.interactive)       # (re-created as the range grows)
        slider.observe(self._on_control, names="value")
        return slider

    # ---- driving the runs --------------------------------------------------------------------------------------
    @serialized
    def advance(self, steps: int | None = None) -> None:
        """Train the shown runs together: each trainable one up to ``min(step counts) + steps`` (default ``every``),
        so a run that is ahead waits for the others; watched run directories are re-read; hidden runs are left
        alone. Then redraw once. Errors
        propagate; the redraw happens even so, showing the state the runs kept."""
        n = self.every if steps is None else steps
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"steps must be a positive integer, got {n!r}")
        shown = [r for r, name in zip(self.runs, self.names) if name not in self._hidden()]
        trainable = [r for r in shown if not _watched(r)]
        target = min((r.step_count for r in trainable), default=0) + n
        self._advancing = True
        try:
            for run in shown:                       # a hidden run is left alone
                if _watched(run):
                    run.refresh()                   # reads what the other process wrote (a recorder: nothing)
                    continue
                while run.step_count < target:
                    run.step()
        finally:
            self._advancing = False
            self.redraw(owed=False)         # this redraw ends the Dashboard's own chunk: not owed to live rounds

    def _advance_from_widget(self) -> None:
        """*step* button and *play* ticks: an exception raised in a widget callback only reaches the browser's log
        console, so it stops play and is shown in the status line instead (and kept in ``self.error``)."""
        self.error = None
        try:
            self.advance()
        except Exception as exc:
            self.error = exc
            self.play.playing = False
            self.status.value = status_html(self)

    def _on_tick(self, change) -> None:
        now = time.perf_counter()
        if change["new"] < change["old"]:        # ■ stop rewinds the value: pause (the widget did) and go live
            self.go_live()
            return
        # The browser's timer keeps ticking while the kernel is busy, and those ticks queue up in front of a pause.
        # A tick is dropped as queued when (a) it was sent longer ago than the freshest tick seen, by more than half
        # an interval (its header's date: the queue it waited in, whatever kept the kernel busy), or (b) without a
        # kernel, it arrives within half an interval of the last chunk's end. So after pause at most the chunk in
        # flight finishes.
        slack = max(_BACKLOG_S, 0.5 * self.interval_s)
        age = message_age()
        if age is not None:
            self._min_age = min(self._min_age, age)
        queued = now - self._chunk_end < slack or (age is not None and age - self._min_age > slack)
        if change["new"] == change["old"] or queued or self.error is not None:
            return   # after an error, play stays stopped until *step* succeeds again
        self._advance_from_widget()
        self._chunk_end = time.perf_counter()

    def _on_playing(self, change) -> None:
        """▶ or ❚❚ reached the kernel: the status line says so (the browser already said "pausing after this chunk"
        when ❚❚ was clicked: ``viz.column``'s script)."""
        if not self._quiet:
            self.status.value = status_html(self)

    def _refresh_controls(self, to_newest: bool = False) -> None:
        """Slider range (``to_newest``: and value, the newest step) and layer list from the histories. Observers are
        muted meanwhile (``_quiet``): changing these fires value events that would otherwise redraw again."""
        self._quiet = True
        try:
            last = newest_step([r.history for r in self.runs], self.names, self._hidden())
            if last != self.slider.max:
                following = self.slider.value >= self.slider.max   # at the newest step: keep following it
                value = last if following else min(self.slider.value, last)
                old, self.slider = self.slider, self._new_slider(last)
                self.slider.value = value
                _copy_observers(old, self.slider, exclude=self._on_control)
                self._controls.children = tuple(self.slider if c is old else c for c in self._controls.children)
                old.close()
            if to_newest:
                self.slider.value = self.slider.max
            self._refresh_trainable()
            layers = self._layers()
            if layers and list(self.layer.options) != layers:
                keep = self._wanted_layer or self.layer.value
                if self._wanted_layer is not None and self._wanted_layer not in layers:
                    raise ValueError(f"layer {self._wanted_layer!r} has no recorded spectrum; recorded layers: "
                                     f"{layers}")
                self.layer.options = layers
                # wide enough for the longest module path (a Llama's model.model.layers.0.self_attn.q_proj)
                self.layer.layout.width = f"calc({3 + max(len(x) for x in layers)}ch + 100px)"
                self.layer.value = keep if keep in layers else layers[0]
                self._wanted_layer = None
                self._relayout_soon()
        finally:
            self._quiet = False

    def _watched_only(self) -> bool:
        """Every shown run is a run directory another process trains: *step* and *play* have nothing to train."""
        return all(_watched(r) for r, name in zip(self.runs, self.names) if name not in self._hidden())

    def _refresh_trainable(self) -> None:
        """*step* and *play* disabled, with the reason as their tooltip, when they cannot act."""
        idle = self._watched_only()
        reason = ("disabled: every shown run is a run directory trained by another process — nothing to train "
                  "here; the Dashboard refreshes it by itself")
        for widget, tooltip in ((self.step_button, self._tooltips["step"]), (self.play, self._tooltips["play"])):
            widget.disabled = idle
            widget.tooltip = reason if idle else tooltip
        if idle and self.play.playing:
            self.play.playing = False

    def _on_control(self, change) -> None:
        if self._quiet:
            return
        if change["owner"] is self.slider:
            if not self.scrub():
                self.redraw()
            return
        self._relayout_soon()            # titles and legends may change length
        self.redraw()

    def _relayout_soon(self) -> None:
        self._last_layout = -math.inf

    def _on_resize(self, event) -> None:
        """The canvas changed size (corner dragged, ``fit_width``): ipympl's next draw lays the panels out anew."""
        self.fig.set_layout_engine("constrained")
        self._last_layout = time.perf_counter()

    @serialized
    def fit_width(self, column_px: int) -> None:
        """Resize the figure for a notebook column ``column_px`` wide (``viz.column.fitted_width``: the column less a
        margin, at most ``width_px``). The browser calls this through a hidden box when the Dashboard is shown and
        whenever its column changes width. Below ``layout.MIN_3_COLUMNS_PX`` the panels flow two per row (one below
        ``MIN_2_COLUMNS_PX``) and the figure grows taller."""
        width = fitted_width(column_px, self._max_width_px)
        n_cols = columns_for(width)
        if abs(width - self.fig.get_figwidth() * self._dpi) < 1 and n_cols == self._n_cols:
            return
        height = self.fig.get_figheight()
        if n_cols != self._n_cols:
            self._n_cols = n_cols
            self.axes = add_panels(self.fig, self.names, self.metrics, self.esd, n_cols, self.sharpness)
            self._markers, self._background = [], None
            height = figure_height(self.names, self.metrics, self.esd, n_cols, self.sharpness)
        if self.interactive and not self.canvas.syncing_data_url:
            # what dragging the canvas's corner does: resize the figure and tell the view its new size
            self.canvas.handle_event({"type": "resize", "width": width, "height": round(height * self._dpi)})
        else:
            self.fig.set_size_inches(width / self._dpi, height)
        self._relayout_soon()
        self.redraw()

    # ---- drawing -----------------------------------------------------------------------------------------------
    @serialized
    def redraw(self, owed: bool = True) -> None:
        """Rebuild every panel from the histories at the viewed step, then push the image to the browser.
        ``owed=False``: the redraw that ends the Dashboard's own *step*/*play* chunk, a cadence the user chose, is
        not charged to the live budget (``viz.live``)."""
        start = live.clock()
        try:
            self._redraw()
        finally:
            self._last_draw = live.clock()    # live_every_s counts from the end of a draw …
            live.SCHEDULER.spent(self, self._last_draw - start, owed=owed)   # … and the live budget from its cost

    def _redraw(self) -> None:
        import matplotlib

        self._refresh_controls()
        # Every run is drawn (so run i keeps colour C<i> whatever is hidden), then the hidden runs' lines removed.
        pairs, layer, view = self._pairs(), self.layer.value, self._view_state()
        self._view = view
        hidden = self._hidden()
        smooth = float(self.smooth.value)
        panels = [(("loss", "acc"), lambda axs: plot_loss_accuracy(axs, pairs, smooth=smooth, legend=False))]
        panels += self._step_panels(pairs, layer, view)
        panels += [((f"heatmap:{name}",), lambda axs, i=i: self._heatmap(axs[0], i, layer))
                   for i, name in enumerate(self.names)]
        panels += [((f"metric:{m}",), lambda axs, m=m: plot_metric(axs[0], pairs, m, modules=[layer], smooth=smooth,
                                                                   legend=False)) for m in self.metrics]
        panels += [(("signals",), lambda axs: signals_panel(axs[0], self._pairs(True), self.names, smooth))]
        if self.sharpness:
            panels += [(("sharpness",), lambda axs: sharpness_panel(axs[0], self._pairs(True), self.names, smooth))]
        if self.esd:
            panels += [(("alpha",), lambda axs: alpha_panel(axs[0], pairs, layer))]
        with matplotlib.rc_context(RC):
            self._mesh, self._markers = None, []
            for names, draw in panels:
                self._draw_panel(names, draw, layer, hidden, view)
            colorbar_panel(self.fig, self.axes["colorbar"], self._mesh)
            shown = [(i, n) for i, n in enumerate(self.names) if n not in hidden and len(self.runs) > 1]
            splits = [where_of(k) for k in scalar_keys(pairs) if k.startswith("loss/") and k != "loss/batch"]
            figure_legend(self.fig, shown, splits)
        self._drawn_view, self._drawn_steps = self._controls_view(), self._steps_now()
        self._drawn_marks = self._mark_plan(view)
        self.status.value = status_html(self)
        self._render()

    def _on_draw_event(self, event) -> None:
        """After every full render of the figure (ours, ipympl's on a resize, a savefig): the step panels and the
        step markers are animated artists, which matplotlib leaves out of a render, so keep the render without them
        as the background of later slider moves, then draw them on top."""
        canvas = self.fig.canvas
        saving = canvas.is_saving()
        if not saving:
            self._background = (canvas.copy_from_bbox(self.fig.bbox), canvas.get_renderer())
        for ax in self._step_axes():
            ax.draw(event.renderer)
        if not saving:                   # (a savefig draws the animated lines of its axes itself)
            for marker, _ in self._markers:
                marker.draw(event.renderer)

    @serialized
    def scrub(self) -> bool:
        """Show the viewed step without rebuilding the figure: re-plot the step panels (spectrum, ESD), move the
        step markers, and paint them over the background kept from the last full render — a few percent of a full
        redraw. The curves and heat-maps stay as last drawn (new records arrive with the next full redraw: the
        watcher's refresh, a live redraw, *step*). Returns False, drawing nothing, when a full redraw is needed:
        nothing drawn yet, the canvas resized, or a control other than the slider changed since."""
        import matplotlib

        canvas, background = self.fig.canvas, self._background
        if background is None or background[1] is not canvas.get_renderer() or \
                self._drawn_view != self._controls_view():
            return False
        view = self._view_state()
        if self._mark_plan(view) != self._drawn_marks:      # runs parting or meeting: other markers
            return False
        self._view = view
        pairs, layer = self._pairs(), self.layer.value
        with matplotlib.rc_context(RC):
            for names, draw in self._step_panels(pairs, layer, view):
                self._draw_panel(names, draw, layer, self._hidden(), view)
        for marker, who in self._markers:
            step = view.common() if who == "*" else view.of(who).step
            marker.set_xdata([step, step])
        canvas.restore_region(background[0])
        for ax in self._step_axes():
            self.fig.draw_artist(ax)
        for marker, _ in self._markers:
            self.fig.draw_artist(marker)
        self.status.value = status_html(self)
        self._send(blit=True)
        return True

    def _heatmap(self, ax, i, layer) -> None:
        shown = not self.run_boxes or self.run_boxes[i].value
        self._mesh = heatmap_panel(ax, self.names[i], self.runs[i].history, self._pairs(True), layer, shown,
                                   several=len(self.runs) > 1)

    def _render(self) -> None:
        # Constrained layout costs about as much as drawing itself, so it re-runs only when the room the labels need
        # may have changed — an axis crossing a power of ten (step 99 → 100, a loss 0.1 → 0.09), a title gaining a
        # line (``label_room``) — after a change of layer, size or visible runs, and at least every _RELAYOUT_S
        # seconds; in between the panels keep their positions.
        now, room = time.perf_counter(), label_room(self.fig)
        relayout = now - self._last_layout >= _RELAYOUT_S or room != self._laid_out_room
        self.fig.set_layout_engine("constrained" if relayout else "none")
        if relayout and any(len(r.history) for r in self.runs):
            self._last_layout, self._laid_out_room = now, room
        for ax in self._step_axes():               # drawn over the background by _on_draw_event
            ax.set_animated(True)
        self._send(blit=False)

    def _send(self, blit: bool) -> None:
        """Push the image to the browser: after a full render (``blit=False``) or after painting over the kept
        background (``scrub``). ipympl gets whole images (below); the static fallback encodes the canvas as a PNG
        (fast zlib level: it is replaced at the next redraw)."""
        from PIL import Image

        if self.interactive:
            # Every image whole, not as the pixels that changed since the last: ipympl's view loads each image it is
            # sent into one <img>, so an image that arrives while the previous is still loading replaces it — and
            # a lost difference image would leave the view torn (seen with fast scrubs after a full redraw). A whole
            # image costs the kernel ~1 ms more to encode (95 against 21 KB, sent to the browser on this machine).
            self.canvas._force_full = True
            if self.canvas.syncing_data_url:
                # No browser view has initialized this canvas yet (it is initialized once the creating cell ends;
                # with no front end, never). Drawing now would make ipympl 0.10 push an image the view cannot
                # decode ("broken" image, 0×0 canvas); instead ask for a draw, which the view requests on start.
                self.canvas.draw_idle()
            elif blit:
                self.canvas.blit(self.fig.bbox)      # sends the painted buffer (renders nothing)
            else:
                self.canvas.draw()   # renders now and sends the image over the comm (works mid-cell too)
            return
        canvas = self.fig.canvas
        if not blit:
            canvas.draw()
        buf = io.BytesIO()
        Image.fromarray(np.asarray(canvas.buffer_rgba())).save(buf, format="png", compress_level=1)
        self.canvas.value = buf.getvalue()

    # ---- export ------------------------------------------------------------------------------------------------
    @serialized
    def export_png(self, path=None) -> Path:
        """Write the figure as shown (all panels at the viewed step) to ``path`` (default: ``export_dir`` /
        ``dashboard-<layer>-step<N>.png``); returns the path."""
        self.exported = export_png(self.fig, self.export_dir, self.layer.value, self.viewed_step, path)
        return self.exported

    @serialized
    def export_animation(self, path=None) -> Path:
        """Write an offline HTML player (no request leaves the machine) of the chosen layer's spectrum over training
        — one panel per shown run — to ``path`` (default: ``export_dir`` / ``spectrum-<layer>.html``)."""
        self.exported = export_animation(self._pairs(True), len(self.runs) > 1, self.export_dir,
                                         self.layer.value, path)
        return self.exported

    def _export_from_widget(self, export) -> None:
        try:
            self._note = f"wrote {export()}"
        except (OSError, ValueError) as exc:
            self._note = f"export failed: {exc}"
        self.status.value = status_html(self)

    # ---- display and teardown ----------------------------------------------------------------------------------
    @classmethod
    def watch(cls, *sources, interval_s: float = 1.0, **kwargs) -> "Dashboard":
        """A Dashboard over run directories (``"runs/NAME"``, written by ``orthoscope train`` in another process)
        and notebook Runs side by side; the directories refresh every ``interval_s`` s (``orthoscope.viz.watch``)."""
        from .watch import watch

        return watch(cls, *sources, interval_s=interval_s, **kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        display(column_script(self._column))      # reports the column's width (viz.column)

    def close(self) -> None:
        """Stop playing, unsubscribe from the runs and close the widgets."""
        self.play.playing = False
        live.SCHEDULER.unregister(self)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for w in (self.play, self.step_button, self.live_button, self.slider, self.layer, self.fixed_axes,
                  self.smooth, self.export_button, self.export_anim_button, *self.run_boxes, self.status, self.canvas,
                  self._column, self.widget):
            w.close()

    def __repr__(self) -> str:
        runs = ", ".join(f"{n}@{r.step_count}" for n, r in zip(self.names, self.runs))
        return (f"Dashboard([{runs}], every={self.every}, layer={self.layer.value!r}, viewing step "
                f"{self.viewed_step}{' (live)' if self.following else ''}, interactive={self.interactive})")
