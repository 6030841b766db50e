"""The pykan wrapper: side effects contained through a whole fit/refine/prune/auto_symbolic cycle, symbolic
recovery of exp(sin(πx) + y²), bad input, probes and methods on a Run."""
import os
import random

import numpy as np
import pytest
import torch

pytest.importorskip("kan")

from orthoscope import Run  # noqa: E402
from orthoscope.recipes.kan_fit import (LBFGS, Adam, FunctionTask, GridUpdate, KANLoss, Prune, Refine,  # noqa: E402
                                         begin_fit)
from orthoscope.models.pykan_bridge import PyKAN, contained  # noqa: E402
from orthoscope.probes.kan import EdgeCurves, EdgeImportance, FitError  # noqa: E402


def target(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def _rng_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same_rng(a, b):
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_full_cycle_writes_nothing_and_restores_global_state(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_default_dtype(torch.float32)
    task = FunctionTask(target, n_var=2, train_num=100, test_num=50)
    before = _rng_states()
    model = PyKAN([2, 3, 1], grid=3, k=3, seed=0)
    assert _same_rng(before, _rng_states())                      # MultKAN reseeds the globals; we restore them
    assert model.kan.act_fun[0].coef.dtype == torch.float64 and torch.get_default_dtype() == torch.float32
    run = Run(model, task, LBFGS(max_iter=5, interventions_=[GridUpdate(every=2, stop=4)]),
              loss=KANLoss(model, lamb=1e-2), probes=[FitError(2)], seed=0)
    begin_fit(run)
    run.train(4, progress=False)
    before = _rng_states()
    Refine(5).apply(run)
    Prune(node_th=1e-2, edge_th=3e-2).apply(run)
    result = model.auto_symbolic(lib=["x", "x^2", "sin", "exp"])
    formulas, variables = model.formula()
    assert _same_rng(before, _rng_states())
    run.loss_fn = KANLoss(model)
    begin_fit(run)
    run.train(2, progress=False)
    assert os.listdir(tmp_path) == []                              # no ./model, ./figures, ./video
    assert torch.get_default_dtype() == torch.float32
    assert capsys.readouterr().out == ""                          # pykan's prints were captured
    assert model.grid_size == 5 and not model.kan.auto_save
    assert len(result.edges) == sum(a * b for a, b in zip(model.width[:-1], model.width[1:]))
    assert all(e.fixed for e in result.edges) and len(formulas) == 1 and [str(v) for v in variables] == ["x_1", "x_2"]
    assert np.isfinite(run.history["rmse/test"].last())


def _snap(value: float, tol: float = 1e-3):
    """A float read off a formula, as the nearest integer or ±π when within ``tol`` of it (else unchanged)."""
    import sympy

    if abs(value - round(value)) < tol:
        return sympy.Integer(round(value))
    for const in (sympy.pi, -sympy.pi):
        if abs(value - float(const)) < tol:
            return const
    return sympy.Float(value)


@pytest.mark.slow
def test_symbolic_recovery_of_exp_sin_plus_square():
    """hellokan's recipe at a third of its data: fit with sparsity, prune, fit, auto_symbolic, fit."""
    import sympy

    task = FunctionTask(target, n_var=2, train_num=300, test_num=100)
    model = PyKAN([2, 5, 1], grid=3, k=3, seed=42)
    run = Run(model, task, LBFGS(interventions_=[GridUpdate()]), loss=KANLoss(model, lamb=1e-2), probes=[], seed=0)
    begin_fit(run)
    run.train(20, progress=False)
    run.loss_fn = KANLoss(model)
    Prune().apply(run)
    assert model.width == [2, 1, 1]
    run.train(20, progress=False)
    result = model.auto_symbolic(lib=["x", "x^2", "sin", "exp", "tanh"])
    assert sorted(e.function for e in result.edges) == ["exp", "sin", "x^2"]
    assert min(e.r2 for e in result.edges) > 0.999
    begin_fit(run)
    run.train(10, progress=False)
    fresh = FunctionTask(target, n_var=2, train_num=1, test_num=1000, seed=123)
    result.formulas, result.variables = model.formula(None)       # unrounded, after the symbolic fit
    assert result.rmse(fresh.x_test, fresh.y_test) <= 1e-4
    (rounded,), (x1, x2) = model.formula(4)
    # Snap, expand, snap again: the rounded formula may carry an affine map inside a square, e.g.
    # 0.01·(0.0001 − 10·x₂)², whose snapped parts multiply out to the float 1.0 (seen in a full-suite run).
    recovered = rounded
    for _ in range(2):
        recovered = sympy.expand(recovered.xreplace({a: _snap(float(a)) for a in recovered.atoms(sympy.Float)}))
    assert sympy.simplify(recovered - sympy.exp(sympy.sin(sympy.pi * x1) + x2 ** 2)) == 0, rounded


@pytest.mark.parametrize("kwargs,match", [
    (dict(width=[2, 0, 1]), "positive integer"), (dict(width=[2]), "at least 2"),
    (dict(width=[2, [0, 0], 1]), "not both 0"), (dict(width=[2, 1], grid=0), "grid must be"),
    (dict(width=[2, 1], k=0), "k must be"), (dict(width=[2, 1], auto_save=True), "managed by PyKAN"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PyKAN(**kwargs)


def test_bad_symbolic_library_and_refine():
    model = PyKAN([1, 1], grid=3, k=3)
    with pytest.raises(ValueError, match="unknown symbolic functions"):
        model.auto_symbolic(lib=["sinh_of_cosh"], x=torch.rand(10, 1))
    with pytest.raises(ValueError, match="grid must be"):
        model.refine(0, torch.rand(10, 1))
    with pytest.raises(RuntimeError, match="every edge must be symbolic"):
        model.formula()
    with pytest.raises(ValueError, match="lamb > 0 needs"):
        KANLoss(torch.nn.Linear(1, 1), lamb=0.1)


def test_contained_restores_dtype_on_error(capsys):
    with pytest.raises(KeyError):
        with contained(torch.float64):
            print("pykan says hi")
            raise KeyError("boom")
    assert torch.get_default_dtype() == torch.float32 and capsys.readouterr().out == ""


def test_probes_on_pykan_and_adam():
    task = FunctionTask(target, n_var=2, train_num=64, test_num=32)
    model = PyKAN([2, 2, 1], grid=3, k=3, seed=1)
    probes = [FitError(2), EdgeCurves(2, n_points=8), EdgeImportance(2)]
    run = Run(model, task, Adam(lr=1e-2), loss=KANLoss(model), probes=probes, seed=0)
    run.train(4, progress=False)
    h = run.history
    assert h["edge_curve/kan.act_fun.0"].last().shape == (2, 2, 8)
    assert h["edge_curve_x/kan.act_fun.1"].last().shape == (2, 8)
    assert h["edge_score/kan.act_fun.1"].last().shape == (2, 1)
    assert h["rmse/test"].last() < h["rmse/test"].values[0]
    curves = model.edge_curves(16)
    assert [tuple(phi.shape) for _, phi in curves] == [(2, 2, 16), (2, 1, 16)]


@pytest.mark.filterwarnings("ignore:.*outside the grid range:RuntimeWarning")
def test_torch_lbfgs_trains_fast_kan():
    from orthoscope.models.kan import KAN

    task = FunctionTask(target, n_var=2, train_num=128, test_num=64, dtype=torch.float32)
    torch.manual_seed(0)
    run = Run(KAN([2, 2, 1], grid=3), task, LBFGS(impl="torch", max_iter=5), probes=[FitError(5)], seed=0)
    run.train(10, progress=False)
    assert run.history["rmse/train"].last() < 0.5 * run.history["rmse/train"].values[0]


def test_update_grid_guard_for_a_constant_input():
    model = PyKAN([2, 2], grid=3, k=3, seed=0)
    before = model.kan.act_fun[0].grid.detach().clone()
    x = torch.stack([torch.linspace(-0.5, 0.5, 40), torch.full((40,), 0.3)], 1).double()
    model.update_grid(x)
    grid = model.kan.act_fun[0].grid
    assert torch.equal(grid[1], before[1]) and not torch.equal(grid[0], before[0])
    xr = x.clone().requires_grad_()
    model(xr).sum().backward()
    assert torch.isfinite(xr.grad).all() and torch.isfinite(model.kan.act_fun[0].coef.grad).all()
