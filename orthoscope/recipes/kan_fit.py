"""Training KANs with a ``Run``: the function-fitting task, pykan's objective and optimizer, and the structural
interventions (grid update, grid refinement, pruning).

pykan's ``model.fit(dataset, opt="LBFGS", steps=50, lamb=1e-3)`` becomes

    task = FunctionTask(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), n_var=2)
    model = PyKAN([2, 5, 1], grid=3, k=3, seed=42)
    run = Run(model, task, LBFGS(interventions_=[GridUpdate()]), loss=KANLoss(model, lamb=1e-3), probes=[FitError()])
    begin_fit(run); run.train(50)            # a fit phase: fresh optimizer, grid updates every 5 of the first 50
    Refine(10).apply(run); run.train(50)     # grid extension, then a new fit phase

Every intervention works on ``PyKAN`` and on the fast ``orthoscope.models.kan.KAN`` alike (they share
``update_grid(x)``, ``refine(G, x)``, ``prune(node_th, edge_th, x)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..methods.base import Intervention, Method, check_positive, trainable
from ..probes.kan import FitError
from ..training.run import Run
from ..tasks.base import Task


@dataclass(init=False)
class FunctionTask(Task):
    """Regression on ``y = f(x)`` with inputs uniform on ``ranges`` — pykan's ``create_dataset``, same numbers.

    ``f`` maps ``x[N, n_var]`` to ``[N]`` or ``[N, n_out]``. With the default seed and dtype the inputs equal
    ``kan.utils.create_dataset(f, n_var, ranges, train_num, test_num, seed)`` under float64 (drawn from a private
    generator, so the global RNG is untouched). Default loss: MSE; the ``FitError`` probe reports RMSE as pykan does.
    """

    f: Callable = field(default=None, metadata={"help": "the target function x[N, n_var] -> y[N] or [N, n_out]"})
    n_var: int = field(default=2, metadata={"help": "number of input variables"})
    ranges: tuple = field(default=(-1.0, 1.0), metadata={"help": "(low, high) for all inputs, or one per input"})
    train_num: int = field(default=1000, metadata={"help": "training points"})
    test_num: int = field(default=1000, metadata={"help": "test points"})
    seed: int = field(default=0, metadata={"help": "seed of the input sample"})
    dtype: torch.dtype = field(default=torch.float64, metadata={"help": "dtype of inputs and labels"})

    default_loss = "mse"
    has_accuracy = False

    def __init__(self, f: Callable, n_var: int = 2, ranges=(-1.0, 1.0), train_num: int = 1000, test_num: int = 1000,
                 seed: int = 0, dtype: torch.dtype = torch.float64, batch_size: int | None = None):
        self.f, self.n_var, self.ranges, self.train_num, self.test_num = f, n_var, ranges, train_num, test_num
        self.seed, self.dtype, self.batch_size = seed, dtype, batch_size
        self.__post_init__()

    def __post_init__(self):
        if not callable(self.f):
            raise ValueError(f"f must be a callable x[N, n_var] -> y, got {self.f!r}")
        for name in ("n_var", "train_num", "test_num"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        self._check_batch_size()
        ranges = torch.as_tensor(self.ranges, dtype=torch.float64)
        ranges = ranges.expand(self.n_var, 2) if ranges.dim() == 1 else ranges
        if ranges.shape != (self.n_var, 2) or not bool((ranges[:, 1] > ranges[:, 0]).all()):
            raise ValueError(f"ranges must be (low, high) with high > low, or one such pair per input; got {self.ranges!r}")
        g = torch.Generator().manual_seed(self.seed)
        train = torch.zeros(self.train_num, self.n_var, dtype=self.dtype)
        test = torch.zeros(self.test_num, self.n_var, dtype=self.dtype)
        for i in range(self.n_var):                              # pykan draws column by column, train then test
            lo, hi = float(ranges[i, 0]), float(ranges[i, 1])
            train[:, i] = torch.rand(self.train_num, generator=g, dtype=self.dtype) * (hi - lo) + lo
            test[:, i] = torch.rand(self.test_num, generator=g, dtype=self.dtype) * (hi - lo) + lo
        self.x_train, self.y_train = train, self._label(train)
        self.x_test, self.y_test = test, self._label(test)

    def _label(self, x):
        y = torch.as_tensor(self.f(x))
        return (y.unsqueeze(1) if y.dim() == 1 else y).to(self.dtype)


class KANLoss:
    """pykan's training objective: ``mean((out − y)²) + lamb·regularizer`` (the regularizer only in train mode).

    ``regularizer`` is pykan's: L1 of the edges' activation scales plus ``lamb_entropy`` × their row/column
    entropies (+ optional coefficient terms), from the activations of the forward pass that produced ``output``.
    Evaluation (``model.eval()``) gives plain MSE, so ``loss/test`` is comparable across λ.
    """

    def __init__(self, model, lamb: float = 0.0, lamb_l1: float = 1.0, lamb_entropy: float = 2.0,
                 lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0, reg_metric: str = "edge_forward_spline_n"):
        check_positive("lamb", lamb, allow_zero=True)
        if lamb > 0 and not hasattr(model, "regularizer"):
            raise ValueError(f"lamb > 0 needs a model with pykan's regularizer (PyKAN); {type(model).__name__} has none")
        self.model, self.lamb = model, lamb
        self.terms = dict(lamb_l1=lamb_l1, lamb_entropy=lamb_entropy, lamb_coef=lamb_coef,
                          lamb_coefdiff=lamb_coefdiff, metric=reg_metric)

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = ((output - target.to(output.dtype)) ** 2).mean()
        if self.lamb == 0 or not self.model.training:
            return mse
        return mse + self.lamb * self.model.regularizer(**self.terms)


class _ExtraInterventions:
    """For a method with an ``interventions_`` field: those run after the method's own (e.g. ``GridUpdate()``)."""

    def interventions(self, model=None):
        return super().interventions(model) + list(self.interventions_)

    def config(self) -> dict:
        cfg = super().config()
        cfg["interventions_"] = [repr(iv) for iv in self.interventions_]
        return cfg


