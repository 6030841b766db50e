"""orthoscope.course — exercise checks with specific feedback, and student versions of the course notebooks.

    from orthoscope.course import check, passed
    check("cayley", cayley)          # shows ✓ … — or the ✗ box with what is wrong and a hint, then fails the cell
    if passed("cayley", cayley):     # a demo cell: run only once the check passes
        ...

``check`` is an autograder test (nbgrader counts a cell that raises as failed): it raises ``CheckFailed``, an
AssertionError with the feedback's text, after showing the box. ``evaluate`` returns the ``Feedback`` instead.
The notebooks are ``notebooks/course/NN_topic.ipynb``; ``python -m orthoscope course build OUT`` writes the student
versions and the teacher's answer key, ``python -m orthoscope course nbgrader DIR`` an nbgrader course (docs/course.md).
"""
from __future__ import annotations

from .checks import CHECKS
from .feedback import CheckFailed, Feedback, Mistake, show
from .student import Student

__all__ = ["check", "evaluate", "passed", "CHECKS", "CheckFailed", "Feedback"]


def evaluate(name: str, fn, *, hidden: bool = False) -> Feedback:
    """Check the student's function ``fn`` for exercise ``name`` (one of ``CHECKS``) on its visible cases, or on its
    hidden ones (``hidden=True``); returns the ``Feedback``. Wrong answers, wrong types, exceptions in ``fn`` and the
    package's own answer submitted as ``fn`` all become feedback; nothing is raised but a bad ``name``."""
    if name not in CHECKS:
        raise ValueError(f"check(name=...): unknown exercise {name!r}; valid: {sorted(CHECKS)}")
    title = f"{name} (hidden tests)" if hidden else name
    if not callable(fn):
        return Feedback(title, False, f"expected your function, got {type(fn).__name__} {fn!r:.40}",
                        "pass the function itself: check(\"" + name + "\", my_function), without calling it")
    student = Student(fn, name)
    try:
        student.refuse_the_package()
        CHECKS[name](student, hidden)
    except Mistake as m:
        return Feedback(title, False, m.message, m.hint)
    cases = "its hidden cases" if hidden else "random and edge cases"
    return Feedback(title, True, f"your {name} matches the reference on {cases}")


def check(name: str, fn, *, hidden: bool = False) -> None:
    """Show the feedback for ``fn`` (a box in a notebook, text elsewhere); raise ``CheckFailed`` (an AssertionError
    carrying the same message) when it is wrong, so that an autograder scores the cell 0. Returns nothing, so a
    notebook cell ending in ``check(...)`` has no result for nbgrader to read as partial credit."""
    feedback = evaluate(name, fn, hidden=hidden)
    show(feedback)
    if not feedback.ok:
        raise CheckFailed(feedback)


def passed(name: str, fn) -> bool:
    """Whether ``fn`` passes the visible check for ``name`` — silently (for the demo cells after a check)."""
    return evaluate(name, fn).ok
