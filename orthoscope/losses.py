"""Losses a ``Run`` can take by name, plus helpers shared by tasks.

Every loss maps ``(output, target) -> scalar``. Classification outputs are ``[B, C]`` logits, or ``[B, T, C]`` for
language models (targets ``[B, T]``). Harmonic models emit distance logits ``-n·log d`` so that cross-entropy on them
*is* the harmonic loss (see ``orthoscope.models.heads``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

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
