"""Activation checkpointing per repeated block, for any model: each block's activations are dropped after its
forward and recomputed in the backward (memory of one block's activations at a time, one extra forward of compute).

    checkpoint_blocks(model)          # every block of repeated_blocks(model); returns the block names
    is_checkpointed(model)            # True after it

It is torch's composable ``torch.distributed._composable.checkpoint`` (non-reentrant ``torch.utils.checkpoint``
entered by the block's forward hooks), not ``checkpoint_wrapper``: the block stays where it was, so parameter names
(adapter targets, probes, checkpoints, configs) are unchanged, and FSDP2's ``fully_shard`` composes with it (apply
checkpointing first, as torchtitan does). It needs no process group. Randomness inside a block (dropout) is replayed
from the saved RNG state, so the recomputed activations are the ones of the first forward and losses equal those
without checkpointing (tests/test_fsdp_blocks.py).

A Llama built by ``build_llama(..., checkpointing=True)`` uses Hugging Face's own switch for the same thing;
``checkpoint_blocks`` is for every other model (the config key ``model.checkpointing``).
"""
from __future__ import annotations

from torch import nn

from .blocks import repeated_blocks

MARK = "block_checkpointing"


def checkpoint_blocks(model: nn.Module) -> list[str]:
    """Recompute each repeated block's activations in the backward; returns the blocks' names. A ``ValueError``
    when the model repeats nothing (there is no block to checkpoint); calling it twice changes nothing."""
    from torch.distributed._composable import checkpoint

    blocks = repeated_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no repeated blocks (orthoscope.models.blocks) to checkpoint")
    if not is_checkpointed(model):
        for _, block in blocks:
            checkpoint(block)
        setattr(model, MARK, True)
    return [name for name, _ in blocks]


def is_checkpointed(model: nn.Module) -> bool:
    """True when ``checkpoint_blocks`` was applied to ``model``."""
    return bool(getattr(model, MARK, False))
