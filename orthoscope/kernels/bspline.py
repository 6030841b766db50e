"""B-spline math for KAN layers, vectorized: the torch twin of ``orthoscope.kernels.kan_spline`` and its helpers.

Conventions follow pykan 0.2.8 (``kan/spline.py``) so that a layer built here equals pykan's ``KANLayer``:

* A layer with ``in`` inputs, ``G`` grid intervals and spline order ``k`` has a knot tensor ``grid[in, G+2k+1]``: the
  ``G+1`` knots of the grid range plus ``k`` extension knots on each side at the same spacing (``extend_grid``).
* There are ``n = G+k`` B-splines ``B_m`` of order k per input (Cox–de Boor: order 0 is the indicator of
  ``[t_m, t_{m+1})``, then ``B_{m,d} = (x−t_m)/(t_{m+d}−t_m)·B_{m,d−1} + (t_{m+d+1}−x)/(t_{m+d+1}−t_{m+1})·B_{m+1,d−1}``).
  Outside ``[t_0, t_{G+2k})`` every B-spline is 0, as in pykan.
* ``kan_spline(x, grid, coef, k)[b, o] = Σ_i Σ_m coef[i, o, m]·B_m(x[b, i])`` with ``coef[in, out, G+k]``; with
  ``base_weight[in, out]`` it adds ``Σ_i b(x[b, i])·base_weight[i, o]`` (b = SiLU or identity).

Speed (the reason this file exists): for an input in knot span j (``t_j ≤ x < t_{j+1}``) only ``B_{j−k}, …, B_j``
are non-zero. Those k+1 values are computed on ``[B, in]`` tensors — on an evenly spaced grid (pykan's default) as
fixed polynomials of the in-span position (one ``[2(k+1), k+1] @ [k+1, B·in]`` matmul gives values and slopes);
otherwise with de Boor's triangle (The NURBS Book, A2.2), O(k²) small elementwise ops instead of pykan's recursion
over ``[B, in, G+2k]`` tensors — then scattered into a dense basis that meets the coefficients in ONE matmul
(efficient-kan's idea). The basis is laid out m-major, ``[B, (m, i)]``: every elementwise pass then runs over
contiguous rows of ``in`` values (with ``in`` innermost the same passes are 2–5× slower), and the scatter of the
s-th local value of every input is one row-wise ``scatter_`` into the basis shifted by s blocks. A KAN layer's base
branch ``b(x)·scale_base`` rides along as one more basis block, so the whole layer is one matmul forward and two
backward (``∂weight = basisᵀ∂y``; ``∂basis = ∂y·weightᵀ``, of which ``∂x`` reads only the k+1 non-zero columns per
input, by gathers, times the saved local derivatives). At in = out = 64, batch 1024, G = 5 the three matmuls take
2.2 ms of the 4–5 ms of a forward+backward on one CPU thread with MKL's sgemm; in fp32 on the CPU they go to oneDNN
instead (``matmul_nt``), which takes 0.3 ms each there (BENCHMARKS.md, "KAN layer").

Every denominator in the triangle is a knot span that contains ``[t_j, t_{j+1})``, so it is positive: no 0/0 guards
are needed even with repeated knots. (pykan instead applies ``nan_to_num`` to the whole recursion step, which for
repeated knots can zero a valid term; the two agree whenever knots are distinct, e.g. every grid pykan builds from a
range or from distinct samples.) Derivatives use ``B'_{m,k} = k·(B_{m,k−1}/(t_{m+k}−t_m) −
B_{m+1,k−1}/(t_{m+k+1}−t_{m+1}))``, whose two quotients are exactly the last step of the triangle, so they cost
nothing extra; they are computed only when x needs a gradient. Double backward is not supported.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def _onednn_ready(*tensors: torch.Tensor) -> bool:
    """Whether ``matmul_nt`` can hand these fp32 CPU matrices to oneDNN (non-empty, 2-D, op present)."""
    return (_ONEDNN_LINEAR is not None and all(t.dtype == torch.float32 and t.device.type == "cpu" and t.dim() == 2
                                                and t.numel() for t in tensors))


def matmul_nt(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` for ``a[M, K]``, ``w[N, K]`` (any strides), no autograd.

    fp32 on the CPU goes to oneDNN's linear primitive (``torch.ops.mkldnn._linear_pointwise``, the op inductor's
    mkldnn fusions emit): on this project's AVX-512 AMD machine it runs the layer's ``[1024, 576] × [576, 64]``
    products in 0.30–0.34 ms where ``torch.mm`` (MKL's sgemm, whose fast kernels are for Intel CPUs) takes 0.70–0.74
    ms, also for transposed operands. It computes in fp32 (errors against a float64 product are of the same size as
    MKL's) unless the user lowered ``torch.backends.mkldnn.matmul.fp32_precision``. Other dtypes and devices, empty
    matrices, and torch builds without the op use ``torch.mm``."""
    if _onednn_ready(a, w):
        return _ONEDNN_LINEAR(a, w, None, "none", [None], "")
    return a @ w.T


