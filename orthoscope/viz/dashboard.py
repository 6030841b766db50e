"""Dashboard: watch one or several runs train, live, in JupyterLab (ipywidgets 8 + ipympl).

    %matplotlib widget
    Dashboard(run)                       # a bare Dashboard in a cell displays itself
    Dashboard([run_wd1, run_wd0])        # overlay: every panel draws each run in its own colour, named by run.name

Controls: *play* / *pause* (an ``ipywidgets.Play``) and *step* train every run by ``every`` steps per tick or press;
the *step* slider scrubs the recorded history (the spectrum panel and the marker on every curve follow it); the
*layer* dropdown picks the ``sv/<module>`` shown, filled from the History. Panels: loss, accuracy, the chosen layer's
spectrum at the slider step, its log-spectrum heat-map over time, and one curve panel per scalar metric
(``metrics=``, default singular-value entropy and hyperspherical energy s = 1).

How "play" stays pausable. A Python loop in a widget callback would hold the kernel until it returned, so the pause
button's message could not be handled until training ended. Instead the *browser* drives training: the ``Play``
widget's timer ticks in JavaScript every ``interval_ms`` and sends each new value to the kernel, whose handler trains
one small chunk and redraws, then returns. Between ticks the kernel is idle, so a pause (or any other widget event)
is handled at once. Ticks that queued up while a chunk was running arrive back to back; the handler skips any tick that
arrives within ``_BACKLOG_S`` of the previous one, so pausing takes effect after at most one chunk. This needs no
threads (torch and matplotlib are not thread-safe here) and no asyncio loop tricks (which differ across ipykernel
versions), and it works the same in JupyterLab, Notebook 7 and VS Code.

Drawing. With ipympl active (``%matplotlib widget``) the figure is an interactive ipympl canvas; each redraw calls
``canvas.draw()``, which renders and pushes the image to the browser at once — so the dashboard also updates while
``run.train(...)`` runs in another cell (``run.on_step`` callbacks, throttled to one redraw per ``live_every_s``).
Without ipympl it falls back to a static PNG in an ``ipywidgets.Image`` that is replaced on each redraw, and says so
once. (An Image widget rather than an Output widget with ``clear_output(wait=True)``: it updates in place without
flicker, and needs no output-capture context, which callbacks fired from another cell would get wrong.)
"""
from __future__ import annotations

import io
import math
import time
import warnings

from .plots import (_scalar_keys, nearest_step, plot_loss_accuracy, plot_metric, plot_spectrum_at,
                    plot_spectrum_heatmap)

_BACKLOG_S = 0.02
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


def _as_run_list(run_or_runs) -> list:
    runs = list(run_or_runs) if isinstance(run_or_runs, (list, tuple)) else [run_or_runs]
    if not runs:
        raise ValueError("Dashboard needs at least one Run, got an empty list")
    for r in runs:
        if not (hasattr(r, "step") and hasattr(r, "history") and hasattr(r, "on_step")):
            raise TypeError(f"Dashboard takes a Run or a list of Runs, got {type(r).__name__}")
    if len({id(r) for r in runs}) != len(runs):
        raise ValueError("the same Run appears twice in the list; pass each run once")
    return runs


def _unique_names(runs) -> list[str]:
    names, seen = [], {}
    for r in runs:
        name = str(getattr(r, "name", "") or "run")
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


