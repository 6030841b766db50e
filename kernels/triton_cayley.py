"""Cayley–Neumann rotations from packed skew blocks, forward and backward, in Triton
(twin: ``reference.cayley_neumann``).

Math. ``Q`` is the b×b skew matrix whose strict upper triangle is the packed row ``q[p]``, ``p = i·b − i(i+1)/2 +
j − i − 1`` for ``i < j`` (``torch.triu_indices`` order), ``Q[j, i] = −Q[i, j]``. The rotation is built by Horner's
rule, as the twin does:

    S_0 = I,  S_{t+1} = I + Q S_t  (t < k),   R = S_k + Q S_k = (I + Q)(I + Q + … + Q^k).

Backward (reverse Horner; ``G = ∂L/∂R``): ``∂L/∂Q ← G S_kᵀ``, ``∂L/∂S_k = G + QᵀG = G − QG``, then for t = k−1 … 0:
``∂L/∂Q += ∂L/∂S_{t+1} · S_tᵀ`` and ``∂L/∂S_t = Qᵀ ∂L/∂S_{t+1} = −Q ∂L/∂S_{t+1}``. The packed gradient is
``dq[p] = (∂L/∂Q − ∂L/∂Qᵀ)[i, j]``. The S_t are recomputed in backward (k(k+1)/2 extra b×b products for k terms;
k = 3 by default), so nothing but q is saved.

Two paths:
* **fused** (b ≤ 32): one program per block keeps Q, S and the gradients in registers; one launch forward, one
  backward. The skew matrix is unpacked inside the kernel (no dense Q ever touches memory).
* **tiled** (b > 32, e.g. POET-X's b = 256): every Horner step is one batched GEMM launch over (block, tile, tile)
  with the packed Q unpacked on the fly in the A-operand loads; intermediate S_t live in global memory.
All products are fp32 with ``input_precision="ieee"`` (the series is sensitive to rounding and the blocks are small).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import check_device, check_float, check_unit_stride, interpreting, pow2

FUSED_MAX_BLOCK = 32     # beyond, six fp32 b×b tiles per program no longer fit in registers (spills)


@triton.jit
def _skew_tile(q_ptr, q_base, stride_qp, rows, cols, b):
    """Q[rows, cols] (rows [M, 1], cols [1, N] index tensors) of the skew block whose packed row starts at q_base."""
    upper = (rows < cols) & (cols < b)
    lower = (cols < rows) & (rows < b)
    i = tl.where(upper, rows, cols)                    # the (smaller, larger) index pair of either triangle
    j = tl.where(upper, cols, rows)
    idx = i * b - (i * (i + 1)) // 2 + j - i - 1
    v = tl.load(q_ptr + q_base + idx.to(tl.int64) * stride_qp, mask=upper | lower, other=0.0).to(tl.float32)
    return tl.where(upper, v, -v)


@triton.jit
def _horner(q, eye, T: tl.constexpr):
    """S_T = I + Q(I + Q(… (I + Q))) with T products (S_0 = I)."""
    s = eye
    for _ in tl.static_range(T):
        s = eye + tl.dot(q, s, input_precision="ieee")
    return s


@triton.jit
def _cnp_fwd_fused(q_ptr, r_ptr, b, stride_qr, stride_qp, stride_rr, stride_ri,
                   K: tl.constexpr, BLOCK: tl.constexpr):
    blk = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    inside = (rows < b) & (cols < b)
    q = _skew_tile(q_ptr, blk * stride_qr, stride_qp, rows, cols, b)
    eye = tl.where((rows == cols) & inside, 1.0, 0.0)
    s = _horner(q, eye, K)
    r = s + tl.dot(q, s, input_precision="ieee")
    tl.store(r_ptr + blk * stride_rr + rows * stride_ri + cols, r.to(r_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _cnp_bwd_fused(q_ptr, g_ptr, dq_ptr, b, stride_qr, stride_qp, stride_gr, stride_gi, stride_dr,
                   K: tl.constexpr, BLOCK: tl.constexpr):
    blk = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    inside = (rows < b) & (cols < b)
    q = _skew_tile(q_ptr, blk * stride_qr, stride_qp, rows, cols, b)
    eye = tl.where((rows == cols) & inside, 1.0, 0.0)
    g = tl.load(g_ptr + blk * stride_gr + rows * stride_gi + cols, mask=inside, other=0.0).to(tl.float32)
    dq = tl.dot(g, tl.trans(_horner(q, eye, K)), input_precision="ieee")        # G S_kᵀ
    ds = g - tl.dot(q, g, input_precision="ieee")                                # ∂L/∂S_k = (I + Q)ᵀ G
    for t in tl.static_range(K - 1, -1, -1):
        dq += tl.dot(ds, tl.trans(_horner(q, eye, t)), input_precision="ieee")   # ∂L/∂S_{t+1} S_tᵀ
        ds = -tl.dot(q, ds, input_precision="ieee")                              # ∂L/∂S_t = Qᵀ ∂L/∂S_{t+1}
    packed = dq - tl.trans(dq)
    upper = (rows < cols) & (cols < b)
    idx = rows * b - (rows * (rows + 1)) // 2 + cols - rows - 1
    tl.store(dq_ptr + blk * stride_dr + idx.to(tl.int64), packed.to(dq_ptr.dtype.element_ty), mask=upper)


@triton.jit
def _cnp_gemm(a_ptr, b_ptr, c_ptr, o_ptr, b, stride_ar, stride_ai, stride_aj, stride_br, stride_bi, stride_bj,
              stride_cr, stride_ci, stride_or, stride_oi, alpha, beta, gamma,
              A_PACKED: tl.constexpr, A_ONLY: tl.constexpr, HAS_C: tl.constexpr,
              BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Per block: ``O = α·I + β·C + γ·A·B`` (``A_ONLY``: ``γ·A`` instead of the product). ``A_PACKED``: A is the
    skew Q unpacked from the packed rows (``stride_ai`` = packed stride); otherwise A, B are strided (so a transpose
    is a swap of strides). One program per (block, row tile, column tile)."""
    blk = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BM + tl.arange(0, BM)[:, None]
    cols = tl.program_id(2) * BN + tl.arange(0, BN)[None, :]
    inside = (rows < b) & (cols < b)
    if A_ONLY:
        if A_PACKED:
            acc = _skew_tile(a_ptr, blk * stride_ar, stride_ai, rows, cols, b)
        else:
            acc = tl.load(a_ptr + blk * stride_ar + rows * stride_ai + cols * stride_aj, mask=inside,
                          other=0.0).to(tl.float32)
    else:
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, b, BK):
            ks = k0 + tl.arange(0, BK)
            if A_PACKED:
                a = _skew_tile(a_ptr, blk * stride_ar, stride_ai, rows, ks[None, :], b)
            else:
                a = tl.load(a_ptr + blk * stride_ar + rows * stride_ai + ks[None, :] * stride_aj,
                            mask=(rows < b) & (ks[None, :] < b), other=0.0).to(tl.float32)
            bt = tl.load(b_ptr + blk * stride_br + ks[:, None] * stride_bi + cols * stride_bj,
                         mask=(ks[:, None] < b) & (cols < b), other=0.0).to(tl.float32)
            acc += tl.dot(a, bt, input_precision="ieee")
    out = gamma * acc + tl.where((rows == cols) & inside, alpha, 0.0)
    if HAS_C:
        c = tl.load(c_ptr + blk * stride_cr + rows * stride_ci + cols, mask=inside, other=0.0).to(tl.float32)
        out += beta * c
    tl.store(o_ptr + blk * stride_or + rows * stride_oi + cols, out, mask=inside)


