"""Weight probes: singular values and the numbers derived from them, weight norms."""
from __future__ import annotations

import torch

from ..core.keys import key
from ..core.targets import Rules
from . import metrics
from .base import Probe, weight_matrices


class Spectrum(Probe):
    """Per weight matrix: singular values ``sv/<path>`` (an array) and the scalars ``sv_entropy``,
    ``stable_rank``, ``spectral_norm``, ``condition_number`` (definitions in ``probes.metrics``)."""

    name = "spectrum"
    needs_matrices = True

    def __init__(self, every: int = 10, modules: Rules = None, exclude: Rules = None, keep_values: bool = True):
        super().__init__(every)
        self.modules, self.exclude, self.keep_values = modules, exclude, keep_values

    @torch.no_grad()
    def __call__(self, view) -> dict:
        out = {}
        for path, w in weight_matrices(view.model, self.modules, self.exclude):
            sv = metrics.singular_values(w)
            if self.keep_values:
                out[key("sv", path)] = sv
            out[key("sv_entropy", path)] = metrics.sv_entropy(sv).item()
            out[key("stable_rank", path)] = metrics.stable_rank(sv).item()
            out[key("spectral_norm", path)] = metrics.spectral_norm(sv).item()
            out[key("condition_number", path)] = metrics.condition_number(sv).item()
        return out


class WeightNorm(Probe):
    """Frobenius norm of every selected weight (``weight_norm/<path>``) and of all parameters (``weight_norm/total``)."""

    name = "weight_norm"

    def __init__(self, every: int = 10, modules: Rules = None, exclude: Rules = None):
        super().__init__(every)
        self.modules, self.exclude = modules, exclude

    @torch.no_grad()
    def __call__(self, view) -> dict:
        out = {key("weight_norm", p): w.float().norm().item()
               for p, w in weight_matrices(view.model, self.modules, self.exclude, require_matrix=False)}
        total = torch.sqrt(sum((p.detach().float() ** 2).sum() for p in view.model.parameters()))
        out["weight_norm/total"] = total.item()
        return out


class Energy(Probe):
    """Hyperspherical energy of the rows of every selected weight: ``he_s{0,1,2}/<path>`` (Euclidean),
    ``he_a{...}`` (angular) and ``he_h{...}`` (half-space), for the requested ``s`` values and variants."""

    name = "energy"
    needs_matrices = True
    VARIANTS = {"euclidean": "s", "angular": "a", "half_space": "h"}

    def __init__(self, every: int = 10, modules: Rules = None, exclude: Rules = None, s=(0, 1, 2),
                 variants=("euclidean",)):
        super().__init__(every)
        bad = [v for v in variants if v not in self.VARIANTS]
        if bad:
            raise ValueError(f"unknown energy variant(s) {bad}; choose from {list(self.VARIANTS)}")
        if any(x < 0 for x in s):
            raise ValueError(f"energy exponents s must be ≥ 0, got {s}")
        self.modules, self.exclude, self.s, self.variants = modules, exclude, tuple(s), tuple(variants)

    @torch.no_grad()
    def __call__(self, view) -> dict:
        out = {}
        for path, w in weight_matrices(view.model, self.modules, self.exclude):
            if w.shape[0] < 2:
                continue
            for variant in self.variants:
                tag = self.VARIANTS[variant]
                for s in self.s:
                    e = metrics.hyperspherical_energy(w, s=s, angular=variant == "angular",
                                                      half_space=variant == "half_space")
                    out[f"he_{tag}{s:g}/{path}"] = e.item()
        return out
