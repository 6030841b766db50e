"""Cayley map and its Cayley–Neumann approximation (DESIGN §5, reference §1.3).

For skew-symmetric ``Q`` (``Qᵀ = −Q``) the **exact Cayley** transform

    R = (I + Q)(I − Q)⁻¹  ( = (I − Q)⁻¹(I + Q), the factors commute)

is orthogonal with det R = +1, R(0) = I and R(−Q) = Rᵀ. Its inverse is ``Q = (R − I)(R + I)⁻¹``, defined whenever
R has no eigenvalue −1.

The **Cayley–Neumann parameterization** (CNP; POET Eq. 6, OFTv2 §3.3) replaces ``(I − Q)⁻¹`` by the first k+1 terms
of its Neumann series:

    R_k = (I + Q)(I + Q + Q² + … + Q^k) = I + 2Q + 2Q² + … + 2Q^k + Q^{k+1}

so k = 3 gives ``I + 2Q + 2Q² + 2Q³ + Q⁴`` — the POET Triton kernel and peft OFT ≥ 0.18 with
``num_cayley_neumann_terms=5`` (the project default). It is orthogonal only up to O(‖Q‖^{k+1}) and needs
‖Q‖₂ < 1 for the series to converge (POET keeps Q small by re-zeroing it at every merge). docs/ortho.md tabulates
``‖RᵀR − I‖_F/√b`` against ‖Q‖ and k.

Sign convention: peft's *exact* branch (``use_cayley_neumann=False``) computes ``(I − Q)(I + Q)⁻¹ = cayley(Q)ᵀ``,
the opposite of its own CNP branch and of this module. Compare with ``cayley(-Q)`` there.
"""
from __future__ import annotations

import torch


def _check_square(a: torch.Tensor, name: str) -> None:
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name} must be a (batch of) square matrices [..., b, b], got shape {tuple(a.shape)}")


def _eye_like(a: torch.Tensor) -> torch.Tensor:
    return torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)


def cayley(q: torch.Tensor) -> torch.Tensor:
    """Exact Cayley ``R = (I + Q)(I − Q)⁻¹`` for (a batch of) skew-symmetric ``Q[..., b, b]``.

    Solved, never inverted: ``X (I − Q) = I + Q`` via ``torch.linalg.solve(..., left=False)``. ``I − Q`` is always
    invertible for real skew Q (its eigenvalues are 1 − iλ, λ real). Differentiable through ``linalg.solve``.
    """
    _check_square(q, "q")
    eye = _eye_like(q)
    return torch.linalg.solve(eye - q, eye + q, left=False)


def inverse_cayley(r: torch.Tensor) -> torch.Tensor:
    """``Q = (I + R)⁻¹(R − I)``, the skew-symmetric matrix with ``cayley(Q) = R`` for orthogonal ``R``.

    Raises ``ValueError`` when ``R + I`` is singular (R has eigenvalue −1, e.g. a reflection of one axis pair by π):
    those rotations lie outside the Cayley chart. For a merely near-orthogonal R the result is near-skew; take
    ``(Q − Qᵀ)/2`` if an exactly skew matrix is needed.
    """
    _check_square(r, "r")
    eye = _eye_like(r)
    q, info = torch.linalg.solve_ex(eye + r, r - eye)
    if (info != 0).any():
        raise ValueError("inverse_cayley: R + I is singular (R has an eigenvalue −1), so R is not the Cayley "
                         "transform of any finite skew-symmetric Q")
    return q


