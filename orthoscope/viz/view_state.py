"""What a Dashboard shows, decided once (issue 27): for each run, the step its panels show and why.

Before, each panel found its own step — the spectrum the recorded spectrum nearest the slider, the status line the
slider's value, the hover the mouse's x — so one picture could say 240, 250 and 267 for one run, and a finished run
pinned a live one to its last step. Now ``view_state`` computes a ``ViewState`` from the slider and the histories,
and every title, marker, hover text, status line and control state is drawn from it:

* **The slider** spans the steps of the *shown* runs, up to the newest any of them has recorded (``newest``); its
  value is the wanted step (``target``). At its end the view **follows live**, per run: every run is shown at its own
  newest step, so a watched job keeps advancing beside a toy run that ended long ago.
* **Each run's step** is a step the run has a spectrum for (of the chosen layer): the last at or before
  ``min(target, its newest step)``, so the spectrum, the ESD, the markers and the status line name one step for it.
  A run without that layer's spectrum is shown at ``min(target, its newest step)``.
* **Why** (``RunView.why``): ``"live"`` (following: its newest), ``"scrubbed"`` (the slider is back in its
  history), ``"ended"`` (the slider is past its newest step: shown at its last), ``"hidden"`` (unticked: takes no part
  in the slider's range), ``"empty"`` (nothing recorded yet).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.keys import key as make_key


@dataclass(frozen=True)
class RunView:
    name: str
    step: int | None        # the step its panels show (None: nothing to show)
    newest: int | None      # its newest recorded step
    why: str                # "live", "scrubbed", "ended", "hidden" or "empty" (module docstring)


@dataclass(frozen=True)
class ViewState:
    target: int             # the slider's value: the step asked for
    newest: int             # the slider's end: the newest step of the shown runs
    following: bool         # the slider is at its end: every shown run at its own newest step
    runs: tuple[RunView, ...]

    def of(self, name: str) -> RunView:
        return next(r for r in self.runs if r.name == name)

    def steps(self) -> dict[str, int]:
        """{run name: step shown} for the runs with something shown."""
        return {r.name: r.step for r in self.runs if r.step is not None}

    def common(self) -> int | None:
        """The one step every shown run is at, or None when they differ."""
        steps = set(self.steps().values())
        return steps.pop() if len(steps) == 1 else None

    def steps_text(self) -> str:
        """"step 240" when every shown run is at 240, else "steps wd=1: 580, wd=0: 500" — for panel titles."""
        steps = self.steps()
        if not steps:
            return "no step yet"
        common = self.common()
        if common is not None:
            return f"step {common}"
        return "steps " + ", ".join(f"{n}: {s}" for n, s in steps.items())


def _last_at_or_before(steps, step: int) -> int | None:
    steps = np.asarray(steps)
    before = steps[steps <= step]
    return int(before[-1]) if before.size else None


def view_state(names, histories, hidden, layer: str | None, target: int, newest: int) -> ViewState:
    """The view for the slider at ``target`` of ``newest`` (``Dashboard._view_state`` passes its controls)."""
    following = target >= newest
    runs = []
    for name, h in zip(names, histories):
        last = h.last_step if len(h) else None
        if last is None or last < 0:
            runs.append(RunView(name, None, None, "empty"))
            continue
        if name in hidden:
            runs.append(RunView(name, None, last, "hidden"))
            continue
        wanted = last if following else min(target, last)
        why = "live" if following else ("scrubbed" if target <= last else "ended")
        key = make_key("sv", layer) if layer else None
        step = wanted
        if key is not None and key in h and len(h[key]):
            snapped = _last_at_or_before(h[key].steps, wanted)
            step = snapped if snapped is not None else int(h[key].steps[0])
        runs.append(RunView(name, int(step), int(last), why))
    return ViewState(int(target), int(newest), following, tuple(runs))


def newest_step(histories, names, hidden) -> int:
    """The slider's end: the newest step any shown run has recorded (0 when none has)."""
    lasts = [h.last_step for n, h in zip(names, histories) if n not in hidden and len(h)]
    return max(max(lasts, default=0), 0)


__all__ = ["RunView", "ViewState", "view_state", "newest_step"]
