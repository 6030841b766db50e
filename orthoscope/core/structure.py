"""The structure of a model as data: which module sits at which path, of which type, holding which tensors.

Two readers compare models by it:

* checkpoints (``Run.save`` / ``Run.load``) record ``fingerprint(model)`` and refuse to load into a model whose
  fingerprint differs — a ``HarmonicHead`` where a ``Linear`` was has the same parameter names and shapes, so the
  ``signature`` (names → shapes) alone would let it through;
* ``run.config`` (``orthoscope.config.exact``) compares the live model with the one its config builds
  (``structure(model)``, which adds what a checkpoint need not agree on: ``requires_grad`` and each module's
  ``extra_repr``, where hyperparameters such as a harmonic exponent or a dropout rate show).

A module's type is its class's ``__qualname__`` (``"Linear"``, ``"HarmonicHead"``): the module path of a class may
move between releases without changing what a checkpoint holds. FSDP2 replaces a module's class by a generated
subclass (``FSDPLinear``); the class it was made from is reported, so a sharded run and a one-process run agree.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn


def type_name(module: nn.Module) -> str:
    # fully_shard swaps in a generated class FSDP<Name>(FSDPModule, <Name>): the module's own class is the first one
    # of the MRO that is not FSDP's
    cls = next(c for c in type(module).__mro__ if not c.__module__.startswith("torch.distributed.fsdp"))
    return cls.__qualname__


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def fingerprint(model: nn.Module) -> dict:
    """``{"modules": [[path, type], ...], "tensors": [[name, shape, dtype], ...]}`` in registration order: every
    module (the root is ``""``), then every parameter and buffer of the state (tied parameters once)."""
    modules = [[path, type_name(m)] for path, m in model.named_modules()]
    tensors = [[name, list(t.shape), _dtype(t)] for name, t in _state(model)]
    return {"modules": modules, "tensors": tensors}


def _state(model: nn.Module):
    yield from model.named_parameters()
    yield from ((name, b) for name, b in model.named_buffers() if b is not None)


def first_difference(mine: dict, theirs: dict, here: str = "the run", there: str = "the checkpoint") -> str | None:
    """The first entry in which two fingerprints differ, in words (``None`` when they are equal)."""
    for what in ("modules", "tensors"):
        a, b = mine[what], theirs[what]
        for i in range(max(len(a), len(b))):
            x, y = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
            if x == y:
                continue
            return _describe_difference(what, x, y, here, there)
    return None


def _describe_difference(what: str, x, y, here: str, there: str) -> str:
    if what == "modules":
        if x is not None and y is not None and x[0] == y[0]:
            return f"module {x[0] or '(the model)'!r} is a {x[1]} in {here} but a {y[1]} in {there}"
        if x is None:
            return f"{there} has a module {y[0]!r} ({y[1]}) that {here} lacks"
        if y is None:
            return f"{here} has a module {x[0]!r} ({x[1]}) that {there} lacks"
        return (f"the modules differ from {x[0]!r} on: {here} has {x[0]!r} ({x[1]}) where {there} has {y[0]!r} "
                f"({y[1]})")
    if x is not None and y is not None and x[0] == y[0]:
        return (f"tensor {x[0]!r} is {_tensor_words(x)} in {here} but {_tensor_words(y)} in {there}")
    if x is None:
        return f"{there} has a tensor {y[0]!r} that {here} lacks"
    if y is None:
        return f"{here} has a tensor {x[0]!r} that {there} lacks"
    return f"the tensors differ from {x[0]!r} on: {here} has {x[0]!r} where {there} has {y[0]!r}"


def _tensor_words(entry) -> str:
    return f"{entry[2]} of shape {list(entry[1])}" + (f", {entry[3]}" if len(entry) > 3 else "")


def structure(model: nn.Module) -> dict:
    """``fingerprint(model)`` with more detail, for comparing a live model with a rebuilt one: modules carry their
    ``extra_repr()`` and parameters whether they train."""
    modules = [[path, type_name(m) + (f"({m.extra_repr()})" if m.extra_repr() else "")]
               for path, m in model.named_modules()]
    tensors = [[name, list(t.shape), _dtype(t), "trains" if getattr(t, "requires_grad", False) else "frozen"]
               for name, t in _state(model)]
    return {"modules": modules, "tensors": tensors}


def tensor_digests(model: nn.Module) -> list[tuple[str, str, tuple[float, float]]]:
    """``[(name, SHA-256 of the tensor's dtype, shape and bytes, (Σx, Σx², n) in float64)]`` for every parameter and
    buffer, in order: what the model's values are, compared without keeping a copy (the moments serve a tensor whose
    init is not bit-reproducible, ``values_match``). Meta tensors have no values and are left out."""
    out = []
    for name, t in _state(model):
        if t.device.type == "meta":
            continue
        t = t.detach()
        t = t.to_local() if hasattr(t, "to_local") else t
        t = t.to("cpu").contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        x = t.double() if t.is_floating_point() else None
        moments = (float(x.sum()), float((x * x).sum()), t.numel()) if x is not None else (0.0, 0.0, t.numel())
        out.append((name, h.hexdigest(), moments))
    return out


NONDETERMINISTIC_RTOL = 1e-6


def values_match(model: nn.Module, name: str, mine, theirs) -> bool:
    """Two ``tensor_digests`` entries of tensor ``name`` describe the same values: the same bytes, or — for a tensor
    its module declares ``nondeterministic_init`` (a KAN's least-squares ``coef``) — moments equal to 1e-6 relative."""
    if mine[1] == theirs[1]:
        return True
    owner, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(owner)
    except AttributeError:
        return False
    if attr not in getattr(module, "nondeterministic_init", ()):
        return False
    (s1, q1, n1), (s2, q2, n2) = mine[2], theirs[2]
    # Σx can cancel to near 0, so its error is measured against what the elements' errors can add up to, √(n·Σx²)
    # (≥ |Σx|); Σx² cannot cancel and is compared relative to itself.
    sum_scale = max(n1 * q1, n2 * q2, 1e-60) ** 0.5
    return n1 == n2 and abs(s1 - s2) <= NONDETERMINISTIC_RTOL * sum_scale and \
        abs(q1 - q2) <= NONDETERMINISTIC_RTOL * max(q1, q2, 1e-30)
