"""OrthoMerge (arXiv 2602.05943): merge finetunes in the Lie algebra of the orthogonal group, not in weight space.

**OFT adapters** already store Cayley generators ``Q_i`` (packed skew blocks). They are merged with magnitude
correction, per module, all blocks together (reference ``merge/OrthoMerge_OFT_models.py``):

    Q* = (c/N) Σ_i Q_i,   c = Σ_i ‖Q_i‖_F / ‖Σ_i Q_i‖_F    ⇔   Q* = mean_i ‖Q_i‖_F · (Σ_i Q_i / ‖Σ_i Q_i‖_F)

i.e. the direction of the sum with the mean norm, so N copies of one adapter merge to that adapter and rotations that
disagree do not shrink toward I as a plain average would. (Merging the packed vectors is the same computation:
``‖Q‖_F² = 2‖packed‖²`` and the map is linear, so directions and norm ratios agree.)

**Full finetunes** (Orthogonal–Residual Decoupling, ``merge/OrthoMerge_{C,G}_{TA,TIES}.py``). Per 2-D weight
``W₀[out, in]`` and task weights ``W_i``:

1. target ``T_i = W_i`` (variant **G**), or conflict-aware (**C**): ``T_i = W₀ + Δ_i ⊙ 1[cos(Δ_i[row], Δ̄[row]) < 0]``
   with ``Δ_i = W_i − W₀`` and ``Δ̄`` their mean: only rows that disagree with the mean update are explained by a
   rotation;
2. right-side orthogonal Procrustes ``R_i = argmin_{R ∈ O(in)} ‖W₀ R − T_i‖_F`` (``procrustes_rotation``);
3. generators ``A_i = cayley⁻¹(R_i)`` (skew); merged as above: ``A* = mean θ_i · (Σ A_i / ‖Σ A_i‖)``, θ_i = ‖A_i‖_F;
4. orthogonal part ``W₀ · cayley(A*)``; residuals ``τ_i = W_i − W₀ R_i`` (each task's own R_i, the full W_i);
5. ``W = W₀ cayley(A*) + λ · merge(τ)``: task arithmetic ``merge = Σ τ_i`` (λ = 0.2 in the reference) or TIES
   (top-k by magnitude per task over all parameters, sign election, disjoint mean; λ = 1.0).

1-D parameters (biases, norms) are not rotated: ``τ_i = W_i − W₀``. Baselines: ``task_arithmetic`` and ``ties``
(the same residual merges with ``R_i = I``).

Where we differ from the reference code, and why:
* When ``W₀`` has fewer rows than columns, ``W₀ᵀT`` is singular and its SVD leaves R arbitrary on the null space of
  W₀ (which does not change ``W₀R`` but does change the generator, hence the merge). We pick, among all minimizers,
  the one closest to the identity — so an unchanged layer gives exactly R = I.
* The Cayley chart holds only proper rotations. A Procrustes solution with det = −1 is replaced by the best proper
  one (Kabsch: flip the least-significant direction; free when W₀ is rank-deficient).
* A zero sum of generators (exactly opposite updates) merges to 0 (the OFT reference divides by zero).
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ..ortho import cayley, inverse_cayley

State = Mapping[str, torch.Tensor]
THETA_AGG = ("mean", "median", "max")
DIRECTION_WEIGHTS = ("theta", "uniform")
TARGETS = ("G", "C")
RESIDUALS = ("ta", "ties", "none")
DEFAULT_LAMBDA = {"ta": 0.2, "ties": 1.0, "none": 0.0}


# ---- merging generators ---------------------------------------------------------------------------------------------
def merge_generators(generators: Sequence[torch.Tensor], theta_agg: str = "mean",
                     direction_weight: str = "theta") -> torch.Tensor:
    """``A* = agg_i(θ_i) · u / ‖u‖`` with ``θ_i = ‖A_i‖_F`` (whole tensor) and ``u = Σ w_i A_i/θ_i``; ``w_i = θ_i``
    (default, so u ∝ Σ A_i) or 1 (``uniform``). Zero when u vanishes (e.g. two exactly opposite generators)."""
    if theta_agg not in THETA_AGG:
        raise ValueError(f"theta_agg must be one of {THETA_AGG}, got {theta_agg!r}")
    if direction_weight not in DIRECTION_WEIGHTS:
        raise ValueError(f"direction_weight must be one of {DIRECTION_WEIGHTS}, got {direction_weight!r}")
    _check_same_shapes(generators, "generators")
    stack = torch.stack([g.double() for g in generators])
    theta = torch.linalg.vector_norm(stack.flatten(1), dim=1)
    units = stack / theta.clamp_min(1e-300).view(-1, *[1] * (stack.dim() - 1))
    weights = theta if direction_weight == "theta" else torch.ones_like(theta)
    u = (units * weights.view(-1, *[1] * (stack.dim() - 1))).sum(0)
    u_norm = torch.linalg.vector_norm(u)
    # Relative test: a sum that cancels to rounding level has no direction.
    if u_norm <= 1e-12 * max(float(weights.sum()), 1e-300):
        return torch.zeros_like(generators[0])
    size = {"mean": theta.mean(), "median": theta.median(), "max": theta.max()}[theta_agg]
    return (u / u_norm * size).to(generators[0].dtype)


def _check_same_shapes(tensors: Sequence[torch.Tensor], what: str) -> None:
    if len(tensors) == 0:
        raise ValueError(f"{what}: nothing to merge (got an empty sequence)")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"{what} have different shapes {sorted(shapes)}; only adapters/models of the same "
                         "architecture and configuration can be merged")


# ---- OFT adapters ---------------------------------------------------------------------------------------------------
def is_oft_generator(key: str) -> bool:
    """State-dict keys of packed OFT/QOFT skew blocks (parameter names ending in ``oft_q``)."""
    return key.rsplit(".", 1)[-1].endswith("oft_q")


def merge_oft_states(states: Sequence[State], is_generator: Callable[[str], bool] = is_oft_generator,
                     theta_agg: str = "mean", direction_weight: str = "theta") -> dict[str, torch.Tensor]:
    """Merge OFT adapter state dicts: generators by ``merge_generators`` per tensor (one module's blocks together),
    every other floating tensor by the plain mean, non-floating tensors must agree and are copied."""
    _check_same_keys(states)
    merged = {}
    for key in states[0]:
        tensors = [s[key] for s in states]
        _check_same_shapes(tensors, f"tensors {key!r}")
        if is_generator(key):
            merged[key] = merge_generators(tensors, theta_agg, direction_weight)
        elif tensors[0].is_floating_point():
            merged[key] = torch.stack(tensors).mean(0)
        else:
            if any(not torch.equal(t, tensors[0]) for t in tensors):
                raise ValueError(f"non-floating tensors {key!r} differ between the states; cannot merge them")
            merged[key] = tensors[0].clone()
    if not any(is_generator(k) for k in merged):
        raise ValueError("no OFT generator (a key ending in 'oft_q') in the states; are these OFT adapters?")
    return merged


def _check_same_keys(states: Sequence[State]) -> None:
    if len(states) == 0:
        raise ValueError("nothing to merge: got no states/models")
    keys = set(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != keys:
            diff = sorted(keys.symmetric_difference(s))[:6]
            raise ValueError(f"state {i} has different keys than state 0 (e.g. {diff}); merge models of one "
                             "architecture with adapters on the same modules")


def merge_oft_models(models: Sequence[nn.Module], theta_agg: str = "mean", direction_weight: str = "theta",
                     how: str = "orthomerge") -> nn.Module:
    """A copy of ``models[0]`` whose OFT generators are merged across ``models`` — OrthoMerged (``how="orthomerge"``)
    or plainly averaged (``how="mean"``, ``Q* = mean_i Q_i``, the baseline that shrinks disagreeing rotations toward
    I) — with every other trainable tensor averaged. Frozen base weights must be identical."""
    if how not in ("orthomerge", "mean"):
        raise ValueError(f"how must be 'orthomerge' or 'mean', got {how!r}")
    states = [m.state_dict() for m in models]
    trainable = {n for n, p in models[0].named_parameters() if p.requires_grad}
    _check_same_keys(states)
    for key in states[0]:
        if key not in trainable and any(not torch.equal(s[key], states[0][key]) for s in states[1:]):
            raise ValueError(f"frozen tensor {key!r} differs between models; OFT adapters merge only over one base")
    adapter = merge_oft_states([{k: s[k] for k in trainable} for s in states], theta_agg=theta_agg,
                               direction_weight=direction_weight)
    if how == "mean":
        adapter = {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
                   for k, v in adapter.items()}
    merged = copy.deepcopy(models[0])
    merged.load_state_dict({**states[0], **adapter})
    return merged


# ---- full finetunes: rotation + residual ----------------------------------------------------------------------------
def procrustes_rotation(w0: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The proper rotation ``R[in, in]`` minimizing ``‖W₀ R − T‖_F``, closest to I among the minimizers.

    ``‖W₀R − T‖² = const − 2 tr(RᵀM)`` with ``M = W₀ᵀT = U Σ Vᵀ``, maximized by any R with ``R v_k = u_k`` for
    σ_k > 0: ``R = U Vᵀ`` when M is invertible (Schönemann). On the degenerate subspace (σ_k = 0, spanned by
    ``V_n → U_n``) any orthogonal ``U_n Z V_nᵀ`` is optimal; ``Z = Q Pᵀ`` with ``V_nᵀU_n = P S Qᵀ`` maximizes tr R.
    If det R = −1 the direction w of least singular value is reflected (``R ← R(I − 2wwᵀ)``, Kabsch), which costs
    ``2σ_min`` of the fit (nothing when W₀ is rank-deficient). Computed in float64, returned in ``w0``'s dtype.
    """
    if w0.dim() != 2 or w0.shape != target.shape:
        raise ValueError(f"w0 and target must be matrices of one shape [out, in], got {tuple(w0.shape)} and "
                         f"{tuple(target.shape)}")
    m = w0.double().T @ target.double()
    u, s, vh = torch.linalg.svd(m)
    n = m.shape[0]
    tol = s[0] * n * torch.finfo(torch.float64).eps if s[0] > 0 else 0.0
    r_rank = int((s > tol).sum())
    v = vh.T
    r = u[:, :r_rank] @ v[:, :r_rank].T
    if r_rank < n:
        un, vn = u[:, r_rank:], v[:, r_rank:]
        p, _, qh = torch.linalg.svd(vn.T @ un)
        r = r + un @ (qh.T @ p.T) @ vn.T
    if torch.linalg.det(r) < 0:
        w = v[:, -1:]
        r = r - 2 * (r @ w) @ w.T
    return r.to(w0.dtype)


def generator(r: torch.Tensor, name: str = "R") -> torch.Tensor:
    """Skew ``A = ½(B − Bᵀ)`` with ``B = cayley⁻¹(R)`` (float64 inside); a clear error when R is outside the chart."""
    try:
        b = inverse_cayley(r.double())
    except ValueError as err:
        raise ValueError(f"{name}: the rotation has an eigenvalue −1, so it has no Cayley generator ({err})") from None
    return (0.5 * (b - b.T)).to(r.dtype)


def conflict_targets(w0: torch.Tensor, weights: Sequence[torch.Tensor], threshold: float = 0.0) -> list[torch.Tensor]:
    """OrthoMerge-C targets ``W₀ + Δ_i ⊙ 1[cos(Δ_i[row], Δ̄[row]) < threshold]`` (rows = output neurons)."""
    deltas = [w - w0 for w in weights]
    mean = torch.stack(deltas).mean(0)
    out = []
    for d in deltas:
        cos = torch.nn.functional.cosine_similarity(d.double(), mean.double(), dim=1, eps=1e-6)
        out.append(w0 + d * (cos < threshold).to(d.dtype).unsqueeze(1))
    return out


def decompose(w0: torch.Tensor, w: torch.Tensor, target: torch.Tensor | None = None,
              name: str = "weight") -> tuple[torch.Tensor, torch.Tensor]:
    """``W = W₀ cayley(A) + τ``: the generator A of the Procrustes rotation onto ``target`` (default W) and the
    residual τ. Used by OrthoMerge and by generator-scaled interpolation ``W₀ cayley(αA) + ατ``."""
    r = procrustes_rotation(w0, w if target is None else target)
    return generator(r, name), w - w0 @ r


def rotate(w0: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``W₀ · cayley(A)`` (float64 inside)."""
    return (w0.double() @ cayley(a.double())).to(w0.dtype)


# ---- Euclidean merges of task vectors -------------------------------------------------------------------------------
def ties_vector(deltas: Sequence[torch.Tensor], top_k: float = 0.2) -> torch.Tensor:
    """TIES on flat task vectors: keep each task's top ``top_k`` fraction by |value| (ties at the threshold kept, as
    in the reference), elect the sign of the kept sum (0 → +), average the kept entries that agree with it."""
    if not 0.0 < top_k <= 1.0:
        raise ValueError(f"top_k (fraction kept per task) must lie in (0, 1], got {top_k!r}")
    _check_same_shapes(deltas, "task vectors")
    kept = []
    for d in deltas:
        k = int(d.numel() * (1 - top_k))          # the reference: values ≥ the k-th smallest |value| survive
        if k >= 1:
            threshold = d.abs().flatten().kthvalue(k).values
            d = d * (d.abs() >= threshold)
        kept.append(d)
    stack = torch.stack(kept)
    sign = torch.sign(stack.sum(0))
    sign[sign == 0] = 1
    agree = (torch.sign(stack) == sign) & (stack != 0)
    return (stack * agree).sum(0) / agree.sum(0).clamp_min(1)


def _flat(states: Sequence[State], keys: list[str]) -> list[torch.Tensor]:
    return [torch.cat([s[k].reshape(-1).double() for k in keys]) for s in states]


def _unflat(vec: torch.Tensor, like: State, keys: list[str]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k in keys:
        n = like[k].numel()
        out[k] = vec[i:i + n].view_as(like[k]).to(like[k].dtype)
        i += n
    return out


def merge_residuals(residuals: Sequence[State], mode: str, lam: float, top_k: float = 0.2) -> dict[str, torch.Tensor]:
    """``λ · Σ τ_i`` (``mode="ta"``), ``λ · TIES(τ)`` over all tensors jointly (``"ties"``), or zeros (``"none"``)."""
    if mode not in RESIDUALS:
        raise ValueError(f"residual merge must be one of {RESIDUALS}, got {mode!r}")
    keys = list(residuals[0])
    if mode == "none":
        return {k: torch.zeros_like(residuals[0][k]) for k in keys}
    flats = _flat(residuals, keys)
    merged = torch.stack(flats).sum(0) if mode == "ta" else ties_vector(flats, top_k)
    return _unflat(lam * merged, residuals[0], keys)


# ---- whole models ---------------------------------------------------------------------------------------------------
def default_rotate(key: str, tensor: torch.Tensor) -> bool:
    """The reference's rule: 2-D floating weights, norms excluded (embeddings and the output head included)."""
    return tensor.dim() == 2 and tensor.is_floating_point() and key.endswith("weight") and "norm" not in key


def _check_states(base: State, finetuned: Sequence[State]) -> None:
    _check_same_keys([base, *finetuned])
    for key in base:
        _check_same_shapes([base[key], *(f[key] for f in finetuned)], f"tensors {key!r}")


def _floating(base: State) -> list[str]:
    return [k for k, v in base.items() if v.is_floating_point()]


def task_arithmetic(base: State, finetuned: Sequence[State], lam: float = 0.2) -> dict[str, torch.Tensor]:
    """``W₀ + λ Σ_i (W_i − W₀)`` for every floating tensor (others copied from base)."""
    _check_states(base, finetuned)
    keys = _floating(base)
    merged = merge_residuals([{k: f[k] - base[k] for k in keys} for f in finetuned], "ta", lam)
    return {k: (base[k] + merged[k]) if k in merged else base[k].clone() for k in base}


def ties(base: State, finetuned: Sequence[State], top_k: float = 0.2, lam: float = 1.0) -> dict[str, torch.Tensor]:
    """TIES-merging (Yadav et al. 2023) of the task vectors ``W_i − W₀`` over all floating tensors jointly."""
    _check_states(base, finetuned)
    keys = _floating(base)
    merged = merge_residuals([{k: f[k] - base[k] for k in keys} for f in finetuned], "ties", lam, top_k)
    return {k: (base[k] + merged[k]) if k in merged else base[k].clone() for k in base}


def orthomerge(base: State, finetuned: Sequence[State], *, target: str = "G", residual: str = "ties",
               lam: float | None = None, top_k: float = 0.2, theta_agg: str = "mean", direction_weight: str = "theta",
               rotate_rule: Callable[[str, torch.Tensor], bool] = default_rotate) -> dict[str, torch.Tensor]:
    """OrthoMerge of full finetunes (module docstring): rotations merged in the Lie algebra, residuals by ``residual``
    (``"ta"``, ``"ties"`` or ``"none"``) scaled by ``lam`` (default 0.2 for TA, 1.0 for TIES, as the reference)."""
    if target not in TARGETS:
        raise ValueError(f"target must be 'G' (full weights) or 'C' (conflict-aware rows), got {target!r}")
    if residual not in RESIDUALS:
        raise ValueError(f"residual must be one of {RESIDUALS}, got {residual!r}")
    _check_states(base, finetuned)
    lam = DEFAULT_LAMBDA[residual] if lam is None else lam
    orth, residuals = {}, [{} for _ in finetuned]
    for key in _floating(base):
        w0, ws = base[key], [f[key] for f in finetuned]
        if not rotate_rule(key, w0):
            orth[key] = w0.clone()
            for res, w in zip(residuals, ws):
                res[key] = w - w0
            continue
        targets = ws if target == "G" else conflict_targets(w0, ws)
        gens = []
        for i, (res, w, t) in enumerate(zip(residuals, ws, targets)):
            a, res[key] = decompose(w0, w, t, name=f"{key} of finetune {i}")
            gens.append(a)
        orth[key] = rotate(w0, merge_generators(gens, theta_agg, direction_weight))
    merged = merge_residuals(residuals, residual, lam, top_k)
    return {k: (orth[k] + merged[k]) if k in orth else base[k].clone() for k in base}


def merge_models(base: nn.Module, finetuned: Sequence[nn.Module], how: str = "orthomerge", **options) -> nn.Module:
    """A copy of ``base`` carrying ``how`` ∈ {"orthomerge", "task_arithmetic", "ties"} of the finetuned models'
    state dicts (full finetunes; merge adapters into their layers first, e.g. ``adapters.remove_adapters``)."""
    fns = {"orthomerge": orthomerge, "task_arithmetic": task_arithmetic, "ties": ties}
    if how not in fns:
        raise ValueError(f"how must be one of {sorted(fns)}, got {how!r}")
    state = fns[how](base.state_dict(), [m.state_dict() for m in finetuned], **options)
    merged = copy.deepcopy(base)
    merged.load_state_dict(state)
    return merged
