"""Export / import adapters in Hugging Face peft's on-disk format (``adapter_model.safetensors`` +
``adapter_config.json``), so an adapter trained here loads with ``PeftModel.from_pretrained`` and vice versa.

``save_peft(model, dir)`` / ``load_peft(model, dir)`` (and ``to_peft`` / ``from_peft`` on tensors + config) handle
every adapter peft has: OFT (this file), LoRA and SoRA (``peft_lora.py``; SoRA is written as the LoRA it prunes to)
and BOFT (``peft_boft.py``). One directory holds one adapter type, as in peft. QOFT and POET have no peft
counterpart and are refused, as are layers peft cannot build (OFT/BOFT on Conv1D) and merged layers (the file would
hold an update already inside the base weight).

The OFT map (tests/test_peft_interop.py checks the outputs agree to 1e-5):

* tensors: ``<path>.oft_q`` ↔ ``base_model.model.<path>.oft_R.weight`` (``oft_embedding_R`` for embeddings), both
  ``[#blocks, b(b−1)/2]`` in ``triu_indices`` order;
* Cayley–Neumann: our k ↔ peft's ``num_cayley_neumann_terms = k + 2`` (peft ≥ 0.18 computes
  ``I + 2Q + … + 2Q^{T−2} + Q^{T−1}``; T = 3 computes the same as T = 4; T ≤ 2 has no equivalent here);
* exact Cayley: peft computes ``(I − Q)(I + Q)⁻¹ = cayley(Q)ᵀ``, so the stored tensor is negated both ways.

peft holds one config for all layers, so every exported layer must share block size, Cayley choice, COFT and
sharing. An adapter on a module tied to another in the base model (GPT-2's head and input embedding) is exported
with a ``TiedExportWarning`` naming the tie: peft's ``merge_and_unload()`` on the tied base moves both. Conv2d
layers are refused: peft's Conv2d OFT forward folds rotated patches back into an image
(``F.fold`` sums overlapping patches), which is not the layer its own ``merge()`` produces, nor ours.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from ..core.targets import exactly
from .oft import OFTConfig, OFTConv1D, OFTConv2d, OFTEmbedding, OFTLinear
from .hf import warn_tied_export
from .peft_common import PREFIX, load_base_weights, refuse_merged, split_keys
from .registry import attach

__all__ = ["to_peft", "from_peft", "save_peft", "load_peft", "oft_to_peft", "oft_from_peft", "save_oft_peft",
           "load_oft_peft", "PEFT_TYPES"]

PEFT_TYPES = ("OFT", "LORA", "BOFT")


def peft_family(layer: nn.Module) -> str:
    """"OFT", "LORA" or "BOFT" for a layer that has a peft counterpart; ValueError naming the layer otherwise."""
    from .boft import BOFTLinear
    from .lora import _LowRank
    from .qoft import QOFTLinear

    if isinstance(layer, QOFTLinear):
        raise ValueError(f"QOFT layer {layer.path!r} has no peft counterpart (peft's OFT on a quantized base uses "
                         "bitsandbytes/GPTQ codes, not ours); merge it, or export the unquantized OFT instead")
    if isinstance(layer, (OFTLinear, OFTEmbedding, OFTConv2d)):
        return "OFT"
    if isinstance(layer, _LowRank):
        return "LORA"
    if isinstance(layer, BOFTLinear):
        return "BOFT"
    raise ValueError(f"adapter layer {getattr(layer, 'path', '')!r} ({type(layer).__name__}) has no peft format; "
                     f"peft formats exist for {PEFT_TYPES}")


def to_peft(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, adapter_config)`` in peft's format for the adapter layers of ``model`` (all of one type)."""
    from .core import adapter_layers

    layers = list(adapter_layers(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no adapter layers to export")
    families = {}
    for path, layer in layers:
        families.setdefault(peft_family(layer), []).append(path)
    if len(families) > 1:
        raise ValueError(f"a peft adapter directory holds one adapter type; this model has {sorted(families)} "
                         f"layers ({families}); export them from separate models")
    warn_tied_export(model, [p for p, _ in layers])
    family = families.popitem()[0]
    if family == "OFT":
        return oft_to_peft(model)
    if family == "LORA":
        from .peft_lora import lora_to_peft
        return lora_to_peft(model)
    from .peft_boft import boft_to_peft
    return boft_to_peft(model)


def from_peft(model: nn.Module, tensors: dict[str, torch.Tensor], config: dict, tied: str = "refuse") -> nn.Module:
    """Attach the adapter a peft ``(tensors, adapter_config)`` describes to ``model`` and load it, in place.

    ``tied`` is passed to attach: a peft adapter on one side of a tied embedding/head is refused unless "untie"."""
    kind = config.get("peft_type")
    if kind == "OFT":
        return oft_from_peft(model, tensors, config, tied=tied)
    if kind == "LORA":
        from .peft_lora import lora_from_peft
        return lora_from_peft(model, tensors, config, tied=tied)
    if kind == "BOFT":
        from .peft_boft import boft_from_peft
        return boft_from_peft(model, tensors, config, tied=tied)
    raise ValueError(f"peft_type={kind!r} is not supported here; supported: {PEFT_TYPES}")


def _oft_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = [(p, m) for p, m in model.named_modules() if type(m) in (OFTLinear, OFTEmbedding, OFTConv2d, OFTConv1D)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no OFT layers to export")
    conv1d = [p for p, m in found if isinstance(m, OFTConv1D)]
    if conv1d:
        raise ValueError(f"cannot export OFT on Conv1D layers {conv1d} to peft: peft's OFT has no Conv1D layer "
                         "(it raises 'Target module Conv1D … is not supported'); export a LoRA, or keep it here")
    refuse_merged(found, "OFT")
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
        "target_modules": exactly(p for p, _ in layers),             # a regex string: exactly these paths
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


def oft_from_peft(model: nn.Module, tensors: dict[str, torch.Tensor], config: dict,
                  tied: str = "refuse") -> nn.Module:
    """Attach OFT to the modules named in ``tensors`` and load them (peft format), in place; returns ``model``."""
    if config.get("peft_type") != "OFT":
        raise ValueError(f"not a peft OFT adapter: peft_type={config.get('peft_type')!r}")
    split, bases = split_keys(tensors, ("oft_R.weight", "oft_embedding_R.weight"), "OFT")
    found = {path: next(iter(named.values())) for path, named in split.items()}
    neumann = bool(config.get("use_cayley_neumann", True))
    block, n_blocks = config.get("oft_block_size") or None, config.get("r") or None
    ours = OFTConfig(block=block, n_blocks=None if block else n_blocks, cayley="neumann" if neumann else "exact",
                     neumann_terms=_neumann_k(config) if neumann else 3, coft=bool(config.get("coft", False)),
                     eps=float(config.get("eps", 6e-5)), block_share=bool(config.get("block_share", False)),
                     targets=exactly(found), tied=tied)
    attach(model, ours)
    sign = 1.0 if neumann else -1.0
    load_base_weights(model, bases, found, "OFT")
    with torch.no_grad():
        for path, value in found.items():
            q = model.get_submodule(path).q
            if q.shape != value.shape:
                raise ValueError(f"peft tensor for {path!r} has shape {tuple(value.shape)}, the layer expects "
                                 f"{tuple(q.shape)}")
            q.copy_(sign * value.to(q.dtype))
    return model


def save_peft(model: nn.Module, directory) -> Path:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` (loadable by ``PeftModel.from_pretrained``)
    for the adapter layers of ``model`` (OFT, LoRA, SoRA as LoRA, or BOFT)."""
    return _write(to_peft(model), directory)


def load_peft(model: nn.Module, directory, tied: str = "refuse") -> nn.Module:
    """Read a peft adapter directory (OFT, LoRA or BOFT; safetensors only, nothing is unpickled) into ``model``."""
    return from_peft(model, *_read(directory), tied=tied)


def _write(tensors_config, directory) -> Path:
    from safetensors.torch import save_file

    tensors, config = tensors_config
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return directory


def _read(directory) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    return load_file(str(directory / "adapter_model.safetensors")), config


def save_oft_peft(model: nn.Module, directory) -> Path:
    """OFT only (kept for existing callers): ``save_peft`` refusing anything but OFT layers."""
    exported = oft_to_peft(model)
    warn_tied_export(model, [p for p, _ in _oft_layers(model)])
    return _write(exported, directory)


def load_oft_peft(model: nn.Module, directory, tied: str = "refuse") -> nn.Module:
    """OFT only (kept for existing callers): ``load_peft`` refusing anything but a peft OFT adapter."""
    return oft_from_peft(model, *_read(directory), tied=tied)