def _find_onednn_linear():
    try:
        if torch.backends.mkldnn.is_available():
            return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        pass
    return None


_ONEDNN_LINEAR = _find_onednn_linear()


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


def _uniform_position(x: torch.Tensor, grid: torch.Tensor, h: torch.Tensor):
    """On an evenly spaced grid (pykan's default, and any grid built from a range): the knot span ``j`` of every x
    (``t_j ≤ x < t_{j+1}``, clamped into the knots), the position ``f = (x − t_j)/h`` inside it, whether x lies
    inside the knots (``None``: all do), and the raw span range ``(lo, hi)``. No search, no gathers.

    Numerics (fp32): the position is measured from the grid's centre, ``u = (x − t_c)/h`` with ``|u| ≤ (G+2k)/2``
    (x − t_c is exact for a centred grid), and ``f = u − (j − c)`` subtracts a coarser half-integer, which is exact:
    f carries only the one rounding of the division (≤ ½ ulp of |u|), not the log2(G+2k) bits that measuring from
    t_0 would lose. A j off by one at a knot (rounding in ``u + c``) only moves f to ≈ 0⁻ or 1⁺, where the pieces
    are continuous.
    """
    n_knots = grid.shape[1]
    half = (n_knots - 1) / 2
    u = (x - (grid[:, 0] + grid[:, -1]) / 2) / h
    raw = (u.detach() + half).floor_()
    lo, hi = (float(v) for v in raw.aminmax())
    inside = None
    if lo < 0 or hi > n_knots - 2:
        inside = (raw >= 0) & (raw <= n_knots - 2)
        raw.clamp_(0, n_knots - 2)
    f = u.sub_(raw - half)
    return raw.long(), f, inside, (lo, hi)


def _span_geometry(x: torch.Tensor, grid: torch.Tensor, k: int):
    """Knot span ``j`` of every x (``t_j ≤ x < t_{j+1}``, clamped into the knots), whether x lies inside the knots,
    the distances ``x − t_{j+1−r}`` and ``t_{j+r} − x`` (r = 1..k) that de Boor's triangle needs, and the raw span
    range ``(lo, hi)``, on any grid: the span from ``searchsorted``, the knots from one gather of a 2k-wide window
    per input."""
    n_knots = grid.shape[1]
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
    return span, inside, left, right, (lo, hi)


_PIECES: dict = {}


def _cardinal_pieces(k: int, slopes: bool, dtype, device):
    """``Pᵀ[k+1, k+1]`` with ``B_{j−k+s}(x) = Σ_p Pᵀ[s, p]·f^p`` on an evenly spaced grid, f = (x − t_j)/h ∈ [0, 1):
    the k+1 polynomial pieces of the cardinal B-spline, found once per k by evaluating de Boor's triangle at k+1
    points and solving the Vandermonde system in float64 (exact up to rounding: the pieces have degree k). With
    ``slopes``, k+1 more rows hold the pieces' f-derivatives ``Σ_p p·Pᵀ[s, p]·f^(p−1)`` (same powers of f)."""
    key = (k, slopes, dtype, device)
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
        pieces = torch.linalg.solve(vandermonde, torch.stack(values, 1)).T                  # [s, p]
        if slopes:
            slope = torch.zeros_like(pieces)
            slope[:, :k] = pieces[:, 1:] * torch.arange(1, k + 1, dtype=torch.float64)
            pieces = torch.cat([pieces, slope], 0)
        _PIECES[key] = pieces.to(dtype=dtype, device=device).contiguous()
    return _PIECES[key]


