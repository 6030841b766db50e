"""BOFT in peft's format (``peft_type: "BOFT"``); called by ``peft_format.to_peft`` / ``from_peft``.

The map (tests/test_hf_adapters.py checks outputs against peft's ``PeftModel`` to 1e-5):

* rotations: peft stores full b×b blocks ``boft_R[m, r, b, b]`` (key ``base_model.model.<path>.boft_R``) and uses
  only their skew part ``S = ½(A − Aᵀ)``, with ``R = (I − S)(I + S)⁻¹ = cayley(−S)``. Ours stores the packed upper
  triangle of ``Q = −S``. Export writes ``A = −Q`` (already skew, so ``S = −Q``); import takes ``Q = packed(−S)``.
  Both are exact (a sign and a copy).
* scale: ``boft_s[out, 1]`` ↔ our ``boft_s[out]``; the same output scale around the bias.
* factors: ``boft_n_butterfly_factor`` = m, our ``factors``. On a machine without its CUDA extension peft **builds
  one factor whatever the config says** (and saves ``boft_R[1, …]``); import follows the tensors, which is what peft
  computed, and warns when they disagree with the config. An export with m > 1 loads in peft only where the
  extension builds (a GPU), as peft's own save would.

Refused: our ``cayley="neumann"`` (peft's BOFT has only the exact Cayley), BOFT on Conv1D (peft has no such layer),
layers with different block sizes or factor counts (peft holds one config), merged layers.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..ortho import packed_from_skew, skew_from_packed
from ..core.targets import exactly
from .boft import BOFTConfig, BOFTConv1D, BOFTLinear
from .peft_common import PREFIX, check_shape, load_base_weights, refuse_merged, split_keys
from .registry import attach

__all__ = ["boft_to_peft", "boft_from_peft"]


def boft_to_peft(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, adapter_config)`` in peft's BOFT format for every BOFT layer of ``model``."""
    layers = [(p, m) for p, m in model.named_modules() if isinstance(m, BOFTLinear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no BOFT layers to export")
    conv1d = [p for p, m in layers if isinstance(m, BOFTConv1D)]
    if conv1d:
        raise ValueError(f"cannot export BOFT on Conv1D layers {conv1d} to peft: peft's BOFT has no Conv1D layer "
                         "(it raises 'Target module Conv1D … is not supported'); export a LoRA, or keep it here")
    neumann = [p for p, m in layers if m.cayley != "exact"]
    if neumann:
        raise ValueError(f"BOFT layers {neumann} use cayley='neumann'; peft's BOFT computes the exact Cayley only, "
                         "so the export would change their output. Train with cayley='exact' to export")
    refuse_merged(layers, "BOFT")
    settings = {(m.block, m.factors) for _, m in layers}
    if len(settings) > 1:
        raise ValueError(f"peft stores one BOFT config per adapter; these layers differ in (block, factors): "
                         f"{sorted(settings)}")
    block, factors = settings.pop()
    tensors = {}
    with torch.no_grad():
        for path, layer in layers:
            tensors[f"{PREFIX}{path}.boft_R"] = (-skew_from_packed(layer.q, layer.block)).contiguous().cpu()
            tensors[f"{PREFIX}{path}.boft_s"] = layer.s.detach()[:, None].contiguous().cpu()
    config = {
        "peft_type": "BOFT", "boft_block_size": block, "boft_block_num": 0, "boft_n_butterfly_factor": factors,
        "target_modules": exactly(p for p, _ in layers), "boft_dropout": 0.0, "fan_in_fan_out": False,
        "bias": "none", "init_weights": True, "exclude_modules": None, "layers_to_transform": None,
        "layers_pattern": None, "modules_to_save": None, "task_type": None, "base_model_name_or_path": None,
        "inference_mode": True, "revision": None,
    }
    return tensors, config


def boft_from_peft(model: nn.Module, tensors: dict[str, torch.Tensor], config: dict,
                   tied: str = "refuse") -> nn.Module:
    """Attach BOFT to the modules named in ``tensors`` (peft's BOFT format) and load it, in place."""
    if config.get("peft_type") != "BOFT":
        raise ValueError(f"not a peft BOFT adapter: peft_type={config.get('peft_type')!r}")
    if config.get("modules_to_save"):
        raise ValueError(f"this peft BOFT adapter also trains modules_to_save={config['modules_to_save']}, which has "
                         "no counterpart here")
    found, bases = split_keys(tensors, ("boft_R", "boft_s"), "BOFT")
    shapes = set()
    for path, named in found.items():
        if set(named) != {"boft_R", "boft_s"}:
            raise ValueError(f"peft BOFT tensors of {path!r} are incomplete: {sorted(named)} (need boft_R, boft_s)")
        m, _, b, _ = named["boft_R"].shape
        shapes.add((m, b))
    if len(shapes) > 1:
        raise ValueError(f"peft BOFT blocks differ between layers (factors, block): {sorted(shapes)}")
    factors, block = shapes.pop()
    declared = config.get("boft_n_butterfly_factor", factors)
    if declared != factors:
        warnings.warn(f"this peft BOFT adapter says boft_n_butterfly_factor={declared} but holds {factors} factor(s): "
                      "peft without its CUDA extension builds one factor only. Loading the tensors as saved (what "
                      "peft computed)", stacklevel=3)
    attach(model, BOFTConfig(block=block, factors=factors, cayley="exact", targets=exactly(found), tied=tied))
    load_base_weights(model, bases, found, "BOFT")
    with torch.no_grad():
        for path, named in found.items():
            layer = model.get_submodule(path)
            a = named["boft_R"].to(layer.q.dtype)
            check_shape(path, "boft_R", a, (factors, layer.n_blocks, block, block))
            check_shape(path, "boft_s", named["boft_s"], (layer.s.shape[0], 1))
            s = 0.5 * (a - a.transpose(-1, -2))              # peft uses only the skew part of its blocks
            layer.q.copy_(packed_from_skew(-s))
            layer.s.copy_(named["boft_s"][:, 0].to(layer.s.dtype))
    return model
