"""pykan inside orthoscope: ``PyKAN`` wraps a pykan ``MultKAN`` so a ``Run`` trains it like any ``nn.Module``.

pykan 0.2.8 has global side effects that this wrapper contains (``contained``):

* files: ``MultKAN(auto_save=True)`` (its default) writes ``./model/``; ``refine``, ``prune_node`` and
  ``prune_input`` return models with ``auto_save`` switched back on, and ``prune()`` then writes a checkpoint at
  once. Here every model is built with ``auto_save=False``, every returned model has it switched off before any
  method that could log runs, and ``prune`` is done as pykan's three steps with ``log_history=False``. Plotting
  (``./figures``, ``./video``) is never called; curves come from ``edge_curves``.
* global state: ``MultKAN.__init__`` reseeds torch, numpy and ``random`` (seed 1 for every model that ``refine``
  or ``prune`` builds) and tensors are created in the global default dtype (pykan's notebooks call
  ``torch.set_default_dtype(torch.float64)``). Inside ``contained`` the default dtype is the wrapper's and the
  three RNG states are restored afterwards, so training data order and the caller's dtype are unchanged.
* prints: pykan prints from ``auto_symbolic``, ``prune_input`` and its checkpoint logger; stdout is captured into
  ``PyKAN.messages``. orthoscope itself never prints.

The numbers pykan publishes (hellokan) are in float64, so ``PyKAN`` defaults to ``dtype=torch.float64``; inputs
are cast to it in ``forward``.
"""
from __future__ import annotations

import contextlib
import io
import math
import random
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ..kernels.bspline import check_spline_args


def check_width(width) -> list:
    """pykan widths: a list of ≥ 2 entries, each a positive int (sum nodes) or ``[n_sum, n_mult]``."""
    if not isinstance(width, (list, tuple)) or len(width) < 2:
        raise ValueError(f"width must be a list of at least 2 layer sizes, e.g. [2, 5, 1]; got {width!r}")
    out = []
    for pos, w in enumerate(width):
        if isinstance(w, (list, tuple)):
            if len(w) != 2 or any((not isinstance(v, int)) or v < 0 for v in w) or sum(w) == 0:
                raise ValueError(f"width[{pos}] = {w!r}: a [n_sum, n_mult] entry needs two ints ≥ 0, not both 0")
            out.append([int(w[0]), int(w[1])])
        elif isinstance(w, int) and not isinstance(w, bool) and w > 0:
            out.append(int(w))
        else:
            raise ValueError(f"width[{pos}] = {w!r}: every layer size must be a positive integer (got a zero or "
                             f"non-integer in width={list(width)!r})")
    return out


@contextlib.contextmanager
def contained(dtype: torch.dtype | None = None, messages: list | None = None):
    """Run pykan code with the default dtype set to ``dtype``, the torch/numpy/random RNG states restored
    afterwards, and stdout captured (appended line by line to ``messages`` when given)."""
    import numpy as np

    old_dtype = torch.get_default_dtype()
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    buffer = io.StringIO()
    try:
        if dtype is not None:
            torch.set_default_dtype(dtype)
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        torch.set_default_dtype(old_dtype)
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if messages is not None:
            messages.extend(line for line in buffer.getvalue().splitlines() if line.strip())


@dataclass
class SymbolicEdge:
    """One edge ``(layer, i → j)`` after ``auto_symbolic``: the library function fitted as ``c·f(a·x+b)+d``."""

    layer: int
    i: int
    j: int
    function: str
    r2: float
    complexity: float
    fixed: bool


@dataclass
class SymbolicResult:
    """What ``PyKAN.auto_symbolic`` found: per-edge fits (with R²) and the network's formulas (one per output)."""

    edges: list[SymbolicEdge]
    formulas: list = field(default_factory=list)     # sympy expressions in variables x_1, x_2, …
    variables: list = field(default_factory=list)

    def table(self):
        import pandas as pd

        return pd.DataFrame([vars(e) for e in self.edges])

    def evaluate(self, x: torch.Tensor, output: int = 0) -> torch.Tensor:
        """The formula evaluated on ``x[N, n_var]`` (float64, numpy through ``sympy.lambdify``)."""
        import sympy

        f = sympy.lambdify(self.variables, self.formulas[output], modules="numpy")
        cols = [x[:, i].detach().double().numpy() for i in range(x.shape[1])]
        value = f(*cols)
        return torch.as_tensor(value, dtype=torch.float64).expand(x.shape[0]).clone()

    def rmse(self, x: torch.Tensor, y: torch.Tensor, output: int = 0) -> float:
        """Root-mean-square error of the formula against ``y`` on points ``x`` (e.g. fresh test points)."""
        return float(((self.evaluate(x, output) - y.reshape(len(x), -1)[:, output].double()) ** 2).mean().sqrt())


def round_floats(expr, digits: int):
    """``expr`` with every float rounded to ``digits`` decimals (pykan's ``ex_round``). Repeated until stable:
    replacing floats can let sympy multiply two of them into a new unrounded one."""
    import sympy

    for _ in range(8):
        rounded = expr.xreplace({a: sympy.Float(round(float(a), digits)) for a in expr.atoms(sympy.Float)})
        if rounded == expr:
            break
        expr = rounded
    return expr


