"""Block-diagonal rotation of activations, ``y = x[..., perm] · blockdiag(R)``, forward and backward, in Triton
(twin: ``reference.block_rotate``; math in ``orthoscope/ortho/blockdiag.py``).

With ``x̃ = x[..., perm]`` viewed as ``[N, r, b]`` and ``g = ∂L/∂y`` viewed the same way:

    y[n, i, c]      = Σ_k x̃[n, i, k] R[i, k, c]
    ∂L/∂x̃[n, i, k] = Σ_c g[n, i, c] R[i, k, c]          (g · Rᵀ per block; then scattered back through perm)
    ∂L/∂R[i, k, c]  = Σ_n x̃[n, i, k] g[n, i, c]          (x̃ᵀ g per block, summed over all rows)

* The permutation is **folded into the loads**: the forward reads ``x[n, perm[j]]`` directly (a gather), and the
  backward writes ``∂L/∂x[n, perm[j]]`` directly (a scatter; perm is a permutation, so no two programs collide). No
  permuted copy of x is ever made.
* One kernel does both products: ``∂L/∂x̃`` is the forward kernel reading R through swapped strides (Rᵀ).
* ``∂L/∂R`` is a reduction over all N rows: the rows are split into ``splits`` chunks (enough programs to fill a GPU),
  each writes a partial fp32 block, and the partials are summed — deterministic, no atomics.
* Memory modes. ``recompute=True`` (default, POET-X_mem): autograd keeps only x, R and perm; the backward re-gathers
  x̃ in its loads. ``recompute=False``: the forward also writes x̃ (one extra activation) so the backward reads it
  with coalesced loads instead of a gather. Without a permutation both modes keep only x.
* bf16/fp16 inputs feed ``tl.dot`` in their own type on a GPU (exact: the values came from that type) with fp32
  accumulation; outputs are stored in x's dtype, ``∂L/∂R`` in R's dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (autocast_cast, check_device, check_float, check_permutation, check_same_dtype,
                            check_unit_stride, dot_dtype, dot_precision, interpreting, pow2, unit_stride_2d)


@triton.jit
def _rotate_kernel(x_ptr, perm_ptr, r_ptr, y_ptr, xg_ptr, N, b, stride_xn, stride_yn, stride_rr, stride_rk,
                   stride_rc, GATHER: tl.constexpr, SCATTER: tl.constexpr, STORE_GATHERED: tl.constexpr,
                   DOT: tl.constexpr, PREC: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr):
    """One program per (row tile, block i, output-column tile): ``y[rows, i, cols] = x̃[rows, i, :] · R[i, :, cols]``.
    ``GATHER``: x̃ = x[:, perm]; ``SCATTER``: y[:, perm[j]] = result[:, j]; ``STORE_GATHERED``: also write x̃."""
    pid_n = tl.program_id(0)
    blk = tl.program_id(1)
    pid_c = tl.program_id(2)
    rows = (pid_n * BN + tl.arange(0, BN)).to(tl.int64)
    cols = pid_c * BC + tl.arange(0, BC)
    row_ok = rows < N
    acc = tl.zeros((BN, BC), dtype=tl.float32)
    for k0 in range(0, b, BK):
        ks = k0 + tl.arange(0, BK)
        k_ok = ks < b
        feat = blk * b + ks
        if GATHER:
            src = tl.load(perm_ptr + feat, mask=k_ok, other=0)
        else:
            src = feat
        mask = row_ok[:, None] & k_ok[None, :]
        a = tl.load(x_ptr + rows[:, None] * stride_xn + src[None, :], mask=mask, other=0.0).to(tl.float32)
        if STORE_GATHERED:
            if pid_c == 0:
                tl.store(xg_ptr + rows[:, None] * stride_xn + feat[None, :], a.to(xg_ptr.dtype.element_ty),
                         mask=mask)
        w = tl.load(r_ptr + blk.to(tl.int64) * stride_rr + ks[:, None] * stride_rk + cols[None, :] * stride_rc,
                    mask=k_ok[:, None] & (cols[None, :] < b), other=0.0).to(tl.float32)
        acc += tl.dot(a.to(DOT), w.to(DOT), input_precision=PREC)
    out = blk * b + cols
    if SCATTER:
        out = tl.load(perm_ptr + out, mask=cols < b, other=0)
    tl.store(y_ptr + rows[:, None] * stride_yn + out[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (cols[None, :] < b))


@triton.jit
def _rotate_grad_r_kernel(x_ptr, perm_ptr, g_ptr, part_ptr, N, b, rows_per_split, stride_xn, stride_gn,
                          stride_ps, stride_pr, stride_pk, GATHER: tl.constexpr, DOT: tl.constexpr,
                          PREC: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr):
    """One program per (block i, (k, c) tile, row split): ``part[split, i, ks, cols] = Σ_rows x̃ᵀ g``."""
    blk = tl.program_id(0)
    n_c = tl.cdiv(b, BC)
    ks = (tl.program_id(1) // n_c) * BK + tl.arange(0, BK)
    cols = (tl.program_id(1) % n_c) * BC + tl.arange(0, BC)
    split = tl.program_id(2)
    k_ok = ks < b
    c_ok = cols < b
    if GATHER:
        src = tl.load(perm_ptr + blk * b + ks, mask=k_ok, other=0)
    else:
        src = blk * b + ks
    start = split.to(tl.int64) * rows_per_split
    stop = tl.minimum(start + rows_per_split, N)
    acc = tl.zeros((BK, BC), dtype=tl.float32)
    for n0 in range(start, stop, BN):
        rows = n0 + tl.arange(0, BN).to(tl.int64)
        row_ok = rows < stop
        a = tl.load(x_ptr + rows[:, None] * stride_xn + src[None, :], mask=row_ok[:, None] & k_ok[None, :],
                    other=0.0).to(tl.float32)
        g = tl.load(g_ptr + rows[:, None] * stride_gn + (blk * b + cols)[None, :],
                    mask=row_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
        acc += tl.dot(tl.trans(a.to(DOT)), g.to(DOT), input_precision=PREC)
    tl.store(part_ptr + split.to(tl.int64) * stride_ps + blk.to(tl.int64) * stride_pr + ks[:, None] * stride_pk +
             cols[None, :], acc, mask=k_ok[:, None] & c_ok[None, :])


# ---- launchers ----------------------------------------------------------------------------------------------------

def _tiles(b: int) -> tuple[int, int, int]:
    """(BN, BK, BC): whole blocks up to b = 64, 64-wide tiles beyond; bigger row tiles in the interpreter."""
    bk = min(pow2(b), 64)
    return (128 if interpreting() else 64), bk, bk


def check_rotate(x2: torch.Tensor, R: torch.Tensor, perm: torch.Tensor | None, op: str = "block_rotate") -> None:
    """Checks of a launch on ``x2[N, r·b]``: dtypes, shapes, layout, device."""
    check_float(op, "x", x2)
    check_float(op, "R", R)
    check_same_dtype(op, x=x2, R=R)
    if R.dim() != 3 or R.shape[1] != R.shape[2]:
        raise ValueError(f"{op}: R must have shape [r, b, b] (r square blocks), got {list(R.shape)}")
    r, b = R.shape[0], R.shape[1]
    if x2.dim() != 2 or x2.shape[1] != r * b:
        raise ValueError(f"{op}: x has last dimension {x2.shape[-1]} but R has {r} blocks of size {b} "
                         f"(needs r*b = {r * b})")
    check_unit_stride(op, "x", x2)
    if perm is not None:
        check_permutation(op, "perm", perm, r * b)
    check_device(op, x=x2, R=R, **({} if perm is None else {"perm": perm}))


def rotate_launch(x2: torch.Tensor, R: torch.Tensor, perm: torch.Tensor | None = None, *, transpose: bool = False,
                  scatter: bool = False, gathered_out: torch.Tensor | None = None) -> torch.Tensor:
    """``x2[N, r·b]`` → ``x̃ · blockdiag(R)`` (``transpose``: ``· blockdiag(Rᵀ)``). ``perm`` gathers the input, or
    with ``scatter`` scatters the output. ``gathered_out`` (same shape as x2) receives x̃."""
    check_rotate(x2, R, perm)
    r, b = R.shape[0], R.shape[1]
    N = x2.shape[0]
    y = torch.empty_like(x2, memory_format=torch.contiguous_format)
    if N == 0 or r == 0:
        return y
    bn, bk, bc = _tiles(b)
    sr, sk, sc = R.stride()
    if transpose:
        sk, sc = sc, sk
    gather = perm is not None and not scatter
    store_g = gathered_out is not None and gather
    grid = (triton.cdiv(N, bn), r, triton.cdiv(b, bc))
    _rotate_kernel[grid](x2, perm if perm is not None else x2, R, y, gathered_out if store_g else y, N, b,
                         x2.stride(0), y.stride(0), sr, sk, sc, GATHER=gather, SCATTER=perm is not None and scatter,
                         STORE_GATHERED=store_g, DOT=dot_dtype(x2.dtype), PREC=dot_precision(x2.dtype),
                         BN=bn, BK=bk, BC=bc, num_warps=4)
    return y


def rotate_grad_r_launch(x2: torch.Tensor, g2: torch.Tensor, R: torch.Tensor, perm: torch.Tensor | None = None,
                         splits: int | None = None) -> torch.Tensor:
    """``∂L/∂R[i] = Σ_n x̃[n, i]ᵀ g[n, i]`` in R's dtype; ``x2`` is gathered through ``perm`` in the loads."""
    op = "block_rotate (grad R)"
    check_rotate(x2, R, perm, op)
    check_float(op, "grad_y", g2)
    if g2.shape != x2.shape:
        raise ValueError(f"{op}: grad_y has shape {list(g2.shape)}, expected {list(x2.shape)}")
    check_unit_stride(op, "grad_y", g2)
    r, b = R.shape[0], R.shape[1]
    N = x2.shape[0]
    bn, bk, bc = _tiles(b)
    tiles = triton.cdiv(b, bk) * triton.cdiv(b, bc)
    if splits is None:                    # ~4 programs per SM on a GPU; one pass in the interpreter
        splits = 1 if interpreting() else max(1, min(triton.cdiv(N, 4 * bn), triton.cdiv(528, max(r * tiles, 1))))
    rows_per_split = triton.cdiv(max(N, 1), splits)
    rows_per_split = triton.cdiv(rows_per_split, bn) * bn
    splits = max(1, triton.cdiv(N, rows_per_split))
    part = torch.zeros(splits, r, b, b, dtype=torch.float32, device=x2.device)
    if N and r:
        _rotate_grad_r_kernel[(r, tiles, splits)](
            x2, perm if perm is not None else x2, g2, part, N, b, rows_per_split, x2.stride(0), g2.stride(0),
            part.stride(0), part.stride(1), part.stride(2), GATHER=perm is not None, DOT=dot_dtype(x2.dtype),
            PREC=dot_precision(x2.dtype), BN=bn, BK=bk, BC=bc, num_warps=4)
    return (part[0] if splits == 1 else part.sum(0)).to(R.dtype)


