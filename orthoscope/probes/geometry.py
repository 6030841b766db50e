"""PEFT-Arena geometry diagnostics: how far, and in what way, a finetune moved away from its base model.

Pure functions first (each tested on cases with known answers), then probes that a ``Run`` calls.
Formulas follow PEFT-Arena (arXiv 2605.28819; ``tools/spectral_analysis.py``, ``tools/csd_single_checkpoint.py``,
``tools/diagnostic_utils.py``). Weights are in PyTorch layout ``W[out, in]``; ``W_pre = U Σ Vᵀ``; ``ΔW = W_ft − W_pre``.

Weight space
* retention profile (view I):   ``ΔP(i) = |u_iᵀ W_ft v_i − σ_i|`` — how much of each pretrained direction changed;
* adaptation profile (view II): ``E_Δ(i) = ‖ΔW v_i‖₂`` — how much update energy lands on input direction v_i;
* effective rank of ΔW:         ``Σσ_k² / σ_1² = ‖ΔW‖_F² / ‖ΔW‖₂²`` (a stable rank; 1 for rank one, 0 for ΔW = 0);
* spectral smoothness:          ``mean |p − movavg_w(p)|`` with window w = 5 and reflect padding (0 if len(p) < w);
* singular-vector alignment:    ``|cos(v_i^pre, v_i^ft)|`` per index (meaningful for rotations such as OFT).

Capability-conditioned drift, with ``h`` the *base model's* inputs to the layer, rows of ``H[N, in]``:
``CSD_abs = E‖ΔW h‖²``, ``CSD_rel = E‖ΔW h‖² / (E‖W₀ h‖² + ε)``, ``CSD_update_norm = E‖ΔW h‖² / ((‖ΔW‖_F² + ε)(E‖h‖² + ε))``.

Activation space, with ``X0`` (base) and ``X1`` (finetuned) module outputs on the same tokens, rows = tokens:
* Procrustes residual (centered): ``min_{RᵀR=I} ‖X1 R − X0‖_F / (‖X0‖_F + ε)``, ``R = U Vᵀ`` from ``SVD(X1ᵀ X0)``;
  also the raw residual ``‖X1 − X0‖_F / ‖X0‖_F`` and the improvement raw − proc. 0 for a pure rotation.
* Gram distortion: rows L2-normalised to Z, ``‖Z1Z1ᵀ − Z0Z0ᵀ‖_F / ‖Z0Z0ᵀ‖_F`` (on ≤ ``max_tokens`` sampled rows).
* linear CKA (centered): ``‖X0ᵀX1‖_F² / (‖X0ᵀX0‖_F ‖X1ᵀX1‖_F)``; 1 for identical (or rotated, or scaled) activations.
* subspace distance of the top-k PCA subspaces: ``‖P0 − P1‖_F / √(2k)`` in [0, 1].

Numerics: everything is computed in float32 (float64 inputs stay float64); ε = 1e-12 as in the reference code.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..core.targets import Rules, exactly
from .base import Probe, weight_matrices

EPS = 1e-12


def _f(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], ndim: int = 2) -> None:
    if a.dim() != ndim or b.dim() != ndim:
        raise ValueError(f"{names[0]} and {names[1]} must be {ndim}-D, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has shape {tuple(a.shape)} but {names[1]} has shape {tuple(b.shape)}; "
                         "they must match")


# ---- weight space ---------------------------------------------------------------------------------------------------
def retention_profile(w_pre: torch.Tensor, w_ft: torch.Tensor) -> torch.Tensor:
    """``|u_iᵀ W_ft v_i − σ_i|`` for i < min(out, in), in the order of the pretrained singular values."""
    _check_pair(w_pre, w_ft, ("w_pre", "w_ft"))
    u, s, vh = torch.linalg.svd(_f(w_pre), full_matrices=False)
    p_ft = ((u.T @ _f(w_ft)) * vh).sum(1)            # diag(Uᵀ W_ft V) without forming the k×k product
    return (p_ft - s).abs()


def adaptation_profile(w_pre: torch.Tensor, w_ft: torch.Tensor) -> torch.Tensor:
    """``‖ΔW v_i‖₂`` for the pretrained right singular vectors v_i (input directions)."""
    _check_pair(w_pre, w_ft, ("w_pre", "w_ft"))
    _, _, vh = torch.linalg.svd(_f(w_pre), full_matrices=False)
    return torch.linalg.vector_norm((_f(w_ft) - _f(w_pre)) @ vh.T, dim=0)


def delta_effective_rank(delta: torch.Tensor) -> float:
    """Stable rank ``‖ΔW‖_F² / ‖ΔW‖₂²`` of an update; 0.0 for a zero update (as in PEFT-Arena)."""
    if delta.dim() != 2:
        raise ValueError(f"delta must be a 2-D matrix, got shape {tuple(delta.shape)}")
    s = torch.linalg.svdvals(_f(delta))
    if s[0] <= 0:
        return 0.0
    return float((s ** 2).sum() / s[0] ** 2)


def spectral_smoothness(values: torch.Tensor, window: int = 5) -> float:
    """Mean absolute deviation of a profile from its centred moving average (reflect padding); lower = smoother."""
    if values.dim() != 1:
        raise ValueError(f"values must be a 1-D profile, got shape {tuple(values.shape)}")
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window!r}")
    if len(values) < window:
        return 0.0
    v = _f(values)
    pad = window // 2
    padded = F.pad(v.view(1, 1, -1), (pad, pad), mode="reflect") if pad else v.view(1, 1, -1)
    kernel = torch.full((1, 1, window), 1.0 / window, dtype=v.dtype)
    moving = F.conv1d(padded, kernel).view(-1)
    return float((v - moving).abs().mean())


def singular_vector_alignment(w_pre: torch.Tensor, w_ft: torch.Tensor) -> torch.Tensor:
    """``|cos(v_i^pre, v_i^ft)|`` between the i-th right singular vectors of the two weights."""
    _check_pair(w_pre, w_ft, ("w_pre", "w_ft"))
    vh0 = torch.linalg.svd(_f(w_pre), full_matrices=False)[2]
    vh1 = torch.linalg.svd(_f(w_ft), full_matrices=False)[2]
    return (vh0 * vh1).sum(1).abs()                   # rows of Vh are unit vectors already


def weight_geometry(w_pre: torch.Tensor, w_ft: torch.Tensor, window: int = 5) -> dict:
    """All weight-space diagnostics of one layer: profiles (tensors) and scalars."""
    retention, adaptation = retention_profile(w_pre, w_ft), adaptation_profile(w_pre, w_ft)
    delta = _f(w_ft) - _f(w_pre)
    return {"retention": retention, "adaptation": adaptation,
            "delta_erank": delta_effective_rank(delta), "delta_norm": float(delta.norm()),
            "retention_smoothness": spectral_smoothness(retention, window),
            "adaptation_smoothness": spectral_smoothness(adaptation, window)}


# ---- capability-conditioned drift -----------------------------------------------------------------------------------
def capability_drift(h: torch.Tensor, w0: torch.Tensor, delta: torch.Tensor, eps: float = EPS) -> dict:
    """CSD of an update ``delta`` on base-model inputs ``h[N, in]`` of a layer with base weight ``w0[out, in]``."""
    if h.dim() != 2 or h.shape[1] != w0.shape[1]:
        raise ValueError(f"h must be [tokens, in={w0.shape[1]}] (the layer's inputs), got shape {tuple(h.shape)}")
    _check_pair(w0, delta, ("w0", "delta"))
    if len(h) == 0:
        raise ValueError("h holds no tokens; CSD is an expectation over at least one input")
    h, w0, delta = _f(h), _f(w0), _f(delta)
    dy = (h @ delta.T).square().sum(1).mean()
    y0 = (h @ w0.T).square().sum(1).mean()
    hh = h.square().sum(1).mean()
    d2 = delta.square().sum()
    return {"csd_abs": float(dy), "csd_rel": float(dy / (y0 + eps)),
            "csd_update_norm": float(dy / ((d2 + eps) * (hh + eps)))}


# ---- activation space -----------------------------------------------------------------------------------------------
def _centered(x: torch.Tensor) -> torch.Tensor:
    x = _f(x)
    return x - x.mean(0, keepdim=True)


def procrustes_residual(x0: torch.Tensor, x1: torch.Tensor, eps: float = EPS) -> dict:
    """Centered raw and Procrustes residuals of ``x1`` against ``x0`` (rows = tokens); see the module docstring."""
    _check_pair(x0, x1, ("x0", "x1"))
    a, b = _centered(x0), _centered(x1)
    denom = a.norm() + eps
    raw = (b - a).norm() / denom
    u, _, vh = torch.linalg.svd(b.T @ a, full_matrices=False)
    proc = (b @ (u @ vh) - a).norm() / denom
    return {"raw": float(raw), "procrustes": float(proc), "improvement": float(raw - proc)}


def gram_distortion(x0: torch.Tensor, x1: torch.Tensor, max_tokens: int | None = 1024,
                    generator: torch.Generator | None = None, eps: float = EPS) -> float:
    """Relative change of the cosine Gram matrix ``‖Z1Z1ᵀ − Z0Z0ᵀ‖_F / ‖Z0Z0ᵀ‖_F`` (rows subsampled to ``max_tokens``)."""
    _check_pair(x0, x1, ("x0", "x1"))
    if max_tokens is not None and len(x0) > max_tokens:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        idx = torch.randperm(len(x0), generator=g)[:max_tokens].sort().values
        x0, x1 = x0[idx], x1[idx]
    z0, z1 = F.normalize(_f(x0), dim=1), F.normalize(_f(x1), dim=1)
    k0, k1 = z0 @ z0.T, z1 @ z1.T
    return float((k1 - k0).norm() / (k0.norm() + eps))


def linear_cka(x0: torch.Tensor, x1: torch.Tensor, eps: float = EPS) -> float:
    """Centered linear CKA; the feature dimensions of x0 and x1 may differ, the token counts may not."""
    if x0.dim() != 2 or x1.dim() != 2 or len(x0) != len(x1):
        raise ValueError(f"x0 and x1 must be [tokens, features] with the same number of tokens, got "
                         f"{tuple(x0.shape)} and {tuple(x1.shape)}")
    a, b = _centered(x0), _centered(x1)
    return float((a.T @ b).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm() + eps))


def subspace_distance(x0: torch.Tensor, x1: torch.Tensor, k: int = 32) -> float:
    """``‖P0 − P1‖_F / √(2k)`` between the top-k principal subspaces (exact SVD), ``k ← min(k, tokens − 1, features)``."""
    _check_pair(x0, x1, ("x0", "x1"))
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = min(k, x0.shape[0] - 1, x0.shape[1])
    if k < 1:
        raise ValueError(f"subspace_distance needs at least 2 tokens, got {x0.shape[0]}")
    v0 = torch.linalg.svd(_centered(x0), full_matrices=False)[2][:k]
    v1 = torch.linalg.svd(_centered(x1), full_matrices=False)[2][:k]
    p0, p1 = v0.T @ v0, v1.T @ v1
    return float((p0 - p1).norm() / math.sqrt(2 * k))


def activation_drift(x0: torch.Tensor, x1: torch.Tensor) -> dict:
    """Pointwise movement: mean ``1 − cos``, mean angle (radians) and mean ``|log(‖x1‖/‖x0‖)|`` per token."""
    _check_pair(x0, x1, ("x0", "x1"))
    cos = F.cosine_similarity(_f(x0), _f(x1), dim=1, eps=EPS).clamp(-1.0, 1.0)
    ratio = _f(x1).norm(dim=1) / (_f(x0).norm(dim=1) + EPS)
    return {"cos_drift": float((1 - cos).mean()), "angle": float(torch.arccos(cos).mean()),
            "log_norm_ratio": float(torch.log(ratio + EPS).abs().mean())}


def activation_geometry(x0: torch.Tensor, x1: torch.Tensor, k: int = 32, max_tokens: int | None = 1024) -> dict:
    """Every activation-space diagnostic of one module on one data set, as floats."""
    proc = procrustes_residual(x0, x1)
    return {"procrustes": proc["procrustes"], "raw_residual": proc["raw"],
            "gram": gram_distortion(x0, x1, max_tokens), "cka": linear_cka(x0, x1),
            "subspace": subspace_distance(x0, x1, k), **activation_drift(x0, x1)}


# ---- activations, captured with hooks that are always removed -------------------------------------------------------
def _rows(t) -> torch.Tensor:
    """A module's input/output as a ``[tokens, features]`` float tensor (first element of a tuple output)."""
    if isinstance(t, (tuple, list)):
        t = t[0]
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"cannot read activations of type {type(t).__name__}; expected a tensor")
    t = t.detach()
    return (t.reshape(-1, t.shape[-1]) if t.dim() > 1 else t.reshape(-1, 1)).float().cpu()


