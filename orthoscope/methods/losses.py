"""Losses a ``Run`` can take by name, plus helpers shared by tasks.

Every loss maps ``(output, target) -> scalar``. Classification outputs are ``[B, C]`` logits, or ``[B, T, C]`` for
language models (targets ``[B, T]``). Harmonic models emit distance logits ``-n·log d`` so that cross-entropy on them
*is* the harmonic loss (see ``orthoscope.models.heads``).
"""
from __future__ import annotations

import math as _math
from typing import Callable

import torch
import torch.nn.functional as F

from .. import kernels
from ..kernels.harmonic import HARMONIC_EPS, check_harmonic_exponent, harmonic_logits, squared_distances  # noqa: F401

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; flattens ``[B, T, C]`` / ``[B, T]`` language-model shapes."""
    if output.dim() == target.dim() + 1 and output.dim() > 2:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
    return F.cross_entropy(output, target)


def mse_onehot(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE to one-hot targets (Omnigrok's loss): ``mean_i ‖out_i − onehot(y_i)‖² `` summed over classes."""
    onehot = F.one_hot(target, output.shape[-1]).to(output.dtype)
    return ((output - onehot) ** 2).sum(-1).mean()


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


LOSSES: dict[str, Loss] = {"cross_entropy": cross_entropy, "mse_onehot": mse_onehot, "mse": mse}


def register_loss(name: str, fn: Loss) -> None:
    LOSSES[name] = fn


def resolve_loss(loss) -> Loss:
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"unknown loss {loss!r}; use a callable or one of {sorted(LOSSES)}")


def accuracy(output: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of argmax predictions equal to the integer target (any leading shape)."""
    if target.dtype.is_floating_point:
        raise ValueError("accuracy needs integer class targets")
    return (output.argmax(-1) == target).float().mean().item()


# ---- harmonic loss (Baek, Liu, Tyagi, Tegmark 2025, arXiv 2502.01628) ---------------------------------------------
#
# Harmonic logit: the Euclidean distance d_i = ‖w_i − x‖₂ from the representation x to class centre w_i.
# HarMax: p_i = d_i^(−n) / Σ_j d_j^(−n) = softmax_i(−n·log d_i); harmonic loss = −log p_y.
# The harmonic logits' conventions and numerics are documented where they live, in orthoscope/kernels/harmonic.py.


def default_harmonic_exponent(dim: int) -> float:
    """n = √D, the default for a D-dimensional representation."""
    if not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"representation dimension must be a positive int, got {dim!r}")
    return _math.sqrt(dim)


def harmax(d: torch.Tensor, n: float) -> torch.Tensor:
    """HarMax over the last dim of distances ``d ≥ 0``: ``d_i^(−n)/Σ_j d_j^(−n)`` = ``softmax(−n·log d)``.

    Scale invariant: ``harmax(λ·d) = harmax(d)`` for every λ > 0. Where a row has zero distances the limit is used:
    the mass is shared equally among them."""
    n = check_harmonic_exponent(n)
    if bool((d < 0).any()):
        raise ValueError("harmax needs distances d ≥ 0")
    zero = d == 0
    p = torch.softmax(-n * torch.log(d.masked_fill(zero, 1.0)), dim=-1)
    if bool(zero.any()):
        rows = zero.any(-1, keepdim=True)
        p = torch.where(rows, zero.to(p.dtype) / zero.sum(-1, keepdim=True).clamp_min(1), p)
    return p


def harmonic_loss(h: torch.Tensor, centers: torch.Tensor, target: torch.Tensor, n: float | None = None) -> torch.Tensor:
    """Mean harmonic loss ``−log HarMax(d)_y`` from representations ``h[..., D]``, centres ``[V, D]`` and integer
    targets ``[...]``, through the kernel seam (``orthoscope.kernels.harmonic_nll``: fused on GPU, so the
    ``[N, V]`` logits of a large vocabulary need not be kept). ``n`` defaults to √D."""
    n = default_harmonic_exponent(h.shape[-1]) if n is None else check_harmonic_exponent(n)
    return kernels.harmonic_nll(h.reshape(-1, h.shape[-1]), centers, target.reshape(-1), n)


# A model whose head is ``orthoscope.models.heads.HarmonicHead`` already outputs −n·log d, so cross-entropy on its
# output is the harmonic loss; the name "harmonic" says so in a Run (``Run(..., loss="harmonic")``).
register_loss("harmonic", cross_entropy)