def _local_values(x: torch.Tensor, grid: torch.Tensor, k: int, derivatives: bool):
    """The k+1 non-zero order-k B-splines at every ``x[B, in]``, ``values[k+1, B, in]`` (``values[s]`` is
    ``B_{j−k+s}(x)`` for x in knot span j), their x-derivatives (or ``None``), ``first = j − k`` (``[B, in]``, long)
    and ``exact``: True when every ``j−k+s`` is a B-spline that exists (all x inside the grid range), so no entry
    was masked; otherwise entries of B-splines that do not exist (near the ends, or x outside the knots) are 0."""
    n_basis = grid.shape[1] - k - 1
    h = _uniform_spacing(grid)
    if h is not None:
        # Evenly spaced knots: the k+1 values are fixed polynomials of f — evaluate them as one small matmul of the
        # powers of f, instead of the O(k²) elementwise triangle.
        span, f, inside, (lo, hi) = _uniform_position(x, grid, h)
        powers = [torch.ones_like(f), f]
        for _ in range(2, k + 1):
            powers.append(powers[-1] * f)
        # Powers on a leading dim so the contraction is one plain 2-D matmul: [k+1 (values) + k+1 (slopes), k+1]
        # @ [k+1, B·in] (the matmul with the powers of f on the last dim is 5× slower).
        power = torch.stack(powers, 0).view(k + 1, -1)
        local = (_cardinal_pieces(k, derivatives, x.dtype, x.device) @ power).view(-1, *x.shape)
        vals = local[:k + 1]
        derivs = local[k + 1:].div_(h) if derivatives else None                     # d/dx = (d/df)/h
    else:
        span, inside, left, right, (lo, hi) = _span_geometry(x, grid, k)
        if inside is not None:
            first = inside.to(x.dtype)
        else:                               # all inside: B_{j,0} = 1 (a tensor only where k = 1 needs one)
            first = torch.ones_like(right[1]) if k == 1 else 1.0
        values, quotients = [first], []
        for d in range(1, k + 1):                                        # The NURBS Book, algorithm A2.2
            saved, nxt, quotients = None, [], []
            for r in range(d):
                # B_{m,d−1}/(t_{m+d} − t_m): the span is > 0 (it contains [t_j, t_{j+1}))
                q = values[r] / (right[r + 1] + left[d - r])
                quotients.append(q)
                nxt.append(right[r + 1] * q if saved is None else saved + right[r + 1] * q)
                saved = left[d - r] * q
            nxt.append(saved)
            values = nxt
        vals = torch.stack(values, 0)
        derivs = None
        if derivatives:                                                  # B'_{j−k+s} = k·(q_{s−1} − q_s)
            zero = torch.zeros_like(quotients[0])
            qs = [zero, *quotients, zero]
            derivs = (torch.stack(qs[:-1], 0) - torch.stack(qs[1:], 0)).mul_(k)
    first = span - k
    exact = inside is None and lo >= k and hi <= n_basis - 1             # all B_{j−k}, …, B_j exist
    if not exact:
        keep = (first + torch.arange(k + 1, device=x.device)[:, None, None] >= 0) & \
               (first + torch.arange(k + 1, device=x.device)[:, None, None] < n_basis)
        if inside is not None:
            keep &= inside
        vals = vals * keep
        derivs = None if derivs is None else derivs * keep
    return vals, derivs, first, exact


