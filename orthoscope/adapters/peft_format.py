"""Export / import OFT adapters in Hugging Face peft's on-disk format (``adapter_model.safetensors`` +
``adapter_config.json``), so an adapter trained here loads with ``PeftModel.from_pretrained`` and vice versa.

The map between the two (tests/test_peft_interop.py checks the outputs agree to 1e-5):

* tensors: ``<path>.oft_q`` ↔ ``base_model.model.<path>.oft_R.weight`` (``oft_embedding_R`` for embeddings), both
  ``[#blocks, b(b−1)/2]`` in ``triu_indices`` order;
* Cayley–Neumann: our k ↔ peft's ``num_cayley_neumann_terms = k + 2`` (peft ≥ 0.18 computes
  ``I + 2Q + … + 2Q^{T−2} + Q^{T−1}``; T = 3 computes the same as T = 4; T ≤ 2 has no equivalent here);
* exact Cayley: peft computes ``(I − Q)(I + Q)⁻¹ = cayley(Q)ᵀ``, so the stored tensor is negated both ways.

peft holds one config for all layers, so every exported layer must share block size, Cayley choice, COFT and
sharing. Conv2d layers are refused: peft's Conv2d OFT forward folds rotated patches back into an image
(``F.fold`` sums overlapping patches), which is not the layer its own ``merge()`` produces, nor ours.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from .oft import OFTConfig, OFTConv2d, OFTEmbedding, OFTLinear
from .registry import attach

__all__ = ["oft_to_peft", "oft_from_peft", "save_oft_peft", "load_oft_peft"]

PREFIX = "base_model.model."


def _oft_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = [(p, m) for p, m in model.named_modules() if type(m) in (OFTLinear, OFTEmbedding, OFTConv2d)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no OFT layers to export")
    conv = [p for p, m in found if isinstance(m, OFTConv2d)]
    if conv:
        raise ValueError(f"cannot export Conv2d OFT layers {conv} to peft: peft's Conv2d OFT forward is a different map "
                         "(see orthoscope/adapters/peft_format.py)")
    return found


def oft_to_peft(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, adapter_config)`` in peft's format for every OFT layer of ``model``."""
    layers = _oft_layers(model)
    settings = {(m.block, m.cayley, m.neumann_terms if m.cayley == "neumann" else None, m.coft, m.eps, m.block_share)
                for _, m in layers}
    if len(settings) > 1:
        raise ValueError(f"peft stores one OFT config per adapter; these layers differ in (block, cayley, k, coft, "
                         f"eps, block_share): {sorted(settings, key=str)}")
    block, kind, k, coft, eps, shared = settings.pop()
    sign = -1.0 if kind == "exact" else 1.0
    tensors = {}
    for path, layer in layers:
        name = "oft_embedding_R" if isinstance(layer, OFTEmbedding) else "oft_R"
        tensors[f"{PREFIX}{path}.{name}.weight"] = (sign * layer.q.detach()).contiguous().cpu()
    config = {
        "peft_type": "OFT", "r": 0, "oft_block_size": block,
        "target_modules": "|".join(re.escape(p) for p, _ in layers),     # a regex string: exactly these paths
        "use_cayley_neumann": kind == "neumann", "num_cayley_neumann_terms": (k + 2) if k is not None else 5,
        "coft": coft, "eps": eps, "block_share": shared, "module_dropout": 0.0, "init_weights": True,
        "bias": "none", "fan_in_fan_out": False, "exclude_modules": None, "layers_to_transform": None,
        "layers_pattern": None, "modules_to_save": None, "task_type": None, "base_model_name_or_path": None,
        "inference_mode": True, "revision": None,
        "peft_version": "0.18.0",          # the CNP formula above is peft ≥ 0.18's (#2805); earlier ones differ
    }
    return tensors, config


def _version(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text.partition("@")[0])[:3]
    return tuple(int(p) for p in parts)


def _neumann_k(config: dict) -> int:
    version = config.get("peft_version") or "0.0.0"
    if _version(version) < (0, 18, 0):
        raise ValueError(f"this peft OFT adapter was saved by peft {version}: before 0.18 the Cayley–Neumann series "
                         "was I + 2Q + … + 2Q^(T−1), which has no equivalent here (retrain it with peft ≥ 0.18)")
    terms = config.get("num_cayley_neumann_terms", 5)
    if terms < 3:
        raise ValueError(f"peft num_cayley_neumann_terms={terms} (R = I + 2Q or I) has no Cayley–Neumann "
                         "equivalent here; need ≥ 3")
    return max(terms - 2, 2)                          # peft's T = 3 computes the T = 4 formula


def oft_from_peft(model: nn.Module, tensors: dict[str, torch.Tensor], config: dict) -> nn.Module:
    """Attach OFT to the modules named in ``tensors`` and load them (peft format), in place; returns ``model``."""
    if config.get("peft_type") != "OFT":
        raise ValueError(f"not a peft OFT adapter: peft_type={config.get('peft_type')!r}")
    pattern = re.compile(re.escape(PREFIX) + r"(.+)\.(oft_R|oft_embedding_R|base_layer)\.weight")
    found, bases = {}, {}
    for key, value in tensors.items():
        match = pattern.fullmatch(key)
        if match is None:
            raise ValueError(f"unexpected tensor {key!r} in a peft OFT adapter")
        # peft also saves the full weights of targeted embeddings (save_embedding_layers): they are base weights
        (bases if match.group(2) == "base_layer" else found)[match.group(1)] = value
    neumann = bool(config.get("use_cayley_neumann", True))
    block, n_blocks = config.get("oft_block_size") or None, config.get("r") or None
    ours = OFTConfig(block=block, n_blocks=None if block else n_blocks, cayley="neumann" if neumann else "exact",
                     neumann_terms=_neumann_k(config) if neumann else 3, coft=bool(config.get("coft", False)),
                     eps=float(config.get("eps", 6e-5)), block_share=bool(config.get("block_share", False)),
                     targets="|".join(re.escape(p) for p in found))
    attach(model, ours)
    sign = 1.0 if neumann else -1.0
    with torch.no_grad():
        for path, value in bases.items():
            if path not in found:
                raise ValueError(f"peft adapter holds a base weight for {path!r} but no OFT rotation for it")
            weight = model.get_submodule(path).base_layer.weight
            if weight.shape != value.shape:
                raise ValueError(f"peft base weight for {path!r} has shape {tuple(value.shape)}, the model's is "
                                 f"{tuple(weight.shape)}")
            weight.copy_(value.to(weight.dtype))
        for path, value in found.items():
            q = model.get_submodule(path).q
            if q.shape != value.shape:
                raise ValueError(f"peft tensor for {path!r} has shape {tuple(value.shape)}, the layer expects "
                                 f"{tuple(q.shape)}")
            q.copy_(sign * value.to(q.dtype))
    return model


def save_oft_peft(model: nn.Module, directory) -> Path:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` (loadable by ``PeftModel.from_pretrained``)."""
    from safetensors.torch import save_file

    tensors, config = oft_to_peft(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return directory


def load_oft_peft(model: nn.Module, directory) -> nn.Module:
    """Read a peft OFT adapter directory (safetensors only; nothing is unpickled) into ``model``."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    return oft_from_peft(model, load_file(str(directory / "adapter_model.safetensors")), config)
