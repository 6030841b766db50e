"""Watch run directories that another process is writing (``orthoscope train``), the way a notebook watches a Run.

    from orthoscope.viz.watch import WatchedRun, watch
    big = WatchedRun("runs/poet-small")       # quacks like a Run: .name, .history, .step_count, .on_step(callback)
    big.refresh()                             # read the records that landed since the last refresh
    Dashboard.watch("runs/poet-small", "runs/adamw-small", toy_run)   # side by side, refreshing on a timer

The History on disk (``orthoscope.config.rundir``) is read incrementally: each ``refresh`` reads only the bytes after
the last complete line it saw, logs those records into ``.history`` (a plain ``History``, so every plot and the
Dashboard read it as they read a live run's) and calls the ``on_step`` subscribers once per record, as ``Run`` does.

Refreshing without blocking the kernel: ``start(interval_s)`` schedules ``refresh`` with ``loop.call_later`` on the
asyncio loop the Jupyter kernel runs in its main thread; no thread touches torch or matplotlib. Outside a running
loop (a script, a test), ``start`` does nothing and ``refresh`` is called by hand. A watched run's ``step()`` only
refreshes: the run trains in its own process.

Keeping the notebook responsive (issue 15: a control click answered in < 200 ms while a run writes). A control
event waits for whatever the kernel is doing, and what it does on a tick is the Dashboard's redraw, not the read.
So (measured in benchmarks/bench_watch.py, BENCHMARKS.md "Watch"):

* **One redraw per refresh, not one per record.** A subscriber registered with ``on_step(cb, batched=True)`` is
  called once per refresh, with the newest record, after every record is in the History. ``watch`` subscribes the
  Dashboard that way: a writer producing k records per tick cost k full redraws before (the Dashboard's throttle
  lets a redraw through whenever the previous one took longer than ``live_every_s``).
* **No live redraw while the user is at the controls.** ``watch`` notes every change of the Dashboard's slider and
  layer; for ``quiet_s`` seconds after one, ticks read data but do not redraw (the user's own redraw reads the
  same History, so nothing is lost) and the pending redraw happens on the first quiet tick.
* **Live redraws take a bounded share of the kernel.** After a live redraw of d seconds the next waits
  d·(1 − ``live_share``)/``live_share``; a click at a random moment then finds the kernel busy redrawing with
  probability ≤ ``live_share`` (0.25), however slow the machine.
* **Bounded reads.** A refresh reads at most ``max_bytes`` of new lines; with more waiting, the next tick comes at
  once (``call_later(0)``), so catching up with a long run yields to widget events between chunks.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

from ..core.history import History
from ..config.rundir import CONFIG, HISTORY, add_records, read_records

MAX_BYTES = 1 << 20          # a refresh parses at most ~1 MiB of new lines (~40 ms of json.loads here)


def read_new_lines(path: Path, offset: int, max_bytes: int | None = MAX_BYTES) -> tuple[list[dict], int, bool]:
    """``rundir.read_records`` with a byte cap per refresh (``MAX_BYTES``): records, next offset, more to read."""
    return read_records(path, offset, max_bytes)


class WatchedRun:
    """A read-only view of a run directory that refreshes as records land (module docstring)."""

    def __init__(self, run_dir, name: str | None = None, max_bytes: int | None = MAX_BYTES):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / CONFIG).is_file():
            raise FileNotFoundError(f"{str(self.run_dir)!r} is not a run directory (no {CONFIG}); "
                                    "start one with `python -m orthoscope train CONFIG`")
        self.name = name or self.run_dir.name
        self.history = History()
        self.step_count = 0
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes or None (no limit), got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.behind = False          # True when the last refresh stopped at max_bytes with complete lines unread
        self._offset = 0
        self._callbacks: list[tuple[Callable, bool]] = []      # (callback, batched)
        self._after_refresh: list[Callable[[], None]] = []
        self._timer = None

    @property
    def config(self) -> dict:
        """The run's config, as written in the run directory."""
        from ..config.format import parse_yaml

        return parse_yaml((self.run_dir / CONFIG).read_text())

    def refresh(self) -> int:
        """Read the records written since the last refresh (at most ``max_bytes`` of them); returns how many."""
        path = self.run_dir / HISTORY
        size = path.stat().st_size if path.is_file() else 0
        records, offset, more = read_new_lines(path, self._offset, self.max_bytes)
        cut = size < self._offset or (records and records[0]["step"] <= self.history.last_step) \
            or (not records and size > offset and self._torn_line_at(path, offset))
        if cut:   # the writer restarted from a checkpoint and cut its file back: read it again from the start
            self.history = History()
            records, offset, more = read_new_lines(path, 0, self.max_bytes)
        self._offset, self.behind = offset, more
        per_record = [cb for cb, batched in self._callbacks if not batched]
        for rec in records:
            add_records(self.history, [dict(rec)])
            self.step_count = rec["step"]
            values = {k: v for k, v in rec.items() if k != "step"}
            for cb in per_record:
                cb(self, values)
        if records:
            newest = {k: v for k, v in records[-1].items() if k != "step"}
            for cb in [cb for cb, batched in self._callbacks if batched]:
                cb(self, newest)
        for hook in list(self._after_refresh):
            hook()
        return len(records)

    @staticmethod
    def _torn_line_at(path: Path, offset: int) -> bool:
        """True when a complete line starts at ``offset`` but is not a record (the file was rewritten under us)."""
        with open(path, "rb") as f:
            f.seek(offset)
            return b"\n" in f.read(1 << 20)

    def step(self) -> dict:
        """A watched run trains elsewhere: stepping it reads what has landed."""
        self.refresh()
        return {}

    def on_step(self, callback: Callable[["WatchedRun", dict], None], batched: bool = False) -> Callable[[], None]:
        """Call ``callback(run, record)`` for every record a refresh reads (as ``Run`` does), or with
        ``batched=True`` once per refresh that read any, with the newest record, after all of them are in the
        History (what a display needs). Returns an unsubscribe function."""
        entry = (callback, bool(batched))
        self._callbacks.append(entry)
        return lambda: self._callbacks.remove(entry) if entry in self._callbacks else None

    # ---- the timer ---------------------------------------------------------------------------------------------
    def start(self, interval_s: float = 1.0) -> bool:
        """Refresh every ``interval_s`` seconds on the running asyncio loop (a Jupyter kernel's); False if none."""
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                loop = asyncio.get_event_loop_policy().get_event_loop()
            except RuntimeError:
                return False
            if not loop.is_running():
                return False
        self.stop()

        def tick():
            try:
                self.refresh()
            finally:
                if self._timer is not None:   # behind: read the next chunk once pending widget events are handled
                    self._timer = loop.call_later(0 if self.behind else interval_s, tick)

        self._timer = loop.call_later(0, tick)
        return True

    def stop(self) -> None:
        """Stop the refresh timer (``refresh`` still works by hand)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def watching(self) -> bool:
        return self._timer is not None

    def __repr__(self) -> str:
        return f"WatchedRun({str(self.run_dir)!r}, step={self.step_count}, watching={self.watching})"


class _LiveGate:
    """Decides when the Dashboard's live redraws may run. Not within ``quiet_s`` seconds of the user moving one of
    its controls; and not more than ``share`` of the time: after a live redraw that took d seconds, the next waits
    d·(1 − share)/share seconds, so a click posted at a random moment finds the kernel busy with a live redraw with
    probability ≤ ``share``. A held-back redraw runs on the first tick allowed (``flush``). Control changes made
    *by* a redraw (the slider following the newest step) are not the user's and do not count."""

    def __init__(self, quiet_s: float, share: float):
        self.quiet_s, self.share = quiet_s, share
        self.last_touch = float("-inf")
        self.next_allowed = float("-inf")
        self.drawing = False
        self.pending: dict[Callable, tuple] = {}
        self.subscriptions: list[tuple[WatchedRun, list]] = []   # what to undo when the dashboard closes

    def unsubscribe(self) -> None:
        for run, entries in self.subscriptions:
            run._callbacks = [e for e in run._callbacks if e not in entries]
            if self.flush in run._after_refresh:
                run._after_refresh.remove(self.flush)
        self.subscriptions = []
        self.pending.clear()

    def touch(self, change=None, full_redraw: bool = True) -> None:
        """The user moved a control. A control answered by a full redraw (the layer) shows the whole History, so
        nothing held back is left to show; a slider move redraws only the step panels (``Dashboard.scrub``), so a
        held-back redraw stays due."""
        if not self.drawing:
            self.last_touch = time.monotonic()
            if full_redraw:
                self.pending.clear()

    def _allowed(self) -> bool:
        now = time.monotonic()
        return now - self.last_touch >= self.quiet_s and now >= self.next_allowed

    def _call(self, callback, run, record) -> None:
        self.drawing = True
        t0 = time.monotonic()
        try:
            callback(run, record)
        finally:
            self.drawing = False
            end = time.monotonic()
            self.next_allowed = end + (end - t0) * (1 - self.share) / self.share

    def wrap(self, callback: Callable) -> Callable:
        def gated(run, record):
            if self._allowed():
                self.pending.pop(callback, None)
                self._call(callback, run, record)
            else:
                self.pending[callback] = (run, record)
        return gated

    def flush(self) -> None:
        if self.pending and self._allowed():
            callback, (run, record) = next(iter(self.pending.items()))   # one redraw per tick at most
            del self.pending[callback]
            self._call(callback, run, record)


