"""Fused Triton kernels vs their torch twins under the CPU interpreter: hyperspherical energy, harmonic loss, KAN
spline; plus the twin fix they exposed (the energy's gradient). Tolerances as in test_kernels.py: fp32 ≤ 1e-5
relative; half-precision inputs vs the fp32 twin on the same values ≤ 1e-2 (bf16) / 2e-3 (fp16).
"""
import math

import pytest
import torch

pytest.importorskip("triton")

from hypothesis import given, settings, strategies as st  # noqa: E402

from orthoscope import kernels  # noqa: E402
from orthoscope.kernels.bspline import grid_from_samples, uniform_grid  # noqa: E402
from triton_checks import FP32_TOL, HALF_TOL, assert_match, both, gen, rel_err, triton_ops  # noqa: E402,F401


def outputs_and_grads(fn, tensors, dtype, seed=1):
    """fn(*inputs) and its gradients w.r.t. the floating inputs, all inputs cast to ``dtype``."""
    leaves = [t.detach().to(dtype).requires_grad_() if t.is_floating_point() else t for t in tensors]
    out = fn(*leaves)
    upstream = torch.randn(out.shape, generator=gen(seed), dtype=torch.float64).to(dtype)
    return out, torch.autograd.grad(out, [t for t in leaves if t.is_floating_point()], upstream)


def assert_as_accurate(op, tensors, call, truth=None, factor=4.0):
    """Property-test criterion for random, possibly ill-conditioned inputs: against a float64 truth (the twin run
    in float64, or ``truth``), the fp32 kernel's error (relative to max |truth|, floored at 1) is ≤ 1e-5 or at most
    ``factor`` × the fp32 twin's own error — near-coincident points lose digits to cancellation in both alike.
    ``call(fn, *tensors)`` applies an implementation to the (differentiated) tensors."""
    twin = getattr(kernels.reference, op)

    def run(fn, dtype):
        return outputs_and_grads(lambda *t: call(fn, *t), tensors, dtype)

    exact = run(truth or twin, torch.float64)

    def errors(result):
        return [rel_err(a, b, 1.0) for a, b in zip([result[0], *result[1]], [exact[0], *exact[1]])]

    twin_errs = errors(run(twin, torch.float32))
    with kernels.use("triton"):
        kernel_errs = errors(run(getattr(kernels, op), torch.float32))
    for i, (e, t) in enumerate(zip(kernel_errs, twin_errs)):
        what = "forward" if i == 0 else f"gradient {i - 1}"
        assert e <= max(FP32_TOL, factor * t), f"{what}: kernel error {e:.2e}, fp32 twin error {t:.2e}"