class PyKAN(nn.Module):
    """A pykan ``KAN`` (``MultKAN``) that a ``Run`` can train, with pykan's side effects contained.

    Args:
        width: layer sizes, e.g. ``[2, 5, 1]`` (pykan's ``[n_sum, n_mult]`` entries are accepted).
        grid: grid intervals G (≥ 1).  k: spline order (≥ 1).  seed: pykan's init seed.
        dtype: parameter dtype (float64 reproduces pykan's notebooks).
        **kan_kwargs: passed to ``MultKAN`` (``noise_scale``, ``grid_range``, ``base_fun``, ``grid_eps``, …).

    Structural changes (``refine``, ``prune``) replace the inner model, so the optimizer must be rebuilt — the
    interventions in ``orthoscope.recipes.kan_fit`` do that for a Run.
    """

    def __init__(self, width, grid: int = 3, k: int = 3, *, seed: int = 1, dtype: torch.dtype = torch.float64,
                 **kan_kwargs):
        super().__init__()
        check_spline_args(grid, k)
        width = check_width(width)
        for key in ("auto_save", "ckpt_path", "first_init", "device"):
            if key in kan_kwargs:
                raise ValueError(f"{key!r} is managed by PyKAN (no files are written); remove it")
        self.dtype = dtype
        self.messages: list[str] = []
        with self.scope():
            from kan import MultKAN

            self.kan = MultKAN(width=width, grid=grid, k=k, seed=seed, auto_save=False, **kan_kwargs)

    def scope(self):
        """``contained`` with this model's dtype and message log (use it around direct pykan calls)."""
        return contained(self.dtype, self.messages)

    # ---- what a Run needs -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        kan = self.kan
        # pykan's fit() disables the (slow) symbolic branch while no edge is symbolic; do the same here.
        previous, kan.symbolic_enabled = kan.symbolic_enabled, self.has_symbolic()
        try:
            return kan(x)
        finally:
            kan.symbolic_enabled = previous

    def has_symbolic(self) -> bool:
        return any(bool((layer.mask != 0).any()) for layer in self.kan.symbolic_fun)

    @property
    def width(self) -> list:
        return [w[0] if w[1] == 0 else list(w) for w in self.kan.width]

    @property
    def grid_size(self) -> int:
        return int(self.kan.act_fun[0].num)

    def regularizer(self, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.0, lamb_coefdiff=0.0,
                    metric: str = "edge_forward_spline_n") -> torch.Tensor:
        """pykan's sparsity regularizer from the activations of the LAST forward (as in ``fit``'s closure)."""
        kan = self.kan
        if not kan.save_act or not kan.acts_scale_spline:
            raise RuntimeError("regularizer needs the activations of a forward pass with kan.save_act = True")
        if metric == "edge_backward":
            kan.attribute()
        elif metric == "node_backward":
            kan.node_attribute()
        return kan.get_reg(metric, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)

    # ---- grid, refinement, pruning (all in place) ----------------------------------------------------------------
    def _activations(self, x: torch.Tensor | None) -> None:
        """Forward ``x`` (or pykan's cached inputs) with activations saved, as pykan's structural methods expect."""
        kan = self.kan
        if x is None:
            if kan.cache_data is None:
                raise ValueError("pass the inputs x (no forward pass has cached any yet)")
            x = kan.cache_data
        saved, kan.save_act = kan.save_act, True
        try:
            with torch.no_grad():
                self.forward(x)
        finally:
            kan.save_act = saved

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        """pykan's adaptive grid update from samples (layer by layer); the function is refit by least squares.

        One guard: an input that is constant on the samples (a dead hidden node) keeps its previous grid and
        coefficients. pykan would collapse that grid to zero width, which makes its gradients NaN."""
        old = [(layer.grid.detach().clone(), layer.coef.detach().clone()) for layer in self.kan.act_fun]
        with self.scope():
            self.kan.update_grid(x.to(self.dtype))
        for layer, (grid, coef) in zip(self.kan.act_fun, old):
            k = layer.k
            flat = (layer.grid[:, -k - 1] - layer.grid[:, k]) <= 0
            if bool(flat.any()):
                layer.grid.data[flat] = grid[flat]
                layer.coef.data[flat] = coef[flat]

    def refine(self, new_grid: int, x: torch.Tensor | None = None) -> "PyKAN":
        """Grid extension to ``new_grid`` intervals, fitted to the current function on ``x`` (pykan's ``refine``)."""
        check_spline_args(new_grid, self.kan.k)
        with self.scope():
            self._activations(x)
            new = self.kan.refine(new_grid)
            new.auto_save = False
        self.kan = new
        return self

    def prune(self, node_th: float = 1e-2, edge_th: float = 3e-2, x: torch.Tensor | None = None) -> "PyKAN":
        """Remove nodes with attribution < ``node_th`` and mask edges < ``edge_th`` (pykan's ``prune``)."""
        with self.scope():
            self._activations(x)
            new = self.kan.prune_node(node_th, log_history=False)
            new.auto_save = False
            with torch.no_grad():
                new.forward(new.cache_data)
            new.attribute()
            new.prune_edge(edge_th, log_history=False)
        self.kan = new
        return self

    @torch.no_grad()
    def attribute(self, x: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Edge importance scores per layer, ``[in, out]`` (pykan's backward attribution, used by ``prune``)."""
        with self.scope():
            self._activations(x)
            self.kan.attribute()
        return [s.detach().T.clone() for s in self.kan.edge_scores]

    # ---- symbolic regression ------------------------------------------------------------------------------------
    def auto_symbolic(self, lib=None, x: torch.Tensor | None = None, a_range=(-10, 10), b_range=(-10, 10),
                      weight_simple: float = 0.8, r2_threshold: float = 0.0, digits: int | None = 4) -> SymbolicResult:
        """Fit a library function to every active edge (pykan's ``auto_symbolic``) and return the fits with their
        R² and the network's formula(s), floats rounded to ``digits`` decimals (None: unrounded)."""
        from kan.utils import SYMBOLIC_LIB

        if lib is not None:
            unknown = [f for f in lib if f not in SYMBOLIC_LIB]
            if unknown:
                raise ValueError(f"unknown symbolic functions {unknown}; pykan's library has {sorted(SYMBOLIC_LIB)}")
        edges = []
        with self.scope():
            self._activations(x)
            kan = self.kan
            for l in range(len(kan.width_in) - 1):
                for i in range(kan.width_in[l]):
                    for j in range(kan.width_out[l + 1]):
                        edges.append(self._symbolic_edge(l, i, j, lib, a_range, b_range, weight_simple, r2_threshold))
        result = SymbolicResult(edges=edges)
        result.formulas, result.variables = self.formula(digits)
        return result

    def _symbolic_edge(self, l, i, j, lib, a_range, b_range, weight_simple, r2_threshold) -> SymbolicEdge:
        kan = self.kan
        symbolic, numeric = float(kan.symbolic_fun[l].mask[j, i]), float(kan.act_fun[l].mask[i][j])
        if symbolic > 0 and numeric == 0:
            return SymbolicEdge(l, i, j, kan.symbolic_fun[l].funs_name[j][i], math.nan, math.nan, True)
        if symbolic == 0 and numeric == 0:                       # pruned edge: the zero function
            kan.fix_symbolic(l, i, j, "0", verbose=False, log_history=False)
            return SymbolicEdge(l, i, j, "0", 1.0, 0.0, True)
        name, _, r2, c = kan.suggest_symbolic(l, i, j, a_range=a_range, b_range=b_range, lib=lib, verbose=False,
                                              weight_simple=weight_simple)
        fixed = bool(r2 >= r2_threshold)
        if fixed:
            kan.fix_symbolic(l, i, j, name, a_range=a_range, b_range=b_range, verbose=False, log_history=False)
        return SymbolicEdge(l, i, j, name, float(r2), float(c), fixed)

    def formula(self, digits: int | None = 4):
        """``(formulas, variables)``: one sympy expression per output (all edges must be symbolic)."""
        numeric = [(l, i, j) for l, layer in enumerate(self.kan.act_fun) for i, j in (layer.mask != 0).nonzero().tolist()]
        if numeric:
            raise RuntimeError(f"every edge must be symbolic before reading the formula; spline edges (layer, i, j) "
                               f"remain: {numeric[:6]} — run auto_symbolic first")
        with self.scope(), warnings.catch_warnings():
            # pykan turns trainable affine parameters into sympy floats; torch warns about each such float().
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
            out = self.kan.symbolic_formula()
        if out is None:                                   # pykan printed why (see self.messages)
            raise RuntimeError(f"pykan could not build the formula: {self.messages[-1:]}")
        formulas, variables = out
        if digits is not None:
            formulas = [round_floats(f, digits) for f in formulas]
        return formulas, list(variables)

    # ---- curves for probes ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def edge_curves(self, n_points: int = 64, x: torch.Tensor | None = None):
        """Per layer: ``(xs[in, P], phi[in, out, P])``, every edge's activation ``φ_ij`` on P points spanning the
        range its input takes on ``x`` (or on the grid range when ``x`` is None); symbolic edges included."""
        kan = self.kan
        if x is not None:
            self._activations(x)
        curves = []
        for l, layer in enumerate(kan.act_fun):
            if x is not None:
                lo, hi = kan.acts[l].min(0).values, kan.acts[l].max(0).values
            else:
                lo, hi = layer.grid[:, layer.k], layer.grid[:, -layer.k - 1]
            t = torch.linspace(0, 1, n_points, dtype=self.dtype)
            xs = lo[:, None] + (hi - lo)[:, None] * t                    # [in, P]
            _, _, postacts, _ = layer(xs.T.contiguous())                   # [P, out, in]
            phi = postacts.permute(2, 1, 0)
            if self.has_symbolic():
                _, sym = kan.symbolic_fun[l](xs.T.contiguous())            # [P, out, in]
                phi = phi + sym.permute(2, 1, 0)
            curves.append((xs.float(), phi.float()))
        return curves
