"""Per-block FSDP2: each repeated block of a model its own ``fully_shard`` unit, so a rank holds one block unsharded
at a time (plus the one being prefetched, unless ``prefetch=0``), never the whole model.

    units = sharding_units(model)                  # [("model.model.embed_tokens", ...), ("model.model.layers.0", ...)]
    shard_per_block(model, mesh, precision="fp32", prefetch=1)  # fully_shard every unit, then the root

**Units.** The blocks are ``orthoscope.models.blocks.repeated_blocks`` (the one rule: a Llama's decoder layers, an
MLP's ``nn.Linear`` stack). Every other module that holds parameters and contains no block (a Llama's
``embed_tokens``, final ``norm`` and ``lm_head``; an MLP's embedding) is a unit of its own too, as torchtitan shards
``tok_embeddings`` and ``norm``/``output`` apart from the root: left in the root unit, they would stay unsharded for
the whole forward. Parameters held directly by a module that contains blocks stay in the root unit. When a parameter
is shared between two modules (tied embeddings), those "rest" modules are not split off (one ``DTensor`` cannot belong
to two units): they stay in the root unit.

**When a rank holds what** (``reshard_after_forward=True`` for every unit): in the forward a unit is all-gathered
at its pre-forward hook and freed at its post-forward hook; in the backward it is gathered again before its
gradients are computed and freed after its gradients are reduce-scattered. What else it holds is ``prefetch``:

* ``1`` (default): block ``i`` prefetches block ``i + 1`` in the forward and block ``i - 1`` in the backward
  (``set_modules_to_forward_prefetch`` / ``set_modules_to_backward_prefetch``, torchtitan's chain; FSDP2 prefetches
  one unit in the backward by default anyway), so at any moment a rank holds at most **two units** unsharded plus its
  1/N shard of everything else — the gather of the next block overlaps the current one's compute.
* ``0``: no prefetch, explicit or implicit: a rank holds at most **one unit** unsharded plus its 1/N shard of the
  rest; each gather waits in line (``_no_implicit_prefetch`` says how FSDP2's own backward prefetch is turned off).

**Precision.** ``"fp32"`` (default): no policy, parameters gathered and reduced in fp32 — a run equals one process
up to the order of fp32 additions. ``"bf16"``: ``MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32)``
— the shards (the optimizer's master weights and its state) stay fp32, all-gathers carry bf16 (half the bytes), the
forward and backward compute in bf16, gradients are reduce-scattered in fp32. bf16 is allowed on the CPU too (gloo
carries bf16; measured equal-to-fp32 losses within bf16 rounding in tests/test_fsdp_blocks.py); on a CUDA device
without bf16 (``torch.cuda.is_bf16_supported()`` false: pre-Ampere) it is a ``DistributedError``.
"""
from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from ..models.blocks import repeated_blocks

PRECISIONS = ("fp32", "bf16")
ENV_PRECISION = "ORTHOSCOPE_PRECISION"
PREFETCHES = (0, 1)
ENV_PREFETCH = "ORTHOSCOPE_PREFETCH"


