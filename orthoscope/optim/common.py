"""What every optimizer in ``orthoscope.optim`` shares: argument checks, the non-finite-gradient guard, the
"matrix vs AdamW" parameter-group convention and the auxiliary AdamW update.

Parameter groups. Muon, Pion, AdamH and MuonH train *hidden matrices* with their own rule and everything else
(embeddings, the output head, biases, norm gains) with AdamW inside the same optimizer. A group says which with the
flag ``"matrix"``::

    Muon([{"params": hidden, "matrix": True}, {"params": others, "matrix": False}])
    Muon(matrix_param_groups(model))          # the same split, picked from the model (see that function)

A plain list of parameters is one matrix group, so a 1-D parameter in it is an error that names it. Pass
``model.named_parameters()`` (or ``(name, tensor)`` pairs in a group) and every error names the parameter.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from ..core.targets import Rules, path_matches

#: module names treated as the output head by ``matrix_param_groups`` (last path component)
HEAD_NAMES = ("unembed", "lm_head", "head", "classifier", "readout")


class NonFiniteGradError(FloatingPointError):
    """A gradient holds NaN or ±inf. Raised before any parameter or state is touched, so the step is refused whole."""


# ---- argument checks ------------------------------------------------------------------------------------------

def check_lr(value, name: str = "lr") -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")


def check_nonneg(value, name: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")


def check_beta(value, name: str) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


def check_betas(betas, name: str = "betas") -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{name} must be a pair (β1, β2), got {betas!r}")
    check_beta(betas[0], f"{name}[0]")
    check_beta(betas[1], f"{name}[1]")


def check_choice(value, name: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


# ---- parameter naming and groups -------------------------------------------------------------------------------

def param_label(group: dict, index: int, p: torch.Tensor) -> str:
    """``'blocks.0.attn.q_proj.weight'`` when the group carries names, else ``'parameter 3 of group 1 (shape …)'``."""
    names = group.get("param_names")
    if names is not None:
        return repr(names[index])
    return f"parameter {index} of group {group.get('_index', '?')} (shape {tuple(p.shape)})"


def normalize_groups(params) -> list[dict]:
    """A list of group dicts from what users pass: tensors, ``(name, tensor)`` pairs, or group dicts."""
    params = list(params)
    if not params:
        raise ValueError("the optimizer got an empty parameter list")
    if isinstance(params[0], dict):
        return [dict(g) for g in params]
    return [{"params": params}]


def check_finite_grads(optimizer: torch.optim.Optimizer) -> None:
    """Raise ``NonFiniteGradError`` naming the first parameter whose gradient is not finite (nothing is modified).
    One device→host sync for the whole check (a GPU would otherwise stall once per parameter)."""
    flags = [torch.isfinite(p.grad).all() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not flags or bool(torch.stack([f.to(flags[0].device) for f in flags]).all()):
        return
    for gi, group in enumerate(optimizer.param_groups):
        for i, p in enumerate(group["params"]):
            if p.grad is not None and not torch.isfinite(p.grad).all():
                label = param_label({**group, "_index": gi}, i, p)
                raise NonFiniteGradError(
                    f"{type(optimizer).__name__}.step refused: the gradient of {label} contains NaN or inf; "
                    "no parameter was updated (lower the learning rate, clip gradients, or check the loss)")


def check_matrix_group(optimizer_name: str, group: dict, gi: int, max_dim: int = 2) -> None:
    """Every parameter of a ``matrix`` group must be 2-D (or ≥ 2-D up to ``max_dim``, flattened to 2-D)."""
    for i, p in enumerate(group["params"]):
        if p.dim() < 2 or p.dim() > max_dim:
            label = param_label({**group, "_index": gi}, i, p)
            allowed = "2-D" if max_dim == 2 else f"2-D to {max_dim}-D"
            raise ValueError(
                f"{optimizer_name}'s matrix path needs {allowed} weights, but {label} has shape {tuple(p.shape)}. "
                "Put vectors, embeddings and the output head in a group with \"matrix\": False (trained by AdamW), "
                "e.g. with orthoscope.optim.matrix_param_groups(model)")


def setup_groups(optimizer_name: str, params, matrix_defaults: dict, adamw_defaults: dict) -> list[dict]:
    """Fill each group's hyperparameters from the defaults of its kind and check the values shared by all kinds."""
    groups = normalize_groups(params)
    for group in groups:
        group.setdefault("matrix", True)
        for k, v in (matrix_defaults if group["matrix"] else adamw_defaults).items():
            group.setdefault(k, v)
        check_lr(group["lr"], "lr" if group["matrix"] else "adamw_lr")
        check_nonneg(group["weight_decay"], "weight_decay" if group["matrix"] else "adamw_weight_decay")
        if not group["matrix"]:
            check_betas(group["betas"], "adamw_betas")
            check_nonneg(group["eps"], "adamw_eps")
    return groups


