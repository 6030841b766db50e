"""What the Triton-kernel test files share: tolerances, the twin-vs-kernel runner and its comparison (the last two
live in ``orthoscope.kernels.check``, which benchmarks/bench_gpu_proof.py uses on a GPU too).

Tolerances: fp32 ≤ 1e-5 relative to the twin (max abs difference / max abs value); half-precision inputs are compared
with the twin run in fp32 on the same (rounded) values: the kernels accumulate in fp32 and round once on store, so the
error is one output rounding — ≤ 1e-2 for bf16 (8-bit mantissa), ≤ 2e-3 for fp16. ``TRITON_INTERPRET=1`` is set by
``conftest.py`` before anything imports Triton.
"""
import pytest
import torch

from orthoscope.kernels.check import FP32_TOL, TOLERANCE, mismatch, rel_err, run_both  # noqa: F401 (rel_err: tests)

HALF_TOL = {dtype: tol for dtype, tol in TOLERANCE.items() if dtype != torch.float32}


@pytest.fixture(scope="module", autouse=True)
def triton_ops():
    from orthoscope.kernels.triton import triton_ops
    return triton_ops


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def both(op, tensors, *args, grad_seed=1, **kwargs):
    """Run ``kernels.<op>`` with the twin (in fp32 on the same values) and the kernel: (out, grads) for each.
    ``tensors``: inputs; floating ones are differentiated (``orthoscope.kernels.check.run_both``)."""
    return run_both(op, tensors, *args, grad_seed=grad_seed, **kwargs)


def assert_match(ref, got, tol=FP32_TOL, floor=1e-30):
    """Forward (relative to max(|twin|, floor)) and every gradient within ``tol`` of the twin's."""
    problem = mismatch(ref, got, tol, floor)
    assert problem is None, problem
