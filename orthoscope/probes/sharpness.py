"""Sharpness: the top eigenvalues of the loss Hessian and its trace, on a fixed batch, by Hessian-vector products.

    Run(model, task, SGD(lr=0.05), probes=[Sharpness(task.batch(None), every=20)])        # any fixed (x, y)

What it records (keys as ``History`` keys):

* ``sharpness/total`` — λ₁, the largest eigenvalue of H = ∇²_θ L(θ; x, y), θ = the parameters that **train**
  (``requires_grad``: an adapter's, never the frozen base's).
* ``hessian_eig/<i>`` for i = 1…k — the top-k eigenvalues (only with ``k > 1``).
* ``hessian_trace/total`` and ``hessian_trace_se/total`` — Hutchinson's estimate of tr H and its standard error
  (only with ``trace_samples > 0``).
* ``two_over_lr/total`` — 2/η for the largest learning rate among the optimizer's param groups: the edge of stability
  of full-batch gradient descent (a quadratic with curvature λ diverges under GD iff λ > 2/η; Cohen et al. 2021).
  It is the threshold of *plain* GD: heavy-ball momentum β moves it to (2 + 2β)/η, and Adam's edge concerns the
  preconditioned Hessian (Cohen et al. 2022) — the line is still drawn at 2/η.

How. ``L`` is evaluated once with ``create_graph=True``; every Hessian-vector product Hv is then one more backward
through that graph (``torch.autograd.grad(∇L, θ, grad_outputs=v)``), the "double backward" trick (Pearlmutter 1994).
λ₁ comes from **Lanczos** with full re-orthogonalization: ``iters`` products build a Krylov basis V and the
tridiagonal T = VᵀHV, whose top eigenvalues (Ritz values) converge to H's extreme ones — much faster than power
iteration, and to the largest *algebraic* eigenvalue (power iteration finds the largest |λ|, which may be negative).
The trace uses Rademacher vectors z (E[zᵀHz] = tr H). Cost per call: one forward and backward with graph, then
``iters + trace_samples`` products (each ≈ 2 backward passes); memory: ``iters`` vectors of the trainable size.

The probe is read-only: the model is put in eval mode for the call (dropout off, BatchNorm statistics untouched)
and restored; gradients are taken with ``torch.autograd.grad`` (no ``.grad`` is written); random vectors come from
the probe's own seeded generator (the run's RNG streams are untouched). It reads only ``view.model`` and, for 2/η,
``view.optimizer`` at call time; the batch and loss function are fixed at construction (``loss_fn=None`` falls back
to the view's ``loss_fn``, which ``Run`` always has). FSDP2-sharded models are refused with a clear error.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn

from .base import Probe


# ---- the Hessian as an operator ----------------------------------------------------------------------------------
class HessianOperator:
    """v ↦ H v for H = ∇²L of ``loss_fn(model(x), y)`` w.r.t. the trainable parameters; vectors are flat (length
    ``n``, the parameters' dtype and device). Build it inside ``torch.enable_grad()``; it keeps the graph of ∇L."""

    def __init__(self, model: nn.Module, loss_fn, batch):
        x, y = batch
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("Sharpness: the model has no trainable parameters (requires_grad), so there is no "
                             "Hessian to measure")
        self.n = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.loss = loss_fn(model(x), y)
        if self.loss.dim() != 0:
            raise ValueError(f"Sharpness: the loss function must return a scalar, got shape {tuple(self.loss.shape)}")
        grads = torch.autograd.grad(self.loss, self.params, create_graph=True, allow_unused=True)
        # a gradient that is constant (the loss does not reach the parameter, or depends on it only through a term
        # linear in all parameters) is a zero row of H, hence (symmetry) a zero column: leave it out of the products
        self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self._grads = [grads[i] for i in self._live]
        self.products = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.products += 1
        parts = list(torch.split(v.to(self.dtype), [p.numel() for p in self.params]))
        out = [torch.zeros_like(p).reshape(-1) for p in self.params]
        if self._grads:
            hv = torch.autograd.grad(self._grads, [self.params[i] for i in self._live],
                                     grad_outputs=[parts[i].view_as(self.params[i]) for i in self._live],
                                     retain_graph=True, allow_unused=True)
            for i, h in zip(self._live, hv):
                if h is not None:
                    out[i] = h.reshape(-1)
        return torch.cat(out).detach()


@dataclass
class Lanczos:
    """The result of ``lanczos``: Ritz values (descending), the residual bound of each, products used."""

    eigenvalues: list[float]
    residuals: list[float]
    iterations: int


def lanczos(hvp, n: int, *, k: int = 1, iters: int = 20, generator: torch.Generator | None = None,
            dtype=torch.float64, device=None) -> Lanczos:
    """Top-``k`` eigenvalues of the symmetric operator ``hvp`` on Rⁿ by ``iters`` Lanczos steps with full
    re-orthogonalization (stops early at an invariant subspace, so n ≤ iters gives H's eigenvalues exactly).

    Residual of Ritz pair (θ_i, V s_i): ‖H V s_i − θ_i V s_i‖ = |β_m · s_i[m]| — an error bound on θ_i (an eigenvalue
    of H lies within it)."""
    if not isinstance(k, numbers.Integral) or k < 1 or not isinstance(iters, numbers.Integral) or iters < k:
        raise ValueError(f"lanczos needs integers 1 ≤ k ≤ iters, got k={k!r}, iters={iters!r}")
    m = min(int(iters), n)
    v = torch.randn(n, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    basis = [v / v.norm()]
    alphas, betas = [], []
    for j in range(m):
        w = hvp(basis[j]).to(dtype)
        alphas.append(float(basis[j] @ w))
        V = torch.stack(basis)
        for _ in range(2):                      # full re-orthogonalization, twice ("twice is enough", Kahan)
            w = w - V.T @ (V @ w)
        beta = float(w.norm())
        scale = max(abs(a) for a in alphas) or 1.0
        if j == m - 1 or beta <= 1e-12 * scale * math.sqrt(n):    # invariant subspace: T's eigenvalues are exact
            betas.append(beta)
            break
        betas.append(beta)
        basis.append(w / beta)
    size = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if size > 1:
        off = torch.tensor(betas[:size - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    theta, S = torch.linalg.eigh(T)
    order = torch.argsort(theta, descending=True)[: min(k, size)]
    return Lanczos([float(theta[i]) for i in order], [abs(betas[-1] * float(S[-1, i])) for i in order], size)


def hutchinson_trace(hvp, n: int, samples: int, *, generator: torch.Generator | None = None, dtype=torch.float64,
                     device=None) -> tuple[float, float]:
    """(mean, standard error) of zᵀHz over ``samples`` Rademacher vectors z: an unbiased estimate of tr H
    (its variance is 2 Σ_{i≠j} H_ij², zero for a diagonal H)."""
    if not isinstance(samples, numbers.Integral) or samples < 1:
        raise ValueError(f"hutchinson_trace needs samples ≥ 1, got {samples!r}")
    values = []
    for _ in range(samples):
        z = (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).to(device=device, dtype=dtype)
        values.append(float(z @ hvp(z).to(dtype)))
    t = torch.tensor(values, dtype=torch.float64)
    se = float(t.std(unbiased=True) / math.sqrt(samples)) if samples > 1 else float("nan")
    return float(t.mean()), se


# ---- the probe ---------------------------------------------------------------------------------------------------
def refuse_sharded(model: nn.Module) -> None:
    """A clear error for a model sharded by FSDP2 (its parameters are DTensors, or its modules ``FSDPModule``s)."""
    sharded = any(type(p).__name__ == "DTensor" for p in model.parameters())
    try:
        from torch.distributed.fsdp import FSDPModule
        sharded = sharded or any(isinstance(m, FSDPModule) for m in model.modules())
    except ImportError:                                   # a torch built without distributed support
        pass
    if sharded:
        raise ValueError("Sharpness cannot measure an FSDP2-sharded model: a Hessian-vector product needs a double "
                         "backward through the whole model, and FSDP2's backward hooks reduce-scatter the first "
                         "one. Measure sharpness in a one-process run (or under DDP, where rank 0 holds the whole "
                         "model), or on a copy of the gathered model")


class Sharpness(Probe):
    """``sharpness/total`` (λ_max of the loss Hessian on ``batch``), ``two_over_lr/total`` and optionally the top-k
    eigenvalues and Hutchinson's trace (module docstring).

    Args:
        batch: the fixed ``(x, y)`` the loss is evaluated on (full-batch GD: the whole training set).
        loss_fn: ``loss_fn(output, y) -> scalar``, or a loss name (``"mse"``, ``"cross_entropy"``, …); None: the
            view's ``loss_fn`` (a ``Run``'s loss).
        every: probe interval in steps. iters: Lanczos steps (Hessian-vector products) per call. k: eigenvalues.
        trace_samples: Rademacher vectors for the trace (0: no trace). seed: the probe's own random stream.
    """

    name = "sharpness"

    def __init__(self, batch, loss_fn=None, *, every: int = 10, iters: int = 20, k: int = 1, trace_samples: int = 0,
                 seed: int = 0):
        super().__init__(every)
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(torch.is_tensor(t) for t in batch)):
            raise TypeError(f"Sharpness(batch=...) must be a fixed (x, y) pair of tensors, got {type(batch).__name__}")
        for name, value, low in (("iters", iters, 1), ("k", k, 1), ("trace_samples", trace_samples, 0)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"Sharpness({name}=...) must be an integer ≥ {low}, got {value!r}")
        if k > iters:
            raise ValueError(f"Sharpness: k={k} eigenvalues need at least k Lanczos iterations, got iters={iters}")
        if loss_fn is not None:
            from ..methods.losses import resolve_loss
            loss_fn = resolve_loss(loss_fn)
        self.batch, self.loss_fn = tuple(batch), loss_fn
        self.iters, self.k, self.trace_samples = int(iters), int(k), int(trace_samples)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last: Lanczos | None = None        # the last call's Lanczos result (residuals: how converged λ is)

    def __repr__(self) -> str:
        return f"Sharpness(every={self.every}, iters={self.iters}, k={self.k}, trace_samples={self.trace_samples})"

    def check(self, view) -> None:
        """Refuse before the first step what this probe cannot measure (no loss function, a sharded model)."""
        if self.loss_fn is None and getattr(view, "loss_fn", None) is None:
            raise ValueError("Sharpness needs a loss function: pass loss_fn= (a callable or a loss name such as "
                             "'mse') — this recorder was given none")
        refuse_sharded(view.model)

    def __call__(self, view) -> dict:
        self.check(view)
        model = view.model
        loss_fn = self.loss_fn if self.loss_fn is not None else view.loss_fn
        device = next(model.parameters()).device
        batch = tuple(t.to(device) for t in self.batch)
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                op = HessianOperator(model, loss_fn, batch)
                tri = lanczos(op, op.n, k=self.k, iters=self.iters, generator=self.generator, dtype=op.dtype,
                              device=device)
                trace = (hutchinson_trace(op, op.n, self.trace_samples, generator=self.generator, dtype=op.dtype,
                                          device=device) if self.trace_samples else None)
        finally:
            model.train(was_training)
        self.last = tri
        out = {"sharpness/total": tri.eigenvalues[0]}
        if self.k > 1:
            out.update({f"hessian_eig/{i + 1}": lam for i, lam in enumerate(tri.eigenvalues)})
        if trace is not None:
            out["hessian_trace/total"], out["hessian_trace_se/total"] = trace
        lr = max_learning_rate(getattr(view, "optimizer", None))
        if lr:
            out["two_over_lr/total"] = 2.0 / lr
        return out


def max_learning_rate(optimizer) -> float | None:
    """The largest ``lr`` among the optimizer's param groups (a tensor lr read as a float); None without one."""
    if optimizer is None or not getattr(optimizer, "param_groups", None):
        return None
    return max(float(g["lr"]) for g in optimizer.param_groups)


__all__ = ["Sharpness", "HessianOperator", "lanczos", "hutchinson_trace", "Lanczos", "max_learning_rate",
           "refuse_sharded"]
