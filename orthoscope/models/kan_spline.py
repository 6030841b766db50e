"""B-spline math for KAN layers, vectorized: the torch twin of ``orthoscope.kernels.kan_spline`` and its helpers.

Conventions follow pykan 0.2.8 (``kan/spline.py``) so that a layer built here equals pykan's ``KANLayer``:

* A layer with ``in`` inputs, ``G`` grid intervals and spline order ``k`` has a knot tensor ``grid[in, G+2k+1]``: the
  ``G+1`` knots of the grid range plus ``k`` extension knots on each side at the same spacing (``extend_grid``).
* There are ``n = G+k`` B-splines ``B_m`` of order k per input (Cox–de Boor: order 0 is the indicator of
  ``[t_m, t_{m+1})``, then ``B_{m,d} = (x−t_m)/(t_{m+d}−t_m)·B_{m,d−1} + (t_{m+d+1}−x)/(t_{m+d+1}−t_{m+1})·B_{m+1,d−1}``).
  Outside ``[t_0, t_{G+2k})`` every B-spline is 0, as in pykan.
* ``kan_spline(x, grid, coef, k)[b, o] = Σ_i Σ_m coef[i, o, m]·B_m(x[b, i])`` with ``coef[in, out, G+k]``.

Speed (the reason this file exists): for an input in knot span j (``t_j ≤ x < t_{j+1}``) only ``B_{j−k}, …, B_j``
are non-zero, so the k+1 of them are computed with de Boor's triangular scheme (The NURBS Book, A2.2) on ``[B, in]``
tensors — O(k²) small elementwise ops instead of pykan's recursion over ``[B, in, G+2k]`` tensors — then scattered
into a dense ``[B, in·(G+k)]`` basis that meets the coefficients in ONE matmul (efficient-kan's layout). Every
denominator in the triangle is a knot span that contains ``[t_j, t_{j+1})``, so it is positive: no 0/0 guards are
needed even with repeated knots. (pykan instead applies ``nan_to_num`` to the whole recursion step, which for
repeated knots can zero a valid term; the two agree whenever knots are distinct, e.g. every grid pykan builds from a
range or from distinct samples.)

The backward pass is analytic: ``∂/∂coef`` is the transposed matmul and ``∂/∂x`` uses the derivative identity
``B'_{m,k} = k·(B_{m,k−1}/(t_{m+k}−t_m) − B_{m+1,k−1}/(t_{m+k+1}−t_{m+1}))``, whose two quotients are exactly the
last step of the triangle — the derivative costs nothing extra to keep. Double backward is not supported.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def check_spline_args(grid_size, k) -> None:
    if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 1:
        raise ValueError(f"grid must be an integer ≥ 1 (number of grid intervals G), got {grid_size!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer ≥ 1 (spline order; 3 = cubic), got {k!r}")


def extend_grid(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Add k knots on each side of ``grid[in, G+1]`` at spacing ``h = (t_G − t_0)/G`` (pykan's ``extend_grid``)."""
    h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)
    steps = torch.arange(1, k + 1, dtype=grid.dtype, device=grid.device)
    return torch.cat([grid[:, :1] - h * steps.flip(0), grid, grid[:, -1:] + h * steps], dim=1)


def uniform_grid(in_dim: int, grid_size: int, k: int, grid_range=(-1.0, 1.0), dtype=None, device=None):
    """Uniform knots on ``grid_range`` with G intervals, extended by k knots per side: ``[in, G+2k+1]``."""
    lo, hi = float(grid_range[0]), float(grid_range[1])
    if not hi > lo:
        raise ValueError(f"grid_range must be (low, high) with high > low, got {tuple(grid_range)!r}")
    g = torch.linspace(lo, hi, grid_size + 1, dtype=dtype, device=device)[None, :].expand(in_dim, grid_size + 1)
    return extend_grid(g, k)


def _uniform_spacing(grid: torch.Tensor):
    """``h[in]`` if every row of ``grid`` is evenly spaced (to 64 ulps of h), else ``None``."""
    diffs = grid[:, 1:] - grid[:, :-1]
    h = (grid[:, -1] - grid[:, 0]) / (grid.shape[1] - 1)
    tol = 64 * torch.finfo(grid.dtype).eps * h.abs()
    if bool((h > 0).all()) and bool(((diffs - h[:, None]).abs() <= tol[:, None]).all()):
        return h
    return None


