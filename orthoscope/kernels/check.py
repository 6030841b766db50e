"""Compare a Triton kernel with its torch twin: the one comparison the tests and ``benchmarks/bench_gpu_proof.py``
both use, so that a kernel passes on a real GPU by exactly the rule it passes by in CI's interpreter.

Tolerances: fp32 ≤ 1e-5 relative to the twin (max abs difference / max abs value). Half-precision inputs are compared
with the twin run in fp32 on the same (rounded) values: the kernels accumulate in fp32 and round once on store, so
the error is one output rounding — ≤ 1e-2 for bf16 (8-bit mantissa), ≤ 2e-3 for fp16.
"""
from __future__ import annotations

import torch

from . import use

FP32_TOL = 1e-5
TOLERANCE = {torch.float32: FP32_TOL, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def rel_err(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-30) -> float:
    """max |a − b| / max(max |b|, floor), in float64."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(floor)).item()


def run_both(op: str, tensors, *args, grad_seed: int = 1, frozen: tuple[int, ...] = (), **kwargs):
    """Run ``orthoscope.kernels.<op>`` with the twin (in fp32 on the same values) and with the Triton kernel.

    ``tensors``: the inputs; floating ones (except the positions in ``frozen``, e.g. a KAN grid) are differentiated
    against one seeded upstream gradient. Returns ``(twin, kernel)``, each ``(output, gradients)``."""
    from orthoscope import kernels

    results = {}
    for impl in ("torch", "triton"):
        leaves = [t.detach().clone().requires_grad_(t.is_floating_point() and i not in frozen)
                  for i, t in enumerate(tensors)]
        inputs = [t.float() if impl == "torch" and t.is_floating_point() else t for t in leaves]
        with use(impl):
            out = getattr(kernels, op)(*inputs, *args, **kwargs)
        g = torch.Generator().manual_seed(grad_seed)
        upstream = torch.randn(out.shape, generator=g).to(device=out.device, dtype=out.dtype)
        grads = torch.autograd.grad(out, [t for t in leaves if t.requires_grad], upstream)
        results[impl] = (out, grads)
    return results["torch"], results["triton"]


def mismatch(ref, got, tol: float = FP32_TOL, floor: float = 1e-30) -> str | None:
    """None when the kernel's forward and every gradient are within ``tol`` of the twin's; else what differs."""
    (out_r, grads_r), (out_t, grads_t) = ref, got
    if out_t.shape != out_r.shape:
        return f"forward shape {tuple(out_t.shape)} vs the twin's {tuple(out_r.shape)}"
    errors = [("forward", rel_err(out_t, out_r, floor))]
    errors += [(f"gradient {i}", rel_err(a, b)) for i, (a, b) in enumerate(zip(grads_t, grads_r))]
    bad = [f"{name}: {err:.2e}" for name, err in errors if not err <= tol]      # NaN counts as bad
    return f"{', '.join(bad)} (tolerance {tol:.0e})" if bad else None


def max_error(ref, got, floor: float = 1e-30) -> float:
    """The largest relative error over the forward and every gradient."""
    (out_r, grads_r), (out_t, grads_t) = ref, got
    return max([rel_err(out_t, out_r, floor)] + [rel_err(a, b) for a, b in zip(grads_t, grads_r)])
