"""Probes for harmonic-loss models: the geometry of class centres / embeddings, and distance margins.

* ``CenterGeometry``: PCA of the rows of every ``HarmonicHead``'s centres and every ``nn.Embedding`` table —
  ``pca/<path>`` the explained-variance ratios (``[min(top, rows, dim)]``) and ``pca_top2/<path>`` the share of the
  top two components. For modular addition a ring of embeddings (the "circle" of the harmonic-loss paper) puts
  most variance in two components; the official code reports e.g. [0.55, 0.27] for good runs, [0.17, 0.14] for poor.
* ``DistanceMargin``: on an evaluation split, the distance from each representation to its own class centre and to
  the nearest other centre, and the margin ``log(d_other/d_true)`` (> 0 iff classified correctly; scale invariant,
  and equal to the harmonic logit gap divided by n). Keys ``margin/<split>`` (mean), ``margin_p10/<split>``,
  ``dist_true/<split>``, ``dist_other/<split>``.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Probe
from ..core.keys import key


def pca_explained_variance(x: torch.Tensor, top: int | None = None) -> torch.Tensor:
    """Explained-variance ratios of the principal components of the rows of ``x[N, D]`` (centred), descending."""
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"PCA needs a matrix with at least 2 rows, got shape {tuple(x.shape)}")
    xc = x.detach().double() - x.detach().double().mean(0)
    s2 = torch.linalg.svdvals(xc) ** 2
    total = s2.sum()
    ratios = s2 / total if total > 0 else torch.zeros_like(s2)
    return (ratios if top is None else ratios[:top]).float()


def distance_margins(h: torch.Tensor, centers: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per example: ``d_true = ‖h − w_y‖``, ``d_other = min_{v≠y} ‖h − w_v‖`` and ``margin = log(d_other/d_true)``
    (exact differences, no ε; a distance of 0 gives an infinite margin)."""
    if centers.shape[0] < 2:
        raise ValueError("distance margins need at least two centres")
    d = torch.cdist(h.detach().double(), centers.detach().double(), compute_mode="donot_use_mm_for_euclid_dist")
    d_true = d.gather(1, target.view(-1, 1)).squeeze(1)
    d_other = d.scatter(1, target.view(-1, 1), float("inf")).min(1).values
    return {"d_true": d_true, "d_other": d_other, "margin": torch.log(d_other) - torch.log(d_true)}


def _geometry_modules(model: nn.Module, modules):
    from ..models.heads import HarmonicHead

    found = []
    for path, m in model.named_modules():
        if modules is not None and path not in modules:
            continue
        if isinstance(m, HarmonicHead):
            if not m.tied:                                   # a tied head's centres are reported as the embedding
                found.append((path, m.centers))
        elif isinstance(m, nn.Embedding):
            found.append((path, m.weight))
    if modules is not None:
        missing = sorted(set(modules) - {p for p, _ in found})
        if missing:
            raise ValueError(f"modules {missing} are not HarmonicHeads (untied) or nn.Embeddings of the model")
    return found


class CenterGeometry(Probe):
    """PCA of class centres and embeddings (see the module docstring). ``modules``: paths to restrict to."""

    name = "center_geometry"

    def __init__(self, every: int = 10, modules: list[str] | None = None, top: int = 8):
        super().__init__(every)
        self.modules, self.top = modules, top

    @torch.no_grad()
    def __call__(self, view) -> dict:
        found = _geometry_modules(view.model, self.modules)
        if not found:
            raise ValueError("CenterGeometry found no HarmonicHead or nn.Embedding in the model")
        out = {}
        for path, w in found:
            ratios = pca_explained_variance(w, self.top)
            out[key("pca", path)] = ratios
            out[key("pca_top2", path)] = float(ratios[:2].sum())
        return out


class DistanceMargin(Probe):
    """Distances and margins of the representations entering the model's ``HarmonicHead`` (captured with a forward
    hook that is always removed) on the evaluation ``splits``."""

    name = "distance_margin"
    needs_task = True

    def __init__(self, every: int = 10, splits=("test",), head: str | None = None, max_examples: int = 20_000):
        super().__init__(every)
        self.splits, self.head, self.max_examples = tuple(splits), head, max_examples

    def _head(self, model):
        from ..models.heads import HarmonicHead

        if self.head is not None:
            m = model.get_submodule(self.head)
            if not isinstance(m, HarmonicHead):
                raise ValueError(f"module {self.head!r} is a {type(m).__name__}, not a HarmonicHead")
            return m
        heads = [m for m in model.modules() if isinstance(m, HarmonicHead)]
        if len(heads) != 1:
            raise ValueError(f"DistanceMargin needs exactly one HarmonicHead (found {len(heads)}); name it with head=")
        return heads[0]

    @torch.no_grad()
    def __call__(self, view) -> dict:
        model, head = view.model, self._head(view.model)
        sets = view.task.eval_sets()
        captured = []
        handle = head.register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
        was = model.training
        model.eval()
        out = {}
        try:
            for split in self.splits:
                if split not in sets:
                    raise ValueError(f"split {split!r} not in the task's evaluation sets {sorted(sets)}")
                x, y = sets[split][0][: self.max_examples], sets[split][1][: self.max_examples]
                captured.clear()
                model(x)
                h = captured[-1].reshape(-1, head.d_in)
                m = distance_margins(h, head.centers, y.reshape(-1))
                out[key("margin", split)] = float(m["margin"].mean())
                out[key("margin_p10", split)] = float(torch.quantile(m["margin"], 0.1))
                out[key("dist_true", split)] = float(m["d_true"].mean())
                out[key("dist_other", split)] = float(m["d_other"].mean())
        finally:
            handle.remove()
            model.train(was)
        return out
