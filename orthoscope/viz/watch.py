"""Watch run directories that another process is writing (``orthoscope train``), the way a notebook watches a Run.

    from orthoscope.viz.watch import WatchedRun, watch
    big = WatchedRun("runs/poet-small")       # quacks like a Run: .name, .history, .step_count, .on_step(callback)
    big.refresh()                             # read the records that landed since the last refresh
    Dashboard.watch("runs/poet-small", "runs/adamw-small", toy_run)   # side by side, refreshing on a timer

The History on disk (``orthoscope.rundir``) is read incrementally: each ``refresh`` reads only the bytes after the
last complete line it saw, logs those records into ``.history`` (a plain ``History``, so every plot and the
Dashboard read it as they read a live run's) and calls the ``on_step`` subscribers once per record, as ``Run`` does.

Refreshing without blocking the kernel: ``start(interval_s)`` schedules ``refresh`` with ``loop.call_later`` on the
asyncio loop the Jupyter kernel runs in its main thread. A refresh is a short file read, so between refreshes the
kernel is idle and handles widget events (scrubbing, the layer dropdown) at once; no thread touches torch or
matplotlib. Outside a running loop (a script, a test), ``start`` does nothing and ``refresh`` is called by hand.
A watched run's ``step()`` only refreshes: the run trains in its own process.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from ..history import History
from ..rundir import CONFIG, HISTORY, add_records, read_records


class WatchedRun:
    """A read-only view of a run directory that refreshes as records land (module docstring)."""

    def __init__(self, run_dir, name: str | None = None):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / CONFIG).is_file():
            raise FileNotFoundError(f"{str(self.run_dir)!r} is not a run directory (no {CONFIG}); "
                                    "start one with `python -m orthoscope train CONFIG`")
        self.name = name or self.run_dir.name
        self.history = History()
        self.step_count = 0
        self._offset = 0
        self._callbacks: list[Callable] = []
        self._timer = None

    @property
    def config(self) -> dict:
        """The run's config, as written in the run directory."""
        from ..config import parse_yaml

        return parse_yaml((self.run_dir / CONFIG).read_text())

    def refresh(self) -> int:
        """Read the records written since the last refresh; returns how many arrived."""
        path = self.run_dir / HISTORY
        size = path.stat().st_size if path.is_file() else 0
        records, offset = read_records(path, self._offset)
        cut = size < self._offset or (records and records[0]["step"] <= self.history.last_step) \
            or (not records and size > offset and self._torn_line_at(path, offset))
        if cut:   # the writer restarted from a checkpoint and cut its file back: read it again from the start
            self.history = History()
            records, offset = read_records(path, 0)
        self._offset = offset
        for rec in records:
            step = rec["step"]
            add_records(self.history, [dict(rec)])
            self.step_count = step
            values = {k: v for k, v in rec.items() if k != "step"}
            for cb in list(self._callbacks):
                cb(self, values)
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

    def on_step(self, callback: Callable[["WatchedRun", dict], None]) -> Callable[[], None]:
        """Call ``callback(run, record)`` for every record a refresh reads; returns an unsubscribe function."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

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
                if self._timer is not None:
                    self._timer = loop.call_later(interval_s, tick)

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


def watch(dashboard_cls, *sources, interval_s: float = 1.0, live_every_s: float = 0.5, **kwargs):
    """A ``dashboard_cls`` over run directories (paths) and notebook Runs side by side; the directories refresh
    every ``interval_s`` seconds. Closing the dashboard stops the timers."""
    if not sources:
        raise ValueError("watch needs at least one run directory or Run")
    runs = [WatchedRun(s) if isinstance(s, (str, Path)) else s for s in sources]
    for run in runs:
        if isinstance(run, WatchedRun):
            run.refresh()
    dashboard = dashboard_cls(runs, live_every_s=live_every_s, **kwargs)
    watched = [r for r in runs if isinstance(r, WatchedRun)]
    for run in watched:
        run.start(interval_s)
    close = dashboard.close

    def close_and_stop():
        for run in watched:
            run.stop()
        close()

    dashboard.close = close_and_stop
    dashboard.watched = watched
    return dashboard
