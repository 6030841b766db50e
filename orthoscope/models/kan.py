"""A fast Kolmogorov–Arnold layer, equal to pykan's ``KANLayer`` given the same grid and coefficients.

Every edge i → j carries a learnable univariate function (pykan 0.2.8, ``kan/KANLayer.py``)

    φ_ij(x) = scale_base_ij·b(x) + scale_sp_ij·Σ_m coef_ijm·B_m(x),      y_j = Σ_i mask_ij·φ_ij(x_i),

with b = SiLU and B_m the G+k B-splines of order k on the extended grid (see ``kan_spline``). Here the whole layer
is one call to ``orthoscope.kernels.kan_spline``: the per-edge scales are folded into the coefficients
(``coef·scale_sp·mask``) and the base branch rides along as one more basis function ``b(x)`` with coefficients
``scale_base·mask`` — one matmul forward, two backward, and no ``[batch, out, in]`` tensor is ever built
(efficient-kan's layout; pykan builds several).

Inputs outside the grid range ``[t_k, t_{G+k}]`` (where the B-splines stop summing to one): ``outside="zero"``
(default) is pykan's function — the spline fades out over the k extension intervals and is 0 beyond them, only
the SiLU branch remains; ``outside="clamp"`` evaluates the spline at the nearest end of the grid range (the curve
is continued as a constant; the SiLU branch still sees the raw input). Either way the first such input triggers
one ``RuntimeWarning`` per layer. ``update_grid(x)`` moves the grid to the data, as pykan does during training.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.bspline import check_spline_args, curve_to_coef, extend_grid, grid_from_samples, uniform_grid

BASE_FUNCTIONS = {"silu": F.silu, "identity": lambda x: x, "zero": torch.zeros_like}
OUTSIDE = ("zero", "clamp")


def _outside(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> bool:
    """Whether any ``x[B, in]`` lies outside its column's ``[lo, hi]``: the global min/max of x settle the usual
    case in one fast pass (a per-column reduction over the batch dim is 10× slower); per column only if needed."""
    x = x.detach()
    low, high = x.aminmax()
    if bool((low >= lo).all() & (high <= hi).all()):
        return False
    low, high = x.aminmax(dim=0)
    return bool(((low < lo) | (high > hi)).any())


class KANLinear(nn.Module):
    """KAN layer ``in_features → out_features`` with G = ``grid`` intervals and splines of order ``k``.

    Parameters (pykan's names and shapes): ``coef[in, out, G+k]``, ``scale_base[in, out]``, ``scale_sp[in, out]``;
    buffers ``grid[in, G+2k+1]`` and ``mask[in, out]``. Initialization follows pykan's ``KANLayer`` with
    ``noise_scale`` (MultKAN's 0.3 by default) and draws from the global RNG in the same order, so under the same
    seed the two layers start equal.

    ``compile=True`` (opt-in) runs forward and backward through ``torch.compile``-generated kernels while the grid is
    evenly spaced (``kan_compiled``): the same function, 1.7–1.9× faster than the eager path on the 2-core CPU at
    in = out = 64, batch 1024, G = 5 (forward+backward 1.62 vs 2.68 ms on 1 thread, 1.17 vs 2.28 ms on 2;
    BENCHMARKS.md, "KAN layer"), after a one-off compile (8.4 s there with an empty inductor cache, ~2 s with a
    warm one). Without a C++ compiler (CPU) it warns once and runs eagerly; on a non-uniform grid (after
    ``update_grid``) it warns once and runs eagerly until the grid is uniform again.
    """

    # ``coef`` starts as a least-squares fit (torch.linalg.lstsq), whose last bit varies between two builds in one
    # process (~1 build in 5 differs by ≤ 3e-8): run.config compares it to a tolerance, not bit for bit.
    nondeterministic_init = ("coef",)

    def __init__(self, in_features: int, out_features: int, grid: int = 5, k: int = 3, *, grid_range=(-1.0, 1.0),
                 noise_scale: float = 0.3, scale_base_mu: float = 0.0, scale_base_sigma: float = 1.0,
                 scale_sp: float = 1.0, base_fun: str = "silu", grid_eps: float = 0.02, sp_trainable: bool = True,
                 sb_trainable: bool = True, outside: str = "zero", compile: bool = False, dtype=None, device=None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        check_spline_args(grid, k)
        if base_fun not in BASE_FUNCTIONS:
            raise ValueError(f"base_fun must be one of {sorted(BASE_FUNCTIONS)}, got {base_fun!r}")
        if outside not in OUTSIDE:
            raise ValueError(f"outside must be one of {OUTSIDE}, got {outside!r}")
        if not 0.0 <= grid_eps <= 1.0:
            raise ValueError(f"grid_eps must lie in [0, 1], got {grid_eps!r}")
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False, got {compile!r}")
        self.in_features, self.out_features, self.k = in_features, out_features, k
        self.base_fun, self.grid_eps, self.outside = base_fun, float(grid_eps), outside
        self.use_compile = bool(compile)
        self._warned = False
        self._compile_notes: set = set()        # the compile=True fallbacks already warned about
        self._uniform = None                    # (grid tensor, its version, (centre, h, lo, hi) or None)
        dtype = dtype or torch.get_default_dtype()
        knots = uniform_grid(in_features, grid, k, grid_range, dtype=dtype, device=device)
        self.register_buffer("grid", knots)
        noise = (torch.rand(grid + 1, in_features, out_features, dtype=dtype, device=device) - 0.5) * noise_scale / grid
        self.coef = nn.Parameter(curve_to_coef(knots[:, k:-k].T, noise, knots, k))
        self.register_buffer("mask", torch.ones(in_features, out_features, dtype=dtype, device=device))
        rand = torch.rand(in_features, out_features, dtype=dtype, device=device)
        self.scale_base = nn.Parameter((scale_base_mu + scale_base_sigma * (2 * rand - 1)) / math.sqrt(in_features),
                                       requires_grad=sb_trainable)
        self.scale_sp = nn.Parameter(torch.full_like(rand, scale_sp / math.sqrt(in_features)),
                                     requires_grad=sp_trainable)

    @property
    def grid_size(self) -> int:
        return self.grid.shape[1] - 2 * self.k - 1

    # ---- forward ------------------------------------------------------------------------------------------------
    def _spline_input(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the out-of-grid policy (and warn once) to ``x[B, in]``."""
        if self._warned and self.outside == "zero":
            return x
        lo, hi = self.grid[:, self.k], self.grid[:, -self.k - 1]
        self._warn_outside(x, lo, hi)
        return torch.maximum(torch.minimum(x, hi), lo) if self.outside == "clamp" else x

    def _warn_outside(self, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if not self._warned and x.shape[0] and _outside(x, lo, hi):
            self._warned = True
            what = ("the spline fades to 0 beyond the grid (pykan's behaviour)" if self.outside == "zero"
                    else "the spline is held at its value at the nearest grid end")
            warnings.warn(f"KANLinear({self.in_features}→{self.out_features}): inputs outside the grid range "
                          f"[{float(lo.min()):.3g}, {float(hi.max()):.3g}]; {what}. update_grid(x) moves the grid "
                          "to the data. (Warned once per layer.)", RuntimeWarning, stacklevel=4)

    def spline_coef(self) -> torch.Tensor:
        """Effective spline coefficients ``coef·scale_sp·mask``, ``[in, out, G+k]``."""
        return self.coef * (self.scale_sp * self.mask).unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from orthoscope import kernels

        if x.shape[-1] != self.in_features:
            raise ValueError(f"KANLinear expects inputs [..., {self.in_features}], got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        if self.use_compile and self._compiled_ready(x):
            return self._compiled_forward(x).reshape(*lead, self.out_features)
        spline_x = self._spline_input(x)
        if self.base_fun == "zero":
            y = kernels.kan_spline(spline_x, self.grid, self.spline_coef(), self.k)
        elif spline_x is x:        # the base branch rides in the spline's matmul as one more basis function
            y = kernels.kan_spline(x, self.grid, self.spline_coef(), self.k, self.scale_base * self.mask,
                                   self.base_fun)
        else:                      # outside="clamp": the spline sees the clamped input, the base branch the raw one
            base = BASE_FUNCTIONS[self.base_fun](x) @ (self.scale_base * self.mask)
            y = base + kernels.kan_spline(spline_x, self.grid, self.spline_coef(), self.k)
        return y.reshape(*lead, self.out_features)

    # ---- compile=True -------------------------------------------------------------------------------------------
    def _grid_geometry(self):
        """``(centre, h, lo, hi)`` per input if the grid is evenly spaced, else None (cached per grid version)."""
        from ..kernels.bspline import _uniform_spacing

        grid = self.grid
        if self._uniform is None or self._uniform[0] is not grid or self._uniform[1] != grid._version:
            h = _uniform_spacing(grid)
            geometry = None if h is None else tuple(t.contiguous() for t in (
                (grid[:, 0] + grid[:, -1]) / 2, h, grid[:, self.k], grid[:, -self.k - 1]))
            self._uniform = (grid, grid._version, geometry)
        return self._uniform[2]

    def _compiled_ready(self, x: torch.Tensor) -> bool:
        """Whether this call can take the compiled path; warns once per reason when it cannot."""
        from .kan_compiled import cxx_compiler_problem, warn_no_compiler

        if "compiler" not in self._compile_notes:
            self._compile_notes.add("compiler")
            problem = cxx_compiler_problem(x.device)
            if problem is not None:
                self._compile_notes.add("no compiler")
                warn_no_compiler(problem, f"KANLinear({self.in_features}→{self.out_features})")
        if "no compiler" in self._compile_notes or x.shape[0] == 0:
            return False
        if self._grid_geometry() is None:
            if "non-uniform" not in self._compile_notes:
                self._compile_notes.add("non-uniform")
                warnings.warn(f"KANLinear({self.in_features}→{self.out_features}), compile=True: the grid is not "
                              "evenly spaced (update_grid places knots at data percentiles), so this layer runs "
                              "the eager path (same values, slower). (Warned once per layer.)", RuntimeWarning,
                              stacklevel=3)
            return False
        return True

    def _compiled_forward(self, x: torch.Tensor) -> torch.Tensor:
        from .kan_compiled import compiled_kan

        center, h, lo, hi = (t.to(x.dtype) for t in self._grid_geometry())
        y, outside = compiled_kan(x, self.coef, self.scale_sp, self.scale_base, self.mask, center, h, lo, hi,
                                  self.k, self.base_fun, self.outside == "clamp")
        if not self._warned and bool(outside):      # the range check ran inside the compiled forward
            self._warn_outside(x, lo, hi)
        return y

    def edge_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Every edge's output ``φ_ij(x_i)·mask_ij`` as ``[B, in, out]`` (pykan's ``postacts``, transposed)."""
        from ..kernels.bspline import bspline_basis

        x = x.reshape(-1, self.in_features)
        basis = bspline_basis(self._spline_input(x), self.grid.to(x.dtype), self.k)        # [B, in, n]
        spline = torch.einsum("bin,ion->bio", basis, self.spline_coef())
        base = BASE_FUNCTIONS[self.base_fun](x).unsqueeze(-1) * (self.scale_base * self.mask)
        return base + spline

    # ---- grid -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        """pykan's ``update_grid_from_samples``: new knots at the percentiles of ``x[B, in]`` (mixed with a uniform
        grid by ``grid_eps``); coefficients refit by least squares so the spline is unchanged on the samples."""
        x = torch.sort(x.reshape(-1, self.in_features).to(self.grid.dtype), dim=0)[0]
        y = self._curves(x)
        old_coef = self.coef.detach().clone()
        grid = grid_from_samples(x, self.grid_size, self.k, self.grid_eps)
        flat = x[-1] <= x[0]                 # a constant input (dead node) keeps its grid: zero width is degenerate
        grid[flat] = self.grid[flat]
        self.grid = grid
        self.coef.data = curve_to_coef(x, y, self.grid, self.k)
        self.coef.data[flat] = old_coef[flat]
        self._warned = False

    def _curves(self, x: torch.Tensor) -> torch.Tensor:
        """Raw spline values ``Σ_m coef_iom B_m(x_i)`` per edge, ``[B, in, out]`` (pykan's ``coef2curve``)."""
        from ..kernels.bspline import bspline_basis

        return torch.einsum("bin,ion->bio", bspline_basis(x, self.grid, self.k), self.coef.detach())

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor) -> "KANLinear":
        """Grid extension in place (pykan's ``initialize_grid_from_parent``): the new G′+1 knots interpolate the
        old ones linearly at evenly spaced fractions, and the new coefficients are the least-squares fit of the
        old spline on the samples ``x[B, in]``. Parameters are replaced: rebuild the optimizer afterwards."""
        check_spline_args(new_grid, self.k)
        x = torch.sort(x.reshape(-1, self.in_features).to(self.grid.dtype), dim=0)[0]
        y = self._curves(x)
        old = self.grid[:, self.k:-self.k]                                   # [in, G+1]
        pos = torch.linspace(0, self.grid_size, new_grid + 1, dtype=old.dtype, device=old.device)
        left = pos.floor().long().clamp(max=self.grid_size - 1)
        frac = pos - left
        knots = old[:, left] * (1 - frac) + old[:, left + 1] * frac
        self.grid = extend_grid(knots, self.k)
        self.coef = nn.Parameter(curve_to_coef(x, y, self.grid, self.k), requires_grad=self.coef.requires_grad)
        self._warned = False
        return self

    # ---- pykan interop ------------------------------------------------------------------------------------------
    @classmethod
    def from_pykan(cls, layer, outside: str = "zero", compile: bool = False) -> "KANLinear":
        """A KANLinear with the grid, coefficients, scales and mask of pykan ``KANLayer`` ``layer``."""
        base = type(layer.base_fun).__name__
        names = {"SiLU": "silu", "Identity": "identity"}
        if base not in names:
            raise ValueError(f"unsupported pykan base function {base!r} (SiLU and Identity convert)")
        new = cls(layer.in_dim, layer.out_dim, grid=int(layer.num), k=int(layer.k), base_fun=names[base],
                  grid_eps=float(layer.grid_eps), outside=outside, compile=compile, dtype=layer.coef.dtype)
        with torch.no_grad():
            new.grid = layer.grid.detach().clone()
            new.coef.copy_(layer.coef)
            new.scale_base.copy_(layer.scale_base)
            new.scale_sp.copy_(layer.scale_sp)
            new.mask.copy_(layer.mask)
        new.scale_base.requires_grad_(layer.scale_base.requires_grad)
        new.scale_sp.requires_grad_(layer.scale_sp.requires_grad)
        return new

    def to_pykan(self):
        """A pykan ``KANLayer`` holding this layer's grid, coefficients, scales and mask (base SiLU or identity)."""
        from .pykan_bridge import contained

        if self.base_fun == "zero":
            raise ValueError("pykan's KANLayer takes a module base function; base_fun='zero' does not convert")
        with contained(self.coef.dtype):
            from kan.KANLayer import KANLayer

            fun = torch.nn.SiLU() if self.base_fun == "silu" else torch.nn.Identity()
            layer = KANLayer(self.in_features, self.out_features, num=self.grid_size, k=self.k, base_fun=fun,
                             grid_eps=self.grid_eps)
        with torch.no_grad():
            layer.grid.data = self.grid.detach().clone()
            layer.coef.data = self.coef.detach().clone()
            layer.scale_base.data = self.scale_base.detach().clone()
            layer.scale_sp.data = self.scale_sp.detach().clone()
            layer.mask.data = self.mask.detach().clone()
        return layer

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, grid={self.grid_size}, k={self.k}, "
                f"base_fun={self.base_fun!r}, outside={self.outside!r}"
                + (", compile=True" if self.use_compile else ""))


class KAN(nn.Module):
    """A stack of ``KANLinear`` layers, ``KAN([2, 5, 1], grid=3, k=3)`` — the fast counterpart of pykan's ``KAN``
    with sum nodes only (pykan's node/subnode affines are the identity by default and are omitted)."""

    def __init__(self, width, grid: int = 3, k: int = 3, **layer_kwargs):
        super().__init__()
        from .pykan_bridge import check_width

        width = check_width(width)
        if any(isinstance(w, list) for w in width):
            raise ValueError("multiplication nodes ([n_sum, n_mult] widths) need pykan: use PyKAN")
        self.layers = nn.ModuleList(KANLinear(a, b, grid, k, **layer_kwargs) for a, b in zip(width[:-1], width[1:]))

    @property
    def width(self) -> list[int]:
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The inputs of every layer (and the output), ``[x, h_1, …, y]``."""
        acts = [x]
        for layer in self.layers:
            acts.append(layer(acts[-1]))
        return acts

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        """pykan's schedule: layer by layer, each on the inputs it sees after the previous layers were updated."""
        for layer in self.layers:
            layer.update_grid(x)
            x = layer(x)

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor) -> "KAN":
        """Grid extension of every layer, each fitted on the activations of the unrefined network (pykan's order)."""
        acts = self.activations(x)
        for layer, a in zip(self.layers, acts):
            layer.refine(new_grid, a)
        return self

    @classmethod
    def from_pykan(cls, model, outside: str = "zero") -> "KAN":
        """Convert a pykan ``MultKAN`` of sum nodes with identity affines and no symbolic edges."""
        if any(w[1] for w in model.width):
            raise ValueError("the pykan model has multiplication nodes; only sum nodes convert")
        if any(bool((s.mask != 0).any()) for s in model.symbolic_fun):
            raise ValueError("the pykan model has symbolic edges; only spline edges convert")
        for l in range(model.depth):
            for t, ident in ((model.node_scale[l], 1), (model.node_bias[l], 0), (model.subnode_scale[l], 1),
                             (model.subnode_bias[l], 0)):
                if not bool((t == ident).all()):
                    raise ValueError("the pykan model has non-identity node affines (affine_trainable)")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.layers = nn.ModuleList(KANLinear.from_pykan(layer, outside=outside) for layer in model.act_fun)
        return new


