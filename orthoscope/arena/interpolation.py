"""Interpolation paths between a base model (α = 0) and a finetune (α = 1): dense (W₀ + αΔW) or along the
orthogonal group (generators scaled; OrthoMerge's decomposition for other finetunes)."""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

INTERPOLATIONS = ("dense", "generator")


@torch.no_grad()
def plain_copy(base: nn.Module, finetuned: nn.Module) -> nn.Module:
    """A copy of ``base`` carrying the weights ``finetuned`` computes with: every adapted layer contributes its
    ``effective_weight()`` (float, so a QOFT layer gives ``deq(W)·Rᵀ`` without re-quantizing) and the other tensors
    (biases inside adapters included) are copied by name. The result has the base architecture, so it can be merged
    (OrthoMerge, TA, TIES) or interpolated with other finetunes of that base."""
    from ..adapters import adapter_layers

    base_state = base.state_dict()
    state = {}
    for key, value in finetuned.state_dict().items():
        plain = key.replace(".base_layer.", ".")
        if plain in base_state and value.shape == base_state[plain].shape:
            state[plain] = value
    for path, layer in adapter_layers(finetuned):
        state[f"{path}.weight"] = layer.effective_weight().detach()
    missing = sorted(set(base_state) - set(state))
    if missing:
        raise ValueError(f"the finetuned model has no tensors for {missing[:6]} of the base model; it must be a "
                         "finetune of this base (same architecture, adapters at most)")
    model = copy.deepcopy(base)
    model.load_state_dict({k: state[k].to(base_state[k].dtype) for k in base_state})
    return model


def _generator_layers(model: nn.Module) -> list[nn.Module]:
    """Adapted layers whose update is a rotation from skew generators (OFT, QOFT: ``q``; BOFT: ``q`` and ``s``)."""
    from ..adapters.boft import BOFTLinear
    from ..adapters.oft import RotationMixin

    return [m for m in model.modules() if isinstance(m, (RotationMixin, BOFTLinear))]


def _scale_generators(finetuned: nn.Module, alpha: float) -> nn.Module:
    from ..adapters.boft import BOFTLinear

    model = copy.deepcopy(finetuned)
    with torch.no_grad():
        for layer in _generator_layers(model):
            layer.q.mul_(alpha)
            if isinstance(layer, BOFTLinear):            # BOFT's output scale: 1 → s linearly
                layer.s.copy_(1 + alpha * (layer.s - 1))
    return model


def interpolation_models(base: nn.Module, finetuned: nn.Module, alphas: Sequence[float], mode: str = "dense"):
    """Yield one model per α on the path from ``base`` (α = 0) to ``finetuned`` (α = 1).

    ``dense``: ``W₀ + α(W₁ − W₀)`` for every tensor (W₁ from ``plain_copy``). ``generator``: for OFT-style adapters
    (OFT, QOFT, BOFT) every skew generator is scaled (``Q → αQ``: each rotation moves along a one-parameter subgroup;
    BOFT's output scale goes 1 → s linearly); for any other finetune each 2-D
    weight is decomposed as ``W₁ = W₀ cayley(A) + τ`` (right Procrustes, ``adapters.orthomerge.decompose``) and
    walked as ``W₀ cayley(αA) + ατ``; other tensors linearly.
    """
    from ..adapters.orthomerge import decompose, default_rotate, rotate

    if mode not in INTERPOLATIONS:
        raise ValueError(f"mode must be one of {INTERPOLATIONS}, got {mode!r}")
    if mode == "generator" and _generator_layers(finetuned):
        for a in alphas:
            yield _scale_generators(finetuned, float(a))
        return
    s0, s1 = base.state_dict(), plain_copy(base, finetuned).state_dict()
    parts = {}
    if mode == "generator":
        parts = {k: decompose(s0[k], s1[k], name=k) for k in s0 if default_rotate(k, s0[k])}
    for a in alphas:
        state = {}
        for k, w0 in s0.items():
            if not w0.is_floating_point():
                state[k] = w0
            elif k in parts:
                gen, tau = parts[k]
                state[k] = rotate(w0, a * gen) + a * tau
            else:
                state[k] = w0 + a * (s1[k] - w0)
        model = copy.deepcopy(base)
        model.load_state_dict(state)
        yield model