def matrix_param_groups(model: nn.Module, exclude: Rules = None, named: bool = True) -> list[dict]:
    """Split ``model``'s trainable parameters into ``[{"matrix": True, hidden}, {"matrix": False, rest}]``.

    Hidden matrices are the 2-D weights of ``nn.Linear`` modules, minus the output head. The head is every Linear
    whose last path component is in ``HEAD_NAMES``; when none is found by name, it is the last Linear in module order
    (the classifier of an ``MLP``). Embeddings, biases and norm gains always go to AdamW. ``exclude`` (peft rules on
    module paths) overrides the head detection: ``exclude=[]`` keeps every Linear weight on the matrix path.
    Groups carry parameter names (``named=True``) so errors name the parameter.
    """
    linears = [(path, m) for path, m in model.named_modules() if isinstance(m, nn.Linear)]
    if exclude is None:
        heads = [path for path, _ in linears if path.rsplit(".", 1)[-1] in HEAD_NAMES]
        if not heads and linears:
            heads = [linears[-1][0]]
        is_head = lambda path: path in heads                                     # noqa: E731
    else:
        is_head = lambda path: bool(exclude) and path_matches(path, exclude)     # noqa: E731
    hidden_ids = {id(m.weight) for path, m in linears if not is_head(path) and m.weight.requires_grad}
    matrix, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (matrix if id(p) in hidden_ids else rest).append((name, p) if named else p)
    groups = [{"params": matrix, "matrix": True}]
    if rest:
        groups.append({"params": rest, "matrix": False})
    if not matrix:
        raise ValueError(f"{type(model).__name__} has no hidden nn.Linear weight for the matrix path "
                         f"(head detection: {HEAD_NAMES} or the last Linear); pass exclude= to choose")
    return groups


# ---- the optimizer skeleton -----------------------------------------------------------------------------------

class GroupedOptimizer(torch.optim.Optimizer):
    """What every optimizer here does around its own rule: the closure, the non-finite guard, and the loop over
    parameter groups. A subclass gives ``update(p, state, group)`` — one parameter with a gradient, in place,
    under ``no_grad`` — and, with ``aux_adamw = True`` (the default), groups flagged ``"matrix": False`` are
    trained by the auxiliary AdamW instead, while every matrix group is checked to hold 2-D (up to
    ``matrix_max_dim``-D) weights."""

    name = "optimizer"
    aux_adamw = True
    matrix_max_dim = 2
    #: set by ``orthoscope.distributed`` under DDP/FSDP2: ``full_matrices(self, group)`` runs ``update`` on full
    #: matrices, each on one rank (``orthoscope.distributed.matrices``); ``None`` in one process
    full_matrices = None

    def __init__(self, groups: list[dict], check_finite: bool = True):
        super().__init__(groups, {})
        if self.aux_adamw:
            for gi, group in enumerate(self.param_groups):
                if group["matrix"]:
                    check_matrix_group(self.name, group, gi, max_dim=self.matrix_max_dim)
        self.check_finite = check_finite

    def update(self, p: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update(p, state, group)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.check_finite:
            check_finite_grads(self)                    # refuses the whole step before anything moves
        for group in self.param_groups:
            if self.aux_adamw and not group["matrix"]:
                adamw_group_step(self.state, group)
                continue
            if self.full_matrices is not None and group.get("matrix", False):
                self.full_matrices(self, group)
                continue
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, self.state[p], group)
        return loss


# ---- the auxiliary AdamW ---------------------------------------------------------------------------------------

def adamw_update(p: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int,
                 lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """One AdamW step in place, in the same operation order as ``torch.optim.AdamW`` (single-tensor path):

        p ← p(1 − lr·wd);  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
        p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)
    """
    beta1, beta2 = betas
    p.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias1, bias2 = 1 - beta1 ** step, 1 - beta2 ** step
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(eps)
    p.addcdiv_(exp_avg, denom, value=-lr / bias1)


def adamw_group_step(state: dict, group: dict) -> None:
    """AdamW over a ``"matrix": False`` group with lazily created state (``step``, ``exp_avg``, ``exp_avg_sq``)."""
    for p in group["params"]:
        if p.grad is None:
            continue
        s = state[p]
        if not s:
            s["step"] = 0
            s["exp_avg"] = torch.zeros_like(p)
            s["exp_avg_sq"] = torch.zeros_like(p)
        s["step"] += 1
        adamw_update(p, p.grad, s["exp_avg"], s["exp_avg_sq"], s["step"], group["lr"], tuple(group["betas"]),
                     group["eps"], group["weight_decay"])


def adamw_defaults(lr: float, betas, eps: float, weight_decay: float) -> dict:
    return {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
