"""The course (issues 17, 27): checks that give specific feedback in the student's terms and fail the cell (an
autograder test), hidden cases beyond the visible ones, the package's own answer refused; solved notebooks that pass
their checks, student versions (nbgrader's conventions) whose only errors are the failing checks, with the feedback
box, and no solution code or hidden tests. nbgrader itself: tests/test_course_nbgrader.py."""
import functools
import importlib
import json
import sys
import time
from pathlib import Path

import pytest
import torch

from orthoscope.course import CHECKS, CheckFailed, check, evaluate, passed
from orthoscope.course.build import BEGIN, BEGIN_HIDDEN, END, END_HIDDEN, build, strip_hidden_tests, strip_solutions

COURSE = Path(__file__).resolve().parents[1] / "notebooks" / "course"
NOTEBOOKS = sorted(COURSE.glob("[0-9][0-9]_*.ipynb"))


def solutions() -> dict:
    """The solution functions, taken from the notebooks' solution cells (our own files) — name -> function."""
    import nbformat

    found = {}
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                scope = {"torch": torch}
                exec(cell.source, scope)                       # noqa: S102 — our own notebook's solution
                name = cell.metadata["nbgrader"]["grade_id"].removesuffix("-solution")
                found[name] = next(v for k, v in scope.items() if callable(v) and k != "torch")
    return found


SOLUTIONS = solutions()


def test_six_notebooks_one_check_each():
    assert len(NOTEBOOKS) >= 6 and set(SOLUTIONS) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_notebook_solution_passes_the_visible_and_the_hidden_cases(name):
    for hidden in (False, True):
        feedback = evaluate(name, SOLUTIONS[name], hidden=hidden)
        assert feedback.ok, str(feedback)


def sv_entropy_from(p_of, normalize=True):
    def fn(W):
        s = torch.linalg.svdvals(W)
        p = p_of(s)
        h = -(p * torch.log(p.clamp_min(1e-300))).sum()
        return h / torch.log(torch.tensor(float(s.numel()), dtype=h.dtype)) if normalize else h
    return fn


def neumann(k_shift=0, sign=1.0, first_factor=True):
    def fn(Q, k):
        I = torch.eye(Q.shape[-1], dtype=Q.dtype)
        S, P = I.clone(), I.clone()
        for _ in range(k + k_shift):
            P = P @ (sign * Q)
            S = S + P
        return (I + sign * Q) @ S if first_factor else S
    return fn


def ns(normalize=True, steps_shift=0, coeffs=(3.4445, -4.7750, 2.0315)):
    def fn(G, steps=5):
        a, b, c = coeffs
        X = G / (G.norm() + 1e-7) if normalize else G
        for _ in range(steps + steps_shift):
            A = X @ X.T
            X = a * X + (b * A + c * A @ A) @ X
        return X
    return fn


