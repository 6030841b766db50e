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
    """Knot span ``j`` of every x (``t_j ≤ x < t_{j+1}``, clamped into the knots), whether x lies inside the knots,
    the distances ``x − t_{j+1−r}`` and ``t_{j+r} − x`` (r = 1..k) that de Boor's triangle needs, whether those are
    in units of an even spacing h (then every triangle denominator t_{m+d} − t_m is the integer d), the factor
    turning derivatives into ``∂/∂x``, and the raw span range ``(lo, hi)``.

    On an evenly spaced grid (pykan's default, and any grid built from a range) the distances are ``f + r − 1`` and
    ``r − f`` with ``f`` the position inside the span: no search, no gathers. Otherwise the span comes from
    ``searchsorted`` and the knots from one gather of a 2k-wide window per input.
    """
    n_knots = grid.shape[1]
    h = _uniform_spacing(grid)
    if h is not None:
        # Position in units of h with t_0 at 0, in float64 at least: the fraction f = u − floor(u) would otherwise
        # lose log2(G+2k) bits of a float32 input (measured: 1e-6 error in B vs 1e-7 through the knots).
        wide = torch.promote_types(x.dtype, torch.float64)
        u = (x.to(wide) - grid[:, 0].to(wide)) / h.to(wide)               # differentiable in x
        raw = u.detach().floor()
        lo, hi = (float(v) for v in raw.aminmax())
        inside = (raw >= 0) & (raw <= n_knots - 2) if lo < 0 or hi > n_knots - 2 else None
        span = raw.clamp_(0, n_knots - 2)
        f = (u - span).to(x.dtype)
        left = [None, f] + [f + (r - 1) for r in range(2, k + 1)]
        right = [None] + [r - f for r in range(1, k + 1)]
        return span.long(), inside, left, right, True, (1.0 / h)[:, None], (lo, hi)
    raw = torch.searchsorted(grid.contiguous(), x.detach().T.contiguous(), right=True).T - 1
    lo, hi = (int(v) for v in raw.aminmax())
    inside = (raw >= 0) & (raw <= n_knots - 2) if lo < 0 or hi > n_knots - 2 else None
    span = raw.clamp(0, n_knots - 2)
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
    return span, inside, left, right, False, 1.0, (lo, hi)


_PIECES: dict = {}


def _cardinal_pieces(k: int, dtype, device):
    """``P[k+1, k+1]`` with ``B_{j−k+s}(x) = Σ_p f^p·P[p, s]`` on an evenly spaced grid, f = (x − t_j)/h ∈ [0, 1):
    the k+1 polynomial pieces of the cardinal B-spline, found once per k by evaluating de Boor's triangle at k+1
    points and solving the Vandermonde system in float64 (exact up to rounding: the pieces have degree k)."""
    key = (k, dtype, device)
    if key not in _PIECES:
        f = (torch.arange(k + 1, dtype=torch.float64) + 0.5) / (k + 1)
        values = [torch.ones_like(f)]
        for d in range(1, k + 1):
            saved, nxt = None, []
            for r in range(d):
                q = values[r] / d
                nxt.append((r + 1 - f) * q if saved is None else saved + (r + 1 - f) * q)
                saved = (f + d - r - 1) * q
            nxt.append(saved)
            values = nxt
        vandermonde = f[:, None] ** torch.arange(k + 1, dtype=torch.float64)
        _PIECES[key] = torch.linalg.solve(vandermonde, torch.stack(values, 1)).to(dtype=dtype, device=device)
    return _PIECES[key]


