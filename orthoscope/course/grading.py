"""An nbgrader course directory from the course notebooks: ``python -m orthoscope course nbgrader DIR``.

nbgrader's layout (docs: "Managing assignment files"): ``DIR/nbgrader_config.py`` and one assignment per course
notebook, ``DIR/source/NN_topic/NN_topic.ipynb`` — the answer key, outputs cleared. From there nbgrader's own commands
take over: ``generate_assignment`` writes ``release/`` (solutions replaced by stubs, hidden tests removed),
``autograde`` runs ``submitted/STUDENT/NN_topic/`` with the hidden tests restored and fills ``gradebook.db``.
Nothing here imports nbgrader: the files are plain notebooks and a config file (docs/course.md, "Grading").
"""
from __future__ import annotations

from pathlib import Path

from .build import SOURCE, course_notebooks, teacher_version

CONFIG = '''\
# nbgrader configuration for the orthoscope course (written by `python -m orthoscope course nbgrader`; edit freely,
# it is not overwritten). Run nbgrader from this directory: it is the course root.
c = get_config()
c.CourseDirectory.course_id = {course_id!r}
# Autograding runs every notebook top to bottom, the demo cells (small training runs) included: allow a cell minutes,
# not nbgrader's default 30 s. ORTHOSCOPE_SMOKE=1 in the environment makes the demos short.
c.Execute.timeout = {timeout}
'''


def write_nbgrader_course(course_dir, source_dir=SOURCE, course_id: str = "orthoscope",
                          timeout_s: int = 600) -> tuple[list[str], Path]:
    """Write ``course_dir/source/<assignment>/<notebook>`` for every course notebook (overwriting earlier copies)
    and ``course_dir/nbgrader_config.py`` unless one exists. Returns the assignment names and the config's path."""
    import nbformat

    course_dir = Path(course_dir)
    assignments = []
    for path in course_notebooks(source_dir):
        nb = nbformat.read(path, as_version=4)
        validate_for_grading(nb, path)
        target = course_dir / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(teacher_version(nb), target)
        assignments.append(path.stem)
    config = course_dir / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG.format(course_id=course_id, timeout=int(timeout_s)))
    return assignments, config


def validate_for_grading(nb, path: Path) -> None:
    """Every autograder test cell has positive points and is locked; a notebook has at least one; grade ids unique."""
    graded, ids = 0, set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta:
            continue
        where = f"{path.name}, cell {cell.get('id')} (grade_id {meta.get('grade_id')!r})"
        if meta.get("grade_id") in ids:
            raise ValueError(f"{where}: grade_id is used twice; nbgrader needs unique ids")
        ids.add(meta.get("grade_id"))
        if meta.get("grade") and not meta.get("solution"):
            points = meta.get("points")
            if not isinstance(points, (int, float)) or points <= 0:
                raise ValueError(f"{where}: an autograder test cell needs 'points' > 0 in its nbgrader metadata, "
                                 f"got {points!r}")
            if not meta.get("locked"):
                raise ValueError(f"{where}: an autograder test cell must be locked ('locked': true)")
            graded += 1
    if not graded:
        raise ValueError(f"{path.name}: no autograder test cell (nbgrader metadata 'grade': true, 'points' > 0); "
                         "nbgrader would grade it 0 out of 0")