def harmonic(scale=-0.5, eps=1e-6, use_n=True):
    def fn(h, centers, n):
        d2 = ((h[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        return scale * (n if use_n else 1.0) * torch.log(d2 + eps)
    return fn


def eye_q(Q):
    return torch.eye(Q.shape[-1], dtype=Q.dtype)


# (check, a typical wrong answer, words its feedback must contain)
WRONG = [
    ("spectral_entropy", sv_entropy_from(lambda s: s / s.sum()), "σ instead of σ²"),
    ("spectral_entropy", sv_entropy_from(lambda s: s ** 2 / (s ** 2).sum(), normalize=False), "H = 1"),
    ("spectral_entropy", lambda W: torch.linalg.svdvals(W), "one number"),
    # Rᵀ three ways: for skew Q they are the same matrix; the check tells them apart on a non-skew input
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) + Q, eye_q(Q) - Q, left=False), "the signs of Q are swapped"),
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) - Q, eye_q(Q) + Q, left=False).T, "transpose of R"),
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) - Q.T, eye_q(Q) + Q.T, left=False), "Qᵀ where Q belongs"),
    ("cayley", lambda Q: eye_q(Q) + Q, "the factor (I − Q)⁻¹ is missing"),
    ("cayley", lambda Q: (eye_q(Q) + Q) @ (eye_q(Q) - Q), "instead of by its inverse"),
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) - Q, eye_q(Q) + Q, left=False).float(),
     "for Q = 0 (4×4, float64) your cayley returns dtype float32"),
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) - Q, eye_q(Q) + Q, left=False).T.contiguous()[:2],
     "your cayley returns shape (2, 4)"),
    ("cayley", lambda Q: eye_q(Q) * 2, "for Q = 0 (4×4, float64) your cayley does not return the identity"),
    ("cayley_neumann", neumann(k_shift=-1), "one Neumann term too few"),
    ("cayley_neumann", neumann(k_shift=+1), "one Neumann term too many"),
    ("cayley_neumann", neumann(sign=-1.0), "sign of Q"),
    ("cayley_neumann", neumann(first_factor=False), "(I + Q) is missing"),
    ("newton_schulz", ns(normalize=False), "not normalized"),
    ("newton_schulz", ns(steps_shift=-1), "one iteration too few"),
    ("newton_schulz", ns(coeffs=(3.4445, 2.0315, -4.7750)), "coefficients"),
    ("harmonic_logits", harmonic(scale=0.5), "sign is flipped"),
    ("harmonic_logits", harmonic(use_n=False), "exponent n is missing"),
    ("harmonic_logits", harmonic(scale=-2.0, use_n=False), "without the ½"),
    ("harmonic_logits", harmonic(eps=0.0), "for h equal to one of the 4 centres"),
    ("bspline", lambda x, grid, k: SOLUTIONS["bspline"](x, grid, k - 1), "one level early"),
    ("bspline", lambda x, grid, k: SOLUTIONS["bspline"](x, grid, k) * 1.1, "partition of unity"),
    ("bspline", lambda x, grid, k: SOLUTIONS["bspline"](x, grid, k).float(), "dtype"),
]


@pytest.mark.parametrize("name,fn,words", WRONG, ids=[f"{w[0]}: {w[2]}" for w in WRONG])
def test_a_typical_wrong_answer_gets_its_specific_message(name, fn, words):
    feedback = evaluate(name, fn)
    assert not feedback.ok and words in feedback.message + feedback.hint, str(feedback)
    assert feedback.hint, "every failure comes with a hint"
    assert feedback.message.startswith(("for ", "your ", "not written")), "a message speaks of the student's call"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_unwritten_and_crashing_functions_are_feedback_not_tracebacks(name):
    def unwritten(*args):
        raise NotImplementedError()

    def crashing(*args):
        return args[0] @ torch.ones(1, 1, 1, 1)

    assert "not written yet" in evaluate(name, unwritten).message
    assert f"your {name} raised RuntimeError" in evaluate(name, crashing).message
    assert "expected your function" in evaluate(name, 42).message


def test_unknown_exercise_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown exercise 'cayly'; valid: "):
        check("cayly", SOLUTIONS["cayley"])


def test_feedback_renders_as_html_with_its_verdict():
    assert "data-ok='true'" in evaluate("cayley", SOLUTIONS["cayley"])._repr_html_()
    assert "data-ok='false'" in evaluate("cayley", lambda Q: Q)._repr_html_()


# ---- check() is an autograder test ----------------------------------------------------------------------------------

def test_check_shows_the_feedback_and_raises_an_assertion_with_the_same_message(capsys):
    wrong = WRONG[3][1]
    with pytest.raises(AssertionError) as raised:
        check("cayley", wrong)
    feedback = evaluate("cayley", wrong)
    assert isinstance(raised.value, CheckFailed) and str(raised.value) == str(feedback)
    assert str(feedback) in capsys.readouterr().out             # outside IPython the box is printed as text
    line, = raised.value._render_traceback_()                    # what a notebook shows instead of a traceback
    assert feedback.message in line and "Traceback" not in line
    assert check("cayley", SOLUTIONS["cayley"]) is None            # no cell result for nbgrader to read as a score
    assert "✓ cayley" in capsys.readouterr().out
    assert passed("cayley", SOLUTIONS["cayley"]) and not passed("cayley", wrong)


