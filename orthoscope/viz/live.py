"""Live redraws shared by every Dashboard in the process (issue 27): a second Dashboard on a run must not multiply
the redraws per step.

Before, each Dashboard throttled its own live redraws ("at most one per ``live_every_s``, counted from the end of
*its* last draw"). Two Dashboards on one run then took turns: while B drew, A's window elapsed, so A drew again as
soon as B finished — with a redraw of 0.4 s and a 1 s window, training got 20 % of the time (5× slower); with three
Dashboards, or slower redraws, none at all (100 s for what took 0.8 s).

Now one scheduler decides for all of them:

* **Rounds, not per-Dashboard draws.** A step of a run marks every Dashboard showing that run as stale; when a live
  redraw is allowed, one *round* redraws every stale Dashboard, so two Dashboards on one run draw together, once.
* **A bounded share of the time.** After a round — or any full redraw of a Dashboard of the run: its first, *step*,
  *play*, a control — that took d seconds, the next round for those runs waits d·(1 − share)/share seconds, so live redraws take at most ``share`` of the kernel's time however many Dashboards
  show a run (``LIVE_SHARE`` = 0.08: training runs at ≥ 92 % of its speed without a
  Dashboard, benchmarks/bench_dashboards.py). Each Dashboard's ``live_every_s`` is a further least gap of its own.
* **A trailing round.** A step refused by the budget schedules one round on the kernel's asyncio loop for when the
  budget allows it, so the last steps of a burst are shown; where no loop runs (a script), the next step does.

``clock`` is read through this module (``live.clock``) so tests can drive time by hand and count redraws.
"""
from __future__ import annotations

import math
import time
import weakref

LIVE_SHARE = 0.08      # at most this share of the kernel's time goes to live redraws (≤ 10 % slower training each)

clock = time.perf_counter


class LiveRedraws:
    """The process's live-redraw scheduler (``SCHEDULER``): Dashboards ``register`` and, on a new record,
    ``request``. The budget is kept per run (by identity), so Dashboards of unrelated runs do not hold each other
    back."""

    def __init__(self):
        self._dashboards: "weakref.WeakSet" = weakref.WeakSet()
        self._next: dict[int, float] = {}      # id(run) -> when its next live round may start
        self.rounds = 0                        # live rounds run so far (tests and benchmarks count them)
        self._trailing = None

    def register(self, dash) -> None:
        self._dashboards.add(dash)

    def unregister(self, dash) -> None:
        self._dashboards.discard(dash)
        kept = {id(r) for d in list(self._dashboards) for r in d.runs}
        self._next = {k: v for k, v in self._next.items() if k in kept}

    def spent(self, dash, seconds: float) -> None:
        """``dash`` just finished a full redraw of ``seconds`` (live or not: its first, *step*, *play*, a control):
        the next live round for its runs waits d·(1 − share)/share after it."""
        self._hold(dash.runs, clock() + seconds * (1 - dash.live_share) / dash.live_share)

    def _hold(self, runs, until: float) -> None:
        for r in runs:
            self._next[id(r)] = max(self._next.get(id(r), -math.inf), until)

    def allowed_at(self, dash) -> float:
        """When the next live round for ``dash``'s runs may start."""
        return max((self._next.get(id(r), -math.inf) for r in dash.runs), default=-math.inf)

    def request(self, dash) -> None:
        """``dash``'s runs have a new record (``run.on_step``): redraw every stale Dashboard of those runs now if the
        budget allows, else once it does (a trailing round on the kernel's loop)."""
        if self.allowed_at(dash) <= clock():
            self.round(dash)
        self._schedule_trailing()

    def round(self, dash) -> int:
        """Redraw together every Dashboard sharing a run with ``dash`` that is stale, past its own ``live_every_s``
        and not training itself (its *step*/*play* redraws at the chunk's end); then hold the next round of their
        runs back by the share. Returns how many Dashboards were drawn."""
        runs = {id(r) for r in dash.runs}
        now = clock()
        due = [d for d in list(self._dashboards) if runs & {id(r) for r in d.runs} and d._live_due(now)]
        if not due:
            return 0
        self.rounds += 1
        start = clock()
        for d in due:
            d.redraw()                        # each redraw holds its runs back by its own cost (``spent``) …
        end = clock()
        share = min(d.live_share for d in due)
        # … and the round by its whole cost: d seconds of redraws, then d·(1 − share)/share of training, so live
        # redraws take ``share`` of the time however many Dashboards drew
        self._hold({id(r): r for d in due for r in d.runs}.values(), end + (end - start) * (1 - share) / share)
        return len(due)

    def _schedule_trailing(self) -> None:
        from .dashboard_support import _call_later

        if self._trailing is not None:
            return
        now, waits = clock(), []
        for d in list(self._dashboards):
            own = d._live_wait(now)
            if own is not None:
                waits.append(max(own, self.allowed_at(d) - now))
        if waits:   # at least 10 ms: a Dashboard waiting for its own live_every_s must not spin the loop
            self._trailing = _call_later(max(0.01, min(waits)), self._trailing_round)

    def _trailing_round(self) -> None:
        self._trailing = None
        for d in list(self._dashboards):
            if d._live_wait(clock()) == 0.0 and self.allowed_at(d) <= clock():
                self.round(d)
        self._schedule_trailing()             # steps that landed meanwhile (nothing when no Dashboard is stale)


SCHEDULER = LiveRedraws()

__all__ = ["LiveRedraws", "SCHEDULER", "LIVE_SHARE"]
