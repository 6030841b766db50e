"""Student and teacher versions of the course notebooks, from one source (nbgrader's conventions).

A solution cell carries nbgrader metadata (``"solution": true``) and marks its solution between ``### BEGIN SOLUTION``
and ``### END SOLUTION``. A check cell is an nbgrader autograder test (``"grade": true``, ``"points"``, locked) whose
hidden tests sit between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``. The student version replaces each
solution region by nbgrader's stub for Python — ``# YOUR CODE HERE`` and ``raise NotImplementedError()``, at the
region's indentation — removes each hidden-test region, and clears every output; the teacher's answer key is the
source notebook, outputs cleared. ``nbgrader generate_assignment`` applied to the source yields the same student text
(tests/test_course_nbgrader.py compares them).
"""
from __future__ import annotations

import re
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
SOURCE = Path(__file__).resolve().parents[2] / "notebooks" / "course"


def _replace_regions(lines: list[str], begin: str, end: str, replacement=()) -> str:
    """Replace every ``begin``/``end`` region of ``lines`` (markers included) by ``replacement``'s lines at the begin
    marker's indentation; unbalanced or nested markers are a ``ValueError`` naming them."""
    out, inside = [], False
    for line in lines:
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise ValueError(f"nested '{begin}'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in replacement]
        elif stripped == end:
            if not inside:
                raise ValueError(f"'{end}' without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{begin}' without an END")
    return "\n".join(out)


def strip_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region (markers included) by the stub at the BEGIN line's indentation."""
    return _replace_regions(source.splitlines(), BEGIN, END, STUB)


def strip_hidden_tests(source: str) -> str:
    """Remove every BEGIN/END HIDDEN TESTS region, markers included (nbgrader's ClearHiddenTests)."""
    return _replace_regions(source.split("\n"), BEGIN_HIDDEN, END_HIDDEN)


def student_version(nb):
    """A copy of notebook ``nb`` (nbformat) with solutions replaced by stubs and outputs cleared."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            cell.source = strip_solutions(cell.source)
        elif BEGIN in cell.source:
            raise ValueError(f"cell {cell.get('id')} has solution markers but no nbgrader 'solution: true' metadata")
        if meta.get("grade") and not meta.get("solution"):
            cell.source = strip_hidden_tests(cell.source)
        elif BEGIN_HIDDEN in cell.source:
            raise ValueError(f"cell {cell.get('id')} has hidden tests but is no nbgrader autograder test cell "
                             "('grade: true', 'solution: false')")
    return nb


def course_notebooks(source_dir=SOURCE) -> list[Path]:
    """The course's notebooks, ``NN_topic.ipynb``, in order."""
    source_dir = Path(source_dir)
    paths = sorted(p for p in source_dir.glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if not paths:
        raise FileNotFoundError(f"no course notebooks (NN_*.ipynb) in {source_dir}")
    return paths


def teacher_version(nb):
    """A copy of notebook ``nb`` with outputs cleared, solutions and hidden tests kept (the answer key)."""
    teacher = student_version(nb)                         # validates the markers, clears the outputs
    for cell, original in zip(teacher.cells, nb.cells):
        cell.source = original.source
    return teacher


def build(out_dir, source_dir=SOURCE) -> list[Path]:
    """Write ``out_dir/student/*.ipynb`` and ``out_dir/teacher/*.ipynb``; returns the written paths."""
    import nbformat

    out_dir = Path(out_dir)
    written = []
    for path in course_notebooks(source_dir):
        nb = nbformat.read(path, as_version=4)
        for kind, version in (("student", student_version(nb)), ("teacher", teacher_version(nb))):
            target = out_dir / kind / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(version, target)
            written.append(target)
    return written
