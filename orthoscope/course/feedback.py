"""What a check tells the student: a ``Feedback`` (a green or red box in a notebook), and ``CheckFailed``, the
AssertionError a failed check raises so that an autograder (nbgrader) counts the cell as failed.

In a notebook the student sees the red box with its hint, then one line — ``CheckFailed: ✗ cayley: …`` — instead of a
Python traceback (IPython renders an exception through its ``_render_traceback_`` when it has one).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Feedback:
    """What a check found: ``ok``, a one-line ``message`` and a ``hint`` (empty when ok)."""

    name: str
    ok: bool
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.message}" + (f"\n  hint: {self.hint}" if self.hint else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        color, mark = ("#1a7f37", "✓") if self.ok else ("#b42318", "✗")
        hint = f"<div style='margin-top:4px'><b>hint:</b> {_html(self.hint)}</div>" if self.hint else ""
        return (f"<div class='orthoscope-feedback' data-ok='{str(self.ok).lower()}' style='border-left:4px solid "
                f"{color};padding:6px 10px;font-family:sans-serif'><b style='color:{color}'>{mark} {self.name}</b>: "
                f"{_html(self.message)}{hint}</div>")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Mistake(Exception):
    """Raised inside a check with the message and hint for the student."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


class CheckFailed(AssertionError):
    """A failed check, as an autograder sees it: an AssertionError whose message is the feedback's text."""

    def __init__(self, feedback: Feedback):
        super().__init__(str(feedback))
        self.feedback = feedback

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of the traceback: the box above already holds message and hint, and a
        # stack of orthoscope's frames would only hide them. Red, as IPython colours an exception's name.
        return [f"\x1b[0;31mCheckFailed\x1b[0m: ✗ {self.feedback.name}: {self.feedback.message}"]


def show(feedback: Feedback) -> None:
    """Display ``feedback`` as its box in a notebook (IPython's display), as text anywhere else."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:                                      # plain Python without IPython installed
        print(feedback)
        return
    if get_ipython() is None:
        print(feedback)
    else:
        display(feedback)
