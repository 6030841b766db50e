"""Triton kernels vs their torch twins under the CPU interpreter: the seam, Cayley–Neumann, block rotation, bad input.

``TRITON_INTERPRET=1`` must be set before the kernel modules are imported (Triton reads it when ``@triton.jit``
runs); the seam imports them lazily, on the first ``kernels.use("triton")`` call, so setting it here, at collection,
is early enough. Tolerances: fp32 ≤ 1e-5 relative to the twin (max abs difference / max abs value); half-precision
inputs are compared with the twin run in fp32 on the same (rounded) values: the kernels accumulate in fp32 and round
once on store, so the error is one output rounding — ≤ 1e-2 for bf16 (8-bit mantissa), ≤ 2e-3 for fp16.
"""
import pytest
import torch

pytest.importorskip("triton")

from hypothesis import given, settings, strategies as st  # noqa: E402

from orthoscope import kernels  # noqa: E402
from triton_checks import FP32_TOL, HALF_TOL, assert_match, both, gen, rel_err, triton_ops  # noqa: E402,F401


# ---- the seam -----------------------------------------------------------------------------------------------------

def test_dispatch_picks_kernels_and_twins(triton_ops):
    x = torch.zeros(2, 4)
    with kernels.use("triton"):
        for name, launcher in triton_ops.OPS.items():
            assert kernels.dispatch(name, x) is launcher
    with kernels.use("torch"):
        assert kernels.dispatch("block_rotate", x) is kernels.reference.block_rotate
    assert kernels.dispatch("block_rotate", x) is kernels.reference.block_rotate      # auto on CPU: twin
    from types import SimpleNamespace

    on_gpu = SimpleNamespace(is_cuda=True, dtype=torch.float32)                       # stand-ins: no GPU here
    on_gpu64 = SimpleNamespace(is_cuda=True, dtype=torch.float64)
    with kernels.use("auto"):
        assert kernels.dispatch("block_rotate", on_gpu) is triton_ops.OPS["block_rotate"]
        assert kernels.dispatch("block_rotate", on_gpu64) is kernels.reference.block_rotate   # POET merges (fp64)


def test_launch_on_cpu_without_interpreter_is_refused_before_launch(monkeypatch, triton_ops):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        triton_ops.cayley_neumann(torch.zeros(2, 6), 4)


# ---- Cayley–Neumann ---------------------------------------------------------------------------------------------