def test_hidden_failures_are_named_as_hidden_tests():
    def fitted(Q):                                               # right on the visible sizes only
        return SOLUTIONS["cayley"](Q) if Q.shape[-1] in (4, 5) else eye_q(Q) + Q

    assert evaluate("cayley", fitted).ok
    feedback = evaluate("cayley", fitted, hidden=True)
    assert not feedback.ok and str(feedback).startswith("✗ cayley (hidden tests): for a random skew Q (2×2")


def key(args) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.numpy().tobytes()) if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_hidden_cases_go_beyond_the_visible_ones(name):
    """An answer that only remembers the visible cases — the solution's answers to exactly those inputs — passes the
    visible check and fails the hidden one: no hidden input equals a visible one."""
    seen = {}

    def recorder(*args):
        seen[key(args)] = SOLUTIONS[name](*args)
        return seen[key(args)]

    def remembers(*args):
        return seen.get(key(args), float("nan"))

    assert evaluate(name, recorder).ok and seen
    assert evaluate(name, remembers).ok
    assert not evaluate(name, remembers, hidden=True).ok


# ---- the package's own answer is refused ----------------------------------------------------------------------------

def _references():
    from orthoscope.kernels import bspline as kb
    from orthoscope.methods.losses import harmonic_logits
    from orthoscope.optim.muon import newton_schulz
    oc = importlib.import_module("orthoscope.ortho.cayley")   # the module (orthoscope.ortho.cayley is the function)
    from orthoscope.probes.metrics import sv_entropy

    def on_a_branch(Q):                           # a reference the check's inputs never reach: only the code shows it
        if Q.shape[-1] > 1000:
            return oc.cayley(Q)
        return SOLUTIONS["cayley"](Q)

    def imports_it(Q):
        from orthoscope.ortho.cayley import cayley as ref
        return ref(Q)

    def by_name(Q):
        return importlib.import_module("orthoscope.ortho.cayley").cayley(Q)

    def through_sys_modules(Q):                   # no name of an orthoscope module in the code: only running shows it
        package = "".join(["orth", "oscope"])          # (a literal "orth" + "oscope" is folded into one string)
        return getattr(sys.modules[package + ".ortho.cayley"], "cayley")(Q)

    def through_a_helper(Q):
        return on_a_branch(Q) if Q.shape[-1] > 1000 else helper(Q)

    helper = oc.cayley

    return [
        ("cayley", oc.cayley, "orthoscope.ortho.cayley.cayley"),
        ("cayley", lambda Q: oc.cayley(Q), "orthoscope.ortho.cayley"),
        ("cayley", on_a_branch, "orthoscope.ortho.cayley"),
        ("cayley", imports_it, "orthoscope.ortho.cayley"),
        ("cayley", by_name, "orthoscope.ortho.cayley"),
        ("cayley", through_sys_modules, "ran the package's own code (orthoscope.ortho.cayley.cayley)"),
        ("cayley", through_a_helper, "orthoscope.ortho.cayley.cayley"),
        ("cayley_neumann", functools.partial(oc.cayley_neumann), "orthoscope.ortho.cayley.cayley_neumann"),
        ("spectral_entropy", lambda W: sv_entropy(torch.linalg.svdvals(W)), "orthoscope.probes.metrics.sv_entropy"),
        ("newton_schulz", newton_schulz, "orthoscope.optim.muon.newton_schulz"),
        ("harmonic_logits", harmonic_logits, "orthoscope.kernels.harmonic.harmonic_logits"),  # losses re-exports it
        ("bspline", lambda x, grid, k: kb.bspline_basis(x, grid, k), "orthoscope.kernels.bspline"),
    ]


