"""What the peft-format converters share (``peft_format``: OFT and the dispatch; ``peft_lora``; ``peft_boft``): peft's
key prefix, splitting its tensor names by module path, its saved base weights, and the checks every direction runs."""
from __future__ import annotations

import re

import torch
from torch import nn

PREFIX = "base_model.model."


def refuse_merged(layers, what: str) -> None:
    merged = [p for p, m in layers if m.merged]
    if merged:
        raise ValueError(f"cannot export merged {what} layers {merged}: their update is inside the base weight "
                         "already; call unmerge_all(model) first")


def split_keys(tensors: dict[str, torch.Tensor], names: tuple[str, ...], kind: str) -> tuple[dict, dict]:
    """``({path: {name: tensor}}, {path: base weight})`` from peft keys ``base_model.model.<path>.<name>``.

    ``names`` are the tensor names after the module path (``"lora_A.weight"``, ``"boft_R"`` …). peft also saves the
    full weights of targeted embeddings (``save_embedding_layers``) as ``<path>.base_layer.weight``: base weights."""
    alternatives = "|".join(re.escape(n) for n in (*names, "base_layer.weight"))
    pattern = re.compile(re.escape(PREFIX) + rf"(.+)\.({alternatives})")
    found, bases = {}, {}
    for key, value in tensors.items():
        match = pattern.fullmatch(key)
        if match is None:
            raise ValueError(f"unexpected tensor {key!r} in a peft {kind} adapter; expected "
                             f"{PREFIX}<module path>.<one of {list(names)}>")
        if match.group(2) == "base_layer.weight":
            bases[match.group(1)] = value
        else:
            found.setdefault(match.group(1), {})[match.group(2)] = value
    return found, bases


@torch.no_grad()
def load_base_weights(model: nn.Module, bases: dict, adapted: dict, kind: str) -> None:
    for path, value in bases.items():
        if path not in adapted:
            raise ValueError(f"peft adapter holds a base weight for {path!r} but no {kind} tensors for it")
        weight = model.get_submodule(path).base_layer.weight
        if weight.shape != value.shape:
            raise ValueError(f"peft base weight for {path!r} has shape {tuple(value.shape)}, the model's is "
                             f"{tuple(weight.shape)}")
        weight.copy_(value.to(weight.dtype))


def check_shape(path: str, name: str, value: torch.Tensor, expected) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"peft tensor {name!r} of {path!r} has shape {tuple(value.shape)}, the layer expects "
                         f"{tuple(expected)}")
