"""Plumbing for the Dashboard (``viz.dashboard``): checking its runs, naming them, re-wiring a re-created widget,
scheduling on the kernel's loop, cheaper ticks, titles that fit their panel, whether to show the sharpness panel."""
from __future__ import annotations

import functools
import re
import threading
import time
from datetime import datetime


# JupyterLab 4.4+ with ipykernel 7 handles widget messages on a kernel *subshell*, a thread of its own, while cells run
# on the main thread: a click's redraw (or ipympl's own draw) could run while a cell redraws or trains, and matplotlib
# (its shared mathtext parser: seen as a sporadic ParseException) and torch are not thread-safe. One lock for every
# Dashboard, since they share matplotlib: drawing and training through a Dashboard take it.
DASHBOARD_LOCK = threading.RLock()


def serialized(method):
    """Run ``method`` holding ``DASHBOARD_LOCK`` (re-entrant: a redraw inside an advance is fine)."""
    @functools.wraps(method)
    def locked(*args, **kwargs):
        with DASHBOARD_LOCK:
            return method(*args, **kwargs)
    return locked


# the fallback PNG never overflows its column (scaled down in a narrow one); the ipympl canvas has a fixed pixel size
# (its mouse mapping would break if scaled) and is sized to fit: width_px, or drag its corner
_CSS = "<style>.orthoscope-dashboard img{max-width:100%;height:auto}</style>"


def show_sharpness(runs, asked: bool | None) -> bool:
    """Whether the Dashboard draws its sharpness panel (λ_max of the loss Hessian and the 2/η line): ``asked`` when
    given; otherwise when a run has a ``Sharpness`` probe or its History holds ``sharpness/*``."""
    if asked is not None:
        return bool(asked)
    return any(getattr(p, "name", None) == "sharpness" for r in runs for p in getattr(r, "probes", ())) or \
        any(r.history.keys("sharpness") for r in runs)


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


def _watched(run) -> bool:
    """A run trained by something other than the Dashboard, which can only ``refresh()`` it: a run directory written
    by another process (``viz.watch.WatchedRun``), or the recorder of your own loop (``orthoscope.observe``)."""
    return callable(getattr(run, "refresh", None))


def _copy_observers(old, new, exclude) -> None:
    """Re-register on ``new`` the ``value`` observers that others (``viz.watch``'s live-redraw gate) put on ``old``,
    so re-creating the slider does not silently drop them. Reads traitlets' notifier table (stable since
    traitlets 4)."""
    handlers = getattr(old, "_trait_notifiers", {}).get("value", {}).get("change", [])
    for handler in list(handlers):
        if handler != exclude:
            new.observe(handler, names="value")


def running_loop():
    """The running asyncio loop (a Jupyter kernel's, where live redraws schedule their trailing round); None where
    none runs (a script, a test), where the next live step redraws instead."""
    import asyncio

    try:
        return asyncio.get_running_loop()          # a widget message handled inside the kernel's loop
    except RuntimeError:
        pass
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return None
    return loop if loop.is_running() else None


def _lean_ticks(ax) -> None:
    """Log axes' minor ticks cost about a third of a redraw (matplotlib builds each tick's artists) and add little
    on panels this small: the Dashboard keeps the major ones only. A log axis spanning less than a decade would then
    show no number at all, so it gets a few plain-number ticks instead (evenly spaced: within a decade the log scale
    is nearly linear)."""
    import math

    from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullLocator

    for axis, limits in ((ax.xaxis, ax.get_xlim), (ax.yaxis, ax.get_ylim)):
        axis.set_minor_locator(NullLocator())
        lo, hi = sorted(limits())
        if axis.get_scale() == "log" and lo > 0 and math.log10(hi / lo) < 1:
            axis.set_major_locator(MaxNLocator(nbins=4))
            axis.set_major_formatter(FormatStrFormatter("%.3g"))


_TITLE_SHARE = 0.85


def wrap_title(ax) -> None:
    """Break a title wider than its panel into lines (a long module path such as
    ``model.model.layers.0.self_attn.q_proj`` would otherwise run into the next panel or off the figure)."""
    text = ax.title
    title = text.get_text()
    if not title or "\n" in title:
        return
    fig = ax.get_figure(root=True)
    # the room is the panel's grid cell less a share for its y-axis labels, not the axes' current width: that
    # changes with each constrained layout, and the decision to wrap must not (a scrub repaints over an older render)
    share = getattr(ax, "_orthoscope_title_share", _TITLE_SHARE)     # (less beside a colorbar: layout.add_panels)
    room = share * ax.get_subplotspec().get_position(fig).width * fig.bbox.width
    width = text.get_window_extent(fig.canvas.get_renderer()).width
    if width > room:
        text.set_text(_wrap(title, max(12, int(len(title) * room / width))))


def _wrap(title: str, chars: int) -> str:
    """Greedy lines of at most ``chars`` characters, broken at spaces — and inside a word longer than a line, after
    its dots (a module path splits between its components)."""
    lines, line = [], ""
    for word in title.split(" "):
        parts = re.split(r"(?<=\.)", word) if len(word) > chars else [word]
        for k, part in enumerate(parts):
            joined = line + ("" if not line or k else " ") + part
            if line and len(joined) > chars:
                lines.append(line)
                line = part
            else:
                line = joined
    return "\n".join(lines + [line])


def message_age() -> float | None:
    """Seconds since the front end sent the message the kernel is handling now (its header's ``date``), or None
    outside a kernel. A Play tick that waited in the kernel's queue behind a chunk, a cell or another Dashboard's
    redraw is old when it is handled; a fresh one is as old as the transport delay (plus any clock offset)."""
    try:
        from IPython import get_ipython

        date = get_ipython().kernel.get_parent()["header"]["date"]
        if isinstance(date, str):
            date = datetime.fromisoformat(date.replace("Z", "+00:00"))
        return time.time() - date.timestamp()
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