@contextmanager
def capture_activations(model: nn.Module, paths: list[str], kind: str = "output") -> Iterator[dict[str, list]]:
    """Within the block, every forward of ``model`` appends the ``[tokens, features]`` output (or first input, with
    ``kind="input"``) of each module in ``paths`` to ``store[path]``. The hooks are removed on exit, even on error."""
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    store: dict[str, list] = {p: [] for p in paths}
    handles = []
    try:
        for path in paths:
            module = model.get_submodule(path)
            if kind == "output":
                handles.append(module.register_forward_hook(lambda m, i, o, p=path: store[p].append(_rows(o))))
            else:
                handles.append(module.register_forward_pre_hook(lambda m, i, p=path: store[p].append(_rows(i[0]))))
        yield store
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def module_activations(model: nn.Module, x: torch.Tensor, paths: list[str], kind: str = "output") -> dict:
    """``{path: [tokens, features]}`` for one forward of ``model`` on ``x`` in eval mode (train mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with capture_activations(model, paths, kind) as store:
            model(x)
    finally:
        model.train(was_training)
    return {p: torch.cat(v) for p, v in store.items()}


# ---- probes ---------------------------------------------------------------------------------------------------------
def _snapshot(source, modules: Rules, exclude: Rules) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        return {p: w.detach().clone() for p, w in weight_matrices(source, modules, exclude, require_matrix=False)}
    if isinstance(source, Mapping):
        return {p: w.detach().clone() for p, w in source.items()}
    raise TypeError(f"reference must be an nn.Module, a {{path: weight}} mapping or None, got {type(source).__name__}")


def _named_inputs(inputs) -> dict[str, torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return {"data": inputs}
    if isinstance(inputs, Mapping) and inputs and all(isinstance(v, torch.Tensor) for v in inputs.values()):
        bad = [k for k in inputs if not isinstance(k, str) or "/" in k]
        if bad:
            raise ValueError(f"input names must be strings without '/', got {bad}")
        return dict(inputs)
    raise TypeError("inputs must be a tensor or a non-empty {name: tensor} mapping (e.g. {'A': x_taskA, 'B': x_taskB})")


class WeightGeometry(Probe):
    """Per weight matrix, against a reference (the pretrained model): ``retention/<path>`` and ``adaptation/<path>``
    profiles (arrays) and the scalars ``delta_erank``, ``delta_norm``, ``retention_smoothness``,
    ``adaptation_smoothness``. ``reference=None`` snapshots the run's own weights the first time the probe runs
    (step 0 in a ``Run``), so the diagnostics then measure the drift from initialization."""

    name = "weight_geometry"
    needs_matrices = True

    def __init__(self, reference=None, every: int = 10, modules: Rules = None, exclude: Rules = None,
                 window: int = 5, keep_profiles: bool = True):
        super().__init__(every)
        self.modules, self.exclude, self.window, self.keep_profiles = modules, exclude, window, keep_profiles
        self.reference = None if reference is None else _snapshot(reference, modules, exclude)

    @torch.no_grad()
    def __call__(self, view) -> dict:
        if self.reference is None:
            self.reference = _snapshot(view.model, self.modules, self.exclude)
        out = {}
        for path, w in weight_matrices(view.model, self.modules, self.exclude):
            if path not in self.reference:
                raise KeyError(f"module {path!r} has no reference weight; reference paths: {sorted(self.reference)}")
            for key, value in weight_geometry(self.reference[path], w, self.window).items():
                if isinstance(value, torch.Tensor) and not self.keep_profiles:
                    continue
                out[f"{key}/{path}"] = value
        return out


class _ActivationProbe(Probe):
    """Shared set-up: module paths of the run's model that also exist in the reference, and named inputs."""

    def __init__(self, reference: nn.Module, inputs, every: int = 10, modules: Rules = None, exclude: Rules = None):
        super().__init__(every)
        if not isinstance(reference, nn.Module):
            raise TypeError(f"reference must be the base nn.Module, got {type(reference).__name__}")
        self.reference, self.inputs = reference, _named_inputs(inputs)
        self.modules, self.exclude = modules, exclude
        self._cache: dict | None = None

    def _paths(self, model: nn.Module) -> list[str]:
        paths = [p for p, _ in weight_matrices(model, self.modules, self.exclude, require_matrix=False)]
        known = {p for p, _ in self.reference.named_modules()}
        missing = [p for p in paths if p not in known]
        if missing:
            raise KeyError(f"modules {missing} of the model are not in the reference model; pass modules= to choose")
        return paths


