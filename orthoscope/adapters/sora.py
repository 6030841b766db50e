"""SoRA — sparse low-rank adaptation (Ding et al. 2023, arXiv 2311.11696): LoRA with an L1-sparsified rank gate.

    W' = W + s · B diag(g) A,        g ∈ R^r, g = 1 at init

The gate is trained by proximal gradient descent on ``L(g) + λ‖g‖₁``: the optimizer takes its usual step on the loss,
then the proximal map of the L1 term, soft-thresholding with threshold η·λ (η = the gate's current learning rate),

    g ← sign(g) · max(|g| − η λ, 0)

zeroes gate entries exactly, so whole rank-one components ``B[:, i] A[i, :]`` switch off. ``prune(model)`` then turns
every SoRA layer into a plain ``LoRALinear`` (or Embedding/Conv2d) of rank ``nnz(g)`` with ``B ← B diag(g)``, which
computes the same function. The gate has no weight decay (λ is its only regularizer). The paper additionally
schedules λ; here λ is constant (change ``SoRAProximal.sparse_lambda`` between ``run.train`` calls to schedule it).

    >>> method = SoRA(rank=8, sparse_lambda=1e-3, targets=["q_proj", "v_proj"], lr=1e-3)
    >>> # run = Run(model, task, method); run.train(500); ranks = prune(run.model)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..methods.base import Intervention, check_positive, trainable
from .core import _replace
from .lora import LoRAConfig, _LowRank
from .registry import AdapterMethod, register_adapter

__all__ = ["SoRAConfig", "SoRA", "SoRAProximal", "soft_threshold", "gate_ranks", "prune"]


def soft_threshold(g: torch.Tensor, threshold: float) -> torch.Tensor:
    """Proximal map of ``threshold · ‖g‖₁``: ``sign(g) · max(|g| − threshold, 0)``."""
    return torch.sign(g) * torch.clamp(g.abs() - threshold, min=0.0)


@register_adapter
@dataclass
class SoRAConfig(LoRAConfig):
    """LoRA layers with a trainable per-rank gate sparsified by the proximal step of ``SoRAProximal``."""

    sparse_lambda: float = field(default=1e-3, metadata={
        "help": "λ of the L1 penalty on the gate; each step soft-thresholds the gate by lr·λ (0: plain gated LoRA)"})

    adapter_name: ClassVar[str] = "sora"
    prefix: ClassVar[str] = "sora_"
    gated: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        check_positive("sparse_lambda", self.sparse_lambda, allow_zero=True)


def _gated_layers(model: nn.Module):
    for path, module in model.named_modules():
        if isinstance(module, _LowRank) and module.gate is not None:
            yield path, module


def gate_ranks(model: nn.Module) -> dict[str, int]:
    """Number of non-zero gate entries (the rank that survives ``prune``) of every SoRA layer."""
    return {path: int((layer.gate != 0).sum()) for path, layer in _gated_layers(model)}


@dataclass
class SoRAProximal(Intervention):
    """After every optimizer step: ``g ← soft_threshold(g, η·λ)`` for every SoRA gate (η: the gate's group lr)."""

    sparse_lambda: float = 1e-3

    def after_step(self, run) -> None:
        lr_of = {id(p): group["lr"] for group in run.optimizer.param_groups for p in group["params"]}
        with torch.no_grad():
            for _, layer in _gated_layers(run.model):
                gate = layer.gate
                if id(gate) in lr_of:
                    gate.copy_(soft_threshold(gate, lr_of[id(gate)] * self.sparse_lambda))


@dataclass
class SoRA(AdapterMethod, SoRAConfig):
    """Method: attach SoRA, train with AdamW (gates without weight decay), soft-threshold the gates after each step."""

    gate_lr: float | None = field(default=None, metadata={"help": "learning rate of the gates (None: lr)"})

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = trainable(model)
        gates = {id(layer.gate) for _, layer in _gated_layers(model)}
        others = [p for p in params if id(p) not in gates]
        gate_params = [p for p in params if id(p) in gates]
        if not gate_params:
            raise ValueError("SoRA: the model has no trainable SoRA gates (was attach() called?)")
        groups = [{"params": others},
                  {"params": gate_params, "weight_decay": 0.0, "lr": self.gate_lr if self.gate_lr else self.lr}]
        return torch.optim.AdamW(groups, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)

    def interventions(self, model=None):
        return [*super().interventions(model), SoRAProximal(self.sparse_lambda)]


@torch.no_grad()
def prune(model: nn.Module) -> dict[str, int]:
    """Replace every SoRA layer by an equivalent plain LoRA layer of rank ``nnz(gate)``, in place.

    ``B[:, kept] · diag(g[kept])`` becomes the new ``lora_B``, ``A[kept]`` the new ``lora_A``; the scale s is kept
    (``alpha = s · rank``). A layer whose gate is all zero has ΔW = 0 and is replaced by its ``base_layer``.
    Returns ``{path: kept rank}``. Merged layers must be unmerged first.
    """
    kept = {}
    for path, layer in list(_gated_layers(model)):
        if layer.merged:
            raise ValueError(f"prune: SoRA layer {path!r} is merged; unmerge it first")
        keep = torch.nonzero(layer.gate != 0).flatten()
        kept[path] = len(keep)
        if len(keep) == 0:
            _replace(model, path, layer.base_layer)
            continue
        config = LoRAConfig(rank=len(keep), alpha=layer.scaling * len(keep),
                            dropout=getattr(layer.dropout, "p", 0.0))
        new = type(layer)(layer.base_layer, config, path)
        b_shape = [1] * layer.B.dim()
        b_shape[1] = len(keep)
        new.A.copy_(layer.A[keep])
        new.B.copy_(layer.B[:, keep] * layer.gate[keep].view(b_shape))
        trains = layer.A.requires_grad
        for p in new.adapter_parameters():
            p.requires_grad_(trains)
        new.train(layer.training)
        _replace(model, path, new)
    return kept
