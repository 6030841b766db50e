"""Probes for orthogonal training: how orthogonal the rotations are, how far they turned, how the spectrum drifted.

* ``OrthogonalityError`` → ``orth_err/<path>``: the largest ``‖GᵀG − I‖_F/√b`` over all rotation blocks of a module
  that exposes ``rotations() -> {name: G[r, b, b]}`` (POET's R and P sides, OFT's blocks). Exact Cayley gives
  rounding error (~1e-7 in fp32); Cayley–Neumann adds O(‖Q‖^{k+1}) (docs/ortho.md).
* ``RotationCosine`` → ``vRv/<path>``: POET's vector probe (App. A). ``vᵀ R v`` for a fixed random unit vector v
  (drawn when the layer was built), where R is the **accumulated** input-side rotation since initialization. A POET
  layer carries ``u = R_merged·v`` across merges, so the value is ``(vᵀ R_current) · u``. Its expectation is
  ``Tr(R)/m``. The paper reports it falling from 1 to a band around 0.6–0.65 (phase I), staying there (phase II,
  ~80% of training) and freezing when the learning rate cools down (phase III).
* ``SpectrumDrift`` → ``sv_drift/<path>``: ``‖σ(W_t) − σ(W_0)‖₂ / ‖σ(W_0)‖₂`` of every weight matrix's effective
  weight, with W_0 the weight at the probe's first call. POET with exact Cayley keeps it at rounding level; additive
  optimizers do not. The reference spectrum is also logged once as ``sv_ref/<path>``, so a resumed run (whose
  history holds it) keeps measuring against the original W_0.
"""
from __future__ import annotations

import torch

from ..core.keys import key
from ..core.targets import Rules, select_modules
from . import metrics
from .base import Probe, weight_matrices


class OrthogonalityError(Probe):
    """``orth_err/<path>`` for every selected module with ``rotations()`` (module docstring)."""

    name = "orth_err"

    def __init__(self, every: int = 10, modules: Rules = None, exclude: Rules = None):
        super().__init__(every)
        self.modules, self.exclude = modules, exclude

    @torch.no_grad()
    def __call__(self, view) -> dict:
        out = {}
        chosen = select_modules(view.model, self.modules, self.exclude,
                                where=lambda p, m: callable(getattr(m, "rotations", None)), what="rotation module")
        for path, module in chosen:
            errs = [metrics.orthogonality_error(g.double()).max() for g in module.rotations().values()
                    if g.numel()]
            if errs:
                out[key("orth_err", path)] = float(torch.stack(errs).max())
        return out


class RotationCosine(Probe):
    """``vRv/<path>`` for every selected POET layer (module docstring)."""

    name = "vRv"

    def __init__(self, every: int = 10, modules: Rules = None, exclude: Rules = None):
        super().__init__(every)
        self.modules, self.exclude = modules, exclude

    @torch.no_grad()
    def __call__(self, view) -> dict:
        chosen = select_modules(view.model, self.modules, self.exclude,
                                where=lambda p, m: hasattr(m, "probe_v") and hasattr(m, "input_rotation"),
                                what="POET layer")
        out = {}
        for path, layer in chosen:
            v, u = layer.probe_v.double(), layer.probe_u.double()
            out[f"vRv/{path}"] = float(layer.input_rotation(v[None])[0] @ u)
        return out


def spectrum_drift(sv: torch.Tensor, ref: torch.Tensor) -> float:
    """The one definition of spectrum drift (the probe's, the docs' and ``benchmarks/bench_poet.py``'s):
    ``‖σ − σ_ref‖₂ / ‖σ_ref‖₂`` over the whole spectrum, in float64."""
    sv, ref = sv.double(), ref.double()
    return float((sv - ref).norm() / ref.norm().clamp_min(1e-30))


class SpectrumDrift(Probe):
    """``sv_drift/<path>`` (and ``sv_ref/<path>`` once) for every selected weight matrix (module docstring)."""

    name = "sv_drift"
    needs_matrices = True

    def __init__(self, every: int = 10, modules: Rules = None, exclude: Rules = None):
        super().__init__(every)
        self.modules, self.exclude = modules, exclude
        self._ref: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, view) -> dict:
        out = {}
        for path, w in weight_matrices(view.model, self.modules, self.exclude):
            sv = metrics.singular_values(w).double()
            ref = self._ref.get(path)
            if ref is None and key("sv_ref", path) in view.history:          # resumed run: the original reference
                ref = view.history[key("sv_ref", path)].values[0].double()
            if ref is None:
                ref = sv.clone()
                out[key("sv_ref", path)] = ref.float()
            self._ref[path] = ref
            out[key("sv_drift", path)] = spectrum_drift(sv, ref)
        return out
