"""Hyperspherical energy of the rows of a matrix, tiled, forward and gradient, in Triton (twin:
``reference.pairwise_energy``; MHE, Liu et al. 2018).

With unit rows ``u_i = w_i/‖w_i‖`` (norm clamped at 1e-12) and ``c_ij = u_i·u_j`` clamped to [−1, 1]:

    d_ij = √(2 − 2c_ij)   (Euclidean)   or   arccos(c_ij)/π   (angular);   d ← max(d, eps)
    f(d) = d^(−s)  (s > 0)   or   −log d  (s = 0);     E = mean over ordered pairs i ≠ j of f(d_ij).

``half_space`` uses the 2n points ``{u_i} ∪ {−u_i}``; their ordered pairs give
``Σ = 2·Σ_{i≠j} f(c_ij) + 2·Σ_{i,j} f(−c_ij)`` (the i = j terms are the antipodal pairs u_i, −u_i, whose cosine is
taken as exactly −1), over 2n(2n−1).

Gradient: ``∂E/∂u_i = Σ_{j≠i} C_ij u_j`` with ``C_ij = (2/P)·f'(c_ij)`` (``4/P'·(f'(c_ij) − f'(−c_ij))`` for
half-space; the antipodal pair's term is radial, ``∝ u_i``, and vanishes after the normalization below), where
``f' = df/dc`` is zero where a clamp is active (d < eps or c outside [−1, 1], as torch's clamp gradients). Then
``∂E/∂w_i = (g_i − (g_i·u_i) u_i)/‖w_i‖``.

Kernels (nothing of size n×n is ever stored):
* ``_normalize_rows``: u (fp32) and the norms, one pass over w.
* ``_energy_fwd``: one program per tile of BM rows loops over all column tiles; the cosine tile is accumulated over
  d in chunks, mapped to f, masked and summed; each program writes one partial sum (summed after: deterministic).
* ``_energy_grad``: one program per (row tile, chunk of DC columns of u): for every column tile it recomputes the
  cosine tile (over all of d), forms C and accumulates ``C · u_J[:, chunk]`` — the flash-attention pattern; the
  cosines are recomputed once per d-chunk (d/DC times; DC = 128 on a GPU).
* ``_normalize_bwd``: the projection and the upstream scalar gradient.
arccos is a polynomial (Abramowitz–Stegun 4.4.46, |error| ≤ 2e-8; libdevice's acos is unavailable in the
interpreter). All dot products are fp32 with ``input_precision="ieee"`` (near-duplicate rows need every bit).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .triton_common import check_device, check_float, check_unit_stride, interpreting, pow2, unit_stride_2d

@triton.jit
def _acos(c):
    """arccos on [−1, 1]: √(1−|c|)·P(|c|), reflected for c < 0 (A&S 4.4.46)."""
    a = tl.abs(c)
    p = -0.0012624911
    p = p * a + 0.0066700901
    p = p * a - 0.0170881256
    p = p * a + 0.0308918810
    p = p * a - 0.0501743046
    p = p * a + 0.0889789874
    p = p * a - 0.2145988016
    p = p * a + 1.5707963050
    r = tl.sqrt(tl.maximum(1.0 - a, 0.0)) * p
    return tl.where(c < 0, 3.141592653589793 - r, r)


@triton.jit
def _pair_terms(raw, s, eps, ANGULAR: tl.constexpr, LOG: tl.constexpr):
    """(f(d(c)), df/dc) for raw cosines; the derivative is 0 where a clamp is active."""
    c = tl.minimum(tl.maximum(raw, -1.0), 1.0)
    if ANGULAR:
        d = _acos(c) * 0.3183098861837907
        sin = tl.sqrt(tl.maximum(1.0 - c * c, 0.0))
        dd_dc = tl.where(sin > 0, -0.3183098861837907 / tl.maximum(sin, 1e-30), 0.0)
    else:
        d = tl.sqrt(tl.maximum(2.0 - 2.0 * c, 0.0))
        dd_dc = tl.where(d > 0, -1.0 / tl.maximum(d, 1e-30), 0.0)
    dc = tl.maximum(d, eps)
    logd = tl.log(dc)
    if LOG:
        f = -logd
        df_dd = -1.0 / dc
    else:
        f = tl.exp(-s * logd)
        df_dd = -s * f / dc
    live = (raw >= -1.0) & (raw <= 1.0) & (d >= eps)
    return f, tl.where(live, df_dd * dd_dc, 0.0)


@triton.jit
def _cos_tile(u_ptr, rows, cols, n, d, stride_un, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for d0 in range(0, d, BD):
        ds = d0 + tl.arange(0, BD)
        d_ok = ds < d
        a = tl.load(u_ptr + rows[:, None] * stride_un + ds[None, :], mask=(rows < n)[:, None] & d_ok[None, :],
                    other=0.0)
        bt = tl.load(u_ptr + cols[None, :] * stride_un + ds[:, None], mask=(cols < n)[None, :] & d_ok[:, None],
                     other=0.0)
        acc += tl.dot(a, bt, input_precision="ieee")
    return acc


@triton.jit
def _normalize_rows(w_ptr, u_ptr, norm_ptr, n, d, stride_wn, stride_un, BN: tl.constexpr, BD: tl.constexpr):
    rows = (tl.program_id(0) * BN + tl.arange(0, BN)).to(tl.int64)
    row_ok = rows < n
    sq = tl.zeros((BN,), dtype=tl.float32)
    for d0 in range(0, d, BD):
        ds = d0 + tl.arange(0, BD)
        w = tl.load(w_ptr + rows[:, None] * stride_wn + ds[None, :], mask=row_ok[:, None] & (ds < d)[None, :],
                    other=0.0).to(tl.float32)
        sq += tl.sum(w * w, axis=1)
    norm = tl.sqrt(sq)
    clamped = tl.maximum(norm, 1e-12)                   # divide (not multiply by 1/norm): as the twin
    tl.store(norm_ptr + rows, norm, mask=row_ok)
    for d0 in range(0, d, BD):
        ds = d0 + tl.arange(0, BD)
        mask = row_ok[:, None] & (ds < d)[None, :]
        w = tl.load(w_ptr + rows[:, None] * stride_wn + ds[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(u_ptr + rows[:, None] * stride_un + ds[None, :], w / clamped[:, None], mask=mask)


@triton.jit
def _energy_fwd(u_ptr, part_ptr, n, d, stride_un, s, eps, ANGULAR: tl.constexpr, LOG: tl.constexpr,
                HALF: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    rows = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    total = tl.zeros((BM, BN), dtype=tl.float32)
    for n0 in range(0, n, BN):
        cols = n0 + tl.arange(0, BN).to(tl.int64)
        raw = _cos_tile(u_ptr, rows, cols, n, d, stride_un, BM, BN, BD)
        valid = (rows < n)[:, None] & (cols < n)[None, :]
        f, _ = _pair_terms(raw, s, eps, ANGULAR, LOG)
        total += tl.where(valid & (rows[:, None] != cols[None, :]), f, 0.0)
        if HALF:                                   # u_i·(−u_i) is exactly −1 (computed, it is −1 + ulp)
            f_anti, _ = _pair_terms(tl.where(rows[:, None] == cols[None, :], -1.0, -raw), s, eps, ANGULAR, LOG)
            total += tl.where(valid, f_anti, 0.0)
    tl.store(part_ptr + tl.program_id(0), tl.sum(tl.sum(total, axis=1), axis=0))


@triton.jit
def _energy_grad(u_ptr, gu_ptr, n, d, stride_un, stride_gn, s, eps, ANGULAR: tl.constexpr, LOG: tl.constexpr,
                 HALF: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, DC: tl.constexpr):
    """gu[rows, chunk] = Σ_j C_ij u_j[chunk] with C without its constant factor (2/P or 4/P')."""
    rows = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    dcs = tl.program_id(1) * DC + tl.arange(0, DC)
    acc = tl.zeros((BM, DC), dtype=tl.float32)
    for n0 in range(0, n, BN):
        cols = n0 + tl.arange(0, BN).to(tl.int64)
        raw = _cos_tile(u_ptr, rows, cols, n, d, stride_un, BM, BN, BD)
        keep = (rows < n)[:, None] & (cols < n)[None, :] & (rows[:, None] != cols[None, :])
        _, g = _pair_terms(raw, s, eps, ANGULAR, LOG)
        if HALF:
            _, g_anti = _pair_terms(-raw, s, eps, ANGULAR, LOG)
            g = g - g_anti
        coef = tl.where(keep, g, 0.0)
        uj = tl.load(u_ptr + cols[:, None] * stride_un + dcs[None, :], mask=(cols < n)[:, None] & (dcs < d)[None, :],
                     other=0.0)
        acc += tl.dot(coef, uj, input_precision="ieee")
    tl.store(gu_ptr + rows[:, None] * stride_gn + dcs[None, :], acc, mask=(rows < n)[:, None] & (dcs < d)[None, :])


@triton.jit
def _normalize_bwd(u_ptr, norm_ptr, gu_ptr, go_ptr, dw_ptr, n, d, scale, stride_un, stride_gn, stride_dn,
                   BN: tl.constexpr, BD: tl.constexpr):
    """dw = go·scale·(g − (g·u)u)/‖w‖ (or g/1e-12 where the norm was clamped)."""
    rows = (tl.program_id(0) * BN + tl.arange(0, BN)).to(tl.int64)
    row_ok = rows < n
    radial = tl.zeros((BN,), dtype=tl.float32)
    for d0 in range(0, d, BD):
        ds = d0 + tl.arange(0, BD)
        mask = row_ok[:, None] & (ds < d)[None, :]
        g = tl.load(gu_ptr + rows[:, None] * stride_gn + ds[None, :], mask=mask, other=0.0)
        u = tl.load(u_ptr + rows[:, None] * stride_un + ds[None, :], mask=mask, other=0.0)
        radial += tl.sum(g * u, axis=1)
    norm = tl.load(norm_ptr + rows, mask=row_ok, other=1.0)
    clamped = norm < 1e-12
    radial = tl.where(clamped, 0.0, radial)
    factor = tl.load(go_ptr).to(tl.float32) * scale / tl.maximum(norm, 1e-12)
    for d0 in range(0, d, BD):
        ds = d0 + tl.arange(0, BD)
        mask = row_ok[:, None] & (ds < d)[None, :]
        g = tl.load(gu_ptr + rows[:, None] * stride_gn + ds[None, :], mask=mask, other=0.0)
        u = tl.load(u_ptr + rows[:, None] * stride_un + ds[None, :], mask=mask, other=0.0)
        dw = (g - radial[:, None] * u) * factor[:, None]
        tl.store(dw_ptr + rows[:, None] * stride_dn + ds[None, :], dw.to(dw_ptr.dtype.element_ty), mask=mask)


# ---- launchers ----------------------------------------------------------------------------------------------------

def _blocks(n: int, d: int) -> tuple[int, int, int, int]:
    """(BM, BN, BD, DC). The interpreter is fastest with few, large tiles (machine notes)."""
    if interpreting():
        return min(pow2(n), 64), min(pow2(n), 64), min(pow2(d), 128), min(pow2(d), 128)
    return 64, 64, 32, min(pow2(d), 128)


def check_energy(w: torch.Tensor, s, eps) -> None:
    op = "pairwise_energy"
    check_float(op, "w", w)
    if w.dim() != 2:
        raise ValueError(f"{op} needs a 2-D matrix, got shape {list(w.shape)}")
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
        raise ValueError(f"s must be ≥ 0, got {s!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"{op}: eps must be a number > 0, got {eps!r}")
    check_unit_stride(op, "w", w)
    check_device(op, w=w)


def normalize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = w.shape
    u = torch.empty(n, d, dtype=torch.float32, device=w.device)
    norm = torch.empty(n, dtype=torch.float32, device=w.device)
    bm, _, bd, _ = _blocks(n, d)
    _normalize_rows[(triton.cdiv(n, bm),)](w, u, norm, n, d, w.stride(0), u.stride(0), BN=bm, BD=bd)
    return u, norm


def energy_forward(u: torch.Tensor, s: float, angular: bool, half_space: bool, eps: float) -> torch.Tensor:
    """Energy (fp32 scalar) of already-normalized rows ``u[n, d]``."""
    n, d = u.shape
    bm, bn, bd, _ = _blocks(n, d)
    part = torch.empty(triton.cdiv(n, bm), dtype=torch.float32, device=u.device)
    _energy_fwd[(part.numel(),)](u, part, n, d, u.stride(0), float(s), float(eps), ANGULAR=bool(angular),
                                 LOG=s == 0, HALF=bool(half_space), BM=bm, BN=bn, BD=bd, num_warps=4)
    total = part.sum()
    if half_space:
        return 2.0 * total / (2 * n * (2 * n - 1))
    return total / (n * (n - 1))


def energy_backward(u, norm, grad_out, s, angular, half_space, eps, dtype) -> torch.Tensor:
    """∂E/∂w in ``dtype`` from the saved unit rows and norms and the upstream scalar gradient."""
    n, d = u.shape
    bm, bn, bd, dc = _blocks(n, d)
    gu = torch.empty_like(u)
    _energy_grad[(triton.cdiv(n, bm), triton.cdiv(d, dc))](
        u, gu, n, d, u.stride(0), gu.stride(0), float(s), float(eps), ANGULAR=bool(angular), LOG=s == 0,
        HALF=bool(half_space), BM=bm, BN=bn, BD=bd, DC=dc, num_warps=4)
    scale = 4.0 / (2 * n * (2 * n - 1)) if half_space else 2.0 / (n * (n - 1))
    dw = torch.empty(n, d, dtype=dtype, device=u.device)
    go = grad_out.reshape(1).to(torch.float32)
    _normalize_bwd[(triton.cdiv(n, bm),)](u, norm, gu, go, dw, n, d, scale, u.stride(0), gu.stride(0), dw.stride(0),
                                          BN=bm, BD=bd)
    return dw


class PairwiseEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, s, angular, half_space, eps):
        u, norm = normalize_rows(w)
        ctx.save_for_backward(u, norm)
        ctx.args = (s, angular, half_space, eps, w.dtype)
        return energy_forward(u, s, angular, half_space, eps)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        u, norm = ctx.saved_tensors
        return energy_backward(u, norm, grad_out, *ctx.args), None, None, None, None


def pairwise_energy(w: torch.Tensor, s: float = 1.0, angular: bool = False, half_space: bool = False,
                    eps: float = 1e-6) -> torch.Tensor:
    """Triton ``pairwise_energy`` (same signature and value as ``reference.pairwise_energy``; fp32 scalar)."""
    if isinstance(w, torch.Tensor) and w.dim() == 2:
        w = unit_stride_2d(w, w.shape[1])
    check_energy(w, s, eps)
    if w.shape[0] * (2 if half_space else 1) < 2:
        raise ValueError("pairwise_energy needs at least 2 rows")
    return PairwiseEnergy.apply(w, s, angular, half_space, eps)
