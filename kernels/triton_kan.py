"""KAN spline branch: B-spline basis evaluation fused with the coefficient contraction, forward and backward, in
Triton (twin: ``reference.kan_spline``; conventions of pykan 0.2.8, see ``orthoscope/kernels/bspline.py``).

    y[b, o] = Σ_i Σ_m coef[i, o, m]·B_m(x[b, i])         x[B, in], grid[in, G+2k+1], coef[in, out, G+k]

For an x in knot span j (``t_j ≤ x < t_{j+1}``, found by counting knots ≤ x) only ``B_{j−k} … B_j`` are non-zero.
They come from de Boor's triangle (The NURBS Book A2.2) on the distances ``left_r = x − t_{j+1−r}`` and
``right_r = t_{j+r} − x`` (r = 1…k), kept as tuples of [BM] vectors (k is a compile-time constant), and their
derivatives from the last level's quotients: ``B'_{j−k+s} = k·(q_{s−1} − q_s)``. Outside ``[t_0, t_last)`` every
B-spline is 0, as in pykan. Knots beyond the ends (needed only by B-splines that do not exist) are extrapolated at
the mean spacing so every denominator stays positive, exactly as the twin pads them.

The k+1 values are spread into a dense [BM, NB] tile (NB = next power of two ≥ G+k, ≥ 16) that meets the
coefficients in one ``tl.dot`` per input, so the [B, in, G+k] basis is never written to memory:

* forward: one program per (row tile, output tile), looping over inputs;
* ``∂L/∂coef[i, o, m] = Σ_b B_m(x[b, i])·g[b, o]``: one program per (input, output tile), looping over rows;
* ``∂L/∂x[b, i] = Σ_m B'_m(x[b, i])·Σ_o g[b, o]·coef[i, o, m]``: one program per (row tile, input).
All arithmetic is fp32 (``input_precision="ieee"``); the basis is recomputed in each kernel (O(k²) per entry).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (autocast_cast, check_device, check_float, check_same_dtype, check_unit_stride,
                            interpreting, pow2, unit_stride_2d)


@triton.jit
def _knot(g_ptr, p, n_knots, spacing):
    """Knot t_p of one row for any integer p (extrapolated at ``spacing`` beyond both ends)."""
    q = tl.minimum(tl.maximum(p, 0), n_knots - 1)
    return tl.load(g_ptr + q).to(tl.float32) + (p - q).to(tl.float32) * spacing


@triton.jit
def _local_basis(x, g_ptr, n_knots, K: tl.constexpr, NK: tl.constexpr):
    """(values, derivatives, span j): tuples of k+1 [BM] vectors for B_{j−k+s}(x), s = 0…k."""
    ks = tl.arange(0, NK)
    knots = tl.load(g_ptr + ks, mask=ks < n_knots, other=float("inf")).to(tl.float32)
    t_first = tl.load(g_ptr).to(tl.float32)
    t_last = tl.load(g_ptr + n_knots - 1).to(tl.float32)
    spacing = (t_last - t_first) / (n_knots - 1)
    span = tl.sum((knots[None, :] <= x[:, None]).to(tl.int32), axis=1) - 1
    inside = (span >= 0) & (span <= n_knots - 2)
    span = tl.minimum(tl.maximum(span, 0), n_knots - 2)
    left = (0.0,)
    right = (0.0,)
    for r in tl.static_range(1, K + 1):
        left = left + (x - _knot(g_ptr, span + 1 - r, n_knots, spacing),)
        right = right + (_knot(g_ptr, span + r, n_knots, spacing) - x,)
    values = (tl.where(inside, 1.0, 0.0),)
    quotients = (0.0,)
    for d in tl.static_range(1, K + 1):
        saved = tl.zeros_like(x)
        nxt = ()
        quotients = ()
        for r in tl.static_range(d):
            q = values[r] / (right[r + 1] + left[d - r])       # a knot span containing [t_j, t_j+1): > 0
            quotients = quotients + (q,)
            nxt = nxt + (saved + right[r + 1] * q,)
            saved = left[d - r] * q
        values = nxt + (saved,)
    derivs = (-K * quotients[0],)
    for s in tl.static_range(1, K):
        derivs = derivs + (K * (quotients[s - 1] - quotients[s]),)
    derivs = derivs + (K * quotients[K - 1],)
    return values, derivs, span


@triton.jit
def _dense(vals, span, n_basis, K: tl.constexpr, NB: tl.constexpr, BM: tl.constexpr):
    """Spread the k+1 local values into a [BM, NB] tile over basis index m (dropping m outside [0, G+k))."""
    m = tl.arange(0, NB)[None, :]
    tile = tl.zeros((BM, NB), dtype=tl.float32)
    for s in tl.static_range(K + 1):
        idx = (span - K + s)[:, None]
        tile += tl.where((m == idx) & (m < n_basis), vals[s][:, None], 0.0)
    return tile


@triton.jit
def _kan_fwd(x_ptr, g_ptr, c_ptr, y_ptr, B, n_in, n_out, n_knots, stride_xb, stride_gi, stride_ci, stride_co,
             stride_yb, K: tl.constexpr, NK: tl.constexpr, NB: tl.constexpr, BM: tl.constexpr, BO: tl.constexpr):
    rows = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    outs = tl.program_id(1) * BO + tl.arange(0, BO)
    ms = tl.arange(0, NB)
    n_basis = n_knots - K - 1
    acc = tl.zeros((BM, BO), dtype=tl.float32)
    for i in range(n_in):
        x = tl.load(x_ptr + rows * stride_xb + i, mask=rows < B, other=0.0).to(tl.float32)
        vals, _, span = _local_basis(x, g_ptr + i * stride_gi, n_knots, K, NK)
        basis = _dense(vals, span, n_basis, K, NB, BM)
        coef = tl.load(c_ptr + i * stride_ci + outs[None, :] * stride_co + ms[:, None],
                       mask=(ms < n_basis)[:, None] & (outs < n_out)[None, :], other=0.0).to(tl.float32)
        acc += tl.dot(basis, coef, input_precision="ieee")
    tl.store(y_ptr + rows[:, None] * stride_yb + outs[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rows < B)[:, None] & (outs < n_out)[None, :])


@triton.jit
def _kan_grad_coef(x_ptr, g_ptr, dy_ptr, dc_ptr, B, n_out, n_knots, stride_xb, stride_gi, stride_dyb, stride_ci,
                   stride_co, K: tl.constexpr, NK: tl.constexpr, NB: tl.constexpr, BM: tl.constexpr,
                   BO: tl.constexpr):
    i = tl.program_id(0)
    outs = tl.program_id(1) * BO + tl.arange(0, BO)
    ms = tl.arange(0, NB)
    n_basis = n_knots - K - 1
    acc = tl.zeros((NB, BO), dtype=tl.float32)
    for b0 in range(0, B, BM):
        rows = (b0 + tl.arange(0, BM)).to(tl.int64)
        x = tl.load(x_ptr + rows * stride_xb + i, mask=rows < B, other=0.0).to(tl.float32)
        vals, _, span = _local_basis(x, g_ptr + i * stride_gi, n_knots, K, NK)
        basis = tl.where((rows < B)[:, None], _dense(vals, span, n_basis, K, NB, BM), 0.0)
        dy = tl.load(dy_ptr + rows[:, None] * stride_dyb + outs[None, :],
                     mask=(rows < B)[:, None] & (outs < n_out)[None, :], other=0.0).to(tl.float32)
        acc += tl.dot(tl.trans(basis), dy, input_precision="ieee")
    tl.store(dc_ptr + i * stride_ci + outs[None, :] * stride_co + ms[:, None], acc.to(dc_ptr.dtype.element_ty),
             mask=(ms < n_basis)[:, None] & (outs < n_out)[None, :])


@triton.jit
def _kan_grad_x(x_ptr, g_ptr, c_ptr, dy_ptr, dx_ptr, B, n_out, n_knots, stride_xb, stride_gi, stride_ci, stride_co,
                stride_dyb, K: tl.constexpr, NK: tl.constexpr, NB: tl.constexpr, BM: tl.constexpr,
                BO: tl.constexpr):
    rows = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    i = tl.program_id(1)
    ms = tl.arange(0, NB)
    n_basis = n_knots - K - 1
    gb = tl.zeros((BM, NB), dtype=tl.float32)                  # Σ_o g[b, o]·coef[i, o, m]
    for o0 in range(0, n_out, BO):
        outs = o0 + tl.arange(0, BO)
        dy = tl.load(dy_ptr + rows[:, None] * stride_dyb + outs[None, :],
                     mask=(rows < B)[:, None] & (outs < n_out)[None, :], other=0.0).to(tl.float32)
        coef = tl.load(c_ptr + i * stride_ci + outs[:, None] * stride_co + ms[None, :],
                       mask=(outs < n_out)[:, None] & (ms < n_basis)[None, :], other=0.0).to(tl.float32)
        gb += tl.dot(dy, coef, input_precision="ieee")
    x = tl.load(x_ptr + rows * stride_xb + i, mask=rows < B, other=0.0).to(tl.float32)
    _, ders, span = _local_basis(x, g_ptr + i * stride_gi, n_knots, K, NK)
    dx = tl.sum(gb * _dense(ders, span, n_basis, K, NB, BM), axis=1)
    tl.store(dx_ptr + rows * stride_xb + i, dx.to(dx_ptr.dtype.element_ty), mask=rows < B)


# ---- launchers ----------------------------------------------------------------------------------------------------

def _blocks(B: int, n_out: int) -> tuple[int, int]:
    if interpreting():
        return min(pow2(B), 128), min(pow2(n_out), 64)
    return 64, min(pow2(n_out), 64)


def check_kan(x, grid, coef, k) -> None:
    op = "kan_spline"
    for name, t in (("x", x), ("grid", grid), ("coef", coef)):
        check_float(op, name, t)
    check_same_dtype(op, x=x, grid=grid, coef=coef)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"{op}: k must be an integer ≥ 1 (spline order; 3 = cubic), got {k!r}")
    if x.dim() != 2 or grid.dim() != 2 or coef.dim() != 3:
        raise ValueError(f"kan_spline needs x[B, in], grid[in, G+2k+1], coef[in, out, G+k]; got shapes "
                         f"{tuple(x.shape)}, {tuple(grid.shape)}, {tuple(coef.shape)}")
    n_in = x.shape[1]
    if grid.shape[0] != n_in or coef.shape[0] != n_in or coef.shape[2] != grid.shape[1] - k - 1 or coef.shape[2] < 1:
        raise ValueError(f"kan_spline shapes disagree for k={k}: x {tuple(x.shape)}, grid {tuple(grid.shape)} "
                         f"(needs [{n_in}, G+2k+1]), coef {tuple(coef.shape)} (needs [{n_in}, out, G+k])")
    for name, t in (("x", x), ("grid", grid), ("coef", coef)):
        check_unit_stride(op, name, t)
    check_device(op, x=x, grid=grid, coef=coef)


def _consts(grid: torch.Tensor, k: int) -> dict:
    n_knots = grid.shape[1]
    return dict(K=k, NK=pow2(n_knots, 2), NB=pow2(n_knots - k - 1))


def kan_forward(x, grid, coef, k):
    B, n_in = x.shape
    n_out = coef.shape[1]
    y = torch.empty(B, n_out, dtype=x.dtype, device=x.device)
    bm, bo = _blocks(B, n_out)
    if B and n_out:
        _kan_fwd[(triton.cdiv(B, bm), triton.cdiv(n_out, bo))](
            x, grid, coef, y, B, n_in, n_out, grid.shape[1], x.stride(0), grid.stride(0), coef.stride(0),
            coef.stride(1), y.stride(0), BM=bm, BO=bo, num_warps=4, **_consts(grid, k))
    return y


def kan_backward(x, grid, coef, k, dy, need_x: bool, need_coef: bool):
    B, n_in = x.shape
    n_out = coef.shape[1]
    bm, bo = _blocks(B, n_out)
    dx = dcoef = None
    if need_coef:
        dcoef = torch.empty_like(coef, memory_format=torch.contiguous_format)
        _kan_grad_coef[(n_in, triton.cdiv(n_out, bo))](
            x, grid, dy, dcoef, B, n_out, grid.shape[1], x.stride(0), grid.stride(0), dy.stride(0),
            dcoef.stride(0), dcoef.stride(1), BM=bm, BO=bo, num_warps=4, **_consts(grid, k))
    if need_x:
        dx = torch.empty_like(x, memory_format=torch.contiguous_format)
        _kan_grad_x[(triton.cdiv(B, bm), n_in)](
            x, grid, coef, dy, dx, B, n_out, grid.shape[1], x.stride(0), grid.stride(0), coef.stride(0),
            coef.stride(1), dy.stride(0), BM=bm, BO=bo, num_warps=4, **_consts(grid, k))
    return dx, dcoef


class KanSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid, coef, k):
        ctx.save_for_backward(x, grid, coef)
        ctx.k = k
        return kan_forward(x, grid, coef, k)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, grid, coef = ctx.saved_tensors
        if ctx.needs_input_grad[1]:
            raise RuntimeError("kan_spline: the grid is not trainable (no gradient with respect to knots)")
        dy = grad_y if grad_y.stride(-1) == 1 else grad_y.contiguous()
        dx, dcoef = kan_backward(x, grid, coef, ctx.k, dy, ctx.needs_input_grad[0], ctx.needs_input_grad[2])
        return dx, None, dcoef, None


def kan_spline(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int,
               base_weight: torch.Tensor | None = None, base_fun: str = "silu") -> torch.Tensor:
    """Triton ``kan_spline`` (same signature and value as ``reference.kan_spline``). The grid is used in x's dtype,
    as the twin does. The optional base branch ``base_fun(x) @ base_weight`` is a plain torch matmul added to the
    kernel's spline output (cuBLAS does it well; fusing it would not save a pass over the basis, which the kernel
    never writes)."""
    if base_weight is not None:
        import torch.nn.functional as F

        if base_fun not in ("silu", "identity"):
            raise ValueError(f"kan_spline: base_fun must be one of ('silu', 'identity'), got {base_fun!r}")
        if tuple(base_weight.shape) != (x.shape[-1], coef.shape[1] if coef.dim() == 3 else -1):
            raise ValueError(f"kan_spline: base_weight must have shape [in, out], got {tuple(base_weight.shape)}")
        base = F.silu(x) if base_fun == "silu" else x
        return kan_spline(x, grid, coef, k) + base @ base_weight.to(base.dtype)
    x, coef = autocast_cast(x, coef)
    tensors = [x, grid, coef]
    if all(isinstance(t, torch.Tensor) for t in tensors) and x.dim() == 2 and grid.dim() == 2 and coef.dim() == 3:
        if grid.dtype != x.dtype and grid.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            grid = grid.to(x.dtype)
        x = unit_stride_2d(x, x.shape[1])
        grid = unit_stride_2d(grid, grid.shape[1])
        coef = coef if coef.stride(-1) == 1 or coef.shape[-1] == 1 else coef.contiguous()
    check_kan(x, grid, coef, k)
    return KanSpline.apply(x, grid, coef, k)