@dataclass
class LBFGS(_ExtraInterventions, Method):
    """L-BFGS with a strong-Wolfe line search, as pykan's ``fit(opt="LBFGS")`` uses it (lr 1, history 10, up to
    20 iterations per step, tolerances 1e-32 so it never stops early). ``impl="pykan"`` is pykan's own copy of
    torch's LBFGS (it also skips the curvature-pair update only below ``tolerance_ys = 1e-32`` instead of 1e-10);
    ``impl="torch"`` is ``torch.optim.LBFGS``. A Run calls ``optimizer.step(closure)`` for it."""

    lr: float = field(default=1.0, metadata={"help": "step length multiplier"})
    history_size: int = field(default=10, metadata={"help": "curvature pairs kept"})
    max_iter: int = field(default=20, metadata={"help": "L-BFGS iterations per Run step"})
    line_search: str | None = field(default="strong_wolfe", metadata={"help": "'strong_wolfe' or None"})
    impl: str = field(default="pykan", metadata={"help": "'pykan' (reproduces pykan) or 'torch'"})
    interventions_: list = field(default_factory=list, metadata={"help": "extra interventions, e.g. GridUpdate()"})

    needs_closure = True

    def __post_init__(self):
        check_positive("lr", self.lr)
        if self.impl not in ("pykan", "torch"):
            raise ValueError(f"impl must be 'pykan' or 'torch', got {self.impl!r}")
        if self.line_search not in ("strong_wolfe", None):
            raise ValueError(f"line_search must be 'strong_wolfe' or None, got {self.line_search!r}")

    def make_optimizer(self, model):
        kwargs = dict(lr=self.lr, max_iter=self.max_iter, history_size=self.history_size,
                      line_search_fn=self.line_search, tolerance_grad=1e-32, tolerance_change=1e-32)
        if self.impl == "torch":
            return torch.optim.LBFGS(trainable(model), **kwargs)
        from kan.LBFGS import LBFGS as PykanLBFGS

        return PykanLBFGS(trainable(model), tolerance_ys=1e-32, **kwargs)



@dataclass
class Adam(_ExtraInterventions, Method):
    """``torch.optim.Adam`` (pykan's ``fit(opt="Adam")``), with optional extra interventions such as GridUpdate."""

    lr: float = field(default=1e-2, metadata={"help": "learning rate"})
    interventions_: list = field(default_factory=list, metadata={"help": "extra interventions, e.g. GridUpdate()"})

    def __post_init__(self):
        check_positive("lr", self.lr)

    def make_optimizer(self, model):
        return torch.optim.Adam(trainable(model), lr=self.lr)



def begin_fit(run) -> None:
    """Start a new pykan-style ``fit`` phase on ``run``: a fresh optimizer from its method, and every
    ``GridUpdate`` restarts its schedule, updating the grid now (pykan updates before its step 0). ``Refine`` and
    ``Prune`` call this; call it yourself before the first ``run.train`` and after ``auto_symbolic``."""
    run.optimizer = run.method.make_optimizer(run.model)
    for iv in run.interventions:
        if isinstance(iv, GridUpdate):
            iv.begin(run)