def saved_bytes(fn):
    """Bytes of the tensors autograd keeps for backward while ``fn()`` runs, and fn's result."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = fn()
    return sum(t.numel() * t.element_size() for t in {t.data_ptr(): t for t in saved}.values()), out


# ---- hyperspherical energy --------------------------------------------------------------------------------------

@pytest.mark.parametrize("s", [0, 1, 2, 0.5])
@pytest.mark.parametrize("angular,half_space", [(False, False), (True, False), (False, True), (True, True)])
def test_energy_matches_twin(s, angular, half_space):
    w = torch.randn(37, 20, generator=gen(3))
    assert_match(*both("pairwise_energy", [w], s, angular, half_space))


def test_energy_several_tiles_each_way():
    """n = 70 rows in 64-row tiles and d = 130 in 128-wide chunks: ragged on every axis, several programs."""
    w = torch.randn(70, 130, generator=gen(4))
    assert_match(*both("pairwise_energy", [w], 1.0, False, True))


def test_energy_known_answers():
    """The regular simplex (n = d+1 unit vectors, pairwise cos −1/d) has d_ij = √(2 + 2/d) for every pair."""
    d = 5
    e = torch.eye(d + 1) - 1.0 / (d + 1)                                # centred basis: a regular simplex
    with kernels.use("triton"):
        for s in (1, 2):
            assert abs(kernels.pairwise_energy(e, s).item() - (2 + 2 / d) ** (-s / 2)) < 1e-6
        assert abs(kernels.pairwise_energy(e, 0).item() + 0.5 * math.log(2 + 2 / d)) < 1e-6
        dup = torch.tensor([[1.0, 0.0], [2.0, 0.0]])                      # duplicate directions: d clamped at eps
        assert kernels.pairwise_energy(dup, 1.0, eps=1e-3).item() == pytest.approx(1e3)


def test_energy_gradient_is_tangent_and_scale_free():
    w = torch.randn(9, 6, generator=gen(5), requires_grad=True)
    with kernels.use("triton"):
        (g,) = torch.autograd.grad(kernels.pairwise_energy(w, 1.0), w)
    assert (g * w).sum(1).abs().max() < 1e-6                             # energy ignores row lengths
    w2 = (3.0 * w.detach()).requires_grad_()
    with kernels.use("triton"):
        (g2,) = torch.autograd.grad(kernels.pairwise_energy(w2, 1.0), w2)
    assert rel_err(3.0 * g2, g) <= FP32_TOL


def test_energy_twin_gradient_is_finite_and_exact():
    """Twin fix: the self pairs (cos = 1, where √ and arccos have infinite slope) made every twin gradient NaN.
    Now it is finite and matches finite differences (angular half-space too: the antipodal pairs are constant)."""
    w = torch.randn(5, 4, generator=gen(6), dtype=torch.float64, requires_grad=True)
    for angular, half in ((False, False), (True, True)):
        def energy(w_):
            return kernels.reference.pairwise_energy(w_.double(), 1.0, angular, half).double()
        (g,) = torch.autograd.grad(energy(w), w)
        assert torch.isfinite(g).all()
        # the twin computes in fp32, so compare with a central difference of matching accuracy
        h = 1e-2
        for i, j in ((0, 0), (3, 2)):
            e = torch.zeros_like(w)
            e[i, j] = h
            fd = (energy(w.detach() + e) - energy(w.detach() - e)) / (2 * h)
            assert abs(fd.item() - g[i, j].item()) < 2e-3 * max(1.0, abs(g[i, j].item()))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_energy_half_precision(dtype):
    ref, got = both("pairwise_energy", [torch.randn(20, 12, generator=gen(7)).to(dtype)], 1.0)
    assert got[0].dtype == torch.float32 and got[1][0].dtype == dtype
    assert_match(ref, got, HALF_TOL[dtype])


def test_energy_saves_only_rows_not_pairs():
    w = torch.randn(64, 8, generator=gen(8), requires_grad=True)
    with kernels.use("triton"):
        nbytes, _ = saved_bytes(lambda: kernels.pairwise_energy(w, 1.0))
    assert nbytes <= 64 * 8 * 4 + 64 * 4                                # u and the norms; never n×n


def energy64(w, s, angular, half_space):
    """The twin's formula in float64 (the twin itself always computes in fp32): the property test's truth."""
    u = w / w.norm(dim=1, keepdim=True)
    if half_space:
        u = torch.cat([u, -u])
    n = u.shape[0]
    cos = (u @ u.T).clamp(-1.0, 1.0)
    eye = torch.eye(n, dtype=torch.bool)
    exact = eye.double() - (eye.roll(n // 2, 1).double() if half_space else 0.0)
    cos = torch.where(exact != 0, exact, cos)                     # self and antipodal pairs: exactly ±1
    d = (torch.arccos(cos) / math.pi if angular else (2.0 - 2.0 * cos).clamp_min(0.0).sqrt()).clamp_min(1e-6)
    f = -torch.log(d) if s == 0 else d.pow(-s)
    return f.masked_fill(eye, 0.0).sum() / (n * (n - 1))


@settings(max_examples=5, deadline=None)
@given(n=st.integers(2, 40), d=st.integers(2, 20), s=st.sampled_from([0, 1, 2]), angular=st.booleans(),
       half=st.booleans(), seed=st.integers(0, 99))
def test_energy_property(n, d, s, angular, half, seed):
    assert_as_accurate("pairwise_energy", [torch.randn(n, d, generator=gen(seed))],
                       lambda fn, w: fn(w, s, angular, half), truth=energy64)


@pytest.mark.xfail(strict=True, reason="known limit: both kernel and twin take distances from the Gram matrix, "
                   "d² = 2 − 2cos, which loses digits for near-coincident directions; for the log energy (s = 0) of "
                   "31 random 2-D directions (62 with antipodes) the kernel's error is 1.5e-4 of the float64 truth, "
                   "the twin's 1.8e-6 by rounding luck — an example random property testing once drew")
def test_energy_log_of_near_coincident_directions_is_rounding_limited():
    assert_as_accurate("pairwise_energy", [torch.randn(31, 2, generator=gen(19))],
                       lambda fn, w: fn(w, 0, False, True), truth=energy64)


# ---- fused harmonic loss ----------------------------------------------------------------------------------------

def harmonic_inputs(N, V, D, seed=0, dtype=torch.float32):
    h = torch.randn(N, D, generator=gen(seed)).to(dtype)
    c = torch.randn(V, D, generator=gen(seed + 1)).to(dtype)
    t = torch.randint(0, V, (N,), generator=gen(seed + 2))
    return h, c, t


@pytest.mark.parametrize("N,V,D", [(13, 37, 20), (70, 300, 130), (1, 5, 3)])
def test_harmonic_matches_twin(N, V, D):
    """Ragged everything; (70, 300, 130) needs several row, vocabulary and D tiles (online LSE across tiles)."""
    h, c, t = harmonic_inputs(N, V, D, seed=N)
    assert_match(*both("harmonic_nll", [h, c, t], math.sqrt(D)))


def test_harmonic_ignore_index_and_zero_distance():
    h, c, t = harmonic_inputs(11, 9, 4, seed=3)
    h = h.round()                                         # integers: the distance of h[0] to c[2] is exactly 0
    c = c.round()
    c[2] = h[0]
    t[[1, 5]] = -100
    ref, got = both("harmonic_nll", [h, c, t], 2.0)
    assert_match(ref, got)
    assert torch.isfinite(got[0]) and all(torch.isfinite(g).all() for g in got[1])


def test_harmonic_memory_is_linear_in_vocabulary():
    """Autograd keeps h, centres, targets and the per-row LSE: no [N × V] logits (the twin keeps several)."""
    h, c, t = harmonic_inputs(64, 512, 16)
    h.requires_grad_()
    c.requires_grad_()
    with kernels.use("triton"):
        fused, _ = saved_bytes(lambda: kernels.harmonic_nll(h, c, t, 4.0))
    with kernels.use("torch"):
        unfused, _ = saved_bytes(lambda: kernels.harmonic_nll(h, c, t, 4.0))
    inputs = (h.numel() + c.numel()) * 4 + t.numel() * 8
    assert fused <= inputs + 64 * 4 + 8
    assert unfused >= 64 * 512 * 4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_harmonic_half_precision(dtype):
    h, c, t = harmonic_inputs(20, 50, 16, dtype=dtype)
    ref, got = both("harmonic_nll", [h, c, t], 4.0)
    assert got[0].dtype == dtype and [g.dtype for g in got[1]] == [dtype, dtype]
    assert_match(ref, got, HALF_TOL[dtype])


@settings(max_examples=5, deadline=None)
@given(N=st.integers(1, 40), V=st.integers(1, 80), D=st.integers(1, 24), n=st.floats(0.5, 8.0),
       seed=st.integers(0, 99))
def test_harmonic_property(N, V, D, n, seed):
    h, c, t = harmonic_inputs(N, V, D, seed)
    assert_as_accurate("harmonic_nll", [h, c], lambda fn, h_, c_: fn(h_, c_, t, n))


def test_bad_input_harmonic(triton_ops):
    h, c, t = harmonic_inputs(4, 6, 3)
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 6\) or be -100.*got 6"):
        triton_ops.harmonic_nll(h, c, torch.tensor([0, 1, 6, 2]), 2.0)
    with pytest.raises(ValueError, match="int64 target of shape \\[N\\] = \\[4\\], got torch.int32"):
        triton_ops.harmonic_nll(h, c, t.int(), 2.0)
    with pytest.raises(ValueError, match="same D"):
        triton_ops.harmonic_nll(h, c[:, :2], t, 2.0)
    with pytest.raises(TypeError, match="inputs must share one dtype"):
        triton_ops.harmonic_nll(h, c.half(), t, 2.0)
    with pytest.raises(ValueError, match="harmonic exponent n must be a finite number > 0, got -1"):
        triton_ops.harmonic_nll(h, c, t, -1.0)


# ---- KAN spline -------------------------------------------------------------------------------------------------

def kan_inputs(B, n_in, n_out, G, k, uniform=True, seed=0, dtype=torch.float32):
    x = (1.3 * torch.randn(B, n_in, generator=gen(seed))).clamp(-1.6, 1.6)        # some outside the grid
    grid = uniform_grid(n_in, G, k) if uniform else grid_from_samples(torch.randn(200, n_in, generator=gen(seed)),
                                                                       G, k)
    coef = torch.randn(n_in, n_out, G + k, generator=gen(seed + 1))
    return x.to(dtype), grid.to(dtype), coef.to(dtype)


def kan_both(x, grid, coef, k, seed=2):
    """(y, (∂x, ∂coef)) from the twin in fp32 on the same values and from the kernel (grid is not differentiated)."""
    results = {}
    for impl in ("torch", "triton"):
        xl, cl = x.clone().requires_grad_(), coef.clone().requires_grad_()
        args = (xl.float(), grid.float(), cl.float()) if impl == "torch" else (xl, grid, cl)
        with kernels.use(impl):
            y = kernels.kan_spline(*args, k)
        upstream = torch.randn(y.shape, generator=gen(seed)).to(y.dtype)
        results[impl] = (y, torch.autograd.grad(y, (xl, cl), upstream))
    return results["torch"], results["triton"]


@pytest.mark.parametrize("B,n_in,n_out,G,k,uniform", [(37, 3, 5, 5, 3, True), (130, 4, 70, 7, 2, False),
                                                      (20, 2, 3, 3, 1, True), (9, 2, 4, 10, 4, False)])
def test_kan_spline_matches_twin(B, n_in, n_out, G, k, uniform):
    """Uniform (pykan's default) and sample-based grids, orders 1–4, ragged rows/outputs, x partly off the grid."""
    assert_match(*kan_both(*kan_inputs(B, n_in, n_out, G, k, uniform, seed=B), k))


@pytest.mark.parametrize("base_fun", ["silu", "identity"])
def test_kan_spline_base_branch_matches_twin(base_fun):
    """The optional base branch (``base_fun(x) @ base_weight``): value and ∂x, ∂coef, ∂base_weight."""
    x, grid, coef = kan_inputs(29, 3, 5, 5, 3)
    base = torch.randn(3, 5, generator=gen(4))
    results = {}
    for impl in ("torch", "triton"):
        leaves = [t.clone().requires_grad_() for t in (x, coef, base)]
        with kernels.use(impl):
            y = kernels.kan_spline(leaves[0], grid, leaves[1], 3, leaves[2], base_fun)
        results[impl] = (y, torch.autograd.grad(y, leaves, torch.randn(y.shape, generator=gen(5))))
    assert_match(results["torch"], results["triton"])


def test_kan_spline_outside_grid_is_zero_and_frozen_grid():
    x, grid, coef = kan_inputs(4, 2, 3, 5, 3)
    far = torch.tensor([[-9.0, 9.0], [grid[0, -1].item(), grid[1, 0].item() - 1e-3]] * 2)
    with kernels.use("triton"):
        assert kernels.kan_spline(far, grid, coef, 3).abs().max() == 0
        with pytest.raises(RuntimeError, match="grid is not trainable"):
            kernels.kan_spline(x, grid.clone().requires_grad_(), coef, 3).sum().backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kan_spline_half_precision(dtype):
    ref, got = kan_both(*kan_inputs(33, 3, 6, 5, 3, dtype=dtype), 3)
    assert got[0].dtype == dtype and [g.dtype for g in got[1]] == [dtype, dtype]
    assert_match(ref, got, HALF_TOL[dtype])


@settings(max_examples=5, deadline=None)
@given(B=st.integers(1, 40), n_in=st.integers(1, 3), n_out=st.integers(1, 20), G=st.integers(1, 8),
       k=st.integers(1, 3), uniform=st.booleans(), seed=st.integers(0, 99))
def test_kan_spline_property(B, n_in, n_out, G, k, uniform, seed):
    assert_match(*kan_both(*kan_inputs(B, n_in, n_out, G, k, uniform, seed=seed), k, seed=seed))


def test_bad_input_kan(triton_ops):
    x, grid, coef = kan_inputs(4, 2, 3, 5, 3)
    with pytest.raises(ValueError, match=r"coef \(2, 3, 7\) \(needs \[2, out, G\+k\]\)"):
        triton_ops.kan_spline(x, grid, coef[..., :7], 3)
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        triton_ops.kan_spline(x.double(), grid.double(), coef.double(), 3)
    with pytest.raises(ValueError, match="k must be an integer ≥ 1"):
        triton_ops.kan_spline(x, grid, coef, 0)
    from orthoscope.kernels.triton.triton_kan import check_kan

    with pytest.raises(ValueError, match="x must have unit stride"):                # the launcher-level rule
        check_kan(torch.zeros(2, 4).T, grid, coef, 3)


def test_bad_input_energy(triton_ops):
    with pytest.raises(ValueError, match="needs a 2-D matrix"):
        triton_ops.pairwise_energy(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="s must be ≥ 0"):
        triton_ops.pairwise_energy(torch.randn(3, 4), -1.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        triton_ops.pairwise_energy(torch.randn(1, 4))
    with pytest.raises(TypeError, match="w has dtype torch.float64"):
        triton_ops.pairwise_energy(torch.randn(3, 4, dtype=torch.float64))