def cayley_neumann(q: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Cayley–Neumann ``R_k = (I + Q)(I + Q + … + Q^k)`` (module docstring); k = 3 by default.

    The expanded polynomial ``I + 2Q + … + 2Q^k + Q^{k+1}`` is evaluated by Horner's rule,
    ``P = Q + 2I;  P ← 2I + Q·P  (k − 1 times);  R = I + Q·P`` — k matrix products, the fewest for degree k + 1 by
    this rule (the factored form ``(I+Q)·S`` needs k + 1). ``k = 0`` gives ``I + Q`` (first order, not recommended:
    the paper's k = 0 run did not converge).
    """
    _check_square(q, "q")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k (number of Neumann terms) must be an int ≥ 0, got {k!r}")
    eye = _eye_like(q)
    if k == 0:
        return eye + q
    p = q + 2 * eye
    for _ in range(k - 1):
        p = torch.baddbmm(2 * eye, q, p) if q.dim() == 3 else 2 * eye + q @ p
    return torch.baddbmm(eye, q, p) if q.dim() == 3 else eye + q @ p


def random_skew(b: int, norm: float, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random b×b skew-symmetric ``Q = A − Aᵀ`` (A standard Gaussian) rescaled to spectral norm ``‖Q‖₂ = norm``."""
    a = torch.randn(b, b, generator=generator, dtype=torch.float64)
    q = a - a.T
    return (q * (norm / torch.linalg.matrix_norm(q, ord=2))).to(dtype)


def cnp_orthogonality_error(norm: float, k: int | None, b: int = 32, seed: int = 0,
                            dtype: torch.dtype = torch.float64) -> float:
    """``‖R_kᵀR_k − I‖_F/√b`` of the Cayley–Neumann rotation of a random skew Q with ``‖Q‖₂ = norm``
    (``k=None``: the exact Cayley map) — the docs/ortho.md table.

    Closed form: since ``I + Q + … + Q^k = (I − Q)⁻¹(I − Q^{k+1})`` and all factors commute,
    ``R_kᵀR_k − I = −Q^{2k+2}`` for even k and ``−2Q^{k+1} + Q^{2k+2}`` for odd k (Q^{k+1} is skew for even k,
    symmetric for odd k): the error is O(‖Q‖^{2k+2}) for even k and O(2‖Q‖^{k+1}) for odd k.
    """
    q = random_skew(b, norm, torch.Generator().manual_seed(seed), dtype)
    r = cayley(q) if k is None else cayley_neumann(q, k)
    eye = torch.eye(b, dtype=dtype)
    return float(torch.linalg.matrix_norm(r.T @ r - eye) / b ** 0.5)


def cnp_table_markdown(norms=(0.01, 0.1, 0.5), ks=(1, 2, 3, 4, 5), b: int = 32, seed: int = 0) -> str:
    """The markdown table of ``cnp_orthogonality_error`` (docs/ortho.md; a test recomputes it)."""
    lines = ["| k | " + " | ".join(f"‖Q‖₂ = {n}" for n in norms) + " |", "|---|" + "---|" * len(norms)]
    for k in (*ks, None):
        cells = " | ".join(f"{cnp_orthogonality_error(n, k, b, seed):.3e}" for n in norms)
        lines.append(f"| {'exact' if k is None else k} | {cells} |")
    return "\n".join(lines)



_SKEW_INDEX: dict = {}


def _skew_index(b: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions ``(rows·b + cols, cols·b + rows)`` of the strict upper triangle and its mirror (cached)."""
    key = (b, str(device))
    if key not in _SKEW_INDEX:
        rows, cols = torch.triu_indices(b, b, 1, device=device)
        _SKEW_INDEX[key] = (rows * b + cols, cols * b + rows)
    return _SKEW_INDEX[key]


def _horner_iterates(q: torch.Tensor, k: int) -> list[torch.Tensor]:
    """``[P_1, …, P_k]`` with ``P_1 = Q + 2I``, ``P_{j+1} = 2I + Q P_j`` for ``q[r, b, b]`` (``R = I + Q P_k``)."""
    two_eye = 2 * torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    iterates = [q + two_eye]
    for _ in range(k - 1):
        iterates.append(torch.baddbmm(two_eye, q, iterates[-1]))
    return iterates


class _CayleyNeumannPacked(torch.autograd.Function):
    """``cayley_neumann(skew_from_packed(q, b), k)`` for ``q[r, b(b−1)/2]`` that saves only ``q`` for backward.

    Autograd on the plain function keeps Q and every Horner iterate ``P_j`` (k + 1 matrices of b×b per block); here
    they are rebuilt in backward (k − 1 small products). Reverse Horner, with ``G = ∂L/∂R``::

        R = I + Q P_k:            ∂Q  = G P_kᵀ,      D = Qᵀ G          (D = ∂L/∂P_k)
        P_{j+1} = 2I + Q P_j:     ∂Q += D P_jᵀ,      D ← Qᵀ D          (j = k−1 … 1)
        P_1 = Q + 2I:             ∂Q += D

    and the packed gradient is ``∂Q[rows, cols] − ∂Q[cols, rows]`` (``skew_from_packed``'s adjoint). Lean on
    purpose — no argument checks (``cayley_neumann_packed`` does them), cached indices, flat gathers — because it
    runs once per adapted layer per step on tiny blocks, where Python overhead is most of the cost."""

    @staticmethod
    def _skew(q_packed: torch.Tensor, b: int) -> torch.Tensor:
        upper, lower = _skew_index(b, q_packed.device)
        flat = q_packed.new_zeros(q_packed.shape[0], b * b)
        flat.index_copy_(1, upper, q_packed)
        flat.index_copy_(1, lower, -q_packed)
        return flat.view(-1, b, b)

    @staticmethod
    def forward(ctx, q_packed, b, k):
        ctx.b, ctx.k = b, k
        ctx.save_for_backward(q_packed)
        q = _CayleyNeumannPacked._skew(q_packed.detach(), b)
        if k == 0:
            return q + torch.eye(b, dtype=q.dtype, device=q.device)
        return torch.baddbmm(torch.eye(b, dtype=q.dtype, device=q.device), q, _horner_iterates(q, k)[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_r):
        (q_packed,) = ctx.saved_tensors
        b, k = ctx.b, ctx.k
        grad_r = grad_r.to(q_packed.dtype)                               # bf16 when R was consumed under autocast
        q = _CayleyNeumannPacked._skew(q_packed, b)
        if k == 0:
            grad_q = grad_r
        else:
            iterates = _horner_iterates(q, k)
            qt = q.transpose(-1, -2)
            grad_q = torch.bmm(grad_r, iterates[-1].transpose(-1, -2))
            d = torch.bmm(qt, grad_r)
            for p in reversed(iterates[:-1]):
                grad_q = torch.baddbmm(grad_q, d, p.transpose(-1, -2))
                d = torch.bmm(qt, d)
            grad_q = grad_q + d
        upper, lower = _skew_index(b, q_packed.device)
        flat = grad_q.reshape(-1, b * b)
        return flat.index_select(1, upper) - flat.index_select(1, lower), None, None


def cayley_neumann_packed(q_packed: torch.Tensor, b: int, k: int = 3) -> torch.Tensor:
    """``R[..., b, b] = cayley_neumann(skew_from_packed(q_packed, b), k)`` from packed skew blocks
    ``q_packed[..., b(b−1)/2]``; equal values, and autograd keeps only ``q_packed`` (the iterates are recomputed in
    backward — see ``_CayleyNeumannPacked``). The kernel seam's torch twin."""
    from .skew import n_packed, skew_from_packed

    if not isinstance(b, int) or isinstance(b, bool) or b <= 0:
        raise ValueError(f"b must be a positive int, got {b!r}")
    if q_packed.shape[-1:] != (n_packed(b),):
        raise ValueError(f"q_packed must have last dimension b(b-1)/2 = {n_packed(b)} for b={b}, got shape "
                         f"{tuple(q_packed.shape)}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k (number of Neumann terms) must be an int ≥ 0, got {k!r}")
    if q_packed.dim() != 2:
        return cayley_neumann(skew_from_packed(q_packed, b), k)          # other batch shapes: plain autograd
    if torch.is_autocast_enabled(q_packed.device.type):
        # in q's own precision: the blocks are small and R feeds every token (its consumers autocast it)
        with torch.autocast(q_packed.device.type, enabled=False):
            return _CayleyNeumannPacked.apply(q_packed, b, k)
    return _CayleyNeumannPacked.apply(q_packed, b, k)