def bspline_local(x: torch.Tensor, grid: torch.Tensor, k: int, derivatives: bool = True):
    """The k+1 non-zero order-k B-splines at every ``x[B, in]`` and (optionally) their x-derivatives.

    Returns ``(values[B, in, k+1], derivs[B, in, k+1] or None, index[B, in, k+1])``: ``values[..., s]`` is
    ``B_{j−k+s}(x)`` with ``index = j−k+s`` clamped into ``[0, G+k)``; entries for B-splines that do not exist (near
    the ends, or x outside the knots) are 0 in both values and derivatives, so scattering with ``index`` is exact.
    When every x lies in the grid range ``[t_k, t_{G+k})`` (the usual case) no masking is needed and none is done.
    """
    n_basis = grid.shape[1] - k - 1
    span, inside, left, right, unit, scale, (lo, hi) = _span_geometry(x, grid, k)
    if unit:
        # Evenly spaced knots: the k+1 values are fixed polynomials of f (= left[1]) — evaluate them as one small
        # matmul of the powers of f, instead of the O(k²) elementwise triangle.
        pieces = _cardinal_pieces(k, x.dtype, x.device)
        f = left[1]
        powers = [torch.ones_like(f), f]
        for _ in range(2, k + 1):
            powers.append(powers[-1] * f)
        # Powers on a leading dim so both contractions are plain 2-D matmuls ([k+1, k+1] @ [k+1, B·in]).
        power = torch.stack(powers, 0).view(k + 1, -1)
        vals = (pieces.T @ power).view(k + 1, *x.shape)
        derivs = None
        if derivatives:
            slopes = pieces[1:] * torch.arange(1, k + 1, dtype=x.dtype, device=x.device)[:, None]
            derivs = (slopes.T @ power[:k]).view(k + 1, *x.shape) * scale.view(-1)     # scale: 1/h per input
        if inside is not None:
            vals, derivs = vals * inside, (None if derivs is None else derivs * inside)
        vals, derivs = vals.permute(1, 2, 0), (None if derivs is None else derivs.permute(1, 2, 0))
        return _finish(vals, derivs, span, k, n_basis, lo, hi)
    if inside is not None:
        first = inside.to(x.dtype)
    else:                                   # all inside: B_{j,0} = 1 (a tensor only where k = 1 needs one)
        first = torch.ones_like(right[1]) if k == 1 else 1.0
    values, quotients = [first], []
    for d in range(1, k + 1):                                            # The NURBS Book, algorithm A2.2
        saved, nxt, quotients = None, [], []
        for r in range(d):
            # B_{m,d−1}/(t_{m+d} − t_m): the span is > 0 (it contains [t_j, t_{j+1})) and equals d on a unit grid
            q = values[r] * (1.0 / d) if unit else values[r] / (right[r + 1] + left[d - r])
            quotients.append(q)
            nxt.append(right[r + 1] * q if saved is None else saved + right[r + 1] * q)
            saved = left[d - r] * q
        nxt.append(saved)
        values = nxt
    # Stack on a leading dim (a plain copy) and view as [..., k+1]: stacking on the last dim is a slow strided copy.
    vals = torch.stack(values, 0).permute(1, 2, 0)
    derivs = None
    if derivatives:                                                      # B'_{j−k+s} = k·(q_{s−1} − q_s)
        zero = torch.zeros_like(quotients[0])
        qs = [zero, *quotients, zero]
        derivs = (torch.stack(qs[:-1], 0) - torch.stack(qs[1:], 0)).permute(1, 2, 0) * (k * scale)
    return _finish(vals, derivs, span, k, n_basis, lo, hi)


def _finish(vals, derivs, span, k: int, n_basis: int, lo, hi):
    """Indices ``j−k+s`` of the local values; drop B-splines that do not exist (only needed near the ends)."""
    index = (span - k).unsqueeze(-1) + torch.arange(k + 1, device=span.device)
    if lo >= k and hi <= n_basis - 1:                                    # all B_{j−k}, …, B_j exist
        return vals, derivs, index
    keep = (index >= 0) & (index < n_basis)
    return vals * keep, (None if derivs is None else derivs * keep), index.clamp_(0, n_basis - 1)


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Dense basis ``[B, in, G+k]`` (pykan's ``B_batch(x, grid, k)``), built from ``bspline_local``."""
    vals, _, index = bspline_local(x, grid, k, derivatives=False)
    dense = x.new_zeros(x.shape[0], x.shape[1], grid.shape[1] - k - 1)
    return dense.scatter_add_(2, index, vals)


class _KanSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid, coef, k):
        B, n_in = x.shape
        n_out, n_basis = coef.shape[1], coef.shape[2]
        need_dx = ctx.needs_input_grad[0]
        vals, derivs, index = bspline_local(x, grid, k, derivatives=need_dx)
        basis = x.new_zeros(B, n_in, n_basis).scatter_add_(2, index, vals)
        # The derivatives are scattered too: a dense multiply-and-sum in backward beats gathering k+1 entries.
        dbasis = x.new_zeros(B, n_in, n_basis).scatter_add_(2, index, derivs) if need_dx else None
        weight = coef.permute(0, 2, 1).reshape(n_in * n_basis, n_out)   # [(i, m), o]
        basis = basis.view(B, n_in * n_basis)
        ctx.save_for_backward(basis, dbasis, weight)
        ctx.shape = (n_in, n_out, n_basis)
        return basis @ weight

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        basis, dbasis, weight = ctx.saved_tensors
        n_in, n_out, n_basis = ctx.shape
        grad_x = grad_coef = None
        if ctx.needs_input_grad[0]:
            g = (grad_out @ weight.T).view(-1, n_in, n_basis)           # ∂L/∂B_m(x_i)
            grad_x = (g * dbasis).sum(-1)
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
