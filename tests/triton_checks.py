"""What the Triton-kernel test files share: tolerances, the twin-vs-kernel runner and its comparison.

Tolerances: fp32 ≤ 1e-5 relative to the twin (max abs difference / max abs value); half-precision inputs are compared
with the twin run in fp32 on the same (rounded) values: the kernels accumulate in fp32 and round once on store, so the
error is one output rounding — ≤ 1e-2 for bf16 (8-bit mantissa), ≤ 2e-3 for fp16. ``TRITON_INTERPRET=1`` is set by
``conftest.py`` before anything imports Triton.
"""
import pytest
import torch

from orthoscope import kernels

FP32_TOL = 1e-5
HALF_TOL = {torch.bfloat16: 1e-2, torch.float16: 2e-3}


@pytest.fixture(scope="module", autouse=True)
def triton_ops():
    from orthoscope.kernels.triton import triton_ops
    return triton_ops


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rel_err(a, b, floor: float = 1e-30) -> float:
    """max |a − b| / max(max |b|, floor)."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(floor)).item()


def both(op, tensors, *args, grad_seed=1, **kwargs):
    """Run ``kernels.<op>`` with the twin (in fp32 on the same values) and the kernel: (out, grads) for each.
    ``tensors``: inputs; floating ones are differentiated."""
    results = {}
    for impl in ("torch", "triton"):
        leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]
        inputs = [t.float() if impl == "torch" and t.is_floating_point() else t for t in leaves]
        with kernels.use(impl):
            out = getattr(kernels, op)(*inputs, *args, **kwargs)
        upstream = torch.randn(out.shape, generator=gen(grad_seed)).to(out.dtype)
        grads = torch.autograd.grad(out, [t for t in leaves if t.requires_grad], upstream)
        results[impl] = (out, grads)
    return results["torch"], results["triton"]


def assert_match(ref, got, tol=FP32_TOL, floor=1e-30):
    """Forward (relative to max(|twin|, floor)) and every gradient within ``tol`` of the twin's."""
    (out_r, grads_r), (out_t, grads_t) = ref, got
    assert out_t.shape == out_r.shape
    assert rel_err(out_t, out_r, floor) <= tol, f"forward: {rel_err(out_t, out_r, floor):.2e}"
    for i, (a, b) in enumerate(zip(grads_t, grads_r)):
        assert rel_err(a, b) <= tol, f"gradient {i}: {rel_err(a, b):.2e}"
