"""Live redraws shared by every Dashboard in the process (issue 27): a second Dashboard on a run must not multiply
the redraws per step, the first live redraw comes promptly, and a training step pays almost nothing for them.

Before, each Dashboard throttled its own live redraws ("at most one per ``live_every_s``, counted from the end of
*its* last draw"). Two Dashboards on one run then took turns: while B drew, A's window elapsed, so A drew again as
soon as B finished — with a redraw of 0.4 s and a 1 s window, training got 20 % of the time (5× slower); with three
Dashboards, or slower redraws, none at all (100 s for what took 0.8 s).

Now one scheduler decides for all of them:

* **Rounds, not per-Dashboard draws.** A step of a run marks every Dashboard showing that run as stale; when a live
  redraw is allowed, one *round* redraws every stale Dashboard, so two Dashboards on one run draw together, once.
* **A bounded share of the training time: redraw time is owed, and repaid.** Each run has a debt in seconds. A round
  of d seconds adds d·(1 − share) to the debt of its runs (its d seconds, less the share they earn themselves), and
  time repays the debt at ``share`` seconds per second; the next round may start once the debt is paid, i.e.
  d·(1 − share)/share after the round. So live redraws take at most ``share`` of the time however many Dashboards
  show a run (``LIVE_SHARE`` = 0.05: in the long run training keeps ≥ 95 % of its speed without a Dashboard,
  benchmarks/bench_dashboards.py; with 0.08 and the prompt first round a 40-second run paid 11 %). Debts add up:
  two full redraws back to back owe twice.
* **Only redraws during training are owed.** A full redraw that is not a live round — a Dashboard's first, a control,
  the column-width fit, another Dashboard's *step*/*play* — is charged when the run has stepped within the last
  ``TRAINING_GAP_S`` (it then took time from training); one made while the run sits idle took nothing from
  training and is free. The redraw that ends a Dashboard's own *step*/*play* chunk is not owed either: it is that
  Dashboard's training cadence, chosen by the user, not a live redraw — owing it made a second Dashboard on the
  played run wait out a debt that grew with every chunk, so after *pause* it still showed the step it drew before
  *play* (tests/test_browser.py's tour caught it). Before, the first draw of a Dashboard, made before ``run.train`` starts, was charged too, so
  the first live redraw waited 12.5 × a redraw (~5 s). Now it comes after the Dashboard's own ``live_every_s``.
* **A cheap step.** Each run has a *wake* time — when its debt is paid and its first Dashboard's ``live_every_s`` has
  passed; a step before it costs one dictionary look-up (no loop over the Dashboards, so the cost of a step does not
  grow with their number).
* **A trailing round.** A step refused by the budget schedules one round on the kernel's asyncio loop for when the
  budget allows it, so the last steps of a burst are shown; where no loop runs (a script), the next step does.

``clock`` is read through this module (``live.clock``) so tests can drive time by hand and count redraws.
"""
from __future__ import annotations

import math
import time
import weakref

LIVE_SHARE = 0.05      # at most this share of the kernel's time goes to live redraws (+ one prompt round: ≤ 10 %)
TRAINING_GAP_S = 1.0   # a run that stepped this recently is training: a full redraw now is charged to its budget

clock = time.perf_counter


