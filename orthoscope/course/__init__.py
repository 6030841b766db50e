"""orthoscope.course — exercise checks with specific feedback, and student versions of the course notebooks.

    from orthoscope.course import check
    check("cayley", my_cayley)        # ✓ cayley: ... — or ✗ with what is wrong and a hint; never an exception trace

The notebooks are ``notebooks/course/NN_topic.ipynb``; ``python -m orthoscope course build OUT`` writes the student
versions (solutions removed, nbgrader's convention) and the teacher's answer key (docs/course.md).
"""
from __future__ import annotations

from .checks import CHECKS, Feedback, Mistake

__all__ = ["check", "CHECKS", "Feedback"]


def check(name: str, fn) -> Feedback:
    """Check the student's function ``fn`` for exercise ``name`` (one of ``CHECKS``); returns a ``Feedback`` that
    renders as a green or red box in a notebook. Wrong answers, wrong types and exceptions in ``fn`` become feedback."""
    if name not in CHECKS:
        raise ValueError(f"check(name=...): unknown exercise {name!r}; valid: {sorted(CHECKS)}")
    if not callable(fn):
        return Feedback(name, False, f"expected your function, got {type(fn).__name__} {fn!r:.40}",
                        "pass the function itself: check(\"" + name + "\", my_function), without calling it")
    try:
        CHECKS[name](fn)
    except Mistake as m:
        return Feedback(name, False, m.message, m.hint)
    return Feedback(name, True, "matches the reference on random and edge cases")