REFERENCES = _references()


@pytest.mark.parametrize("name,fn,words", REFERENCES, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFERENCES)])
def test_the_packages_own_answer_is_refused_with_a_message(name, fn, words):
    for hidden in (False, True):
        feedback = evaluate(name, fn, hidden=hidden)
        assert not feedback.ok and "the package's own" in feedback.message and words in feedback.message, \
            str(feedback)
        assert "write the function with torch operations" in feedback.hint


def _identity_like(Q):
    return torch.eye(Q.shape[-1], dtype=Q.dtype)


def test_own_code_with_helpers_and_library_functions_is_accepted():
    from torch.nn.functional import pad                          # a library function in Python: located, not read

    def cayley_with_helpers(Q):
        I = pad(_identity_like(Q), (0, 0))
        return torch.linalg.solve(I - Q, I + Q, left=False)

    for hidden in (False, True):
        assert evaluate("cayley", cayley_with_helpers, hidden=hidden).ok


def test_watching_what_the_student_runs_keeps_a_profiler_already_set():
    events = []

    def outer(frame, event, arg):
        events.append(event)

    sys.setprofile(outer)
    try:
        assert evaluate("cayley", SOLUTIONS["cayley"]).ok
        assert sys.getprofile() is outer
    finally:
        sys.setprofile(None)
    assert "call" in events


# ---- nbgrader's format ---------------------------------------------------------------------------------------------

def test_solution_cells_follow_nbgraders_documented_format():
    """nbgrader (docs: "Developing assignments"): cell metadata ``nbgrader`` with ``schema_version`` 3, a unique
    ``grade_id``, ``solution``/``grade``/``locked``/``task`` booleans; solution regions between ``### BEGIN
    SOLUTION`` and ``### END SOLUTION``; the notebook's kernelspec is python3."""
    ids = set()
    for path in NOTEBOOKS:
        nb, graded = json.loads(path.read_text()), []
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader")
            source = "".join(cell["source"])
            if meta is None:
                assert BEGIN not in source, f"{path.name}: markers outside an nbgrader cell"
                continue
            assert meta["schema_version"] == 3 and meta["grade_id"] not in ids
            ids.add(meta["grade_id"])
            assert {type(meta[k]) for k in ("solution", "grade", "locked", "task")} == {bool}
            if meta["solution"]:
                assert source.count(BEGIN) == source.count(END) == 1 and not meta["locked"]
            if meta["grade"]:                     # an autograder test: points, locked, visible and hidden checks
                graded.append(meta["grade_id"])
                assert not meta["solution"] and meta["locked"] and meta["points"] > 0
                name = meta["grade_id"].removesuffix("-check")
                assert source == (f'check("{name}", {name})\n{BEGIN_HIDDEN}\n'
                                  f'check("{name}", {name}, hidden=True)\n{END_HIDDEN}'), source
        assert len(graded) == 1, f"{path.name}: one graded check cell, got {graded}"


def test_strip_solutions_keeps_the_signature_and_indents_the_stub():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"
    assert strip_solutions(src) == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    with pytest.raises(ValueError, match="without an END"):
        strip_solutions("### BEGIN SOLUTION\nx = 1")


def test_strip_hidden_tests_removes_the_region_and_its_markers():
    src = f"check('a', f)\n{BEGIN_HIDDEN}\ncheck('a', f, hidden=True)\n{END_HIDDEN}\nprint(1)"
    assert strip_hidden_tests(src) == "check('a', f)\nprint(1)"
    with pytest.raises(ValueError, match="HIDDEN TESTS' without an END"):
        strip_hidden_tests(f"{BEGIN_HIDDEN}\nx = 1")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    build(out)
    return out