def _gate_live_redraws(dashboard, watched: list[WatchedRun], first_callback: dict, quiet_s: float,
                       live_share: float) -> _LiveGate:
    """Batch the subscriptions the dashboard made on each watched run and gate them (``_LiveGate``)."""
    gate = _LiveGate(quiet_s, live_share)
    for run in watched:
        since = first_callback[id(run)]
        run._callbacks[since:] = [(gate.wrap(cb), True) for cb, _ in run._callbacks[since:]]
        run._after_refresh.append(gate.flush)
        gate.subscriptions.append((run, run._callbacks[since:]))
    for name, full_redraw in (("slider", False), ("layer", True)):
        control = getattr(dashboard, name, None)
        if control is not None and hasattr(control, "observe"):
            control.observe(lambda change, full=full_redraw: gate.touch(change, full), "value")
    return gate


def watch(dashboard_cls, *sources, interval_s: float = 1.0, live_every_s: float = 0.5, quiet_s: float = 2.0,
          live_share: float = 0.25, **kwargs):
    """A ``dashboard_cls`` over run directories (paths) and notebook Runs side by side; the directories refresh
    every ``interval_s`` seconds, with one live redraw per refresh at most, none within ``quiet_s`` seconds of the
    user moving a control, and live redraws taking at most ``live_share`` of the kernel's time (module docstring).
    Closing the dashboard stops the timers."""
    if not sources:
        raise ValueError("watch needs at least one run directory or Run")
    if not quiet_s >= 0:
        raise ValueError(f"quiet_s must be ≥ 0 seconds, got {quiet_s!r}")
    if not 0 < live_share <= 1:
        raise ValueError(f"live_share must be in (0, 1] (1: no limit), got {live_share!r}")
    runs = [WatchedRun(s) if isinstance(s, (str, Path)) else s for s in sources]
    watched = [r for r in runs if isinstance(r, WatchedRun)]
    for run in watched:
        while run.refresh() and run.behind:      # the whole record so far, before the first draw
            pass
    first_callback = {id(run): len(run._callbacks) for run in watched}
    dashboard = dashboard_cls(runs, live_every_s=live_every_s, live_share=live_share, **kwargs)
    dashboard.live_gate = _gate_live_redraws(dashboard, watched, first_callback, quiet_s, live_share)
    for run in watched:
        run.start(interval_s)
    close = dashboard.close

    def close_and_stop():
        for run in watched:
            run.stop()
        dashboard.live_gate.unsubscribe()      # the gated callbacks replaced the Dashboard's own subscriptions
        close()

    dashboard.close = close_and_stop
    dashboard.watched = watched
    return dashboard
