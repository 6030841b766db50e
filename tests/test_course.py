"""The course (issue 17): checks that give specific feedback, solved notebooks that pass their checks, student
versions (nbgrader's conventions) that run with every check failing *as feedback*, and contain no solution code."""
import json
import time
from pathlib import Path

import pytest
import torch

from orthoscope.course import CHECKS, check
from orthoscope.course.build import BEGIN, END, build, strip_solutions

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
def test_the_notebook_solution_passes_in_well_under_a_second(name):
    t0 = time.perf_counter()
    feedback = check(name, SOLUTIONS[name])
    assert feedback.ok, str(feedback)
    assert time.perf_counter() - t0 < 1.0


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
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) + Q, eye_q(Q) - Q, left=False), "Rᵀ"),
    ("cayley", lambda Q: eye_q(Q) + Q, "inverse factor"),
    ("cayley", lambda Q: (eye_q(Q) + Q) @ (eye_q(Q) - Q), "instead of its inverse"),
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) - Q, eye_q(Q) + Q, left=False).float(), "dtype"),
    ("cayley", lambda Q: torch.linalg.solve(eye_q(Q) - Q, eye_q(Q) + Q, left=False).T.contiguous()[:2], "shape"),
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
    ("harmonic_logits", harmonic(eps=0.0), "exactly on a centre"),
    ("bspline", lambda x, grid, k: SOLUTIONS["bspline"](x, grid, k - 1), "one level early"),
    ("bspline", lambda x, grid, k: SOLUTIONS["bspline"](x, grid, k) * 1.1, "partition of unity"),
    ("bspline", lambda x, grid, k: SOLUTIONS["bspline"](x, grid, k).float(), "dtype"),
]


@pytest.mark.parametrize("name,fn,words", WRONG, ids=[f"{w[0]}: {w[2]}" for w in WRONG])
def test_a_typical_wrong_answer_gets_its_specific_message(name, fn, words):
    feedback = check(name, fn)
    assert not feedback.ok and words in feedback.message + feedback.hint, str(feedback)
    assert feedback.hint, "every failure comes with a hint"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_unwritten_and_crashing_functions_are_feedback_not_tracebacks(name):
    def unwritten(*args):
        raise NotImplementedError()

    def crashing(*args):
        return args[0] @ torch.ones(1, 1, 1, 1)

    assert "not written yet" in check(name, unwritten).message
    assert "raised" in check(name, crashing).message
    assert "expected your function" in check(name, 42).message


def test_unknown_exercise_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown exercise 'cayly'; valid: "):
        check("cayly", SOLUTIONS["cayley"])


def test_feedback_renders_as_html_with_its_verdict():
    assert "data-ok='true'" in check("cayley", SOLUTIONS["cayley"])._repr_html_()
    assert "data-ok='false'" in check("cayley", lambda Q: Q)._repr_html_()


# ---- nbgrader's format ---------------------------------------------------------------------------------------------

def test_solution_cells_follow_nbgraders_documented_format():
    """nbgrader (docs: "Developing assignments"): cell metadata ``nbgrader`` with ``schema_version`` 3, a unique
    ``grade_id``, ``solution``/``grade``/``locked``/``task`` booleans; solution regions between ``### BEGIN
    SOLUTION`` and ``### END SOLUTION``; the notebook's kernelspec is python3."""
    ids = set()
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
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


def test_strip_solutions_keeps_the_signature_and_indents_the_stub():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"
    assert strip_solutions(src) == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    with pytest.raises(ValueError, match="without an END"):
        strip_solutions("### BEGIN SOLUTION\nx = 1")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    build(out)
    return out


def test_student_notebooks_hold_no_solution_code(built):
    for path in NOTEBOOKS:
        student = (built / "student" / path.name).read_text()
        assert BEGIN not in student and "NotImplementedError" in student
        for name, fn in SOLUTIONS.items():
            body = [line.strip() for line in fn.__code__.co_consts if isinstance(line, str)]
            assert not any(b and b in student for b in body if len(b) > 20)
        teacher = (built / "teacher" / path.name).read_text()
        assert BEGIN in teacher


# ---- the notebooks run (smoke mode) ---------------------------------------------------------------------------------

def run_notebook(path: Path, cwd: Path, budget_s: float = 60):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + budget_s
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                   timeout_func=lambda cell: max(1, int(deadline - time.monotonic()))).execute()
    return nb


def feedback_outputs(nb) -> list[str]:
    html = []
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").endswith("-check"):
            html += [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    return html


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solved_notebook_runs_and_its_check_passes(path, monkeypatch):
    monkeypatch.setenv("ORTHOSCOPE_SMOKE", "1")
    nb = run_notebook(path, COURSE)
    html = feedback_outputs(nb)
    assert html and all("data-ok='true'" in h for h in html), html


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_notebook_runs_with_its_check_failing_as_feedback(built, path, monkeypatch):
    monkeypatch.setenv("ORTHOSCOPE_SMOKE", "1")
    nb = run_notebook(built / "student" / path.name, built / "student")      # raises on any error in any cell
    html = feedback_outputs(nb)
    assert html and all("data-ok='false'" in h and "not written yet" in h for h in html), html