def _columns(first: torch.Tensor, k: int, n_basis: int, exact: bool) -> torch.Tensor:
    """Columns of the local B-splines in a basis laid out as ``[B, (m, i)]`` (m-major: column ``m·in + i``).

    Exact case (every ``B_{first+s}`` exists): ``[1, B, in]``, the column of s = 0 — that of s is ``+ s·in``, which
    the callers get by shifting a view of the basis, so only one small index is built. Otherwise ``[k+1, B, in]``
    with indices of B-splines that do not exist clamped into range (their values are 0)."""
    n_in = first.shape[1]
    lane = torch.arange(n_in, device=first.device)
    if exact:
        return (first * n_in).add_(lane).unsqueeze(0)
    m = first + torch.arange(k + 1, device=first.device)[:, None, None]
    return m.clamp_(0, n_basis - 1).mul_(n_in).add_(lane)


def _scatter_basis(out2d: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, exact: bool) -> None:
    """Write the local values ``vals[k+1, B, in]`` into the zeroed ``out2d[B, (m, i)]`` at ``cols``."""
    n_in = vals.shape[2]
    for s in range(vals.shape[0]):
        if exact:           # distinct columns per row: overwrite, into the view shifted by s basis functions
            out2d[:, s * n_in:].scatter_(1, cols[0], vals[s])
        else:               # clamped duplicates carry value 0: add
            out2d.scatter_add_(1, cols[s], vals[s])


