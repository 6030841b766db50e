"""Pion: a spectrum-preserving optimizer that moves weights by rotations (arXiv 2605.12492; code
``Sphere-AI-Lab/pion``, ``megatron-lm/megatron/core/optimizer/pion.py``).

Write a hidden matrix ``W`` (PyTorch layout ``[out, in]``, ``y = x Wᵀ``) as ``I·W·I`` and move the two identities
on the orthogonal groups O(out) and O(in). The Euclidean gradient ``G`` projects to the two Lie algebras::

    G_in  = WᵀG − GᵀW      (in × in, skew)      input side:  d/dt L(W e^{tΩ})|₀ = ½⟨G_in, Ω⟩
    G_out = GWᵀ − WGᵀ      (out × out, skew)    output side: d/dt L(e^{tΩ} W)|₀ = ½⟨G_out, Ω⟩

and the ideal step is ``W ← exp(αA_out) · W · exp(αA_in)`` with generators ``A = −(momentum of G_…)``. Orthogonal
factors on both sides keep **every singular value** of W; the input-side factor alone also keeps every row norm and
every angle between rows (neurons), hence the hyperspherical energy; the output-side factor keeps column norms.

Momentum (``momentum=``):
  * ``"lie"`` (default; the code's ``lie_lie``): EMAs in the Lie algebras, ``m ← β1 m + (1−β1) G_in/out``;
    with ``second_moment=True`` also ``v ← β2 v + (1−β2) G²`` and ``A = −m/(√v + ε)`` (the project page's
    Adam-style algorithm; still skew, since m is odd and v even in each entry). Off by default, as in the code and
    its 1.3B recipe.
  * ``"transported_ambient"`` (the code's ``transported_ambient_ambient``; the 60M scripts' default): an EMA of the
    raw gradient, ``m ← β1 m + (1−β1) G`` (optional ``v ← β2 v + (1−β2) m²`` — of m², as in the code), projected to
    the Lie algebras as ``m/(√v+ε)``; after each step the buffer is **transported**: it is rotated exactly like W.
  No bias correction (neither implementation has one; the RMS normalization below removes any per-matrix scalar).

Step size (RMS normalization, constant ``rms`` = 0.2): ``α = lr·rms·√(out·in) / ‖W A_in + A_out W‖_F`` — the
first-order ambient update ``W αA_in + αA_out W`` has RMS exactly ``lr·rms``, like an AdamW step (cf. Kimi-Muon's
0.2·√max). The norm is taken on that induced ambient update, not on A. One-sided steps use ``‖W A_in‖`` or ``‖A_out W‖``.

Sides (``side=``): ``"both"`` (bilateral, default), ``"alternate"`` (step 1, 3, … input side; 2, 4, … output side, as
in the code; about half the cost, ≈0.23 % loss gap per the page), or a fixed ``"in"`` / ``"out"``.

The exponential (``degree=``): ``E_d(A) = Σ_{i≤d} Aⁱ/i!`` with d = 2 by default, or ``"exact"`` (``torch.matrix_exp``).
For skew A, ``E₂(A)ᵀE₂(A) = I + A⁴/4``, so degree 2 is orthogonal to fourth order and can only *grow* singular values,
by a factor ≤ √(1 + ‖A‖₂⁴/4) per side and step; every step starts again from I, so the error does not compound.

Product vs additive form (``form=``). The paper's algorithm is the **product** ``W ← E(A_out)·W·E(A_in)`` (default).
The released Megatron code computes the **additive** ``W ← W + W·T(A_in) + T(A_out)·W`` with ``T(A) = E(A) − I``,
i.e. ``W E(A_in) + E(A_out) W − W``. The two differ by exactly the cross term ``T(A_out)·W·T(A_in)`` (second order):
the additive form is not a rotation even with the exact exponential, so its singular values drift at O(α²) per
step where the product form's drift is O(α⁴) (degree 2) or 0 (exact). In one-sided steps the two forms coincide.

No weight decay on matrices (a decay would shrink the spectrum Pion exists to keep); a matrix group asking for one is
an error. Embeddings, the output head and vectors go to AdamW inside the same optimizer (``"matrix": False``
groups). Not implemented from the code: per-head QKV / fused-gate splitting (orthoscope models keep q, k, v, up and
gate as separate matrices) and the unreleased μP spectral scaling.
"""
from __future__ import annotations