class ShardingError(ValueError):
    """A precision or model this sharding cannot serve (re-raised as ``DistributedError`` by the seam)."""


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``precision`` (``None``: ``$ORTHOSCOPE_PRECISION``, default ``"fp32"``), checked against the device."""
    where = "precision"
    if precision is None:
        precision, where = os.environ.get(ENV_PRECISION, "fp32"), f"${ENV_PRECISION}"
    if precision not in PRECISIONS:
        raise ShardingError(f"{where} must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ShardingError(f"{where}='bf16' needs a GPU with bfloat16 support (Ampere or newer); "
                            f"{torch.cuda.get_device_name(device)} has none: use 'fp32'")
    return precision


def resolve_prefetch(prefetch: int | str | None) -> int:
    """``prefetch`` (``None``: ``$ORTHOSCOPE_PREFETCH``, default 1): how many blocks ahead a unit gathers."""
    where = "prefetch"
    if prefetch is None:
        prefetch, where = os.environ.get(ENV_PREFETCH, "1"), f"${ENV_PREFETCH}"
    if isinstance(prefetch, str) and prefetch.strip().isdigit():
        prefetch = int(prefetch)
    if isinstance(prefetch, bool) or prefetch not in PREFETCHES:
        raise ShardingError(f"{where} must be one of {PREFETCHES} (0: no prefetch, one block unsharded at a time; "
                            f"1: one block ahead), got {prefetch!r}")
    return prefetch


def resolve_unsharded_prefetch(prefetch: int | str | None, mode: str) -> int:
    """Prefetch is FSDP2's: under ``mode`` (DDP) every rank holds the whole model, so asking for 0 (the one-block
    bound) is an error, not ignored."""
    value = resolve_prefetch(prefetch)
    if value != 1:
        where = "prefetch" if prefetch is not None else f"${ENV_PREFETCH}"
        raise ShardingError(f"{where}={value!r} applies to FSDP2 (distributed='fsdp'); under {mode!r} every rank "
                            f"holds the whole model: use distributed='fsdp' or unset {where}")
    return value


def resolve_unsharded_precision(precision: str | None, mode: str) -> str:
    """``"fp32"``: a mixed-precision policy is FSDP2's; asking for bf16 under ``mode`` (DDP) is an error, not
    ignored."""
    asked = precision if precision is not None else os.environ.get(ENV_PRECISION, "fp32")
    if asked != "fp32":
        where = "precision" if precision is not None else f"${ENV_PRECISION}"
        raise ShardingError(f"{where}={asked!r} applies to FSDP2 (distributed='fsdp'); under {mode!r} parameters "
                            "and gradients stay fp32 (a Llama's forward autocasts to bf16 on CUDA all the same): "
                            f"use distributed='fsdp' or unset {where}")
    return "fp32"


def mixed_precision_policy(precision: str):
    """FSDP2's policy for ``precision``: fp32 casts nothing (the default policy); bf16 gathers and computes in
    bf16 and reduce-scatters gradients in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision == "fp32":
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def sharding_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(name, module)]`` in the model's registration order: the units ``shard_per_block`` gives their own
    ``fully_shard`` (they never nest). The repeated blocks, plus the parameter-holding modules outside them (module
    docstring); empty when the model repeats nothing (then the root is the one unit)."""
    blocks = repeated_blocks(model)
    if not blocks:
        return []
    inside = {id(m) for _, block in blocks for m in block.modules()}
    block_ids = {id(block) for _, block in blocks}
    holders = {id(m) for m in model.modules()                 # modules that contain a block
               if id(m) not in block_ids and any(id(d) in block_ids for d in m.modules())}
    rest: list[tuple[str, nn.Module]] = []
    _collect_rest(model, "", inside, holders, rest)
    if rest and _shares_parameters(model, [m for _, m in blocks + rest]):
        rest = []                                   # tied weights: keep the rest in the root unit
    order = {id(m): i for i, m in enumerate(model.modules())}
    return sorted(blocks + rest, key=lambda unit: order[id(unit[1])])


def _collect_rest(module: nn.Module, prefix: str, inside: set, holders: set, rest: list) -> None:
    for name, child in module.named_children():
        if id(child) in inside:
            continue
        if id(child) in holders:
            _collect_rest(child, f"{prefix}{name}.", inside, holders, rest)
        elif any(True for _ in child.parameters()):
            rest.append((f"{prefix}{name}", child))


def _shares_parameters(model: nn.Module, units: list[nn.Module]) -> bool:
    """True when a parameter of a unit is registered twice in the model (in two units, or in a unit and elsewhere)."""
    from collections import Counter

    registered = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return any(registered[id(p)] > 1 for unit in units for p in unit.parameters())


def shard_per_block(model: nn.Module, mesh, precision: str = "fp32",
                    prefetch: int = 1) -> list[tuple[str, nn.Module]]:
    """``fully_shard`` every unit of ``sharding_units(model)`` (``reshard_after_forward=True``), then the root,
    with ``precision``'s mixed-precision policy; ``prefetch=1`` chains forward and backward prefetch along the blocks,
    ``prefetch=0`` turns every prefetch off. Returns the units (the root not included)."""
    from torch.distributed.fsdp import fully_shard

    if prefetch not in PREFETCHES:
        raise ShardingError(f"prefetch must be one of {PREFETCHES}, got {prefetch!r}")
    policy = mixed_precision_policy(precision)
    units = sharding_units(model)
    for _, unit in units:
        fully_shard(unit, mesh=mesh, reshard_after_forward=True, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    if prefetch == 0:
        _no_implicit_prefetch([unit for _, unit in units] + [model])
        return units
    blocks = [block for _, block in repeated_blocks(model)]
    for block, following in zip(blocks, blocks[1:]):
        block.set_modules_to_forward_prefetch([following])     # gather block i+1 while block i computes
        following.set_modules_to_backward_prefetch([block])    # and block i-1 while block i's gradients are made
    return units


def _no_implicit_prefetch(modules: list[nn.Module]) -> None:
    """Turn FSDP2's implicit backward prefetch off for ``modules`` (torch 2.13, ``fsdp/_fully_shard``).

    The forward prefetches only what ``set_modules_to_forward_prefetch`` names (``FSDPState._pre_forward`` loops over
    ``_states_to_forward_prefetch``, empty by default), so nothing to do there. The backward is different:
    ``FSDPState._pre_backward`` computes ``default_prefetch = len(self._states_to_backward_prefetch) == 0`` and, when
    true, each group's ``pre_backward`` calls ``_backward_prefetch``, which all-gathers the unit that ran before it in
    the forward (``comm_ctx.post_forward_order[curr_index - 1]``). So ``set_modules_to_backward_prefetch([])`` does
    *not* turn it off — the empty list *is* the default. A unit naming itself does: the list is non-empty (no
    implicit prefetch), and "prefetching" itself is a no-op, since ``pre_backward`` has already unsharded and waited
    for the unit when the explicit loop runs (``FSDPParamGroup.unshard`` returns at once when ``is_unsharded``).
    Measured (tiny Llama, 4 layers, N = 2, tests/test_fsdp_blocks.py): with ``[]`` a rank still peaked at two
    blocks unsharded (754 304 bytes, as with prefetch 1); with each unit naming itself, at one (631 168).

    Not counted here (it is not parameters): on a GPU, FSDP2 keeps the previous unit's flat all-gather buffer until
    the next unit's copy-out in the forward (``comm_ctx.all_gather_state``, "Overlapping all-gather copy-in and
    all-gather" in ``_fsdp_param_group.py``), a transient buffer of up to one unit's gathered bytes."""
    for module in modules:
        module.set_modules_to_backward_prefetch([module])


@contextlib.contextmanager
def kept_unsharded(modules: list[nn.Module]):
    """Inside: a forward through these FSDP2 modules (a probe that evaluates the model inside ``full_weights``)
    leaves their parameters unsharded — the use ``set_reshard_after_forward`` documents for evaluation; afterwards
    each module's setting is restored as it was (FSDP2 keeps it in two fields of its state, read back here: there
    is no public getter). Without this, a per-block unit reshards after its forward and the probes after it read
    shards."""
    saved = []
    for m in modules:
        state = m._get_fsdp_state()
        saved.append((state, state._auto_reshard_after_forward,
                      [(g, g.post_forward_mesh_info) for g in state._fsdp_param_groups]))
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for state, auto, groups in saved:
            state._auto_reshard_after_forward = auto
            for group, info in groups:
                group.post_forward_mesh_info = info