def _span_geometry(x: torch.Tensor, grid: torch.Tensor, k: int):
    """Knot span ``j`` of every x (``t_j ≤ x < t_{j+1}``) and the distances ``x − t_{j+1−r}``, ``t_{j+r} − x``
    (r = 1..k) that de Boor's triangle needs, plus the factor turning their derivative into ``∂/∂x``.

    On an evenly spaced grid (pykan's default, and any grid built from a range) distances are measured in units
    of h, so they are ``f + r − 1`` and ``r − f`` with ``f`` the position inside the span: no search, no gathers.
    Otherwise the span comes from ``searchsorted`` and the knots from one gather of a k-wide window per input.
    """
    n_knots = grid.shape[1]
    h = _uniform_spacing(grid)
    if h is not None:
        # Position in units of h with t_0 at 0, in float64 at least: the fraction f = u − floor(u) would otherwise
        # lose log2(G+2k) bits of a float32 input (measured: 1e-6 error in B vs 1e-7 through the knots).
        wide = torch.promote_types(x.dtype, torch.float64)
        u = (x.to(wide) - grid[:, 0].to(wide)) / h.to(wide)
        inside = (u >= 0) & (u < n_knots - 1)
        span = u.detach().floor().clamp(0, n_knots - 2)
        f = (u - span).to(x.dtype)
        left = [None] + [f + (r - 1) for r in range(1, k + 1)]
        right = [None] + [r - f for r in range(1, k + 1)]
        return span.long(), inside, left, right, (1.0 / h)[:, None]      # ∂u/∂x per input
    span = torch.searchsorted(grid.contiguous(), x.detach().T.contiguous(), right=True).T - 1
    inside = (span >= 0) & (span <= n_knots - 2)
    span = span.clamp(0, n_knots - 2)
    # Pad k knots per side (any positive spacing) so that every window is in range; padded knots only ever feed
    # B-splines with index < 0 or ≥ G+k, which are dropped. Window j holds t_{j+1−k}, …, t_{j+k}.
    spacing = ((grid[:, -1:] - grid[:, :1]) / (n_knots - 1)).clamp_min(torch.finfo(grid.dtype).tiny)
    steps = torch.arange(1, k + 1, dtype=grid.dtype, device=grid.device)
    padded = torch.cat([grid[:, :1] - spacing * steps.flip(0), grid, grid[:, -1:] + spacing * steps], dim=1)
    windows = padded.unfold(1, 2 * k, 1)                                 # [in, n_knots + 1, 2k]
    rows = span + 1 + torch.arange(grid.shape[0], device=x.device) * windows.shape[1]
    knots = windows.reshape(-1, 2 * k).index_select(0, rows.reshape(-1)).view(*x.shape, 2 * k)
    left = [None] + [x - knots[..., k - r] for r in range(1, k + 1)]
    right = [None] + [knots[..., k - 1 + r] - x for r in range(1, k + 1)]
    return span, inside, left, right, 1.0