@triton.jit
def _pack_skew_grad(d_ptr, dq_ptr, b, stride_dr, stride_di, stride_qr, BT: tl.constexpr):
    """dq[p(i, j)] = D[i, j] − D[j, i] for i < j, one program per (block, row tile, column tile)."""
    blk = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BT + tl.arange(0, BT)[:, None]
    cols = tl.program_id(2) * BT + tl.arange(0, BT)[None, :]
    upper = (rows < cols) & (cols < b)
    base = d_ptr + blk * stride_dr
    d = tl.load(base + rows * stride_di + cols, mask=upper, other=0.0) - \
        tl.load(base + cols * stride_di + rows, mask=upper, other=0.0)
    idx = rows * b - (rows * (rows + 1)) // 2 + cols - rows - 1
    tl.store(dq_ptr + blk * stride_qr + idx.to(tl.int64), d.to(dq_ptr.dtype.element_ty), mask=upper)


# ---- launchers ----------------------------------------------------------------------------------------------------

def check_cnp(q_packed: torch.Tensor, b, k) -> None:
    op = "cayley_neumann"
    check_float(op, "q_packed", q_packed)
    if not isinstance(b, int) or isinstance(b, bool) or b < 1:
        raise ValueError(f"{op}: b must be a positive int, got {b!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"{op}: k (number of Neumann terms) must be an int ≥ 0, got {k!r}")
    if q_packed.dim() != 2 or q_packed.shape[1] != b * (b - 1) // 2:
        raise ValueError(f"{op}: q_packed must have shape [r, b(b-1)/2] = [r, {b * (b - 1) // 2}] for b={b}, got "
                         f"{list(q_packed.shape)}")
    check_unit_stride(op, "q_packed", q_packed)
    check_device(op, q_packed=q_packed)


def cnp_forward(q_packed: torch.Tensor, b: int, k: int, tiled: bool | None = None, tile: int = 64) -> torch.Tensor:
    """Launch the forward: ``R[r, b, b]`` in q's dtype. ``tiled=None`` picks the fused path for b ≤ 32."""
    check_cnp(q_packed, b, k)
    r = q_packed.shape[0]
    out = torch.empty(r, b, b, dtype=q_packed.dtype, device=q_packed.device)
    if r == 0:
        return out
    if not (b > FUSED_MAX_BLOCK if tiled is None else tiled):
        block = pow2(b)
        _cnp_fwd_fused[(r,)](q_packed, out, b, q_packed.stride(0), q_packed.stride(1), out.stride(0), out.stride(1),
                             K=k, BLOCK=block, num_warps=4 if block <= 16 else 8)
        return out
    gemm = _TiledGemm(q_packed, b, tile)
    if k == 0:
        gemm.run(gemm.Q, None, alpha=1.0, a_only=True, out=out)  # R = I + Q
        return out
    s = gemm.series(k)[-1]                                      # S_k (fp32)
    gemm.run(gemm.Q, s, c=s, beta=1.0, out=out)                 # R = S_k + Q S_k
    return out


def cnp_backward(q_packed: torch.Tensor, grad_r: torch.Tensor, b: int, k: int, tiled: bool | None = None,
                 tile: int = 64) -> torch.Tensor:
    """Launch the backward: ``∂L/∂q_packed`` in q's dtype from ``grad_r = ∂L/∂R``."""
    op = "cayley_neumann (backward)"
    check_cnp(q_packed, b, k)
    check_float(op, "grad_R", grad_r)
    if tuple(grad_r.shape) != (q_packed.shape[0], b, b):
        raise ValueError(f"{op}: grad_R must have shape {[q_packed.shape[0], b, b]}, got {list(grad_r.shape)}")
    check_unit_stride(op, "grad_R", grad_r)
    r = q_packed.shape[0]
    dq = torch.zeros_like(q_packed)
    if r == 0 or b < 2:
        return dq
    if not (b > FUSED_MAX_BLOCK if tiled is None else tiled):
        block = pow2(b)
        _cnp_bwd_fused[(r,)](q_packed, grad_r, dq, b, q_packed.stride(0), q_packed.stride(1), grad_r.stride(0),
                             grad_r.stride(1), dq.stride(0), K=k, BLOCK=block, num_warps=4 if block <= 16 else 8)
        return dq
    gemm = _TiledGemm(q_packed, b, tile)
    series = [None] + (gemm.series(k) if k else [])             # S_1 … S_k (S_0 = I is implicit)
    g = grad_r.float()
    dQ = gemm.new()
    gemm.run(g, _t(series[k]) if k else None, a_only=k == 0, out=dQ)          # G S_kᵀ
    ds = gemm.new()
    gemm.run(gemm.Q, g, c=g, beta=1.0, gamma=-1.0, out=ds)                        # G − Q G
    for t in range(k - 1, -1, -1):
        if t == 0:
            gemm.run(ds, None, c=dQ, beta=1.0, a_only=True, out=dQ)                 # += ∂L/∂S_1 · I
        else:
            gemm.run(ds, _t(series[t]), c=dQ, beta=1.0, out=dQ)
            nxt = gemm.new()
            gemm.run(gemm.Q, ds, gamma=-1.0, out=nxt)                              # −Q ∂L/∂S_{t+1}
            ds = nxt
    grid = (r, triton.cdiv(b, 32), triton.cdiv(b, 32))
    _pack_skew_grad[grid](dQ, dq, b, dQ.stride(0), dQ.stride(1), dq.stride(0), BT=32)
    return dq


def _t(m: torch.Tensor) -> torch.Tensor:
    return m.transpose(1, 2)                                    # a strided view: the GEMM reads it in place


class _TiledGemm:
    """The b > 32 path: batched ``O = α·I + β·C + γ·A·B`` launches over fp32 [r, b, b] buffers."""

    def __init__(self, q_packed: torch.Tensor, b: int, tile: int):
        self.q, self.b, self.tile = q_packed, b, tile
        self.r = q_packed.shape[0]
        self.Q = object()                                       # marker: "the packed skew matrix"

    def new(self) -> torch.Tensor:
        return torch.empty(self.r, self.b, self.b, dtype=torch.float32, device=self.q.device)

    def series(self, t: int) -> list[torch.Tensor]:
        """[S_1, …, S_t] for t ≥ 1 (S_1 = I + Q; S_{t+1} = I + Q S_t) as fresh fp32 buffers."""
        s = self.new()
        self.run(self.Q, None, alpha=1.0, a_only=True, out=s)
        out = [s]
        for _ in range(t - 1):
            out.append(self.new())
            self.run(self.Q, out[-2], alpha=1.0, out=out[-1])
        return out

    def run(self, a, bmat, *, out, c=None, alpha=0.0, beta=0.0, gamma=1.0, a_only=False) -> None:
        packed = a is self.Q
        a_t = self.q if packed else a
        a_strides = (self.q.stride(0), self.q.stride(1), 0) if packed else a.stride()
        b_t = bmat if bmat is not None else out
        c_t = c if c is not None else out
        for name, t in (("C", c_t), ("O", out)):
            if t.stride(2) != 1:
                raise ValueError(f"cayley_neumann tiled GEMM: {name} must have unit inner stride")
        bm = min(self.tile, pow2(self.b))
        grid = (self.r, triton.cdiv(self.b, bm), triton.cdiv(self.b, bm))
        _cnp_gemm[grid](a_t, b_t, c_t, out, self.b, *a_strides, *b_t.stride(), c_t.stride(0), c_t.stride(1),
                        out.stride(0), out.stride(1), alpha, beta, gamma, A_PACKED=packed, A_ONLY=a_only,
                        HAS_C=c is not None, BM=bm, BN=bm, BK=bm if interpreting() else min(bm, 32))


class CayleyNeumann(torch.autograd.Function):
    """Autograd node: forward and backward are the kernels above; only ``q_packed`` is saved."""

    @staticmethod
    def forward(ctx, q_packed, b, k):
        ctx.save_for_backward(q_packed)
        ctx.b, ctx.k = b, k
        return cnp_forward(q_packed, b, k)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_r):
        (q_packed,) = ctx.saved_tensors
        return cnp_backward(q_packed, grad_r.contiguous(), ctx.b, ctx.k), None, None


def cayley_neumann(q_packed: torch.Tensor, b: int, k: int = 3) -> torch.Tensor:
    """Triton ``cayley_neumann`` (same signature and value as ``reference.cayley_neumann``)."""
    if isinstance(q_packed, torch.Tensor) and q_packed.dim() == 2 and q_packed.shape[-1] > 1 \
            and q_packed.stride(-1) != 1:
        q_packed = q_packed.contiguous()
    check_cnp(q_packed, b, k)
    return CayleyNeumann.apply(q_packed, b, k)