@dataclass
class GridUpdate(Intervention):
    """pykan's adaptive grid update during a fit: at fit step s (steps since ``begin``) with ``s % every == 0``
    and ``start ≤ s < stop``, every KAN layer's grid moves to the percentiles of its inputs on the training set
    (the function is kept by a least-squares refit). pykan's defaults: every 5 steps for the first 50
    (``grid_update_num=10, stop_grid_update_step=50``). Updates due at s = 0 happen in ``begin(run)`` (see
    ``begin_fit``), since a Run has no hook before a step; without ``begin`` the schedule counts from step 0."""

    every: int = 5
    stop: int = 50
    start: int = 0
    origin: int = 0

    def __post_init__(self):
        check_positive("every", self.every)

    def _due(self, s: int) -> bool:
        return s % self.every == 0 and self.start <= s < self.stop

    def _update(self, run) -> None:
        x, _ = run.task.eval_sets()["train"]
        run.model.update_grid(x)

    def begin(self, run) -> None:
        self.origin = run.step_count
        if self._due(0):
            self._update(run)

    def after_step(self, run) -> None:
        if self._due(run.step_count - self.origin):
            self._update(run)

    def state_dict(self):
        return {"origin": torch.tensor(self.origin)}

    def load_state_dict(self, state):
        if "origin" in state:
            self.origin = int(state["origin"])


@dataclass
class Refine(Intervention):
    """Grid extension (pykan's ``refine``): at the given steps, re-grid every layer to G intervals fitted to the
    current function on the training inputs, then ``begin_fit``. ``schedule = {step: G}``; or call
    ``Refine(G).apply(run)`` between ``train`` calls."""

    grid: int | None = None
    schedule: dict = field(default_factory=dict)

    def apply(self, run, grid: int | None = None) -> None:
        x, _ = run.task.eval_sets()["train"]
        run.model.refine(grid if grid is not None else self.grid, x)
        begin_fit(run)

    def after_step(self, run) -> None:
        if run.step_count in self.schedule:
            self.apply(run, self.schedule[run.step_count])


@dataclass
class Prune(Intervention):
    """pykan's ``prune``: drop nodes whose attribution score < ``node_th`` and mask edges < ``edge_th``; then
    ``begin_fit``. At ``at_step`` during training, or now with ``Prune().apply(run)``."""

    node_th: float = 1e-2
    edge_th: float = 3e-2
    at_step: int | None = None

    def apply(self, run) -> None:
        x, _ = run.task.eval_sets()["train"]
        run.model.prune(self.node_th, self.edge_th, x)
        begin_fit(run)

    def after_step(self, run) -> None:
        if self.at_step is not None and run.step_count == self.at_step:
            self.apply(run)


HELLOKAN_LIB = ["x", "x^2", "x^3", "x^4", "exp", "log", "sqrt", "tanh", "sin", "abs"]


def hellokan(steps: int = 50, train_num: int = 1000, seed: int = 42, progress: bool = False) -> dict:
    """pykan's ``hellokan.ipynb`` through a Run: ``KAN([2,5,1], grid=3, k=3, seed=42)`` on exp(sin(πx)+y²); fit
    (LBFGS, λ = 1e-3) → prune → fit → refine(10) → fit → auto_symbolic → fit, ``steps`` LBFGS steps per fit.
    Returns the train/test RMSE after each fit, the symbolic fits and the formula (4 digits)."""
    import torch

    from ..models.pykan_bridge import PyKAN          # imports pykan, which is slow to import: only when asked

    task = FunctionTask(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), n_var=2,
                        train_num=train_num, test_num=train_num)
    model = PyKAN([2, 5, 1], grid=3, k=3, seed=seed)
    run = Run(model, task, LBFGS(interventions_=[GridUpdate()]), loss=KANLoss(model, lamb=1e-3),
              probes=[FitError(steps)], seed=0, name="hellokan")
    out = {}

    def fit(name):
        run.train(steps, progress=progress)
        out[name] = (run.history["rmse/train"].last(), run.history["rmse/test"].last())

    begin_fit(run)
    fit("fit")
    run.loss_fn = KANLoss(model)                    # hellokan's later fits use lamb = 0
    Prune().apply(run)
    out["width_after_prune"] = model.width
    fit("prune+fit")
    Refine(10).apply(run)
    fit("refine(10)+fit")
    symbolic = model.auto_symbolic(lib=HELLOKAN_LIB)
    begin_fit(run)
    fit("auto_symbolic+fit")
    out["edges"] = [(e.layer, e.i, e.j, e.function, e.r2) for e in symbolic.edges]
    out["formula"] = str(model.formula(4)[0][0])
    out["run"], out["model"] = run, model
    return out