class KANFeedForward(nn.Module):
    """A KAN-FFN for transformer blocks: ``KANLinear(d_model → d_hidden)`` then ``KANLinear(d_hidden → d_model)``
    (module names ``up``/``down`` like ``FeedForward``). Works on ``[..., d_model]``."""

    def __init__(self, d_model: int, d_hidden: int, grid: int = 5, k: int = 3, **layer_kwargs):
        super().__init__()
        self.up = KANLinear(d_model, d_hidden, grid, k, **layer_kwargs)
        self.down = KANLinear(d_hidden, d_model, grid, k, **layer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.up(x))


def use_kan_layers(model: nn.Module, grid: int = 5, k: int = 3, *, d_hidden: int | None = None,
                   **layer_kwargs) -> nn.Module:
    """Swap the dense layers of an orthoscope model for KAN layers, in place, and return the model.

    * ``MLP``: every ``layers.i`` becomes a ``KANLinear`` of the same shape and the activation between layers is
      removed (each KAN edge has its own nonlinearity). Token embeddings stay.
    * ``TinyTransformer``: every block's ``mlp`` becomes a ``KANFeedForward`` with ``d_hidden`` (default d_model:
      a KAN edge has G+k+2 parameters, so this is ~(G+k+2)/4 × the parameters of a 4·d MLP). Its inputs come out
      of LayerNorm, so a ``grid_range`` of about (−3, 3) covers them.
    """
    from .mlp import MLP
    from .transformer import TinyTransformer

    if isinstance(model, MLP):
        for i, old in enumerate(model.layers):
            model.layers[i] = KANLinear(old.in_features, old.out_features, grid, k, dtype=old.weight.dtype,
                                        device=old.weight.device, **layer_kwargs)
        model.act = nn.Identity()
        return model
    if isinstance(model, TinyTransformer):
        hidden = d_hidden or model.cfg.d_model
        for block in model.blocks:
            dtype, device = block.mlp.up.weight.dtype, block.mlp.up.weight.device
            block.mlp = KANFeedForward(model.cfg.d_model, hidden, grid, k, dtype=dtype, device=device, **layer_kwargs)
        return model
    raise ValueError(f"use_kan_layers handles orthoscope's MLP and TinyTransformer, not {type(model).__name__}; "
                     "build KANLinear layers into your own module directly")