def packed(r, b, scale=0.3, seed=0, dtype=torch.float32):
    return (scale * torch.randn(r, b * (b - 1) // 2, generator=gen(seed))).to(dtype)


@pytest.mark.parametrize("b,k", [(2, 3), (5, 0), (7, 1), (16, 3), (29, 2)])
def test_cayley_neumann_fused_matches_twin(b, k):
    assert_match(*both("cayley_neumann", [packed(3, b, seed=b)], b, k))


@pytest.mark.parametrize("k", [0, 2])
def test_cayley_neumann_tiled_path_matches_twin(k):
    """b = 40 in 32-wide tiles: ragged tiles, several per block (the b > 32 path, used for POET-X's b = 256)."""
    from orthoscope.kernels.triton.triton_cayley import cnp_backward, cnp_forward

    b = 40
    q = packed(2, b, scale=0.1).requires_grad_()
    R = kernels.reference.cayley_neumann(q, b, k)
    G = torch.randn(R.shape, generator=gen(3))
    (dq,) = torch.autograd.grad(R, q, G)
    assert rel_err(cnp_forward(q.detach(), b, k, tiled=True, tile=32), R) <= FP32_TOL
    assert rel_err(cnp_backward(q.detach(), G, b, k, tiled=True, tile=32), dq) <= FP32_TOL


def test_cayley_neumann_against_float64_references():
    """Against references independent of fp32 rounding: R equals (I+Q)(I+Q+Q²+Q³) built in float64, and the
    gradient equals the float64 twin's autograd gradient, both to fp32 precision."""
    from orthoscope.ortho.skew import skew_from_packed

    q = packed(4, 6, scale=0.2, seed=7).requires_grad_()
    with kernels.use("triton"):
        R = kernels.cayley_neumann(q, 6)
    G = torch.randn(R.shape, generator=gen(8))
    (dq,) = torch.autograd.grad(R, q, G)
    Q = skew_from_packed(q.detach().double(), 6)
    eye = torch.eye(6, dtype=torch.float64)
    assert rel_err(R, (eye + Q) @ (eye + Q + Q @ Q + Q @ Q @ Q)) <= FP32_TOL
    q64 = q.detach().double().requires_grad_()
    (dq64,) = torch.autograd.grad(kernels.reference.cayley_neumann(q64, 6), q64, G.double())
    assert rel_err(dq, dq64) <= FP32_TOL


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cayley_neumann_half_precision(dtype):
    ref, got = both("cayley_neumann", [packed(3, 12, dtype=dtype)], 12, 3)
    assert got[0].dtype == dtype and got[1][0].dtype == dtype
    assert_match(ref, got, HALF_TOL[dtype])


@settings(max_examples=6, deadline=None)
@given(r=st.integers(1, 3), b=st.integers(2, 20), k=st.integers(0, 4), seed=st.integers(0, 99))
def test_cayley_neumann_property(r, b, k, seed):
    assert_match(*both("cayley_neumann", [packed(r, b, scale=0.2, seed=seed)], b, k))


# ---- block rotation ---------------------------------------------------------------------------------------------

def rot_inputs(lead, r, b, seed=0, dtype=torch.float32):
    x = torch.randn(*lead, r * b, generator=gen(seed)).to(dtype)
    R = torch.randn(r, b, b, generator=gen(seed + 1)).div(b ** 0.5).to(dtype)
    return x, R


@pytest.mark.parametrize("lead,r,b,with_perm", [((5, 3), 4, 6, True), ((130,), 3, 20, False), ((7, 2), 2, 70, True),
                                                ((9,), 5, 16, False)])
def test_block_rotate_matches_twin(lead, r, b, with_perm):
    """Ragged rows (130 = 128 + 2), ragged blocks (b = 6, 20, 70: masks on both block axes and tiles of 64)."""
    x, R = rot_inputs(lead, r, b, seed=b)
    perm = torch.randperm(r * b, generator=gen(b)) if with_perm else None
    assert_match(*both("block_rotate", [x, R], perm))


@pytest.mark.parametrize("recompute", [True, False])
def test_block_rotate_memory_modes(recompute):
    """Both modes give the twin's values; the recompute mode saves only x, R and perm (no gathered copy), the other
    keeps exactly one extra activation (x̃)."""
    from orthoscope.kernels.triton.triton_rotate import block_rotate

    x, R = rot_inputs((12,), 3, 8, seed=4)
    x.requires_grad_()
    R.requires_grad_()
    perm = torch.randperm(24, generator=gen(5))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = block_rotate(x, R, perm, recompute=recompute)
    g = torch.randn(y.shape, generator=gen(6))
    dx, dR = torch.autograd.grad(y, (x, R), g)
    xr, Rr = x.detach().requires_grad_(), R.detach().requires_grad_()
    yr = kernels.reference.block_rotate(xr, Rr, perm)
    dxr, dRr = torch.autograd.grad(yr, (xr, Rr), g)
    for a, b in ((y, yr), (dx, dxr), (dR, dRr)):
        assert rel_err(a, b) <= FP32_TOL
    extra = [t for t in saved if t.data_ptr() not in (x.data_ptr(), R.data_ptr(), perm.data_ptr())]
    assert len(extra) == (0 if recompute else 1)
    if not recompute:
        assert torch.equal(extra[0], x.detach()[:, perm])


def test_block_rotate_strided_inputs_and_partial_grads():
    """A transposed R (OFT's transpose path) is read through its strides; a non-contiguous x is copied once."""
    x, R = rot_inputs((6, 10), 2, 8, seed=9)
    xt = x.transpose(0, 1)
    Rt = R.transpose(1, 2)
    assert_match(*both("block_rotate", [xt, Rt]))
    R_only = R.clone().requires_grad_()
    with kernels.use("triton"):
        (dR,) = torch.autograd.grad(kernels.block_rotate(x, R_only).sum(), R_only)
    R_ref = R.clone().requires_grad_()
    (dR_ref,) = torch.autograd.grad(kernels.reference.block_rotate(x, R_ref).sum(), R_ref)
    assert rel_err(dR, dR_ref) <= FP32_TOL


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_block_rotate_half_precision(dtype):
    x, R = rot_inputs((33,), 2, 16, dtype=dtype)
    ref, got = both("block_rotate", [x, R], torch.randperm(32, generator=gen(2)))
    assert got[0].dtype == dtype and [g.dtype for g in got[1]] == [dtype, dtype]
    assert_match(ref, got, HALF_TOL[dtype])


def test_block_rotate_under_autocast_meets_in_the_autocast_dtype():
    """Under autocast the twin's einsum runs in bf16 whatever the input dtypes (POET passes fp32 rotations with bf16
    activations); the kernel casts the same way instead of refusing mixed dtypes."""
    x, R = rot_inputs((10,), 2, 16, seed=3)
    xb = x.bfloat16()
    outs = {}
    for impl in ("torch", "triton"):
        with kernels.use(impl), torch.autocast("cpu", dtype=torch.bfloat16):
            outs[impl] = kernels.block_rotate(xb, R)
    assert outs["triton"].dtype == outs["torch"].dtype == torch.bfloat16
    assert rel_err(outs["triton"], outs["torch"]) <= HALF_TOL[torch.bfloat16]


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 70), r=st.integers(1, 4), b=st.integers(1, 24), with_perm=st.booleans(),
       seed=st.integers(0, 99))