class ActivationGeometry(_ActivationProbe):
    """Full-forward module outputs of the run's model vs the reference model on fixed ``inputs``:
    ``procrustes_<name>/<path>``, ``gram_…``, ``cka_…``, ``subspace_…`` (top-``k`` PCA), ``raw_residual_…``,
    ``cos_drift_…``, ``angle_…``, ``log_norm_ratio_…`` for every named input set (e.g. ``{"A": …, "B": …}``)."""

    name = "activation_geometry"

    def __init__(self, reference: nn.Module, inputs, every: int = 10, modules: Rules = None, exclude: Rules = None,
                 k: int = 32, max_tokens: int | None = 1024):
        super().__init__(reference, inputs, every, modules, exclude)
        self.k, self.max_tokens = k, max_tokens

    def __call__(self, view) -> dict:
        paths = self._paths(view.model)
        if self._cache is None:      # the reference is frozen: its outputs are computed once
            self._cache = {n: module_activations(self.reference, x, paths) for n, x in self.inputs.items()}
        out = {}
        for name, x in self.inputs.items():
            current = module_activations(view.model, x, paths)
            for path in paths:
                for key, value in activation_geometry(self._cache[name][path], current[path], self.k,
                                                      self.max_tokens).items():
                    out[f"{key}_{name}/{path}"] = value
        return out