import math

import torch

from ..ortho import expm
from .common import GroupedOptimizer, adamw_defaults, check_betas, check_choice, check_nonneg, setup_groups

SIDES = ("both", "alternate", "in", "out")
MOMENTA = ("lie", "transported_ambient")
FORMS = ("product", "additive")


def lie_gradients(w: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(WᵀG − GᵀW, GWᵀ − WGᵀ)``: the input- and output-side projections of ``G`` (no ½, as in the code)."""
    wtg, gwt = w.mT @ g, g @ w.mT
    return wtg - wtg.mT, gwt - gwt.mT


def active_sides(side: str, step: int) -> tuple[bool, bool]:
    """(input side moves, output side moves) at step ``step`` ≥ 1; alternating starts with the input side."""
    if side == "alternate":
        return step % 2 == 1, step % 2 == 0
    return side in ("both", "in"), side in ("both", "out")


def pion_generators(w: torch.Tensor, grad: torch.Tensor, buffers: dict, use_in: bool, use_out: bool,
                    momentum: str = "lie", betas=(0.9, 0.95), second_moment: bool = False, eps: float = 1e-8):
    """Unscaled descent generators ``(A_in, A_out)`` (None for a side that does not move); updates ``buffers``
    (a dict, filled lazily) in place. Everything is computed in ``w``'s dtype (float32/float64)."""
    beta1, beta2 = betas
    if momentum == "lie":
        g_in, g_out = lie_gradients(w, grad)
        out = []
        for key, g in (("in", g_in), ("out", g_out)):        # both EMAs advance every step, as in the code
            m = buffers.setdefault(f"m_{key}", torch.zeros_like(g))
            m.lerp_(g, 1 - beta1)
            a = m
            if second_moment:
                v = buffers.setdefault(f"v_{key}", torch.zeros_like(g))
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                a = m / (v.sqrt() + eps)
            out.append(-a)
        a_in, a_out = out
    else:
        m = buffers.setdefault("m", torch.zeros_like(w))
        m.lerp_(grad, 1 - beta1)
        tilde = m
        if second_moment:
            v = buffers.setdefault("v", torch.zeros_like(w))
            v.mul_(beta2).addcmul_(m, m, value=1 - beta2)
            tilde = m / (v.sqrt() + eps)
        a_in, a_out = (-x for x in lie_gradients(w, tilde))
    return (a_in if use_in else None), (a_out if use_out else None)


def first_order(w: torch.Tensor, a_in, a_out) -> tuple:
    """``(W·A_in, A_out·W)`` (``None`` for a side that does not move): the first-order terms of the rotation, used
    twice — for the step size (``rms_alpha``) and, scaled by α, as the first term of a truncated series (``rotate``)."""
    return (None if a_in is None else w @ a_in), (None if a_out is None else a_out @ w)


def alpha_from(first: tuple, numel: int, lr: float, rms: float = 0.2) -> float:
    """``α`` with ``RMS(α(W·A_in + A_out·W)) = lr·rms`` from ``first_order``'s terms (0 when they vanish)."""
    terms = [t for t in first if t is not None]
    if not terms:
        return 0.0
    norm = (terms[0] if len(terms) == 1 else terms[0] + terms[1]).norm().item()
    return lr * rms * math.sqrt(numel) / norm if norm > 0 else 0.0


def rms_alpha(w: torch.Tensor, a_in, a_out, lr: float, rms: float = 0.2) -> float:
    """``α`` with ``RMS(W·αA_in + αA_out·W) = lr·rms`` (0 when the generators vanish)."""
    return alpha_from(first_order(w, a_in, a_out), w.numel(), lr, rms)


def _series_right(x: torch.Tensor, a: torch.Tensor, degree: int, first=None) -> torch.Tensor:
    """``x·E_d(A) = Σ_{i≤d} x·Aⁱ/i!`` term by term, never forming ``E_d(A)``: ``d·m·n²`` multiply-adds for
    ``x[m, n]`` instead of ``d·n³ + m·n²`` (the input side of a 128×512 matrix: 4× fewer). ``first``: ``x·A``
    when the caller already has it (one product fewer)."""
    out, term = x.clone(), x
    for i in range(1, degree + 1):
        term = first if i == 1 and first is not None else (term @ a) / i
        out += term
    return out


def _series_left(a: torch.Tensor, x: torch.Tensor, degree: int, first=None) -> torch.Tensor:
    """``E_d(A)·x`` term by term (see ``_series_right``; ``first``: ``A·x`` when known)."""
    out, term = x.clone(), x
    for i in range(1, degree + 1):
        term = first if i == 1 and first is not None else (a @ term) / i
        out += term
    return out


def rotate(x: torch.Tensor, a_in, a_out, degree=2, form: str = "product", first=(None, None)) -> torch.Tensor:
    """``E(A_out)·x·E(A_in)`` (product) or ``x + x·T(A_in) + T(A_out)·x`` (additive), ``E`` = ``E_degree`` or the
    exact exponential (``degree="exact"``), ``T = E − I``; a ``None`` generator means that side stays.
    Truncated exponentials are applied as series on ``x`` (equal to ``x @ ortho.expm_truncated(A, d)``).

    ``first``: ``(x·A_in, A_out·x)`` when the caller has them (``pion_update`` computed them for the step size).
    The additive form uses both; the product form can use one, as the first term of the side applied first, so it
    applies first the side whose product is the larger (the output side of a tall matrix, ``m > n``: m²n > mn²) —
    ``E(A_out)·(x·E(A_in)) = (E(A_out)·x)·E(A_in)``, the same product in another order."""
    known_in, known_out = first
    if degree == "exact":
        right = lambda y, a, known=None: y @ expm(a)                      # noqa: E731
        left = lambda a, y, known=None: expm(a) @ y                       # noqa: E731
    else:
        right = lambda y, a, known=None: _series_right(y, a, degree, known)   # noqa: E731
        left = lambda a, y, known=None: _series_left(a, y, degree, known)     # noqa: E731
    if form == "product":
        if a_out is not None and (a_in is None or (x.shape[-2] > x.shape[-1] and known_out is not None)):
            y = left(a_out, x, known_out)
            return y if a_in is None else right(y, a_in)
        y = x if a_in is None else right(x, a_in, known_in)
        return y if a_out is None else left(a_out, y)
    y = x.clone()
    if a_in is not None:
        y += right(x, a_in, known_in) - x          # x·T(A_in), with T = E − I
    if a_out is not None:
        y += left(a_out, x, known_out) - x         # T(A_out)·x
    return y


def pion_update(w: torch.Tensor, grad: torch.Tensor, buffers: dict, step: int, lr: float, side: str = "both",
                momentum: str = "lie", betas=(0.9, 0.95), second_moment: bool = False, eps: float = 1e-8,
                rms: float = 0.2, degree=2, form: str = "product") -> torch.Tensor:
    """One Pion step for one matrix: returns the new ``W`` (a new tensor) and updates ``buffers`` in place
    (the transported-ambient buffer is rotated like W). ``step`` ≥ 1 counts this parameter's updates."""
    use_in, use_out = active_sides(side, step)
    a_in, a_out = pion_generators(w, grad, buffers, use_in, use_out, momentum, betas, second_moment, eps)
    first = first_order(w, a_in, a_out)                # W·A_in and A_out·W: the step size, then the series
    alpha = alpha_from(first, w.numel(), lr, rms)
    a_in = None if a_in is None else alpha * a_in
    a_out = None if a_out is None else alpha * a_out
    if momentum == "transported_ambient":
        buffers["m"].copy_(rotate(buffers["m"], a_in, a_out, degree, form))
    return rotate(w, a_in, a_out, degree, form, tuple(None if t is None else alpha * t for t in first))


def _check_degree(degree) -> None:
    if degree != "exact" and (not isinstance(degree, int) or isinstance(degree, bool) or degree < 1):
        raise ValueError(f"degree must be an int ≥ 1 (truncated exponential) or 'exact', got {degree!r}")


class Pion(GroupedOptimizer):
    """Pion on ``"matrix"`` groups (2-D weights), AdamW on the others (math in the module docstring).

    Args:
        params: parameters, ``(name, tensor)`` pairs or group dicts with ``"matrix": bool`` (plain list = matrices).
        lr: learning rate; the first-order update has RMS ``lr·rms`` (paper recipes: 1e-3 at 60M, 5e-4 at 1.3B).
        betas: (β1, β2) of the Pion moments (0.9, 0.95 in the paper's scripts).
        side: ``"both"``, ``"alternate"``, ``"in"`` or ``"out"``. momentum: ``"lie"`` or ``"transported_ambient"``.
        second_moment: divide by √v (Adam-style) in the momentum's space. eps: ε of that division.
        rms: the RMS constant (0.2). degree: truncated-exponential degree (2) or ``"exact"``.
        form: ``"product"`` (paper) or ``"additive"`` (released code).
        adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay: the AdamW groups.
        check_finite: refuse a step whose gradients hold NaN/inf (``NonFiniteGradError`` naming the parameter).
    """

    name = "Pion"

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.95), side: str = "both", momentum: str = "lie",
                 second_moment: bool = False, eps: float = 1e-8, rms: float = 0.2, degree=2, form: str = "product",
                 adamw_lr: float = 1e-3, adamw_betas=(0.9, 0.95), adamw_eps: float = 1e-8,
                 adamw_weight_decay: float = 0.0, check_finite: bool = True):
        matrix = {"lr": lr, "betas": tuple(betas), "side": side, "momentum": momentum, "second_moment": second_moment,
                  "eps": eps, "rms": rms, "degree": degree, "form": form, "weight_decay": 0.0}
        groups = setup_groups("Pion", params, matrix, adamw_defaults(adamw_lr, adamw_betas, adamw_eps,
                                                                      adamw_weight_decay))
        for group in groups:
            if group["matrix"]:
                if group["weight_decay"] != 0:
                    raise ValueError(f"Pion applies no weight decay to matrices (rotations keep the spectrum; a decay "
                                     f"would shrink it), got weight_decay={group['weight_decay']!r} in a matrix "
                                     "group; use adamw_weight_decay for the AdamW parameters")
                check_betas(group["betas"])
                check_choice(group["side"], "side", SIDES)
                check_choice(group["momentum"], "momentum", MOMENTA)
                check_choice(group["form"], "form", FORMS)
                check_nonneg(group["eps"], "eps")
                check_nonneg(group["rms"], "rms")
                _check_degree(group["degree"])
        super().__init__(groups, check_finite)

    def update(self, p, state, group):
        compute = torch.float64 if p.dtype == torch.float64 else torch.float32
        if not state:
            state["step"] = 0
        state["step"] += 1
        buffers = {k: v for k, v in state.items() if k != "step"}
        new = pion_update(p.to(compute), p.grad.to(compute), buffers, state["step"], group["lr"], group["side"],
                          group["momentum"], tuple(group["betas"]), group["second_moment"], group["eps"], group["rms"],
                          group["degree"], group["form"])
        state.update(buffers)                         # buffers created on the first step join the state
        p.copy_(new)
