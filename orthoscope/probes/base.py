"""Probe: a read-only observer that a ``Run`` calls every ``every`` steps.

``probe(run) -> {key: value}`` with keys ``"<metric>/<module path>"``. Weight probes pick modules with peft's rules
(``modules=`` regex string or list of names; ``exclude=`` likewise) and read the *effective* weight of adapted
layers (``module.effective_weight()``), never the frozen base inside them.
"""
from __future__ import annotations

import numbers
from typing import Iterator

import torch
from torch import nn

from ..core.targets import Rules, select_modules


class Probe:
    name = "probe"

    def __init__(self, every: int = 1):
        if not isinstance(every, numbers.Integral) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every = int(every)

    def __call__(self, run) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(every={self.every})"


def _inside_adapted(path: str, adapted: list[str]) -> bool:
    return any(path.startswith(a + ".") for a in adapted)


def weight_matrices(model: nn.Module, modules: Rules = None, exclude: Rules = None,
                    require_matrix: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(path, W)`` for every selected module that owns a weight.

    An adapted module (one with ``effective_weight()``) yields that weight and hides its children. With explicit
    ``modules`` and ``require_matrix``, a selected module whose weight is 1-D is an error (no silent skipping).
    Matrices come as ``[out, in]``: a ``transformers`` Conv1D (GPT-2, stored ``[in, out]``) is transposed, adapted
    or not, so row statistics compare across models (``adapters.hf.out_in_weight``).
    """
    from ..adapters.hf import out_in_weight
    def has_weight(path, m):
        return hasattr(m, "effective_weight") or isinstance(getattr(m, "weight", None), torch.Tensor)

    chosen = select_modules(model, modules, exclude, where=has_weight, what="weight module")
    adapted = [p for p, m in chosen if hasattr(m, "effective_weight")]
    for path, module in chosen:
        if _inside_adapted(path, adapted):
            continue
        w = out_in_weight(module)
        if w.dim() < 2:
            if modules is not None and require_matrix:
                raise ValueError(f"module {path!r} has a 1-D weight of shape {tuple(w.shape)}; spectral probes "
                                 "need 2-D weights — exclude it or select matrix layers")
            continue
        yield path, w.detach()