def test_block_rotate_property(n, r, b, with_perm, seed):
    x, R = rot_inputs((n,), r, b, seed=seed)
    perm = torch.randperm(r * b, generator=gen(seed)) if with_perm else None
    assert_match(*both("block_rotate", [x, R], perm))


# ---- bad input: clear errors before any launch --------------------------------------------------------------------

def test_bad_input_cayley_neumann(triton_ops):
    with pytest.raises(TypeError, match="q_packed has dtype torch.float64.*float32, float16 or bfloat16"):
        triton_ops.cayley_neumann(torch.zeros(2, 6, dtype=torch.float64), 4)
    with pytest.raises(TypeError, match="q_packed has dtype torch.int64"):
        triton_ops.cayley_neumann(torch.zeros(2, 6, dtype=torch.long), 4)
    with pytest.raises(ValueError, match=r"\[r, b\(b-1\)/2\] = \[r, 10\] for b=5, got \[2, 6\]"):
        triton_ops.cayley_neumann(torch.zeros(2, 6), 5)
    with pytest.raises(ValueError, match="k \\(number of Neumann terms\\) must be an int ≥ 0, got -1"):
        triton_ops.cayley_neumann(torch.zeros(2, 6), 4, -1)
    from orthoscope.kernels.triton.triton_cayley import cnp_forward

    with pytest.raises(ValueError, match="q_packed must have unit stride.*contiguous"):
        cnp_forward(torch.zeros(6, 2).T, 4, 3)                    # the launcher itself takes no strided rows


def test_bad_input_block_rotate(triton_ops):
    x, R = torch.zeros(3, 8), torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match="x has last dimension 8 but R has 3 blocks of size 4"):
        triton_ops.block_rotate(x, torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="inputs must share one dtype, got x=torch.float32, R=torch.float16"):
        triton_ops.block_rotate(x, R.half())
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        triton_ops.block_rotate(x.double(), R.double())
    with pytest.raises(ValueError, match="perm must be an int64 tensor of shape \\[8\\], got torch.int32"):
        triton_ops.block_rotate(x, R, torch.arange(8, dtype=torch.int32))
    with pytest.raises(ValueError, match="perm must be a permutation of 0..7"):
        triton_ops.block_rotate(x, R, torch.tensor([0, 1, 2, 3, 4, 5, 6, 8]))
    with pytest.raises(ValueError, match="perm must be contiguous"):
        triton_ops.block_rotate(x, R, torch.arange(16)[::2])
    from orthoscope.kernels.triton.triton_rotate import rotate_launch

    with pytest.raises(ValueError, match="x must have unit stride along its last dimension"):
        rotate_launch(torch.zeros(8, 3).T, R)
