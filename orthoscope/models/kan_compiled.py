"""Opt-in compiled KAN layer: ``KANLinear(..., compile=True)``, the same function as the eager path, in fewer passes.

On an evenly spaced grid (pykan's default: every grid built from a range) every B-spline is a shifted copy of one
cardinal B-spline ``N_k`` of the knot spacing h: ``B_m(x) = N_k(t)`` with ``t = (x − t_m)/h``, ``N_k`` a piecewise
polynomial on ``[0, k+1)`` (the pieces of ``kan_spline._cardinal_pieces``) and 0 outside. So the dense basis
``[B, (m, i)]`` is a pure elementwise function of x — no span search, no scatter — and ``torch.compile`` (inductor)
turns its construction, the SiLU block, and the folding of the scales into the weight into ONE generated C++ loop
nest; in backward, ∂x (Σ_m ∂basis·N'_k(t)/h + the SiLU slope) and the scale gradients into one more. The three
matmuls stay outside the compiled graphs (``kan_spline.matmul_nt``: oneDNN in fp32 on the CPU, which inductor's
``mm`` does not reach). ``N_k`` is evaluated on its symmetric half: with ``c = (k+1)/2``, ``N_k(t) = N_k(c + |t−c|)``
and ``N'_k(t) = sign(t−c)·N'_k(c + |t−c|)``, which halves the ``where`` chain (2 pieces for k = 3).

Numerics: ``t = u − (m − half)`` with ``u = (x − t_centre)/h`` is exact in fp32 (the same argument as
``kan_spline._uniform_position``), so t carries only the rounding of u, as the eager path's in-span position does;
the pieces are then evaluated by Horner's rule instead of the eager path's power matmul (differences of a few fp32
ulps; the test checks outputs and all gradients against the eager layer). One convention differs on a set of
measure zero: exactly on a knot where ``N'_1`` jumps (k = 1 only) the slope may be the other one-sided value.

Cost: the first call of each configuration (k, base function, outside policy, shapes) compiles two graphs: 8.4 s
with gcc 12 on the 2-core machine and an empty inductor cache, ~2 s when inductor's on-disk cache holds the code; a
new batch size recompiles once, after which the batch dim is dynamic. Gain there at in = out = 64, batch 1024,
G = 5: forward+backward 1.62 ms vs the eager layer's 2.68 ms on 1 thread (BENCHMARKS.md, "KAN layer").
Non-uniform grids (after ``update_grid``) use the eager path; double backward is not supported (as eager).
"""
from __future__ import annotations

import math
import warnings

import torch
from torch.autograd.function import once_differentiable

from ..kernels.bspline import _cardinal_pieces, matmul_nt


