"""POET layers built on the meta device (``init_device: meta`` / ``pretrained``; ``orthoscope.distributed.pretrained``).

A ``POETLinear`` built around a meta ``nn.Linear`` draws what it draws on a real device — the probe vector, the
Gaussian W₀ (``init="normalized_gaussian"``), ``perm_in``, ``perm_out`` — from the same generator in the same order,
so the random stream, and with it every later merge's permutations, is the one of one process, on every rank and at
every world size. The values are kept on the CPU in ``layer.meta_draws`` (``MetaDraws``: the Gaussian W₀ as the
generator state it is drawn from, not as a tensor) and the base weight stays on meta, unpermuted. When the model is
materialised, ``fill_buffers`` writes the buffers and ``stored_rows`` computes any rows of the pre-permuted
``W_s = init(W₀)[inv(perm_out)][:, perm_in]`` from the rows of W₀ they come from — the init's arithmetic is row-wise
(``normalize_rows``), so a rank needs no other rank's rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ortho import invert_permutation, random_block_permutation


@dataclass
class MetaDraws:
    """What a meta-device ``POETLinear`` drew (module docstring)."""
    probe: torch.Tensor                   # the raw Gaussian probe draw, normalised on the target device as in __init__
    perm_in: torch.Tensor
    perm_out: torch.Tensor
    init: str
    weight_state: torch.Tensor | None     # the generator's state just before the Gaussian W₀ (normalized_gaussian)


def normalize_rows(w: torch.Tensor) -> torch.Tensor:
    """Each row of ``w`` scaled to unit norm (norm in float32, the quotient in ``w``'s dtype): POET's "normalize" and
    "normalized_gaussian" inits. Row by row, so any subset of rows gives the rows of the whole result."""
    return w / w.float().norm(dim=1, keepdim=True).clamp_min(1e-12).to(w.dtype)


def draw_on_meta(probe: torch.Tensor, init: str, shape: tuple[int, int], generator) -> MetaDraws:
    """The draws of ``POETLinear.__init__`` after the probe vector, in its order, for a weight of ``shape`` (out, in)."""
    state = None
    if init == "normalized_gaussian":
        state = (generator if generator is not None else torch.default_generator).get_state()
        # Advances the stream exactly as the real-device draw of W₀ does (a CPU tensor of one layer, dropped at once);
        # each rank draws it again from ``state`` when it fills its rows.
        torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    perm_in = random_block_permutation(shape[1], generator)
    perm_out = random_block_permutation(shape[0], generator)
    return MetaDraws(probe, perm_in, perm_out, init, state)


@torch.no_grad()
def fill_buffers(layer, device: torch.device) -> None:
    """``perm_in``, ``perm_out``, ``probe_v``, ``probe_u`` of a materialised meta-built layer, as __init__ sets them."""
    draws = layer.meta_draws
    layer.perm_in = draws.perm_in.to(device)
    layer.perm_out = draws.perm_out.to(device)
    v = draws.probe.to(device)
    v = v / v.norm()
    dtype = layer.probe_v.dtype                   # to_empty keeps the buffers' dtype (the base weight's)
    layer.probe_v = v.to(dtype)
    layer.probe_u = v.to(dtype).clone()


def source_rows_of(layer, lo: int, hi: int) -> torch.Tensor:
    """The rows of W₀ (the weight POET was attached to) that rows ``[lo, hi)`` of ``W_s`` come from, in order."""
    return invert_permutation(layer.meta_draws.perm_out)[lo:hi]


def stored_rows(layer, rows_of_w0, lo: int, hi: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows ``[lo, hi)`` of ``W_s = init(W₀)[inv(perm_out)][:, perm_in]`` in ``dtype`` (POETLinear's
    ``_initial_weight`` then ``_store_permuted``). ``rows_of_w0(index)``: those rows of W₀, in that order (read from
    a file or drawn); not called for the Gaussian init, which ignores W₀ and is drawn again here."""
    draws = layer.meta_draws
    index = source_rows_of(layer, lo, hi)
    if draws.init == "normalized_gaussian":
        generator = torch.Generator().set_state(draws.weight_state)
        shape = (draws.perm_out.numel(), draws.perm_in.numel())
        w = torch.randn(shape, generator=generator, dtype=torch.float32)[index].to(dtype)
    else:
        w = rows_of_w0(index).to(dtype)
    if draws.init in ("normalized_gaussian", "normalize"):
        w = normalize_rows(w)                 # before the column gather: each row's sum in the order of one process
    return w[:, draws.perm_in]
