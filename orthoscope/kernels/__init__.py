"""orthoscope.kernels — the kernel seam (DESIGN §4).

Every heavy operation is called as ``orthoscope.kernels.<op>(...)``. Each op has a pure-torch twin in
``reference.py`` (same signature, autograd-friendly) and, where written, a Triton kernel. The choice is made once
per call from the tensors' device:

* ``auto`` (default): Triton on CUDA tensors when Triton imports and the op has a kernel; the twin otherwise
  (and for float64 inputs, which the fp32-accumulating kernels would round);
* ``torch``: always the twin;  ``triton``: always the kernel (on CPU only under ``TRITON_INTERPRET=1``).

Set it with the environment variable ``ORTHOSCOPE_KERNELS`` or, in tests, ``with use("torch"): ...``.
A missing Triton never breaks import; asking for it explicitly raises, and ``auto`` warns once and falls back.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import warnings

import torch

from . import reference

CHOICES = ("auto", "torch", "triton")
_override: str | None = None
_triton_ops: dict[str, object] = {}     # op name -> Triton launcher, read from triton.triton_ops.OPS on first need
_triton_error: str | None = None
_warned = False


def _choice() -> str:
    value = _override or os.environ.get("ORTHOSCOPE_KERNELS", "auto")
    if value not in CHOICES:
        raise ValueError(f"ORTHOSCOPE_KERNELS must be one of {CHOICES}, got {value!r}")
    return value


@contextlib.contextmanager
def use(impl: str):
    """Temporarily force ``"torch"``, ``"triton"`` or ``"auto"`` (tests compare the two paths this way)."""
    global _override
    if impl not in CHOICES:
        raise ValueError(f"impl must be one of {CHOICES}, got {impl!r}")
    previous, _override = _override, impl
    try:
        yield
    finally:
        _override = previous


def triton_available() -> bool:
    global _triton_error
    if _triton_error is None:
        try:
            importlib.import_module("triton")
            _triton_error = ""
        except Exception as e:  # ImportError, or a broken install
            _triton_error = f"{type(e).__name__}: {e}"
    return _triton_error == ""


def _load_triton_ops() -> None:
    # The Triton sources live in the top-level kernels/ folder, installed as orthoscope.kernels.triton (docs/design.md,
    # "Layout"). They are imported lazily, on first need, so a missing or broken Triton never breaks import.
    module = f"{__name__}.triton.triton_ops"
    try:
        _triton_ops.update(importlib.import_module(module).OPS)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise


def dispatch(name: str, *tensors):
    """Return the implementation of op ``name`` to use for these tensors."""
    global _warned
    choice = _choice()
    on_cuda = any(getattr(t, "is_cuda", False) for t in tensors)
    if choice == "torch" or (choice == "auto" and (not on_cuda or _twin_dtype(tensors))):
        return getattr(reference, name)
    if not triton_available():
        if choice == "triton":
            raise RuntimeError(f"ORTHOSCOPE_KERNELS=triton but Triton cannot be imported ({_triton_error})")
        if not _warned:
            warnings.warn(f"Triton unavailable ({_triton_error}); orthoscope uses its torch kernels", stacklevel=3)
            _warned = True
        return getattr(reference, name)
    if name not in _triton_ops:
        _load_triton_ops()
    if name in _triton_ops:
        if not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(f"Triton kernel {name!r} on CPU tensors needs TRITON_INTERPRET=1 set before import")
        return _triton_ops[name]
    if choice == "triton":
        raise NotImplementedError(f"no Triton kernel for {name!r} yet; use ORTHOSCOPE_KERNELS=auto or torch")
    return getattr(reference, name)


def _twin_dtype(tensors) -> bool:
    """float64 (or other non-kernel dtypes) stay on the twin under ``auto``: the kernels compute in fp32, and
    float64 callers (POET's merges) want every bit. ``triton`` with such tensors raises in the launcher."""
    return any(getattr(t, "dtype", None) in (torch.float64, torch.complex64, torch.complex128) for t in tensors)


def check_inputs(op: str, **named) -> None:
    """Before any implementation runs: every named input is a tensor (``None`` allowed for optional ones), all on
    one device, and the floating ones of one dtype (unless autocast is on, where the implementations cast)."""
    tensors = {}
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        tensors[name] = t
    devices = {str(t.device) for t in tensors.values()}
    if len(devices) > 1:
        raise ValueError(f"{op}: inputs on different devices: " +
                         ", ".join(f"{n} on {t.device}" for n, t in tensors.items()) + " — move them to one device")
    floats = {n: t for n, t in tensors.items() if t.is_floating_point()}
    dtypes = {t.dtype for t in floats.values()}
    autocast = any(torch.is_autocast_enabled(t.device.type) for t in floats.values()
                   if t.device.type in ("cpu", "cuda"))
    if len(dtypes) > 1 and not autocast:
        raise TypeError(f"{op}: floating inputs of different dtypes: " +
                        ", ".join(f"{n} {t.dtype}" for n, t in floats.items()) + " — cast them to one dtype")


# ---- public ops (one line each: check, pick an implementation, call it) ----------------------------------------

def pairwise_energy(w, s: float = 1.0, angular: bool = False, half_space: bool = False, eps: float = 1e-6):
    """Hyperspherical energy of the rows of ``w`` (see ``reference.pairwise_energy``)."""
    check_inputs("pairwise_energy", w=w)
    return dispatch("pairwise_energy", w)(w, s=s, angular=angular, half_space=half_space, eps=eps)


def cayley_neumann(q_packed, b: int, k: int = 3):
    """``R[r, b, b] = (I+Q)(I+Q+…+Q^k)`` per block, ``Q`` skew from the packed strict upper triangle
    ``q_packed[r, b(b−1)/2]`` (DESIGN §5; see ``reference.cayley_neumann``)."""
    check_inputs("cayley_neumann", q_packed=q_packed)
    return dispatch("cayley_neumann", q_packed)(q_packed, b, k)


def block_rotate(x, R, perm=None):
    """``y = x[..., perm] · blockdiag(R)`` for ``x[..., r·b]``, ``R[r, b, b]`` (see ``reference.block_rotate``)."""
    check_inputs("block_rotate", x=x, R=R, perm=perm)
    return dispatch("block_rotate", x, R)(x, R, perm)


def kan_spline(x, grid, coef, k: int, base_weight=None, base_fun: str = "silu"):
    """``y[b, o] = Σ_i Σ_m coef[i, o, m]·B_m(x[b, i])`` for ``x[B, in]``, ``grid[in, G+2k+1]``, ``coef[in, out, G+k]``
    (the spline branch of a KAN layer), plus ``base_fun(x) @ base_weight[in, out]`` when given (the base branch;
    see ``reference.kan_spline``)."""
    check_inputs("kan_spline", x=x, grid=grid, coef=coef, base_weight=base_weight)
    return dispatch("kan_spline", x, grid, coef)(x, grid, coef, k, base_weight, base_fun)


def harmonic_nll(h, centers, target, n: float):
    """Mean NLL of HarMax over distance logits ``−n·log‖h − w_v‖`` (see ``reference.harmonic_nll``)."""
    check_inputs("harmonic_nll", h=h, centers=centers, target=target)
    return dispatch("harmonic_nll", h, centers)(h, centers, target, n)
