"""The POET linear map as pure functions: input-centric and weight-centric, and the cost rule that picks one.

Notation of ``poet.py`` (PyTorch layout, row vectors): the stored weight is pre-permuted, ``W_s[n, m]``; the
rotations are block-diagonal, ``B_in = blockdiag(G_in)`` (m×m) and ``B_out = blockdiag(G_out)`` (n×n); the
permutation matrices are defined by ``x Π = x[..., perm]``. The layer computes ``y = x W_effᵀ`` with

    W_eff = Π_outᵀ B_outᵀ W_s B_inᵀ Π_inᵀ        (= Pᵀ W₀ Rᵀ; the paper's W_RP = R W₀ P transposed)

Two ways to evaluate it (same math, same result up to float reassociation):

* **input-centric** (``poet_forward``, POET-X): ``y = ((x Π_in B_in) W_sᵀ B_out) Π_outᵀ`` — gather the tokens,
  rotate every token by the small blocks, one matmul with W_s, rotate, gather back. The rotations cost
  ``N·(m·b_in + n·b_out)`` multiply-adds for N tokens, and the gathers move ``N·(m + n)`` numbers.
* **weight-centric** (``poet_forward_weight``): build ``W_eff`` once per call (``effective_weight_from``:
  ``n·m·b_in + m·n·b_out`` multiply-adds; the permutations are row gathers of m×n matrices) and run
  one ``F.linear``, exactly like ``nn.Linear``. No activation is gathered or rotated, and autograd keeps the input
  and two m×n matrices instead of two rotated copies of the activations.

``choose_centric`` compares the two rotation costs (for BS, weight-centric wins when ``N > 2mn/(m+n)``: for a
square layer as soon as there are more tokens than features). Everything else (the matmul with the weight, its
gradients) costs the same in both.

Permutations go through ``permute``, whose backward is a gather with the inverse permutation. (Plain indexing
``x[..., perm]`` backpropagates with a scatter-add, ``index_put_(accumulate=True)``, which is several times slower
on CPU and sorts the index on GPU.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import kernels
from ..ortho.permutations import fast_inverse_permutation as inverse_permutation, permute

CENTRICS = ("auto", "input", "weight")


def rotate(x: torch.Tensor, R: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """``x[..., perm]`` with its first ``r·b`` coordinates times ``blockdiag(R)`` (all of them for BS)."""
    covered = R.shape[0] * R.shape[1]
    if covered == x.shape[-1]:
        return kernels.block_rotate(x, R, perm)
    if perm is not None:
        x = permute(x, perm)
    return torch.cat([kernels.block_rotate(x[..., :covered], R), x[..., covered:]], dim=-1)


def poet_forward(x: torch.Tensor, R_in: torch.Tensor, R_out: torch.Tensor, weight: torch.Tensor,
                 perm_in: torch.Tensor, perm_out: torch.Tensor) -> torch.Tensor:
    """Input-centric POET map (no bias): ``((x Π_in B_in) W_sᵀ B_out) Π_outᵀ`` for stored weight ``weight = W_s``.
    The first gather is folded into ``kernels.block_rotate`` (one load on GPU); the last is ``permute``."""
    y = F.linear(rotate(x, R_in, perm_in), weight)
    return permute(rotate(y, R_out, None), perm_out, inverse_permutation(perm_out))


def _rotate_rows(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``blockdiag(g)ᵀ · w`` on the first ``r·b`` rows of ``w[rows, cols]``: one batched matmul over
    ``w[:r·b]`` viewed as ``[r, b, cols]`` (a view, no copy, for a row-major ``w`` and for a transposed one),
    ``r·b²·cols`` multiply-adds. The result is row-major."""
    r, b = g.shape[0], g.shape[1]
    head = torch.matmul(g.transpose(-1, -2), w[:r * b].reshape(r, b, w.shape[1])).reshape(r * b, w.shape[1])
    return head if r * b == w.shape[0] else torch.cat([head, w[r * b:]], dim=0)


def effective_weight_from(ws: torch.Tensor, g_in: torch.Tensor, g_out: torch.Tensor, perm_in: torch.Tensor,
                          perm_out: torch.Tensor) -> torch.Tensor:
    """``W_eff = Π_outᵀ B_outᵀ W_s B_inᵀ Π_inᵀ`` (``= Pᵀ W₀ Rᵀ``) from stored weight ``ws[n, m]`` in
    ``O(m·n·b)``, differentiable in ``g_in``, ``g_out`` (and ``ws``). Returned as the transpose of a row-major
    ``W_effᵀ[m, n]`` (``F.linear`` takes it as is). Both permutations are row gathers of a row-major matrix:

        A = Π_outᵀ B_outᵀ W_s          A[o] = (B_outᵀ W_s)[perm_out[o]]
        W_effᵀ = Π_in B_in Aᵀ           (Π_in M)[c] = M[inv(perm_in)[c]]

    and both rotations are batched matmuls over row blocks (of W_s, and of Aᵀ as a strided view)."""
    g_in, g_out = g_in.to(ws.dtype), g_out.to(ws.dtype)
    a = permute(_rotate_rows(ws, g_out), perm_out, inverse_permutation(perm_out), 0)      # [n, m]
    wt = _rotate_rows(a.t(), g_in.transpose(-1, -2))                                        # B_in Aᵀ   [m, n]
    return permute(wt, inverse_permutation(perm_in), perm_in, 0).t()


def poet_forward_weight(x: torch.Tensor, R_in: torch.Tensor, R_out: torch.Tensor, weight: torch.Tensor,
                        perm_in: torch.Tensor, perm_out: torch.Tensor, bias: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """Weight-centric POET map: ``F.linear(x, W_eff, bias)`` with ``W_eff = effective_weight_from(...)``."""
    return F.linear(x, effective_weight_from(weight, R_in, R_out, perm_in, perm_out), bias)


def rotation_costs(n_tokens: int, in_features: int, out_features: int, g_in_shape, g_out_shape) -> tuple[int, int]:
    """Multiply-adds of the rotations per forward: ``(input-centric, weight-centric)``. With ``r`` blocks of size b
    on a side, input-centric rotates N tokens on both sides, ``N·(r_in·b_in² + r_out·b_out²)``; weight-centric
    rotates the n rows' input side and the m columns' output side of W once, ``n·r_in·b_in² + m·r_out·b_out²``."""
    (r_in, b_in), (r_out, b_out) = tuple(g_in_shape[:2]), tuple(g_out_shape[:2])
    per_in, per_out = r_in * b_in * b_in, r_out * b_out * b_out
    return n_tokens * (per_in + per_out), out_features * per_in + in_features * per_out


def choose_centric(centric: str, n_tokens: int, in_features: int, out_features: int, g_in_shape, g_out_shape) -> str:
    """``"input"`` or ``"weight"``: ``centric`` itself unless it is ``"auto"``, then the cheaper rotation cost
    (``rotation_costs``; a tie goes to input-centric, which needs no m×n temporary)."""
    if centric != "auto":
        return centric
    cost_input, cost_weight = rotation_costs(n_tokens, in_features, out_features, g_in_shape, g_out_shape)
    return "weight" if cost_weight < cost_input else "input"
