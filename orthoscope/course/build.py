"""Student and teacher versions of the course notebooks, from one source (nbgrader's conventions).

A solution cell carries nbgrader metadata (``"solution": true``) and marks its solution between ``### BEGIN SOLUTION``
and ``### END SOLUTION``. The student version replaces each marked region by nbgrader's stub for Python — ``# YOUR
CODE HERE`` and ``raise NotImplementedError()``, at the region's indentation — and clears every output; the teacher's
answer key is the source notebook, outputs cleared. ``nbgrader generate_assignment`` applied to the source yields the
same student text (tests/test_course.py checks the markers and metadata against nbgrader's documented format).
"""
from __future__ import annotations

import re
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
SOURCE = Path(__file__).resolve().parents[2] / "notebooks" / "course"


def strip_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region (markers included) by the stub at the BEGIN line's indentation."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested '### BEGIN SOLUTION'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB]
        elif stripped == END:
            if not inside:
                raise ValueError("'### END SOLUTION' without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'### BEGIN SOLUTION' without an END")
    return "\n".join(out)


def student_version(nb):
    """A copy of notebook ``nb`` (nbformat) with solutions replaced by stubs and outputs cleared."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = strip_solutions(cell.source)
        elif BEGIN in cell.source:
            raise ValueError(f"cell {cell.get('id')} has solution markers but no nbgrader 'solution: true' metadata")
    return nb


def build(out_dir, source_dir=SOURCE) -> list[Path]:
    """Write ``out_dir/student/*.ipynb`` and ``out_dir/teacher/*.ipynb``; returns the written paths."""
    import nbformat

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    paths = sorted(p for p in source_dir.glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if not paths:
        raise FileNotFoundError(f"no course notebooks (NN_*.ipynb) in {source_dir}")
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        teacher = student_version(nb)
        for cell, original in zip(teacher.cells, nb.cells):
            cell.source = original.source                 # the key keeps its solutions, outputs cleared
        for kind, version in (("student", student_version(nb)), ("teacher", teacher)):
            target = out_dir / kind / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(version, target)
            written.append(target)
    return written


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m orthoscope course",
                                     description="Write the course's student notebooks and the teacher's answer key.")
    parser.add_argument("action", choices=["build"], help="build: write OUT/student and OUT/teacher")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--source", default=str(SOURCE), help=f"course notebooks (default: {SOURCE})")
    args = parser.parse_args(argv)
    written = build(args.out, args.source)
    print(f"wrote {len(written) // 2} student notebooks to {Path(args.out) / 'student'} and the answer key to "
          f"{Path(args.out) / 'teacher'}")
    return 0