def _gather_dot(g2d: torch.Tensor, cols: torch.Tensor, derivs: torch.Tensor, exact: bool) -> torch.Tensor:
    """``Σ_s g2d[b, col_s(b, i)]·derivs[s, b, i]``: ∂L/∂x from ∂L/∂basis, reading only the k+1 non-zero columns."""
    n_in = derivs.shape[2]
    out = None
    for s in range(derivs.shape[0]):
        picked = g2d[:, s * n_in:].gather(1, cols[0]) if exact else g2d.gather(1, cols[s])
        out = picked.mul_(derivs[s]) if out is None else out.addcmul_(picked, derivs[s])
    return out


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Dense basis ``[B, in, G+k]`` (pykan's ``B_batch(x, grid, k)``), built from the k+1 local values."""
    B, n_in = x.shape
    n_basis = grid.shape[1] - k - 1
    dense = x.new_zeros(B, n_basis, n_in)
    if B:
        vals, _, first, exact = _local_values(x, grid, k, derivatives=False)
        _scatter_basis(dense.view(B, -1), _columns(first, k, n_basis, exact), vals, exact)
    return dense.transpose(1, 2).contiguous()


BASE_FUNCTIONS = ("silu", "identity")


def _base_and_slope(x: torch.Tensor, base_fun: str, out: torch.Tensor, slope: bool):
    """Write ``b(x)`` into ``out`` and return ``b'(x)`` (or None): SiLU ``x·σ(x)``, ``σ(x)·(1 + x·(1 − σ(x)))``."""
    if base_fun == "identity":
        out.copy_(x)
        return torch.ones_like(x) if slope else None
    sig = torch.sigmoid(x)
    torch.mul(x, sig, out=out)
    return sig * (1 + x * (1 - sig)) if slope else None


class _KanSpline(torch.autograd.Function):
    """Forward is ONE matmul ``basis[B, (m, i)] @ weight[(m, i), out]``: the dense basis holds the G+k B-splines of
    every input (m-major, so each basis function is a contiguous block of ``in`` columns) and, when a base branch is
    folded in, ``b(x)`` as one more "basis function" with ``base_weight`` as its coefficients. Backward is two
    matmuls: ``∂weight = basisᵀ @ ∂y``, and ``∂basis = ∂y @ weightᵀ`` from which ``∂x`` takes only the k+1 columns
    of each input that are non-zero (a gather), times the saved local derivatives."""

    @staticmethod
    def forward(ctx, x, grid, coef, k, base_weight, base_fun):
        B, n_in = x.shape
        n_out, n_basis = coef.shape[1], coef.shape[2]
        n_cols = n_basis + (base_weight is not None)
        need_x = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[2] or ctx.needs_input_grad[4]
        # weight[(m, i), o] = coef[i, o, m]; the base branch's coefficients are the last block
        weight = x.new_empty(n_cols, n_in, n_out)
        weight[:n_basis].copy_(coef.permute(2, 0, 1))
        basis = x.new_zeros(B, n_cols, n_in)
        derivs = cols = slope = None
        exact = True
        if B:
            vals, derivs, first, exact = _local_values(x, grid, k, derivatives=need_x)
            cols = _columns(first, k, n_basis, exact)
            _scatter_basis(basis.view(B, -1), cols, vals, exact)
        if base_weight is not None:
            weight[n_basis].copy_(base_weight)
            slope = _base_and_slope(x, base_fun, basis[:, n_basis], need_x)
        basis, weight = basis.view(B, n_cols * n_in), weight.view(n_cols * n_in, n_out)
        ctx.save_for_backward(basis if need_w else None, weight if need_x else None, derivs,
                              cols if need_x else None, slope)
        ctx.shape = (n_in, n_out, n_basis, exact)
        return matmul_nt(basis, weight.T)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        basis, weight, derivs, cols, slope = ctx.saved_tensors
        n_in, n_out, n_basis, exact = ctx.shape
        B = grad_out.shape[0]
        if ctx.needs_input_grad[1]:
            raise RuntimeError("kan_spline: the grid is not trainable (no gradient with respect to knots)")
        grad_x = grad_coef = grad_base = None
        if ctx.needs_input_grad[0]:
            g = matmul_nt(grad_out, weight)                              # ∂L/∂basis, [B, (m, i)]
            if B:
                grad_x = _gather_dot(g, cols, derivs, exact)
            else:
                grad_x = g.new_zeros(0, n_in)
            if slope is not None:
                grad_x += g.view(B, n_basis + 1, n_in)[:, n_basis] * slope
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[4]:
            # ∂weight = basisᵀ∂y, computed as (∂yᵀ·basis)ᵀ: [(m, i), o] → [m, i, o] (a strided view)
            gw = matmul_nt(grad_out.T, basis.T).T.view(-1, n_in, n_out)
            # contiguous in coef's layout: autograd's elementwise backward (e.g. of coef·scale_sp) on a permuted
            # view reduces over a strided dim and costs 10× this copy (measured: 146 µs vs 12 µs per layer)
            grad_coef = gw[:n_basis].permute(1, 2, 0).contiguous() if ctx.needs_input_grad[2] else None
            grad_base = gw[n_basis] if ctx.needs_input_grad[4] else None
        return grad_x, None, grad_coef, None, grad_base, None


def kan_spline_torch(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int,
                     base_weight: torch.Tensor | None = None, base_fun: str = "silu") -> torch.Tensor:
    """``y[b, o] = Σ_i Σ_m coef[i, o, m]·B_m(x[b, i])`` for ``x[B, in]``, ``grid[in, G+2k+1]``, ``coef[in, out, G+k]``,
    plus ``Σ_i b(x[b, i])·base_weight[i, o]`` when ``base_weight[in, out]`` is given (b = ``base_fun``: "silu" or
    "identity") — a KAN layer's base branch folded into the same matmul."""
    if x.dim() != 2 or grid.dim() != 2 or coef.dim() != 3:
        raise ValueError(f"kan_spline needs x[B, in], grid[in, G+2k+1], coef[in, out, G+k]; got shapes "
                         f"{tuple(x.shape)}, {tuple(grid.shape)}, {tuple(coef.shape)}")
    n_in = x.shape[1]
    if grid.shape[0] != n_in or coef.shape[0] != n_in or coef.shape[2] != grid.shape[1] - k - 1:
        raise ValueError(f"kan_spline shapes disagree for k={k}: x {tuple(x.shape)}, grid {tuple(grid.shape)} "
                         f"(needs [{n_in}, G+2k+1]), coef {tuple(coef.shape)} (needs [{n_in}, out, G+k])")
    if base_weight is not None and tuple(base_weight.shape) != (n_in, coef.shape[1]):
        raise ValueError(f"kan_spline: base_weight must have shape [in, out] = [{n_in}, {coef.shape[1]}], got "
                         f"{tuple(base_weight.shape)}")
    if base_fun not in BASE_FUNCTIONS:
        raise ValueError(f"kan_spline: base_fun must be one of {BASE_FUNCTIONS}, got {base_fun!r}")
    return _KanSpline.apply(x, grid.to(x.dtype), coef, k, base_weight, base_fun)


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
