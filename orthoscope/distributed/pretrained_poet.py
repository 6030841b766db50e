"""POET layers in ``materialize`` (``orthoscope.distributed.pretrained``): a model built on meta with POET attached
(``POETLinear`` keeps its draws in ``layer.meta_draws``, ``orthoscope.adapters.poet_meta``), sharded or not, gets
its buffers and each rank's rows of the pre-permuted base weight ``W_s = init(W₀)[inv(perm_out)][:, perm_in]``.

**Which rows a rank reads.** Rank r holds rows ``[lo, hi)`` of ``W_s`` (FSDP2's ``Shard(0)``); they are rows
``inv(perm_out)[lo:hi]`` of the file's W₀, every column (the column gather ``perm_in`` runs in memory, on whole
rows). ``perm_out`` is a uniformly random permutation of all n rows (``random_block_permutation`` is
``torch.randperm``: it does not keep blocks together), so these rows are scattered over the tensor: they are sorted
and read as their contiguous runs, one ``get_slice(key)[a:b]`` each — only those rows' bytes, about n/N·(1 − 1/N)
runs at world size N. The Gaussian init (``init="normalized_gaussian"``, the paper's) ignores W₀: those tensors are
not read at all; ``"keep"`` (POET-X's finetuning: W₀ is the pretrained weight) and ``"normalize"`` (each row scaled
to unit norm, row by row on the rank's rows) read them.

Quantized POET bases (``quantize=8/4``: replicated code buffers, not sharded rows) are refused.
"""
from __future__ import annotations

import torch
from torch import nn


def poet_weights(model: nn.Module) -> dict[str, nn.Module]:
    """``{parameter name of the base weight: layer}`` for the POET layers built on meta (holding ``meta_draws``)."""
    from ..adapters.poet import POETLinear

    return {f"{path}.base_layer.weight": layer for path, layer in model.named_modules()
            if isinstance(layer, POETLinear) and getattr(layer, "meta_draws", None) is not None}


def poet_problem(path: str, layer: nn.Module) -> str | None:
    """Why the POET layer at ``path`` cannot be materialised from meta (a message), or ``None``."""
    if layer.quantize is not None:
        return (f"meta init: POET layer {path!r} has a quantized base (quantize={layer.quantize}): its codes are "
                "buffers every rank holds whole, not rows that can be loaded per rank; use quantize: null with "
                "init_device: meta / pretrained, or build the model without them")
    if getattr(layer, "meta_draws", None) is None:
        return (f"meta init: POET layer {path!r} was attached to a weight with values, not on the meta device, so "
                "its permuted weight cannot be filled; attach POET to the meta-built model")
    return None


def poet_rows_from_file(layer: nn.Module, piece, itemsize: int, report, dtype: torch.dtype):
    """``rows_of(lo, hi)`` for ``_fill_rows``: rows ``[lo, hi)`` of the layer's ``W_s`` from the safetensors slice
    ``piece`` of its W₀ (module docstring), counting the bytes read into ``report``."""
    from ..adapters.poet_meta import stored_rows

    columns = int(piece.get_shape()[1])

    def rows_of_w0(index: torch.Tensor) -> torch.Tensor:
        value = read_rows(piece, index)
        report.bytes_read += index.numel() * columns * itemsize
        return value

    return lambda lo, hi: stored_rows(layer, rows_of_w0, lo, hi, dtype)


def poet_rows_from_full(layer: nn.Module, full_of, dtype: torch.dtype):
    """``rows_of(lo, hi)`` for ``_fill_rows`` when W₀ is a random init drawn whole (``full_of()``)."""
    from ..adapters.poet_meta import stored_rows

    return lambda lo, hi: stored_rows(layer, lambda index: full_of()[index], lo, hi, dtype)


def read_rows(piece, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (distinct, any order) of the safetensors slice ``piece``, in that order: the sorted rows are
    read as their contiguous runs ``piece[a:b]``, so only those rows' bytes are read."""
    order = torch.argsort(index)
    rows = index[order].tolist()
    runs, start = [], 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i] != rows[i - 1] + 1:
            runs.append((rows[start], rows[i - 1] + 1))
            start = i
    data = torch.cat([piece[a:b] for a, b in runs])
    out = torch.empty_like(data)
    out[order] = data                     # data[k] is row rows[k] = index[order[k]]
    return out


def finish(model: nn.Module) -> None:
    """Drop the CPU draws of every POET layer once its buffers and weight are filled."""
    for layer in poet_weights(model).values():
        layer.meta_draws = None