class LiveRedraws:
    """The process's live-redraw scheduler (``SCHEDULER``): Dashboards ``register`` and, on a new record,
    ``request``. The budget is kept per run (by identity), so Dashboards of unrelated runs do not hold each other
    back."""

    def __init__(self):
        self._dashboards: "weakref.WeakSet" = weakref.WeakSet()
        self._debt: dict[int, tuple[float, float]] = {}   # id(run) -> (seconds owed, when): repaid at ``share``/s
        self._wake: dict[int, float] = {}                 # id(run) -> before this, a step finds nothing to draw
        self._stepped: dict[int, float] = {}              # id(run) -> when it last stepped (a request)
        self.rounds = 0                                   # live rounds run so far (tests and benchmarks count them)
        self._trailing = None
        self._in_round = False                            # a round charges its whole cost itself, not per redraw

    def register(self, dash) -> None:
        self._dashboards.add(dash)
        self._rewake(dash.runs)

    def unregister(self, dash) -> None:
        self._dashboards.discard(dash)
        kept = {id(r) for d in list(self._dashboards) for r in d.runs}
        for table in (self._debt, self._wake, self._stepped):
            for key in [k for k in table if k not in kept]:
                del table[key]

    # ---- the budget --------------------------------------------------------------------------------------------
    def _owed(self, key: int, now: float, share: float) -> float:
        """Seconds of redraw ``key``'s run still owes at ``now`` (the debt less ``share`` s per second since)."""
        owed, since = self._debt.get(key, (0.0, now))
        return max(0.0, owed - share * (now - since))

    def _charge(self, runs, start: float, end: float, share: float) -> None:
        """A redraw from ``start`` to ``end`` took d = end − start from ``runs``' training: owe d·(1 − share) more
        (d, less the share its own d seconds repay)."""
        for r in runs:
            owed = self._owed(id(r), start, share) + (end - start) * (1 - share)
            self._debt[id(r)] = (owed, end)

    def spent(self, dash, seconds: float, owed: bool = True) -> None:
        """``dash`` just finished a full redraw of ``seconds`` (its first, *step*, *play*, a control, a live round's
        part): owed by those of its runs that are training (stepped within ``TRAINING_GAP_S`` before it started).
        A live round charges its whole cost itself (``round``), so its parts are not charged twice; ``owed=False``
        (the redraw that ends a Dashboard's own chunk) is not charged at all."""
        end = clock()
        start = end - seconds
        if owed and not self._in_round:
            training = [r for r in dash.runs if start - self._stepped.get(id(r), -math.inf) < TRAINING_GAP_S]
            self._charge(training, start, end, dash.live_share)
        self._rewake(dash.runs)

    def allowed_at(self, dash) -> float:
        """When the next live round for ``dash``'s runs may start: when their debts are paid."""
        paid = [since + owed / dash.live_share for owed, since in (self._debt.get(id(r), (0.0, -math.inf))
                                                                   for r in dash.runs)]
        return max(paid, default=-math.inf)

    def _rewake(self, runs) -> None:
        """Recompute the wake time of ``runs``: their debt paid and the soonest ``live_every_s`` of a Dashboard
        showing them passed (a Dashboard not stale yet becomes stale by a step, which is what wakes are for)."""
        dashes = list(self._dashboards)
        for r in runs:
            mine = [d for d in dashes if any(x is r for x in d.runs) and d.live_every_s is not None]
            if not mine:
                self._wake[id(r)] = -math.inf
                continue
            own = min(d._last_draw + d.live_every_s for d in mine)
            self._wake[id(r)] = max(own, max(self.allowed_at(d) for d in mine))

    # ---- steps and rounds --------------------------------------------------------------------------------------
    def request(self, dash, run=None) -> None:
        """``dash``'s ``run`` (default: its runs) has a new record (``run.on_step``): redraw every stale Dashboard
        of those runs now if the budget allows, else once it does (a trailing round on the kernel's loop). Before
        the run's wake time this is one look-up."""
        now = clock()
        runs = dash.runs if run is None else (run,)
        for r in runs:
            self._stepped[id(r)] = now
        if now >= min(self._wake.get(id(r), -math.inf) for r in runs):
            self.round(dash)
        if self._trailing is None:
            self._schedule_trailing()

    def round(self, dash) -> int:
        """Once a Dashboard sharing a run with ``dash`` is stale and past its own ``live_every_s``, redraw together
        every stale one that is not training itself (its *step*/*play* redraws at the chunk's end) and whose runs'
        debts are paid; then charge the round's whole cost to their runs. Returns how many Dashboards were drawn."""
        runs = {id(r) for r in dash.runs}
        now = clock()
        sharing = [d for d in list(self._dashboards) if runs & {id(r) for r in d.runs}]
        # every stale Dashboard of the runs draws in the round once one of them is past its own live_every_s: they
        # stay in step (drawn one by one, a second Dashboard made later would fall into rounds of its own)
        due = [d for d in sharing if not d._advancing and d._live_stale() and self.allowed_at(d) <= now]
        if not any(d._live_due(now) for d in due):
            self._rewake({id(r): r for d in sharing for r in d.runs}.values())
            return 0
        self.rounds += 1
        start = clock()
        self._in_round = True
        try:
            for d in due:
                d.redraw()
        finally:
            self._in_round = False
        end = clock()
        share = min(d.live_share for d in due)
        # the round's whole cost: d seconds of redraws, then d·(1 − share)/share of training, so live redraws take
        # ``share`` of the time however many Dashboards drew
        touched = {id(r): r for d in due for r in d.runs}.values()
        self._charge(touched, start, end, share)
        self._rewake({id(r): r for d in sharing for r in d.runs}.values())
        return len(due)

    def _schedule_trailing(self) -> None:
        """One round on the kernel's loop for when the soonest stale Dashboard may draw (nothing where no loop runs:
        a script's next step does it, and the loop over the Dashboards is not paid on every step)."""
        from .dashboard_support import running_loop

        loop = running_loop()
        if self._trailing is not None or loop is None:
            return
        now, waits = clock(), []
        for d in list(self._dashboards):
            own = d._live_wait(now)
            if own is not None:
                waits.append(max(own, self.allowed_at(d) - now))
        if waits:   # at least 10 ms: a Dashboard waiting for its own live_every_s must not spin the loop
            self._trailing = loop.call_later(max(0.01, min(waits)), self._trailing_round)

    def _trailing_round(self) -> None:
        self._trailing = None
        for d in list(self._dashboards):
            if d._live_wait(clock()) == 0.0 and self.allowed_at(d) <= clock():
                self.round(d)
        self._schedule_trailing()             # steps that landed meanwhile (nothing when no Dashboard is stale)


SCHEDULER = LiveRedraws()

__all__ = ["LiveRedraws", "SCHEDULER", "LIVE_SHARE", "TRAINING_GAP_S"]
