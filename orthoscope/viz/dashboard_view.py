"""The Dashboard's view of its runs (a mixin of ``viz.dashboard.Dashboard``, split off to keep files small): which step
each run is shown at and why (``viz.view_state``), live following and its shared redraw rounds (``viz.live``), and the
step panels and markers drawn from that one view state, so that titles, markers, hover and status cannot disagree."""
from __future__ import annotations

from . import live
from .dashboard_panels import esd_panel, spectrum_panel
from .dashboard_support import DASHBOARD_LOCK, _lean_ticks, serialized, wrap_title
from .dashboard_text import drop_hidden, hover
from .view_state import ViewState, view_state

_STEP_PANELS = ("spectrum", "esd")     # panels drawn at the viewed step (the others have steps on x and mark it)


class DashboardView:
    """What ``Dashboard`` shows, and where: the view-state half of the Dashboard."""

    def _on_run_step(self, run, record) -> None:
        """``run.on_step`` callback: a run trained elsewhere (``run.train`` in another cell, another Dashboard's
        *play*) has a new record. The process's live-redraw scheduler (``viz.live``) redraws every Dashboard showing
        it together, within a bounded share of the time, and once more after a burst (trailing round)."""
        if not self._advancing and self.live_every_s is not None:
            live.SCHEDULER.request(self, run)

    def _steps_now(self) -> tuple:
        return tuple(r.step_count for r in self.runs)

    def _live_stale(self) -> bool:
        """Live redraws are on and a run has records this Dashboard has not drawn."""
        return self.live_every_s is not None and self._drawn_steps != self._steps_now()

    def _live_wait(self, now: float) -> float | None:
        """Seconds until this Dashboard may take a live redraw (None: nothing new to draw)."""
        if not self._live_stale():
            return None
        return max(0.0, self._last_draw + self.live_every_s - now)

    def _live_due(self, now: float) -> bool:
        """Stale, past its own ``live_every_s`` and not training itself (*step*/*play* redraw at the chunk's end)."""
        return not self._advancing and self._live_wait(now) == 0.0

    @serialized
    def go_live(self) -> None:
        """Move the view to the newest common step; it then follows training."""
        self._refresh_controls(to_newest=True)
        self.redraw()

    @property
    def following(self) -> bool:
        """The slider is at its end: every shown run is shown at its own newest step (``view_state``)."""
        return self.slider.value >= self.slider.max

    @property
    def viewed_step(self) -> int:
        """The step the slider asks for; each run's shown step is ``view.of(name).step`` (``view_state``)."""
        return int(self.slider.value)

    @property
    def view(self) -> ViewState:
        """What is shown, for each run: its step and why (``viz.view_state``). The panels, markers, hover texts and
        status line of the last draw were all drawn from this one object."""
        with DASHBOARD_LOCK:
            return self._view if self._view is not None else self._view_state()

    def _view_state(self) -> ViewState:
        histories = [r.history for r in self.runs]
        return view_state(self.names, histories, self._hidden(), self.layer.value, self.viewed_step,
                          int(self.slider.max))

    # ---- what is shown -----------------------------------------------------------------------------------------
    def _pairs(self, visible_only: bool = False) -> list[tuple[str, object]]:
        pairs = [(name, run.history) for name, run in zip(self.names, self.runs)]
        if visible_only and self.run_boxes:
            pairs = [p for p, box in zip(pairs, self.run_boxes) if box.value]
        return pairs

    def _layers(self) -> list[str]:
        return list(dict.fromkeys(m for r in self.runs for m in r.history.modules("sv")))

    def common_step(self) -> int:
        """The last step every run that has recorded anything has reached: the newest step all can be shown at."""
        lasts = [r.history.last_step for r in self.runs if len(r.history)]
        return min(lasts) if lasts else 0

    def _step_panels(self, pairs, layer, view: ViewState) -> list:
        """The panels whose content depends on the viewed step (every other panel only marks it): each run drawn at
        its own step of ``view``, the title naming those steps."""
        fixed = bool(self.fixed_axes.value)
        panels = [(("spectrum",), lambda axs: spectrum_panel(axs[0], pairs, self._pairs(True), layer, view, fixed))]
        if self.esd:
            panels += [(("esd",), lambda axs: esd_panel(axs[0], pairs, layer, view))]
        return panels

    def _mark_plan(self, view: ViewState) -> tuple:
        """Which viewed-step markers a curve panel gets: one grey line when every shown run is at one step, else one
        per shown run in its colour."""
        return ("*",) if view.common() is not None else tuple(view.steps())

    def _mark(self, ax, panel: str, view: ViewState) -> None:
        """The viewed-step markers of a panel over steps: *animated* lines (drawn by ``_on_draw_event``), so a slider
        move can move them without re-rendering the panel. A run's heat-map marks that run's step only."""
        if panel.startswith("heatmap:"):
            name = panel[len("heatmap:"):]
            plan = (name,) if view.of(name).step is not None else ()
        else:
            plan = self._mark_plan(view)
        for who in plan:
            step = view.common() if who == "*" else view.of(who).step
            colour = "0.35" if who == "*" or len(self.runs) == 1 else f"C{self.names.index(who) % 10}"
            marker = ax.axvline(step, color=colour, lw=0.8, ls=":", animated=True,
                                label="_viewed step" + ("" if who == "*" else f" · {who}"))
            self._markers.append((marker, who))

    def _draw_panel(self, names, draw, layer, hidden, view: ViewState) -> None:
        """Clear the panel's axes and draw it; a ValueError becomes the panel's text instead of breaking the rest.
        A panel over steps gets the viewed-step marker, an *animated* line (drawn by ``_on_draw_event``), so a
        slider move can move it without re-rendering the panel."""
        axs = [self.axes[n] for n in names]
        for ax in axs:
            ax.clear()
            ax.set_facecolor("white")
            twin = getattr(ax, "_orthoscope_twin", None)
            if twin is not None:
                twin.remove()
                ax._orthoscope_twin = None
        try:
            if not any(len(r.history) for r in self.runs):
                raise ValueError("nothing recorded yet — press step or play")
            if len(hidden) == len(self.runs):
                raise ValueError("every run is hidden — tick one above")
            if layer is None and names[0] not in ("loss", "signals"):
                raise ValueError("no singular values recorded (add a Spectrum probe to the runs)")
            draw(axs)
            for ax in axs:
                _lean_ticks(ax)
                wrap_title(ax)
                drop_hidden(ax, hidden)
                if names[0] not in _STEP_PANELS:       # x is the step: mark the viewed one
                    self._mark(ax, names[0], view)
                hover(ax)
        except ValueError as exc:   # the panel says what is missing instead of breaking the others
            axs[0].text(0.5, 0.5, str(exc), ha="center", va="center", wrap=True, fontsize=7,
                        transform=axs[0].transAxes)
            for ax in axs:
                ax.set_facecolor("0.93")          # greyed: nothing to read here but the reason
                ax.set_xticks([])
                ax.set_yticks([])

    # ---- a slider move: redraw only what depends on the viewed step --------------------------------------------
    def _hidden(self) -> set[str]:
        return {name for name, box in zip(self.names, self.run_boxes) if not box.value}

    def _controls_view(self) -> tuple:
        """What the drawn panels depend on besides the viewed step and the data."""
        return (self.layer.value, frozenset(self._hidden()), float(self.smooth.value), bool(self.fixed_axes.value),
                self.slider.max)

    def _step_axes(self) -> list:
        """The axes of the panels drawn at the viewed step: animated artists (``_render``), painted last."""
        return [self.axes[name] for name in _STEP_PANELS if name in self.axes]