def bspline_local(x: torch.Tensor, grid: torch.Tensor, k: int):
    """The k+1 non-zero order-k B-splines at every ``x[B, in]`` and their x-derivatives.

    Returns ``(values[B, in, k+1], derivs[B, in, k+1], index[B, in, k+1])``: ``values[..., s]`` is
    ``B_{j−k+s}(x)`` with ``index = j−k+s`` clamped into ``[0, G+k)``; entries for B-splines that do not exist (near
    the ends, or x outside the knots) are 0 in both values and derivatives, so scattering with ``index`` is exact.
    """
    n_basis = grid.shape[1] - k - 1
    span, inside, left, right, scale = _span_geometry(x, grid, k)
    values, quotients = [inside.to(x.dtype)], []
    for d in range(1, k + 1):                                            # The NURBS Book, algorithm A2.2
        saved, nxt, quotients = None, [], []
        for r in range(d):
            q = values[r] / (right[r + 1] + left[d - r])                 # B_{m,d−1}/(t_{m+d} − t_m), span > 0
            quotients.append(q)
            nxt.append(right[r + 1] * q if saved is None else saved + right[r + 1] * q)
            saved = left[d - r] * q
        nxt.append(saved)
        values = nxt
    zero = torch.zeros_like(values[0])
    qs = [zero, *quotients, zero]                                        # B'_{j−k+s} = k·(q_{s−1} − q_s)
    # Stack on a leading dim (a plain copy) and view as [..., k+1]: stacking on the last dim is a slow strided copy.
    vals = torch.stack(values, 0).permute(1, 2, 0)
    derivs = (k * scale) * (torch.stack(qs[:-1], 0) - torch.stack(qs[1:], 0)).permute(1, 2, 0)
    index = (span - k).unsqueeze(-1) + torch.arange(k + 1, device=x.device)
    keep = (index >= 0) & (index < n_basis)
    return vals * keep, derivs * keep, index.clamp(0, n_basis - 1)


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Dense basis ``[B, in, G+k]`` (pykan's ``B_batch(x, grid, k)``), built from ``bspline_local``."""
    vals, _, index = bspline_local(x, grid, k)
    dense = x.new_zeros(x.shape[0], x.shape[1], grid.shape[1] - k - 1)
    return dense.scatter_add_(2, index, vals)


class _KanSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid, coef, k):
        B, n_in = x.shape
        n_out, n_basis = coef.shape[1], coef.shape[2]
        vals, derivs, index = bspline_local(x, grid, k)
        basis = x.new_zeros(B, n_in, n_basis).scatter_add_(2, index, vals).view(B, n_in * n_basis)
        weight = coef.permute(0, 2, 1).reshape(n_in * n_basis, n_out)   # [(i, m), o]
        ctx.save_for_backward(basis, derivs, index, weight)
        ctx.shape = (n_in, n_out, n_basis)
        return basis @ weight

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        basis, derivs, index, weight = ctx.saved_tensors
        n_in, n_out, n_basis = ctx.shape
        grad_x = grad_coef = None
        if ctx.needs_input_grad[0]:
            g = (grad_out @ weight.T).view(-1, n_in, n_basis)           # ∂y/∂B_m(x_i) contracted with grad_out
            grad_x = (g.gather(2, index) * derivs).sum(-1)
        if ctx.needs_input_grad[2]:
            grad_coef = (basis.T @ grad_out).view(n_in, n_basis, n_out).permute(0, 2, 1)
        if ctx.needs_input_grad[1]:
            raise RuntimeError("kan_spline: the grid is not trainable (no gradient with respect to knots)")
        return grad_x, None, grad_coef, None


def kan_spline_torch(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int) -> torch.Tensor:
    """``y[b, o] = Σ_i Σ_m coef[i, o, m]·B_m(x[b, i])`` for ``x[B, in]``, ``grid[in, G+2k+1]``, ``coef[in, out, G+k]``."""
    if x.dim() != 2 or grid.dim() != 2 or coef.dim() != 3:
        raise ValueError(f"kan_spline needs x[B, in], grid[in, G+2k+1], coef[in, out, G+k]; got shapes "
                         f"{tuple(x.shape)}, {tuple(grid.shape)}, {tuple(coef.shape)}")
    n_in = x.shape[1]
    if grid.shape[0] != n_in or coef.shape[0] != n_in or coef.shape[2] != grid.shape[1] - k - 1:
        raise ValueError(f"kan_spline shapes disagree for k={k}: x {tuple(x.shape)}, grid {tuple(grid.shape)} "
                         f"(needs [{n_in}, G+2k+1]), coef {tuple(coef.shape)} (needs [{n_in}, out, G+k])")
    return _KanSpline.apply(x, grid.to(x.dtype), coef, k)


def curve_to_coef(x: torch.Tensor, y: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Least-squares B-spline coefficients ``coef[in, out, G+k]`` with ``Σ_m coef[i,o,m]·B_m(x[:, i]) ≈ y[:, i, o]``.

    Same solve as pykan's ``curve2coef`` (``torch.linalg.lstsq``, default driver), with all outputs of an input
    sharing one design matrix instead of pykan's per-(input, output) copy.
    """
    design = bspline_basis(x, grid, k).permute(1, 0, 2)                 # [in, B, n]
    sol = torch.linalg.lstsq(design, y.permute(1, 0, 2)).solution         # [in, n, out]
    return sol.permute(0, 2, 1).contiguous()


def grid_from_samples(x: torch.Tensor, grid_size: int, k: int, grid_eps: float = 0.02) -> torch.Tensor:
    """pykan's adaptive grid: ``grid_eps·uniform + (1−grid_eps)·percentiles`` of ``x[B, in]``, then extended."""
    batch = x.shape[0]
    x_sorted = torch.sort(x, dim=0)[0]
    ids = [int(batch / grid_size * i) for i in range(grid_size)] + [-1]
    adaptive = x_sorted[ids, :].T                                        # [in, G+1]
    h = (adaptive[:, -1:] - adaptive[:, :1]) / grid_size
    uniform = adaptive[:, :1] + h * torch.arange(grid_size + 1, dtype=x.dtype, device=x.device)[None, :]
    return extend_grid(grid_eps * uniform + (1 - grid_eps) * adaptive, k)
