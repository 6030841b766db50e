"""Probe: a read-only observer that a ``Run`` or a recorder (``orthoscope.observe``) calls every ``every`` steps.

``probe(view) -> {key: value}`` with keys ``"<metric>/<module path>"``, where ``view`` is a ``ProbeView``
(``probes.view``: model, step, last loss, optimizer, task, loss function, History, distributed seam) — the one code
path for a ``Run`` and for your own loop. A ``Run`` has the same attribute names, so ``probe(run)`` works too. Weight
probes pick modules with peft's rules (``modules=`` regex string or list of names; ``exclude=`` likewise) and read
the *effective* weight of adapted layers (``module.effective_weight()``), never the frozen base inside them.

Two class attributes say what a probe needs, so a recorder can refuse it before the first step: ``needs_task``
(it reads evaluation sets) and ``needs_matrices`` (it reads 2-D weights: ``check(view)`` fails on a model with none).
"""
from __future__ import annotations

import numbers
import warnings
from typing import Iterator

import torch
from torch import nn

from ..core.targets import Rules, select_modules


class Probe:
    name = "probe"
    needs_task = False           # reads view.task.eval_sets()
    needs_matrices = False       # reads the 2-D weights that weight_matrices yields

    def __init__(self, every: int = 1):
        if not isinstance(every, numbers.Integral) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every = int(every)

    def __call__(self, view) -> dict:
        raise NotImplementedError

    def check(self, view) -> None:
        """Refuse, before the first step, what this probe cannot observe on ``view`` (a clear ``ValueError``)."""
        if self.needs_task:
            from .view import require_task
            require_task(view, self)
        if self.needs_matrices:
            selected = (getattr(self, "modules", None), getattr(self, "exclude", None))
            if next(iter(weight_matrices(view.model, *selected)), None) is None:
                raise ValueError(f"{self!r} reads weight matrices, and {type(view.model).__name__} has no 2-D "
                                 f"weight among the selected modules (modules={selected[0]!r}, "
                                 f"exclude={selected[1]!r}); leave the probe out or select matrix layers")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(every={self.every})"


def warn_unreached(probes, last_step: int, stacklevel: int = 3) -> None:
    """Warn (once per probe) when a probe's interval is longer than the steps planned (up to ``last_step``): it would
    record step 0 and nothing after, which used to pass silently."""
    late = [p for p in probes if p.every > last_step and not getattr(p, "_warned_unreached", False)]
    for p in late:
        p._warned_unreached = True
    if late:
        warnings.warn(f"{', '.join(map(repr, late))}: every= is longer than the {last_step} step(s) planned, so "
                      f"{'they record' if len(late) > 1 else 'it records'} only step 0 — choose every ≤ {last_step}",
                      UserWarning, stacklevel=stacklevel)


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