def test_student_notebooks_hold_no_solution_code(built):
    for path in NOTEBOOKS:
        student = (built / "student" / path.name).read_text()
        assert BEGIN not in student and "NotImplementedError" in student
        assert "HIDDEN TESTS" not in student and "hidden=True" not in student
        for name, fn in SOLUTIONS.items():
            body = [line.strip() for line in fn.__code__.co_consts if isinstance(line, str)]
            assert not any(b and b in student for b in body if len(b) > 20)
        teacher = (built / "teacher" / path.name).read_text()
        assert BEGIN in teacher and BEGIN_HIDDEN in teacher


# ---- the notebooks run (smoke mode) ---------------------------------------------------------------------------------

def run_notebook(path: Path, cwd: Path, budget_s: float = 60, allow_errors: bool = False):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + budget_s
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}, allow_errors=allow_errors,
                   timeout_func=lambda cell: max(1, int(deadline - time.monotonic()))).execute()
    return nb


def is_check_cell(cell) -> bool:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").endswith("-check")


def feedback_outputs(nb) -> list[str]:
    html = []
    for cell in nb.cells:
        if is_check_cell(cell):
            html += [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    return html


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solved_notebook_runs_and_its_check_passes(path, monkeypatch):
    monkeypatch.setenv("ORTHOSCOPE_SMOKE", "1")
    nb = run_notebook(path, COURSE)
    html = feedback_outputs(nb)
    assert len(html) == 2 and all("data-ok='true'" in h for h in html), html      # the visible and the hidden check


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_notebook_runs_with_only_its_check_failing_with_the_feedback(built, path, monkeypatch):
    """Run All on the student version: the check cell shows the red box and fails with one line (CheckFailed), no
    traceback; every other cell runs, the demos saying "come back when the check passes"."""
    monkeypatch.setenv("ORTHOSCOPE_SMOKE", "1")
    nb = run_notebook(built / "student" / path.name, built / "student", allow_errors=True)
    html = feedback_outputs(nb)
    assert len(html) == 1 and "data-ok='false'" in html[0] and "not written yet" in html[0], html
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if not is_check_cell(cell):
            assert not errors, (cell.source, errors)
            continue
        assert len(errors) == 1 and errors[0].ename == "CheckFailed" and "not written yet" in errors[0].evalue
        assert len(errors[0].traceback) == 1 and "not written yet" in errors[0].traceback[0]
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "Come back here when the check above passes." in printed


# ---- the nbgrader course directory (nbgrader itself runs in tests/test_course_nbgrader.py) ---------------------------

def test_course_nbgrader_writes_one_assignment_per_notebook_and_keeps_an_edited_config(tmp_path):
    from orthoscope.course.cli import main

    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # the teacher's own\n")
    assert main(["nbgrader", str(tmp_path)]) == 0
    for path in NOTEBOOKS:
        source = (tmp_path / "source" / path.stem / path.name).read_text()
        assert BEGIN in source and BEGIN_HIDDEN in source and '"points": 1' in source
    assert (tmp_path / "nbgrader_config.py").read_text() == "c = get_config()  # the teacher's own\n"


@pytest.mark.parametrize("change,words", [
    (lambda meta: meta.pop("points"), "needs 'points' > 0"),
    (lambda meta: meta.update(locked=False), "must be locked"),
    (lambda meta: meta.update(grade=False), "no autograder test cell"),
], ids=["no points", "unlocked", "not graded"])
def test_a_check_cell_that_nbgrader_could_not_grade_is_an_error_naming_the_cell(tmp_path, change, words):
    import nbformat

    from orthoscope.course.grading import write_nbgrader_course

    nb = nbformat.read(COURSE / "02_cayley.ipynb", as_version=4)
    change(next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "cayley-check")
           .metadata["nbgrader"])
    nbformat.write(nb, tmp_path / "02_cayley.ipynb")
    with pytest.raises(ValueError, match=words) as raised:
        write_nbgrader_course(tmp_path / "course", tmp_path)
    assert "02_cayley.ipynb" in str(raised.value)