def cxx_compiler_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot build CPU kernels here (no C++ compiler that inductor accepts), else None."""
    if device.type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as err:       # inductor raises InvalidCxxCompiler; an import failure means no inductor at all
        return f"{type(err).__name__}: {err}".strip()
    return None


def _right_half(k: int):
    """``c`` and the pieces of ``N_k`` on ``[c, k+1)``: ``(q, value coeffs, slope coeffs)`` for ``t ∈ [q, q+1)``,
    as polynomials of ``f = t − q`` (lowest power first). Piece q of ``N_k`` is ``B_{j−k+s}``, ``s = k − q``."""
    pieces = _cardinal_pieces(k, True, torch.float64, "cpu")
    c = (k + 1) / 2
    return c, [(q, pieces[k - q].tolist(), pieces[2 * k + 1 - q, :k].tolist())
               for q in range(math.floor(c), k + 1)]


def _horner(coeffs, f):
    out = coeffs[-1]
    for a in reversed(coeffs[:-1]):
        out = out * f + a
    return out


def _cardinal(t: torch.Tensor, half, slope: bool) -> torch.Tensor:
    """``N_k(t)`` (or ``N'_k(t)``, d/dt) elementwise, from ``half = _right_half(k)``; 0 outside ``[0, k+1)``."""
    c, pieces = half
    a = t - c
    tr = a.abs() + c                                     # t reflected into the right half, ≥ c
    out = 0.0
    for q, value, slopes in reversed(pieces):            # the smallest q with tr < q+1 wins
        out = torch.where(tr < q + 1, _horner(slopes if slope else value, tr - q), out)
    return torch.where(a >= 0, out, -out) if slope else out


def _positions(x, center, h, n_basis: int, k: int):
    """``t[b, m, i] = (x[b, i] − t_m)/h`` for the n_basis B-splines; ``t_m = t_centre + (m − half)·h``."""
    half = (n_basis + k) / 2
    offsets = torch.arange(n_basis, dtype=x.dtype, device=x.device) - half          # exact half-integers
    return ((x - center) / h)[:, None, :] - offsets[:, None]


def _clamped(x, lo, hi, clamp: bool):
    return torch.maximum(torch.minimum(x, hi), lo) if clamp else x


def _clamp_slope(x, lo, hi):
    """d clamp/dx of ``maximum(minimum(x, hi), lo)`` with torch's tie rule (½ at x = hi or x = lo)."""
    upper = torch.where(x < hi, 1.0, torch.where(x == hi, 0.5, 0.0))
    inner = torch.minimum(x, hi)
    return upper * torch.where(inner > lo, 1.0, torch.where(inner == lo, 0.5, 0.0))


def _base(x, base_fun: str, slope: bool):
    if base_fun == "identity":
        return torch.ones_like(x) if slope else x
    sig = torch.sigmoid(x)
    return sig * (1 + x * (1 - sig)) if slope else x * sig


def _forward_parts(x, coef, scale_sp, scale_base, mask, center, h, lo, hi, k: int, half, base_fun: str,
                   clamp: bool):
    """The dense basis ``[B, (m, i)]`` (the base branch as a last block), the weight ``[out, (m, i)]``, and whether
    any x lies outside its grid range ``[lo, hi]`` (a 0-d bool, for the layer's warning; fused into the same pass)."""
    n_basis = coef.shape[2]
    t = _positions(_clamped(x, lo, hi, clamp), center, h, n_basis, k)
    blocks = [_cardinal(t, half, slope=False)]
    weights = [(coef * (scale_sp * mask)[..., None]).permute(1, 2, 0)]             # [out, m, in]
    if base_fun != "zero":
        blocks.append(_base(x, base_fun, slope=False)[:, None, :])
        weights.append((scale_base * mask).T[:, None, :])
    outside = ((x < lo) | (x > hi)).any()
    return torch.cat(blocks, 1).flatten(1), torch.cat(weights, 1).flatten(1), outside


def _backward_parts(x, dbasis, dweight, coef, scale_sp, mask, center, h, lo, hi, k: int, half, base_fun: str,
                    clamp: bool):
    """∂x from ``dbasis[B, (m, i)]`` (or None) and the parameter gradients from ``dweight[out, (m, i)]`` (or None)."""
    n_in, n_out, n_basis = coef.shape
    dx = dcoef = dscale_sp = dscale_base = None
    if dbasis is not None:
        db = dbasis.view(x.shape[0], -1, n_in)
        t = _positions(_clamped(x, lo, hi, clamp), center, h, n_basis, k)
        dx = (db[:, :n_basis] * _cardinal(t, half, slope=True)).sum(1) / h
        if clamp:
            dx = dx * _clamp_slope(x, lo, hi)
        if base_fun != "zero":
            dx = dx + db[:, n_basis] * _base(x, base_fun, slope=True)
    if dweight is not None:
        dw = dweight.view(n_out, -1, n_in)
        dspline = dw[:, :n_basis].permute(2, 0, 1)                  # ∂L/∂(coef·scale_sp·mask), [in, out, m]
        dcoef = dspline * (scale_sp * mask)[..., None]
        dscale_sp = (dspline * coef).sum(-1) * mask
        dscale_base = dw[:, n_basis].T * mask if base_fun != "zero" else None      # unused: no gradient, as eager
    return dx, dcoef, dscale_sp, dscale_base


_COMPILED: dict = {}


def _compiled(k: int, base_fun: str, clamp: bool):
    """The compiled forward and backward parts of one configuration, shared by every layer that has it."""
    key = (k, base_fun, clamp)
    if key not in _COMPILED:
        half = _right_half(k)               # Python floats: constants in the generated code

        def forward_parts(x, coef, scale_sp, scale_base, mask, center, h, lo, hi):
            return _forward_parts(x, coef, scale_sp, scale_base, mask, center, h, lo, hi, k, half, base_fun, clamp)

        def backward_parts(x, dbasis, dweight, coef, scale_sp, mask, center, h, lo, hi):
            return _backward_parts(x, dbasis, dweight, coef, scale_sp, mask, center, h, lo, hi, k, half, base_fun,
                                   clamp)

        _COMPILED[key] = (torch.compile(forward_parts, fullgraph=True), torch.compile(backward_parts, fullgraph=True))
    return _COMPILED[key]


class _CompiledKan(torch.autograd.Function):
    """Forward: compiled basis + weight, then ``y = basis @ weightᵀ``. Backward: ``∂basis = ∂y @ weight`` (only if
    x needs a gradient), ``∂weight = ∂yᵀ @ basis`` (only if a parameter does), then the compiled gradient
    parts."""

    @staticmethod
    def forward(ctx, x, coef, scale_sp, scale_base, mask, center, h, lo, hi, config):
        forward_parts, backward_parts = _compiled(*config)
        basis, weight, outside = forward_parts(x, coef, scale_sp, scale_base, mask, center, h, lo, hi)
        ctx.backward_parts = backward_parts
        ctx.save_for_backward(x, basis, weight, coef, scale_sp, mask, center, h, lo, hi)
        ctx.mark_non_differentiable(outside)
        return matmul_nt(basis, weight), outside

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _):
        x, basis, weight, coef, scale_sp, mask, center, h, lo, hi = ctx.saved_tensors
        need = ctx.needs_input_grad
        dbasis = matmul_nt(grad_out, weight.T) if need[0] else None
        dweight = matmul_nt(grad_out.T, basis.T) if any(need[1:4]) else None
        dx, dcoef, dscale_sp, dscale_base = ctx.backward_parts(x, dbasis, dweight, coef, scale_sp, mask, center, h,
                                                               lo, hi)
        return (dx, dcoef if need[1] else None, dscale_sp if need[2] else None, dscale_base if need[3] else None,
                None, None, None, None, None, None)


def compiled_kan(x, coef, scale_sp, scale_base, mask, center, h, lo, hi, k: int, base_fun: str, clamp: bool):
    """``y[B, out]`` of a KAN layer on an evenly spaced grid (knot spacing ``h[in]``, centre ``center[in]``, grid
    range ``[lo, hi]`` per input) by the compiled parts, and whether any x lies outside the grid range (0-d bool).
    The caller checks the grid and the compiler."""
    return _CompiledKan.apply(x, coef, scale_sp, scale_base, mask, center, h, lo, hi, (k, base_fun, clamp))


def warn_no_compiler(problem: str, where: str) -> None:
    warnings.warn(f"{where}: compile=True needs a C++ compiler for torch.compile on the CPU and none was found "
                  f"({problem}); using the eager path (same values, slower). Install g++ (or set CXX) to compile.",
                  RuntimeWarning, stacklevel=4)