class CapabilityDrift(_ActivationProbe):
    """CSD of every selected linear layer's update ``ΔW = W_eff − W₀`` on the *reference model's* inputs to that
    layer, per named input set: ``csd_abs_<name>/<path>``, ``csd_rel_…``, ``csd_update_norm_…``."""

    name = "capability_drift"

    def _linear_paths(self, model) -> list[str]:
        paths = self._paths(model)
        from ..adapters.hf import is_conv1d       # transformers' Conv1D is linear too (weight read as [out, in])

        linear = [p for p in paths if isinstance(self.reference.get_submodule(p), nn.Linear)
                  or is_conv1d(self.reference.get_submodule(p))]
        if self.modules is not None and len(linear) != len(paths):
            bad = sorted(set(paths) - set(linear))
            raise ValueError(f"CSD needs linear layers (input activations times a weight); {bad} are not nn.Linear "
                             "or Conv1D")
        return linear

    @torch.no_grad()
    def __call__(self, view) -> dict:
        paths = self._linear_paths(view.model)
        if not paths:
            return {}
        if self._cache is None:
            w0 = dict(weight_matrices(self.reference, exactly(paths)))
            h = {n: module_activations(self.reference, x, paths, kind="input") for n, x in self.inputs.items()}
            self._cache = {"w0": {p: w.clone() for p, w in w0.items()}, "h": h}
        out = {}
        for path, w in weight_matrices(view.model, exactly(paths)):
            w0 = self._cache["w0"][path]
            for name in self.inputs:
                for key, value in capability_drift(self._cache["h"][name][path], w0, w - w0).items():
                    out[f"{key}_{name}/{path}"] = value
        return out
