"""Fused harmonic loss: distance logits + HarMax + NLL over a large vocabulary without an [N × V] tensor, forward and
backward, in Triton (twin: ``reference.harmonic_nll``; math in ``orthoscope/methods/losses.py``).

For representations ``h[N, D]``, centres ``w[V, D]`` and targets ``t[N]`` (``-100`` = ignored, as
``F.cross_entropy``):

    r_bv = ‖h_b‖² + ‖w_v‖² − 2 h_b·w_v,   ℓ_bv = −(n/2)·log(max(r_bv, 0) + ε)            (ε = HARMONIC_EPS)
    loss = mean over kept rows of  LSE_v ℓ_bv − ℓ_{b,t_b}

Forward: one program per tile of rows streams over the vocabulary in tiles of BV centres, computing the distance
tile (the dot product accumulated over D in chunks, the squared norms from the same loads), and keeps an **online
log-sum-exp** (running max m and rescaled sum) and the target logit. It stores only ``lse[N]`` (saved for backward)
and the per-row loss.

Backward: with ``p_bv = exp(ℓ_bv − lse_b)`` and ``γ`` = upstream gradient / number of kept rows,
``∂L/∂ℓ_bv = γ(p_bv − [v = t_b])``; through the logit, ``a_bv = −n·∂L/∂ℓ_bv·[r_bv ≥ 0]/(max(r_bv, 0) + ε)`` and

    ∂L/∂h_b = Σ_v a_bv (h_b − w_v),      ∂L/∂w_v = Σ_b a_bv (w_v − h_b).

One program per (row tile, vocabulary tile) recomputes its logit tile, forms ``a`` and adds both contributions, D
chunk by D chunk, into fp32 gradient buffers with atomic adds (as FlashAttention-2 does for dQ): three
N·V·D-sized products in all, never an [N × V] tensor. Atomic adds make the GPU gradient's last bits depend on
scheduling (not bit-deterministic); the interpreter runs programs in order.
bf16/fp16 inputs feed ``tl.dot`` in their own type on a GPU, fp32 accumulation; the backward's products of the fp32
coefficients ``a`` use TF32 on a GPU for half-precision inputs; everything else is fp32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (autocast_cast, check_device, check_float, check_same_dtype, check_unit_stride, dot_dtype,
                            dot_precision, grad_dot_precision, interpreting, pow2, unit_stride_2d)

IGNORE_INDEX = -100


@triton.jit
def _logit_tile(h_ptr, c_ptr, rows, cols, N, V, D, stride_hn, stride_cv, half_n, eps, DOT: tl.constexpr,
                PREC: tl.constexpr, BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr):
    """(ℓ tile [BM, BV], r ≥ 0 mask, max(r, 0) + ε) for rows × centres; padded entries are garbage-free zeros."""
    cross = tl.zeros((BM, BV), dtype=tl.float32)
    hh = tl.zeros((BM,), dtype=tl.float32)
    ww = tl.zeros((BV,), dtype=tl.float32)
    for d0 in range(0, D, BD):
        ds = d0 + tl.arange(0, BD)
        d_ok = ds < D
        h = tl.load(h_ptr + rows[:, None] * stride_hn + ds[None, :], mask=(rows < N)[:, None] & d_ok[None, :],
                    other=0.0).to(tl.float32)
        w = tl.load(c_ptr + cols[None, :] * stride_cv + ds[:, None], mask=(cols < V)[None, :] & d_ok[:, None],
                    other=0.0).to(tl.float32)
        cross += tl.dot(h.to(DOT), w.to(DOT), input_precision=PREC)
        hh += tl.sum(h * h, axis=1)
        ww += tl.sum(w * w, axis=0)
    raw = hh[:, None] + ww[None, :] - 2.0 * cross
    d2 = tl.maximum(raw, 0.0) + eps
    return -half_n * tl.log(d2), raw >= 0.0, d2


@triton.jit
def _harmonic_fwd(h_ptr, c_ptr, t_ptr, lse_ptr, loss_ptr, N, V, D, stride_hn, stride_cv, half_n, eps,
                  DOT: tl.constexpr, PREC: tl.constexpr, BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr):
    rows = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    row_ok = rows < N
    tgt = tl.load(t_ptr + rows, mask=row_ok, other=-100)
    m = tl.full((BM,), float("-inf"), dtype=tl.float32)
    total = tl.zeros((BM,), dtype=tl.float32)
    picked = tl.zeros((BM,), dtype=tl.float32)
    for v0 in range(0, V, BV):
        cols = v0 + tl.arange(0, BV).to(tl.int64)
        logit, _, _ = _logit_tile(h_ptr, c_ptr, rows, cols, N, V, D, stride_hn, stride_cv, half_n, eps, DOT, PREC,
                                  BM, BV, BD)
        logit = tl.where((cols < V)[None, :], logit, float("-inf"))
        m_new = tl.maximum(m, tl.max(logit, axis=1))                   # finite: every tile has a real column
        total = total * tl.exp(m - m_new) + tl.sum(tl.exp(logit - m_new[:, None]), axis=1)
        m = m_new
        picked += tl.sum(tl.where(cols[None, :] == tgt[:, None], logit, 0.0), axis=1)
    lse = m + tl.log(total)
    tl.store(lse_ptr + rows, lse, mask=row_ok)
    tl.store(loss_ptr + rows, tl.where(tgt != -100, lse - picked, 0.0), mask=row_ok)


@triton.jit
def _harmonic_bwd(h_ptr, c_ptr, t_ptr, lse_ptr, scale_ptr, dh_ptr, dc_ptr, N, V, D, stride_hn, stride_cv,
                  stride_dhn, stride_dcv, half_n, n_exp, eps, DOT: tl.constexpr, PREC: tl.constexpr,
                  GPREC: tl.constexpr, BM: tl.constexpr, BV: tl.constexpr, BD: tl.constexpr):
    rows = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    cols = (tl.program_id(1) * BV + tl.arange(0, BV)).to(tl.int64)
    row_ok = rows < N
    col_ok = cols < V
    tgt = tl.load(t_ptr + rows, mask=row_ok, other=-100)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=float("inf"))      # padded rows: p = 0
    gamma = tl.load(scale_ptr)
    logit, live, d2 = _logit_tile(h_ptr, c_ptr, rows, cols, N, V, D, stride_hn, stride_cv, half_n, eps, DOT, PREC,
                                  BM, BV, BD)
    keep = (row_ok & (tgt != -100))[:, None] & col_ok[None, :]
    p = tl.exp(logit - lse[:, None])
    dlogit = gamma * (p - tl.where(cols[None, :] == tgt[:, None], 1.0, 0.0))
    a = tl.where(keep & live, -n_exp * dlogit / d2, 0.0)
    row_sum = tl.sum(a, axis=1)
    col_sum = tl.sum(a, axis=0)
    for d0 in range(0, D, BD):
        ds = d0 + tl.arange(0, BD)
        d_ok = ds < D
        hmask = row_ok[:, None] & d_ok[None, :]
        wmask = col_ok[:, None] & d_ok[None, :]
        h = tl.load(h_ptr + rows[:, None] * stride_hn + ds[None, :], mask=hmask, other=0.0).to(tl.float32)
        w = tl.load(c_ptr + cols[:, None] * stride_cv + ds[None, :], mask=wmask, other=0.0).to(tl.float32)
        dh = row_sum[:, None] * h - tl.dot(a, w, input_precision=GPREC)
        dw = col_sum[:, None] * w - tl.dot(tl.trans(a), h, input_precision=GPREC)
        tl.atomic_add(dh_ptr + rows[:, None] * stride_dhn + ds[None, :], dh, mask=hmask)
        tl.atomic_add(dc_ptr + cols[:, None] * stride_dcv + ds[None, :], dw, mask=wmask)


# ---- launchers ----------------------------------------------------------------------------------------------------

def _blocks(N: int, V: int, D: int) -> tuple[int, int, int]:
    """(BM, BV, BD); the interpreter prefers few large tiles."""
    if interpreting():
        return min(pow2(N), 64), min(pow2(V), 128), min(pow2(D), 128)
    return 64, 64, min(pow2(D), 64)


def check_harmonic(h, centers, target, n) -> None:
    op = "harmonic_nll"
    check_float(op, "h", h)
    check_float(op, "centers", centers)
    check_same_dtype(op, h=h, centers=centers)
    if h.dim() != 2 or centers.dim() != 2 or h.shape[1] != centers.shape[1]:
        raise ValueError(f"{op} needs h[N, D] and centers[V, D] with the same D; got {list(h.shape)}, "
                         f"{list(centers.shape)}")
    if not isinstance(target, torch.Tensor) or target.dtype != torch.long or tuple(target.shape) != h.shape[:1]:
        raise ValueError(f"{op} needs an int64 target of shape [N] = [{h.shape[0]}], got "
                         f"{getattr(target, 'dtype', type(target).__name__)} {list(getattr(target, 'shape', []))}")
    from orthoscope.kernels.harmonic import check_harmonic_exponent

    check_harmonic_exponent(n)
    for name, t in (("h", h), ("centers", centers), ("target", target)):
        check_unit_stride(op, name, t)
    check_device(op, h=h, centers=centers, target=target)
    bad = ((target < 0) & (target != IGNORE_INDEX)) | (target >= centers.shape[0])
    if bool(bad.any()):
        raise ValueError(f"{op}: target values must lie in [0, {centers.shape[0]}) or be {IGNORE_INDEX} (ignored); "
                         f"got {target[bad][0].item()}")


def harmonic_forward(h, centers, target, n: float, eps: float):
    """(per-row loss [N] fp32, lse [N] fp32); rows with target −100 have loss 0."""
    N, D = h.shape
    V = centers.shape[0]
    lse = torch.empty(N, dtype=torch.float32, device=h.device)
    loss = torch.empty(N, dtype=torch.float32, device=h.device)
    bm, bv, bd = _blocks(N, V, D)
    if N and V:
        _harmonic_fwd[(triton.cdiv(N, bm),)](h, centers, target, lse, loss, N, V, D, h.stride(0), centers.stride(0),
                                             0.5 * n, eps, DOT=dot_dtype(h.dtype), PREC=dot_precision(h.dtype),
                                             BM=bm, BV=bv, BD=bd, num_warps=4)
    return loss, lse


def harmonic_backward(h, centers, target, lse, scale, n: float, eps: float):
    """(∂L/∂h, ∂L/∂centers) in the inputs' dtype; ``scale`` = upstream gradient / kept rows (1-element fp32)."""
    N, D = h.shape
    V = centers.shape[0]
    dh = torch.zeros(N, D, dtype=torch.float32, device=h.device)
    dc = torch.zeros(V, D, dtype=torch.float32, device=h.device)
    bm, bv, bd = _blocks(N, V, D)
    if N and V:
        _harmonic_bwd[(triton.cdiv(N, bm), triton.cdiv(V, bv))](
            h, centers, target, lse, scale, dh, dc, N, V, D, h.stride(0), centers.stride(0), dh.stride(0),
            dc.stride(0), 0.5 * n, float(n), eps, DOT=dot_dtype(h.dtype), PREC=dot_precision(h.dtype),
            GPREC=grad_dot_precision(h.dtype), BM=bm, BV=bv, BD=bd, num_warps=4)
    return dh.to(h.dtype), dc.to(centers.dtype)


class HarmonicNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, centers, target, n, eps):
        loss_rows, lse = harmonic_forward(h, centers, target, n, eps)
        count = (target != IGNORE_INDEX).sum().to(torch.float32)
        ctx.save_for_backward(h, centers, target, lse, count)
        ctx.n, ctx.eps = n, eps
        return (loss_rows.sum() / count).to(h.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        h, centers, target, lse, count = ctx.saved_tensors
        scale = (grad_out.to(torch.float32) / count).reshape(1)
        dh, dc = harmonic_backward(h, centers, target, lse, scale, ctx.n, ctx.eps)
        return dh, dc, None, None, None


def harmonic_nll(h: torch.Tensor, centers: torch.Tensor, target: torch.Tensor, n: float) -> torch.Tensor:
    """Triton ``harmonic_nll`` (same signature and value as ``reference.harmonic_nll``): mean over rows whose target
    is not −100 (nan when there are none, as ``F.cross_entropy``)."""
    from orthoscope.kernels.harmonic import HARMONIC_EPS

    h, centers = autocast_cast(h, centers)
    if isinstance(h, torch.Tensor) and h.dim() == 2:
        h = unit_stride_2d(h, h.shape[1])
    if isinstance(centers, torch.Tensor) and centers.dim() == 2:
        centers = unit_stride_2d(centers, centers.shape[1])
    if isinstance(target, torch.Tensor) and target.dim() == 1:
        target = target.contiguous()
    check_harmonic(h, centers, target, n)
    return HarmonicNLL.apply(h, centers, target, float(n), HARMONIC_EPS)
