"""nbgrader grades the course (issue 27, part 6): ``python -m orthoscope course nbgrader DIR`` writes a course that
``nbgrader generate_assignment`` releases with the same text as ``course build``; ``nbgrader autograde`` gives a right
answer full points and a wrong one 0, restores the hidden tests (an answer fitted to the visible cases gets 0) and
refuses the package's own answer with its message. nbgrader runs offline in a temporary HOME / Jupyter config."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install orthoscope[course])")
import nbformat  # noqa: E402

from orthoscope.course.build import student_version  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "02_cayley"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"

# The solution cell as each student left it (the release's stub replaced); the right answer is the key's own.
ANSWERS = {
    "right": "def cayley(Q):\n    I = torch.eye(Q.shape[-1], dtype=Q.dtype)\n"
             "    return torch.linalg.solve(I - Q, I + Q, left=False)",
    "transposed": "def cayley(Q):\n    I = torch.eye(Q.shape[-1], dtype=Q.dtype)\n"
                  "    return torch.linalg.solve(I - Q, I + Q, left=False).T",
    "reference": "from orthoscope.ortho.cayley import cayley",
    # right on the visible cases (4×4 and 5×5), wrong on every other size: only the hidden tests can tell
    "fitted": "def cayley(Q):\n    I = torch.eye(Q.shape[-1], dtype=Q.dtype)\n"
              "    if Q.shape[-1] in (4, 5):\n        return torch.linalg.solve(I - Q, I + Q, left=False)\n"
              "    return I + Q",
    "unwritten": None,                                        # the release as it is: the stub
}
EXPECTED_ERROR = {"transposed": "transpose of R", "reference": "the package's own answer",
                  "fitted": "cayley (hidden tests)", "unwritten": "not written yet"}


def nbgrader(course: Path, env: dict, *args: str, timeout_s: float = 900) -> str:
    """``nbgrader ARGS`` in the course directory; the whole process group is killed if it overruns."""
    proc = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"nbgrader {' '.join(args)} ran over {timeout_s} s:\n{out[-3000:]}")
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{out[-3000:]}"
    return out


def offline_env(tmp_path: Path) -> dict:
    """nbgrader and its kernels see only temporary Jupyter folders, this checkout, and the venv's executables (nbgrader
    calls `alembic` by name); demo cells run in smoke mode."""
    env = dict(os.environ)
    for var, sub in (("HOME", "home"), ("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                     ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython")):
        env[var] = str(tmp_path / sub)
        (tmp_path / sub).mkdir()
    env.pop("JUPYTER_PATH", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(ORTHOSCOPE_SMOKE="1", MPLBACKEND="Agg")
    return env


def submit(course: Path, student: str, answer: str | None) -> None:
    nb = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    if answer is not None:
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
        cell.source = answer
    target = course / "submitted" / student / ASSIGNMENT / NOTEBOOK
    target.parent.mkdir(parents=True)
    nbformat.write(nb, target)


def check_cell(nb):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "cayley-check")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nbgrader")
    course, env = tmp / "course", offline_env(tmp)
    subprocess.run([sys.executable, "-m", "orthoscope", "course", "nbgrader", str(course)], cwd=tmp, env=env,
                   check=True, timeout=300)
    nbgrader(course, env, "generate_assignment", ASSIGNMENT)
    for student, answer in ANSWERS.items():
        submit(course, student, answer)
    log = nbgrader(course, env, "autograde", ASSIGNMENT)
    return course, log


def test_the_course_directory_follows_nbgraders_layout(graded):
    course, _ = graded
    assert (course / "nbgrader_config.py").read_text().count("c.Execute.timeout") == 1
    for path in sorted((ROOT / "notebooks" / "course").glob("[0-9][0-9]_*.ipynb")):
        assert (course / "source" / path.stem / path.name).is_file()


def test_the_release_is_the_student_version(graded):
    course, _ = graded
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    ours = student_version(nbformat.read(ROOT / "notebooks" / "course" / NOTEBOOK, as_version=4))
    assert [c.source for c in released.cells] == [c.source for c in ours.cells]
    assert "hidden=True" not in check_cell(released).source


def test_autograde_gives_full_points_to_the_right_answer_and_zero_to_the_others(graded):
    from nbgrader.api import Gradebook

    course, log = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: (gb.find_submission(ASSIGNMENT, s).score, gb.find_submission(ASSIGNMENT, s).max_score)
                  for s in ANSWERS}
    assert scores == {"right": (1.0, 1.0), "transposed": (0.0, 1.0), "reference": (0.0, 1.0),
                      "fitted": (0.0, 1.0), "unwritten": (0.0, 1.0)}, (scores, log[-3000:])


def test_autograde_runs_the_hidden_tests_and_records_each_message(graded):
    course, _ = graded
    for student in ANSWERS:
        nb = nbformat.read(course / "autograded" / student / ASSIGNMENT / NOTEBOOK, as_version=4)
        cell = check_cell(nb)
        assert "hidden=True" in cell.source                  # nbgrader restored the hidden tests from its database
        errors = [o for o in cell.outputs if o.output_type == "error"]
        boxes = [o.data["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
        if student == "right":
            assert not errors and len(boxes) == 2 and all("data-ok='true'" in b for b in boxes), cell.outputs
            continue
        assert len(errors) == 1 and errors[0].ename == "CheckFailed", cell.outputs
        assert EXPECTED_ERROR[student] in errors[0].evalue, errors[0].evalue
        assert any("data-ok='false'" in b for b in boxes)
        assert "Traceback" not in "".join(errors[0].traceback)   # the message, not a stack of orthoscope frames