class BlockRotate(torch.autograd.Function):
    """Autograd node over ``x2[N, r·b]``; saves (x, R, perm) — or the gathered x̃ when ``recompute=False``."""

    @staticmethod
    def forward(ctx, x2, R, perm, recompute):
        ctx.keep = perm is not None and not recompute
        xg = torch.empty_like(x2, memory_format=torch.contiguous_format) if ctx.keep else None
        y = rotate_launch(x2, R, perm, gathered_out=xg)
        ctx.save_for_backward(xg if ctx.keep else x2, R, perm)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        xs, R, perm = ctx.saved_tensors
        g2 = grad_y if grad_y.stride(-1) == 1 else grad_y.contiguous()
        grad_x = grad_r = None
        if ctx.needs_input_grad[0]:
            grad_x = rotate_launch(g2, R, perm, transpose=True, scatter=True)
        if ctx.needs_input_grad[1]:                 # x̃ kept: read it directly; else gather x through perm again
            grad_r = rotate_grad_r_launch(xs, g2, R, None if ctx.keep else perm)
        return grad_x, grad_r, None, None


def block_rotate(x: torch.Tensor, R: torch.Tensor, perm: torch.Tensor | None = None,
                 recompute: bool = True) -> torch.Tensor:
    """Triton ``block_rotate`` (same signature and value as ``reference.block_rotate``); any leading shape and
    layout of x (x is viewed, or copied when its layout needs it, as ``[N, r·b]``; R may be strided, e.g. a
    transposed view). ``recompute`` picks the memory mode (module docstring)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError(f"block_rotate: x must be a tensor [..., r*b], got {x!r:.60}")
    if not isinstance(R, torch.Tensor) or R.dim() != 3:
        raise ValueError(f"block_rotate: R must have shape [r, b, b], got "
                         f"{list(R.shape) if isinstance(R, torch.Tensor) else type(R).__name__}")
    if x.shape[-1] != R.shape[0] * R.shape[1]:
        raise ValueError(f"block_rotate: x has last dimension {x.shape[-1]} but R has {R.shape[0]} blocks of size "
                         f"{R.shape[1]} (needs r*b = {R.shape[0] * R.shape[1]})")
    x, R = autocast_cast(x, R)
    x2 = unit_stride_2d(x, x.shape[-1])
    y = BlockRotate.apply(x2, R, perm, recompute)
    return y.reshape(x.shape)
