"""A model's repeated blocks, found by one rule — the units that per-block FSDP2, activation checkpointing and
``torch.compile`` each wrap (torchtitan does the same by hand for its Llama: one ``fully_shard`` per
``TransformerBlock``).

**The rule.** A block is a child of a container (``nn.ModuleList`` or ``nn.Sequential``) in which at least two
children with parameters share one class: a Llama's ``model.layers.i`` (``LlamaDecoderLayer``), a GPT-2's
``transformer.h.i``, ``TinyTransformer``'s ``blocks.i``, the ``nn.Linear`` layers of an ``MLP``'s stack. The search
stops at the first such container on each path: a block's own repeated parts (its heads, its experts) are not blocks
again. Adapters that replace a block's ``nn.Linear`` (LoRA, OFT, POET) stay inside it.

    for name, block in repeated_blocks(model):      # ("model.model.layers.0", LlamaDecoderLayer(...)), ...
        fully_shard(block, mesh=mesh)
"""
from __future__ import annotations

from collections import Counter

from torch import nn

CONTAINERS = (nn.ModuleList, nn.Sequential)


def repeated_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(qualified name, block)]`` of ``model``'s repeated blocks (module docstring), in registration order
    (the order the forward meets them in a Llama or any stack). Empty when the model repeats nothing."""
    found: list[tuple[str, nn.Module]] = []
    _search(model, "", found)
    return found


def _search(module: nn.Module, prefix: str, found: list) -> None:
    if isinstance(module, CONTAINERS):
        blocks = _blocks_of(module)
        if blocks:
            found.extend((f"{prefix}{name}", child) for name, child in blocks)
            return
    for name, child in module.named_children():
        _search(child, f"{prefix}{name}.", found)


def _blocks_of(container: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children of ``container`` whose class occurs at least twice among its children with parameters."""
    with_params = [(name, child) for name, child in container.named_children()
                   if any(True for _ in child.parameters())]
    counts = Counter(type(child) for _, child in with_params)
    return [(name, child) for name, child in with_params if counts[type(child)] >= 2]
