"""LoRA and SoRA in peft's LoRA format (``peft_type: "LORA"``); called by ``peft_format.to_peft`` / ``from_peft``.

The map (tests/test_hf_adapters.py checks outputs against peft's ``PeftModel`` to 1e-5):

* tensors: ``<path>.lora_A`` ↔ ``base_model.model.<path>.lora_A.weight`` (``[r, in]``; Conv2d ``[r, C, kh, kw]``),
  ``lora_B`` ↔ ``lora_B.weight`` (``[out, r]``; Conv2d ``[out, r, 1, 1]``); embeddings ↔ ``lora_embedding_A``
  ``[r, vocab]`` / ``lora_embedding_B`` ``[dim, r]`` (no ``.weight``). Conv1D layers are the same tensors with
  ``fan_in_fan_out: true`` (peft sets it per layer type anyway).
* scale: peft computes ``s = lora_alpha / r`` (``/ √r`` with ``use_rslora``) per layer, with ``rank_pattern`` /
  ``alpha_pattern`` overriding r and alpha for the paths they match. Export writes ``use_rslora: false`` and
  ``alpha = s·r`` for every layer, so any per-layer scale is represented exactly; layers whose rank or alpha differ
  from the first layer's get a ``rank_pattern`` / ``alpha_pattern`` entry keyed by their escaped full path.
* SoRA: the gate is folded in as ``prune`` does (``A ← A[kept]``, ``B ← B[:, kept]·diag(g[kept])``), without
  changing the model. A layer whose gate is all zero has ΔW = 0 and is left out.

peft's DoRA, LoRA bias, layer replication and extra trainable modules have no counterpart here and are refused.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..core.targets import exactly
from .lora import LoRAConfig, _LowRank
from .peft_common import PREFIX, check_shape, load_base_weights, refuse_merged, split_keys
from .registry import attach

__all__ = ["lora_to_peft", "lora_from_peft"]

UNSUPPORTED = ("use_dora", "lora_bias", "layer_replication", "modules_to_save", "trainable_token_indices",
               "target_parameters", "use_qalora", "alora_invocation_tokens", "use_bdlora")


def _names(layer: nn.Module) -> tuple[str, str]:
    if isinstance(layer.base_layer, nn.Embedding):
        return "lora_embedding_A", "lora_embedding_B"
    return "lora_A.weight", "lora_B.weight"


@torch.no_grad()
def _plain(layer: _LowRank) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of the plain LoRA this layer computes (SoRA's gate folded into B, zero gate entries dropped)."""
    a, b = layer.A.detach(), layer.B.detach()
    if layer.gate is None:
        return a, b
    keep = torch.nonzero(layer.gate != 0).flatten()
    shape = [1] * b.dim()
    shape[1] = len(keep)
    return a[keep], b[:, keep] * layer.gate[keep].view(shape)


def lora_to_peft(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, adapter_config)`` in peft's LoRA format for every LoRA/SoRA layer of ``model``."""
    layers = [(p, m) for p, m in model.named_modules() if isinstance(m, _LowRank)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no LoRA or SoRA layers to export")
    refuse_merged(layers, "LoRA/SoRA")
    dropouts = {getattr(m.dropout, "p", 0.0) for _, m in layers}
    if len(dropouts) > 1:
        raise ValueError(f"peft stores one lora_dropout per adapter; these layers use {sorted(dropouts)}")
    tensors, ranks, alphas = {}, {}, {}
    for path, layer in layers:
        a, b = _plain(layer)
        if a.shape[0] == 0:                      # SoRA gate all zero: ΔW = 0, nothing to store
            continue
        name_a, name_b = _names(layer)
        tensors[f"{PREFIX}{path}.{name_a}"] = a.contiguous().cpu()
        tensors[f"{PREFIX}{path}.{name_b}"] = b.contiguous().cpu()
        ranks[path] = a.shape[0]
        alphas[path] = layer.scaling * a.shape[0]          # exact: peft's s = alpha / r
    if not ranks:
        raise ValueError("every SoRA gate of this model is zero: the adapter is the identity, nothing to export")
    first = next(iter(ranks))
    r, alpha = ranks[first], alphas[first]
    config = {
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": exactly(ranks),
        "rank_pattern": {re.escape(p): k for p, k in ranks.items() if k != r},
        "alpha_pattern": {re.escape(p): a for p, a in alphas.items() if a != alpha},
        "lora_dropout": dropouts.pop(), "use_rslora": False, "use_dora": False, "lora_bias": False,
        "fan_in_fan_out": any(m.fan_in_fan_out for _, m in layers), "bias": "none", "init_lora_weights": True,
        "exclude_modules": None, "layers_to_transform": None, "layers_pattern": None, "modules_to_save": None,
        "task_type": None, "base_model_name_or_path": None, "inference_mode": True, "revision": None,
    }
    return tensors, config


def _pattern_value(pattern: dict, path: str, default):
    """peft's ``get_pattern_key``: the first key k with ``re.match(rf"(.*\\.)?({k})$", path)`` wins."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def lora_from_peft(model: nn.Module, tensors: dict[str, torch.Tensor], config: dict,
                   tied: str = "refuse") -> nn.Module:
    """Attach LoRA to the modules named in ``tensors`` (peft's LoRA format) and load it, in place."""
    if config.get("peft_type") != "LORA":
        raise ValueError(f"not a peft LoRA adapter: peft_type={config.get('peft_type')!r}")
    used = [k for k in UNSUPPORTED if config.get(k)]
    if used:
        raise ValueError(f"this peft LoRA adapter uses {used}, which have no counterpart here; supported: plain LoRA "
                         "(any r, lora_alpha, rank_pattern, alpha_pattern, use_rslora, lora_dropout)")
    names = ("lora_A.weight", "lora_B.weight", "lora_embedding_A", "lora_embedding_B")
    found, bases = split_keys(tensors, names, "LoRA")
    groups: dict[tuple[int, float], list[str]] = {}
    for path, named in found.items():
        a = named.get("lora_A.weight", named.get("lora_embedding_A"))
        if a is None or len(named) != 2:
            raise ValueError(f"peft LoRA tensors of {path!r} are incomplete: {sorted(named)} (need an A and a B)")
        rank = a.shape[0]
        alpha = float(_pattern_value(config.get("alpha_pattern"), path, config.get("lora_alpha", 8)))
        scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
        groups.setdefault((rank, scale * rank), []).append(path)
    dropout = float(config.get("lora_dropout", 0.0))
    for (rank, alpha), paths in groups.items():       # one attach per (rank, scale): LoRA configs are per attach
        attach(model, LoRAConfig(rank=rank, alpha=alpha, dropout=dropout, targets=exactly(paths), tied=tied))
    load_base_weights(model, bases, found, "LoRA")
    with torch.no_grad():
        for path, named in found.items():
            layer = model.get_submodule(path)
            name_a, name_b = _names(layer)
            if name_a not in named:
                raise ValueError(f"peft tensors of {path!r} are {sorted(named)}, but the module is a "
                                 f"{type(layer.base_layer).__name__}, which needs {name_a!r} and {name_b!r}")
            for ours, name in ((layer.A, name_a), (layer.B, name_b)):
                check_shape(path, name, named[name], ours.shape)
                ours.copy_(named[name].to(ours.dtype))
    return model
