"""How much activation memory a computation keeps for backward — measured, not estimated.

``saved_tensor_bytes(fn, exclude)`` runs ``fn()`` under ``torch.autograd.graph.saved_tensors_hooks`` and adds up the
bytes of every distinct storage autograd saves, skipping the storages of ``exclude`` (a model's parameters and
buffers, which exist anyway). Views of one storage count once, at the storage's size. Unlike peak RSS or allocator
statistics, the number is deterministic and the same on CPU and GPU, which is why the benchmarks report it.

    >>> import torch
    >>> w = torch.randn(8, 8, requires_grad=True)
    >>> nbytes, y = saved_tensor_bytes(lambda: (torch.randn(4, 8) @ w).relu(), exclude=[w])
    >>> nbytes            # the random input of the matmul (4·8 floats) and the relu output (4·8 floats)
    256
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch


def saved_tensor_bytes(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> tuple[int, Any]:
    """``(bytes autograd saves for backward while fn() runs, fn()'s result)``; storages of ``exclude`` are skipped."""
    skip = {t.untyped_storage().data_ptr() for t in exclude if t is not None}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return sum(seen.values()), result


def model_state(model: torch.nn.Module) -> list[torch.Tensor]:
    """A model's parameters and buffers: what ``saved_tensor_bytes`` should not count as activations."""
    return [*model.parameters(), *model.buffers()]