class Dashboard:
    """Live view of ``run_or_runs`` (a ``Run`` or a list of them).

    Args:
        every: training steps per *step* press and per *play* tick (each run), also the redraw period while playing.
        metrics: per-module scalar metrics drawn as curves for the chosen layer (one panel each).
        layer: module path whose spectrum is shown first (default: the first ``sv/*`` recorded).
        interval_ms: the play timer's period in the browser.
        live_every_s: redraw at most this often when the runs are trained elsewhere (``run.train`` in another cell);
            ``None`` turns those live redraws off.

    Attributes for code and tests: ``runs``, ``names``, ``fig``, ``axes``, ``play``, ``step_button``, ``slider``,
    ``layer``, ``status``, ``canvas`` (the ipympl canvas, or the ``Image`` widget of the fallback), ``widget``
    (the top-level box), ``interactive`` (ipympl in use), ``error`` (the last training error, or None).
    """

    def __init__(self, run_or_runs, every: int = 10, metrics=("sv_entropy", "he_s1"), *, layer: str | None = None,
                 interval_ms: int = 300, live_every_s: float | None = 1.0, figsize=None, dpi: int = 80):
        if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"every must be a positive integer (steps per tick), got {every!r}")
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if not all(isinstance(m, str) for m in metrics):
            raise TypeError(f"metrics must be metric names such as 'sv_entropy', got {metrics!r}")
        if not isinstance(interval_ms, int) or interval_ms < 10:
            raise ValueError(f"interval_ms must be an integer ≥ 10, got {interval_ms!r}")
        self.runs = _as_run_list(run_or_runs)
        self.names = _unique_names(self.runs)
        self.every, self.metrics, self.live_every_s = every, metrics, live_every_s
        self._check_metrics()
        self.error: Exception | None = None
        self.interactive = ipympl_active()
        self._make_figure(figsize, dpi)
        self._make_controls(layer, interval_ms)
        self._advancing, self._last_tick, self._last_draw, self._last_layout = False, 0.0, 0.0, -math.inf
        self._unsubscribe = [r.on_step(self._on_run_step) for r in self.runs]
        self.redraw()

    # ---- construction ------------------------------------------------------------------------------------------
    def _check_metrics(self) -> None:
        recorded = sorted({k.split("/", 1)[0] for k in _scalar_keys(self._pairs())})
        if recorded:   # a fresh run records nothing until its first step: check then (the panel says what is missing)
            bad = [m for m in self.metrics if m not in recorded]
            if bad:
                raise ValueError(f"metrics {bad} are not recorded by these runs; recorded scalar metrics: {recorded}")

    def _make_figure(self, figsize, dpi) -> None:
        from matplotlib.figure import Figure

        n_panels = 4 + len(self.metrics)
        nrows = math.ceil(n_panels / 3)
        self.fig = Figure(figsize=figsize or (11.0, 2.9 * nrows), dpi=dpi, layout="constrained")
        grid = self.fig.subplots(nrows, 3, squeeze=False).ravel()
        for ax in grid[n_panels:]:
            ax.set_visible(False)
        self.axes = {"loss": grid[0], "acc": grid[1], "spectrum": grid[2], "heatmap": grid[3]}
        self.axes.update({f"metric:{m}": ax for m, ax in zip(self.metrics, grid[4:n_panels])})
        if self.interactive:
            # The canvas is built directly rather than through pyplot, so the figure is not registered with pyplot:
            # a later plt.close("all") in the notebook cannot blank the dashboard, and it never shows twice.
            from ipympl.backend_nbagg import Canvas, FigureManager

            self.canvas = Canvas(self.fig)
            FigureManager(self.canvas, 0)
            self.canvas.header_visible = False
            self.canvas.footer_visible = False
            self.canvas.toolbar_position = "right"
            self.canvas.resizable = False
        else:
            import ipywidgets as W
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            _warn_fallback_once()
            FigureCanvasAgg(self.fig)
            self.canvas = W.Image(format="png")
        self.canvas.add_class("orthoscope-figure")

    def _make_controls(self, layer, interval_ms) -> None:
        import ipywidgets as W

        self.play = W.Play(value=0, min=0, max=10**9, step=1, interval=interval_ms, description="play",
                           tooltip=f"train {self.every} steps per tick; pause stops after the current chunk",
                           show_repeat=False)
        self.step_button = W.Button(description="step", icon="step-forward",
                                    tooltip=f"train {self.every} steps ({'each run' if len(self.runs) > 1 else 'run'})")
        self.slider = W.IntSlider(value=0, min=0, max=0, description="step", continuous_update=self.interactive,
                                  layout=W.Layout(width="420px"))
        self.layer = W.Dropdown(options=[], description="layer", layout=W.Layout(width="260px"))
        self.status = W.HTML()
        for w, cls in ((self.play, "orthoscope-play"), (self.step_button, "orthoscope-step"),
                       (self.slider, "orthoscope-slider"), (self.layer, "orthoscope-layer")):
            w.add_class(cls)
        self._wanted_layer, self._quiet = layer, False
        self._refresh_controls()   # raises here, not later, for a layer= that the runs do not record
        self.play.observe(self._on_tick, names="value")
        self.step_button.on_click(lambda _: self._advance_from_widget())
        self.slider.observe(self._on_control, names="value")
        self.layer.observe(self._on_control, names="value")
        rows = [W.HBox([self.play, self.step_button, self.slider, self.layer]), self.status, self.canvas]
        if not self.interactive:
            rows.insert(2, W.HTML("<small>static redraws (ipympl not active — run <code>%matplotlib widget</code> "
                                  "before creating the Dashboard for an interactive canvas)</small>"))
        self.widget = W.VBox(rows)
        self.widget.add_class("orthoscope-dashboard")

    # ---- driving the runs --------------------------------------------------------------------------------------
    def advance(self, steps: int | None = None) -> None:
        """Train every run by ``steps`` (default ``every``) steps, then redraw once. Errors propagate; redraws happen
        even so, showing the state the runs kept."""
        n = self.every if steps is None else steps
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"steps must be a positive integer, got {n!r}")
        self._advancing = True
        try:
            for run in self.runs:
                for _ in range(n):
                    run.step()
        finally:
            self._advancing = False
            self.redraw()

    def _advance_from_widget(self) -> None:
        """*step* button and *play* ticks: an exception raised in a widget callback only reaches the browser's log
        console, so it stops play and is shown in the status line instead (and kept in ``self.error``)."""
        self.error = None
        try:
            self.advance()
        except Exception as exc:
            self.error = exc
            self.play.playing = False
            self.status.value = self._status_html()

    def _on_tick(self, change) -> None:
        now = time.perf_counter()
        backlog = now - self._last_tick < _BACKLOG_S
        self._last_tick = now
        # The Play widget's stop button rewinds its value: only increases are ticks. See the module docstring.
        if change["new"] <= change["old"] or backlog or self.error is not None:
            return   # after an error, play stays stopped until *step* succeeds again
        self._advance_from_widget()
        self._last_tick = time.perf_counter()

    def _on_run_step(self, run, record) -> None:
        """``run.on_step`` callback: live redraws while the runs are trained elsewhere, throttled."""
        if self._advancing or self.live_every_s is None:
            return
        if time.perf_counter() - self._last_draw >= self.live_every_s:
            self.redraw()

    # ---- drawing -----------------------------------------------------------------------------------------------
    def _pairs(self) -> list[tuple[str, object]]:
        return [(name, run.history) for name, run in zip(self.names, self.runs)]

    def _layers(self) -> list[str]:
        return list(dict.fromkeys(m for r in self.runs for m in r.history.modules("sv")))

    def _refresh_controls(self) -> None:
        """Slider range and layer list from the histories. Widget observers are muted meanwhile (``_quiet``):
        changing a dropdown's options or a slider's max fires value events that would otherwise redraw again."""
        self._quiet = True
        try:
            last = max(r.history.last_step for r in self.runs)
            if last > self.slider.max:
                following = self.slider.value >= self.slider.max   # at the newest step: keep following it
                self.slider.max = last
                if following:
                    self.slider.value = last
            layers = self._layers()
            if layers and list(self.layer.options) != layers:
                keep = self._wanted_layer or self.layer.value
                if self._wanted_layer is not None and self._wanted_layer not in layers:
                    raise ValueError(f"layer {self._wanted_layer!r} has no recorded spectrum; recorded layers: "
                                     f"{layers}")
                self.layer.options = layers
                self.layer.value = keep if keep in layers else layers[0]
                self._wanted_layer = None
        finally:
            self._quiet = False

    def _on_control(self, change) -> None:
        if not self._quiet:
            self.redraw()

    def _status_html(self) -> str:
        parts = []
        for name, run in zip(self.names, self.runs):
            h, bits = run.history, [f"step {run.step_count}"]
            for key in ("loss/train", "loss/test", "acc/test"):
                if key in h:
                    bits.append(f"{key} {h[key].last():.4g}")
            parts.append(f"<b>{name}</b>: " + " · ".join(bits))
        if self.error is not None:
            parts.append(f"<span style='color:#b00'>stopped: {type(self.error).__name__}: {self.error}</span>")
        return "<br>".join(parts)

    def redraw(self) -> None:
        """Rebuild every panel from the histories at the slider step, then push the image to the browser."""
        self._refresh_controls()
        pairs = self._pairs()
        layer, at = self.layer.value, self.slider.value
        panels = [(("loss", "acc"), lambda axs: plot_loss_accuracy(axs, pairs)),
                  (("spectrum",), lambda axs: plot_spectrum_at(axs[0], pairs, layer, at)),
                  (("heatmap",), lambda axs: self._heatmap(axs[0], layer, at))]
        panels += [((f"metric:{m}",), lambda axs, m=m: self._metric(axs[0], m, layer, at)) for m in self.metrics]
        for names, draw in panels:
            axs = [self.axes[n] for n in names]
            for ax in axs:
                ax.clear()
            try:
                if not any(len(r.history) for r in self.runs):
                    raise ValueError("nothing recorded yet — press step or play")
                if layer is None and names[0] != "loss":
                    raise ValueError("no singular values recorded (add a Spectrum probe to the runs)")
                draw(axs)
                if names[0] in ("loss", "acc"):
                    for ax in axs:
                        ax.axvline(at, color="0.5", lw=0.8, ls=":")
            except ValueError as exc:   # the panel says what is missing instead of breaking the others
                axs[0].text(0.5, 0.5, str(exc), ha="center", va="center", wrap=True, fontsize=8,
                            transform=axs[0].transAxes)
        self.status.value = self._status_html()
        self._render()

    def _heatmap(self, ax, layer, at) -> None:
        name, history = next(((n, r.history) for n, r in zip(self.names, self.runs) if f"sv/{layer}" in r.history),
                             (self.names[0], self.runs[0].history))
        plot_spectrum_heatmap(ax, history, layer, upto_step=None)
        ax.axvline(at, color="w", lw=1, ls="--")
        if len(self.runs) > 1:
            ax.set_title(f"log10 σ — {layer} ({name})")

    def _metric(self, ax, metric, layer, at) -> None:
        plot_metric(ax, self._pairs() if len(self.runs) > 1 else self.runs[0].history, metric, modules=[layer])
        ax.axvline(at, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"{metric} — {layer}")

    def _render(self) -> None:
        # Constrained layout costs about as much as drawing itself, so it re-runs at most every _RELAYOUT_S seconds;
        # in between the panels keep their last positions (the engine is switched off, not removed).
        now = time.perf_counter()
        relayout = now - self._last_layout >= _RELAYOUT_S
        self.fig.set_layout_engine("constrained" if relayout else "none")
        if relayout and any(len(r.history) for r in self.runs):
            self._last_layout = now
        self._last_draw = now
        if self.interactive:
            if self.canvas.syncing_data_url:
                # No browser view has initialized this canvas yet (it is initialized once the creating cell ends;
                # with no front end, never). Drawing now would make ipympl 0.10 push an image the view cannot
                # decode ("broken" image, 0×0 canvas); instead ask for a draw, which the view requests on start.
                self.canvas.draw_idle()
            else:
                self.canvas.draw()   # renders now and sends the image over the comm (works mid-cell too)
        else:
            buf = io.BytesIO()
            self.fig.savefig(buf, format="png")
            self.canvas.value = buf.getvalue()

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

    def close(self) -> None:
        """Stop playing, unsubscribe from the runs and close the widgets."""
        self.play.playing = False
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for w in (self.play, self.step_button, self.slider, self.layer, self.status, self.canvas, self.widget):
            w.close()

    def __repr__(self) -> str:
        runs = ", ".join(f"{n}@{r.step_count}" for n, r in zip(self.names, self.runs))
        return f"Dashboard([{runs}], every={self.every}, layer={self.layer.value!r}, interactive={self.interactive})"
