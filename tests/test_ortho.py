"""orthoscope.ortho: every function against an exact reference (solve / matrix_exp / svd / scipy / peft)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from orthoscope import kernels
from orthoscope.ortho import (block_rotate, block_rotate_lowmem, block_size_from_packed, blockdiag,
                              butterfly_permutation, cayley, cayley_neumann, expm, expm_truncated, inverse_cayley,
                              invert_permutation, n_packed, packed_from_skew, procrustes, random_block_permutation,
                              skew_from_packed)
from orthoscope.ortho.cayley import cnp_orthogonality_error, random_skew
from orthoscope.probes.metrics import orthogonality_error

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ortho.md"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def skew(b, norm=0.3, batch=(), seed=0, dtype=torch.float64):
    a = torch.randn(*batch, b, b, generator=gen(seed), dtype=torch.float64)
    q = a - a.transpose(-1, -2)
    q = q * (norm / torch.linalg.matrix_norm(q, ord=2)[..., None, None])
    return q.to(dtype)


# ---- skew packing ---------------------------------------------------------------------------------------------

def test_skew_from_packed_matches_explicit_loop():
    b = 5
    vec = torch.randn(3, n_packed(b), generator=gen())
    q = skew_from_packed(vec, b)
    for n in range(3):
        idx = 0
        for i in range(b):
            assert q[n, i, i] == 0
            for j in range(i + 1, b):
                assert q[n, i, j] == vec[n, idx] and q[n, j, i] == -vec[n, idx]
                idx += 1
    assert torch.equal(packed_from_skew(q), vec)


def test_skew_round_trip_and_batch_shapes():
    q = skew(6, batch=(2, 3))
    assert torch.equal(skew_from_packed(packed_from_skew(q), 6), q)
    assert skew_from_packed(torch.zeros(10), 5).shape == (5, 5)
    assert block_size_from_packed(n_packed(17)) == 17


def test_skew_gradient_is_upper_minus_lower():
    b = 4
    vec = torch.randn(n_packed(b), dtype=torch.float64, requires_grad=True)
    g = torch.randn(b, b, dtype=torch.float64)
    (skew_from_packed(vec, b) * g).sum().backward()
    rows, cols = torch.triu_indices(b, b, 1)
    torch.testing.assert_close(vec.grad, g[rows, cols] - g[cols, rows])


def test_skew_bad_input():
    with pytest.raises(ValueError, match="b\\(b-1\\)/2 = 6"):
        skew_from_packed(torch.zeros(5), 4)
    with pytest.raises(ValueError, match="b must be a positive int"):
        skew_from_packed(torch.zeros(0), 0)
    with pytest.raises(ValueError, match="square"):
        packed_from_skew(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="not b\\(b-1\\)/2"):
        block_size_from_packed(5)


# ---- Cayley -----------------------------------------------------------------------------------------------------

def test_cayley_matches_explicit_inverse_and_is_a_rotation():
    q = skew(8, norm=2.0, batch=(4,))
    eye = torch.eye(8, dtype=torch.float64)
    r = cayley(q)
    torch.testing.assert_close(r, (eye + q) @ torch.linalg.inv(eye - q))
    torch.testing.assert_close(r, torch.linalg.inv(eye - q) @ (eye + q))
    assert orthogonality_error(r).max() < 1e-14
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(cayley(-q), r.transpose(-1, -2))          # R(−Q) = Rᵀ
    torch.testing.assert_close(cayley(torch.zeros(3, 3)), torch.eye(3))


def test_inverse_cayley_round_trip_and_singular_case():
    q = skew(7, norm=1.5, batch=(3,))
    torch.testing.assert_close(inverse_cayley(cayley(q)), q)
    flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))                  # rotation by π: eigenvalue −1
    with pytest.raises(ValueError, match="eigenvalue −1"):
        inverse_cayley(flip)


def test_cayley_gradcheck():
    vec = (torch.randn(2, n_packed(4), generator=gen(), dtype=torch.float64) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: cayley(skew_from_packed(v, 4)), (vec,))
    assert torch.autograd.gradcheck(lambda v: cayley_neumann(skew_from_packed(v, 4), 3), (vec,))


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 5])
def test_cayley_neumann_equals_its_expanded_series(k):
    q = skew(6, norm=0.4, batch=(2,))
    eye = torch.eye(6, dtype=torch.float64)
    powers = [torch.linalg.matrix_power(q, i) for i in range(k + 2)]
    expected = eye + 2 * sum(powers[1:k + 1], torch.zeros_like(q)) + powers[k + 1]   # I + 2Q + … + 2Q^k + Q^{k+1}
    torch.testing.assert_close(cayley_neumann(q, k), expected)


def test_cayley_neumann_default_is_the_poet_kernel_formula_and_peft_cnp():
    q = skew(8, norm=0.2)
    q2 = q @ q
    torch.testing.assert_close(cayley_neumann(q), torch.eye(8, dtype=q.dtype) + 2 * q + 2 * q2 + 2 * q2 @ q + q2 @ q2)
    from peft.tuners.oft.layer import OFTRotationModule

    mod = OFTRotationModule(r=1, n_elements=n_packed(8), block_size=8, in_features=8,
                            use_cayley_neumann=True, num_cayley_neumann_terms=5)
    with torch.no_grad():
        peft_r = mod._cayley_batch(packed_from_skew(q).float()[None], 8, True, 5)[0]
    torch.testing.assert_close(peft_r, cayley_neumann(q.float(), 3), atol=1e-6, rtol=1e-6)
    # peft's exact branch is the transposed convention (reference §1.3)
    with torch.no_grad():
        peft_exact = mod._cayley_batch(packed_from_skew(q).float()[None], 8, False)[0]
    torch.testing.assert_close(peft_exact, cayley(-q).float(), atol=1e-6, rtol=1e-6)


def test_cayley_neumann_converges_to_exact_cayley():
    q = skew(10, norm=0.3)
    errs = [float((cayley_neumann(q, k) - cayley(q)).norm()) for k in range(1, 9)]
    assert all(b < a for a, b in zip(errs, errs[1:]))
    torch.testing.assert_close(cayley_neumann(q, 40), cayley(q))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_cnp_orthogonality_defect_closed_form(k):
    q = skew(8, norm=0.5)
    r = cayley_neumann(q, k)
    qk1 = torch.linalg.matrix_power(q, k + 1)
    # even k: Q^{k+1} skew → RᵀR − I = −Q^{2k+2};  odd k: Q^{k+1} symmetric → −2Q^{k+1} + Q^{2k+2}
    expected = -qk1 @ qk1 if k % 2 == 0 else -2 * qk1 + qk1 @ qk1
    torch.testing.assert_close(r.T @ r - torch.eye(8, dtype=q.dtype), expected)
    sv = torch.linalg.svdvals(r)
    eps = 0.5 ** (k + 1)
    assert sv.max() <= 1 + eps + 1e-12 and sv.min() >= 1 - eps - 1e-12


def test_cnp_table_in_docs_matches_measurement():
    text = DOCS.read_text()
    header = re.search(r"\| k \| (.+) \|\n\|---", text)
    assert header, "CNP table not found in docs/ortho.md"
    norms = [float(c.split("=")[1]) for c in header.group(1).split(" | ")]
    assert norms == [0.01, 0.1, 0.5]
    rows = re.findall(r"^\| (\d|exact) \| ([-+.e\d]+) \| ([-+.e\d]+) \| ([-+.e\d]+) \|$", text, re.M)
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "exact"]
    for row in rows:
        k = None if row[0] == "exact" else int(row[0])
        for norm, shown in zip(norms, row[1:]):
            measured = cnp_orthogonality_error(norm, k)
            if measured < 1e-14:                                 # float64 rounding floor: just check the order
                assert float(shown) < 1e-14
            else:
                assert math.isclose(measured, float(shown), rel_tol=2e-3), (k, norm, measured, shown)


def test_cayley_bad_input():
    with pytest.raises(ValueError, match="square"):
        cayley(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="k \\(number of Neumann terms\\)"):
        cayley_neumann(torch.zeros(3, 3), -1)
    with pytest.raises(ValueError, match="k \\(number"):
        cayley_neumann(torch.zeros(3, 3), 2.0)


# ---- matrix exponential -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("degree", [0, 1, 2, 5])
def test_expm_truncated_equals_series(degree):
    a = torch.randn(3, 5, 5, generator=gen(), dtype=torch.float64) * 0.5
    expected = sum((torch.linalg.matrix_power(a, i) / math.factorial(i) for i in range(degree + 1)),
                   torch.zeros_like(a))
    torch.testing.assert_close(expm_truncated(a, degree), expected)


def test_expm_exact_and_high_degree_limit():
    q = skew(6, norm=1.0)
    torch.testing.assert_close(expm(q), torch.matrix_exp(q))
    torch.testing.assert_close(expm_truncated(q, 30), torch.matrix_exp(q))
    assert orthogonality_error(expm(q)) < 1e-14
    with pytest.raises(ValueError, match="degree"):
        expm_truncated(q, -1)


# ---- block rotations --------------------------------------------------------------------------------------------

def rotations(r, b, seed=0, dtype=torch.float64):
    return cayley(skew(b, norm=0.8, batch=(r,), seed=seed, dtype=dtype))


@pytest.mark.parametrize("with_perm", [False, True])
def test_block_rotate_equals_dense_blockdiag(with_perm):
    r, b = 3, 4
    R = rotations(r, b)
    x = torch.randn(2, 5, r * b, generator=gen(1), dtype=torch.float64)
    perm = torch.randperm(r * b, generator=gen(2)) if with_perm else None
    xp = x[..., perm] if with_perm else x
    expected = xp @ blockdiag(R)
    torch.testing.assert_close(block_rotate(x, R, perm), expected)
    torch.testing.assert_close(block_rotate_lowmem(x, R, perm), expected)
    torch.testing.assert_close(kernels.block_rotate(x, R, perm), expected)


def test_blockdiag_dense_layout():
    R = torch.arange(8.0).view(2, 2, 2)
    d = blockdiag(R)
    assert d.shape == (4, 4)
    assert torch.equal(d[:2, :2], R[0]) and torch.equal(d[2:, 2:], R[1]) and d[:2, 2:].abs().sum() == 0


@pytest.mark.parametrize("with_perm", [False, True])
def test_block_rotate_lowmem_gradcheck(with_perm):
    r, b = 2, 3
    R = rotations(r, b).requires_grad_()
    x = torch.randn(4, r * b, generator=gen(3), dtype=torch.float64, requires_grad=True)
    perm = torch.randperm(r * b, generator=gen(4)) if with_perm else None
    assert torch.autograd.gradcheck(lambda x_, R_: block_rotate_lowmem(x_, R_, perm), (x, R))


def test_block_rotate_lowmem_grads_equal_plain_and_saves_only_inputs():
    r, b = 4, 8
    R = rotations(r, b, dtype=torch.float32).requires_grad_()
    x = torch.randn(16, r * b, generator=gen(5), requires_grad=True)
    perm = torch.randperm(r * b, generator=gen(6))
    g = torch.randn(16, r * b, generator=gen(7))
    grads = []
    for fn in (block_rotate, block_rotate_lowmem):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            y = fn(x, R, perm)
        grads.append(torch.autograd.grad(y, (x, R), g))
        if fn is block_rotate_lowmem:
            assert {t.data_ptr() for t in saved} <= {x.data_ptr(), R.data_ptr(), perm.data_ptr()}
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, atol=1e-6, rtol=1e-6)


def test_block_rotate_bad_input():
    R = torch.eye(4).expand(2, 4, 4)
    with pytest.raises(ValueError, match="last dimension r\\*b = 2\\*4 = 8"):
        block_rotate(torch.zeros(3, 7), R)
    with pytest.raises(ValueError, match="R must have shape \\[r, b, b\\]"):
        block_rotate(torch.zeros(3, 8), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="perm must be a LongTensor of shape \\[8\\]"):
        block_rotate(torch.zeros(3, 8), R, torch.arange(7))


# ---- kernel seam ------------------------------------------------------------------------------------------------

def test_kernel_seam_cayley_neumann_matches_ortho():
    q_packed = torch.randn(5, n_packed(6), generator=gen()) * 0.1
    with kernels.use("torch"):
        R = kernels.cayley_neumann(q_packed, 6)
        R1 = kernels.cayley_neumann(q_packed, 6, k=1)
    torch.testing.assert_close(R, cayley_neumann(skew_from_packed(q_packed, 6), 3))
    torch.testing.assert_close(R1, cayley_neumann(skew_from_packed(q_packed, 6), 1))
    assert R.shape == (5, 6, 6)


# ---- permutations -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,b,levels", [(16, 4, 2), (32, 4, 3), (64, 8, 2), (24, 2, 1), (12, 6, 1)])
def test_butterfly_permutation_matches_peft(n, b, levels):
    from peft.tuners.boft.layer import BOFTLayer

    for level in range(levels + 1):
        ref = BOFTLayer.block_butterfly_perm(None, n, int(n // b / 2 ** level), b // 2, levels)
        assert torch.equal(butterfly_permutation(n, b, level), ref), level


def test_butterfly_permutation_known_answer_and_errors():
    assert butterfly_permutation(8, 2, 1).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert butterfly_permutation(8, 2, 2).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    with pytest.raises(ValueError, match="divisible by b·2\\^level"):
        butterfly_permutation(12, 4, 2)
    with pytest.raises(ValueError, match="even block size"):
        butterfly_permutation(12, 3, 1)
    with pytest.raises(ValueError, match="level must be an int ≥ 0"):
        butterfly_permutation(8, 2, -1)


def test_random_permutation_is_seeded_and_inverts():
    p1, p2 = random_block_permutation(50, gen(3)), random_block_permutation(50, gen(3))
    assert torch.equal(p1, p2) and not torch.equal(p1, torch.arange(50))
    inv = invert_permutation(p1)
    x = torch.randn(4, 50)
    assert torch.equal(x[:, p1][:, inv], x) and torch.equal(x[:, inv][:, p1], x)
    with pytest.raises(ValueError, match="not a permutation"):
        invert_permutation(torch.tensor([0, 0, 2]))
    with pytest.raises(ValueError, match="n must be a positive int"):
        random_block_permutation(0)


# ---- Procrustes -------------------------------------------------------------------------------------------------

def test_procrustes_matches_scipy_and_recovers_a_rotation():
    from scipy.linalg import orthogonal_procrustes

    A = torch.randn(30, 6, generator=gen(), dtype=torch.float64)
    B = torch.randn(30, 6, generator=gen(1), dtype=torch.float64)
    R = procrustes(A, B)
    ref, _ = orthogonal_procrustes(A.numpy(), B.numpy())
    torch.testing.assert_close(R, torch.from_numpy(ref))
    assert orthogonality_error(R) < 1e-14
    true = cayley(skew(6, norm=1.0))
    torch.testing.assert_close(procrustes(A, A @ true), true)


def test_procrustes_proper_rotation_and_errors():
    A = torch.randn(20, 4, generator=gen(), dtype=torch.float64)
    reflect = torch.diag(torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.linalg.det(procrustes(A, A @ reflect)) < 0
    Rp = procrustes(A, A @ reflect, proper=True)
    assert torch.isclose(torch.linalg.det(Rp), torch.tensor(1.0, dtype=torch.float64))
    assert (A @ Rp - A @ reflect).norm() >= (A @ procrustes(A, A @ reflect) - A @ reflect).norm()
    with pytest.raises(ValueError, match="same shape"):
        procrustes(A, A[:, :3])


def test_random_skew_helper_has_requested_norm():
    q = random_skew(16, 0.25, gen())
    assert torch.isclose(torch.linalg.matrix_norm(q, ord=2), torch.tensor(0.25, dtype=torch.float64))
    torch.testing.assert_close(q, -q.T)


@pytest.mark.parametrize("k", [0, 1, 3, 4])
@pytest.mark.parametrize("b", [2, 5])
def test_cayley_neumann_packed_matches_plain_and_saves_only_the_packed_blocks(k, b):
    """The recompute-in-backward CNP: same values and gradients as autograd through the plain formula (gradcheck in
    float64), and the only tensor autograd keeps is the packed parameter itself."""
    from orthoscope.ortho.cayley import cayley_neumann_packed

    g = torch.Generator().manual_seed(10 * k + b)
    q = (0.3 * torch.randn(3, n_packed(b), generator=g, dtype=torch.float64)).requires_grad_()
    plain = cayley_neumann(skew_from_packed(q, b), k)
    assert torch.allclose(cayley_neumann_packed(q, b, k), plain, rtol=0, atol=1e-14)
    upstream = torch.randn(plain.shape, generator=g, dtype=torch.float64)
    (expected,) = torch.autograd.grad(plain, q, upstream)
    (got,) = torch.autograd.grad(cayley_neumann_packed(q, b, k), q, upstream)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda v: cayley_neumann_packed(v, b, k), (q,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        cayley_neumann_packed(q, b, k)
    assert len(saved) == 1 and saved[0].data_ptr() == q.data_ptr()


def test_cayley_neumann_packed_bad_input():
    from orthoscope.ortho.cayley import cayley_neumann_packed

    with pytest.raises(ValueError, match="last dimension"):
        cayley_neumann_packed(torch.zeros(2, 5), 4)
    with pytest.raises(ValueError, match="positive int"):
        cayley_neumann_packed(torch.zeros(2, 6), 0)
    with pytest.raises(ValueError, match="k"):
        cayley_neumann_packed(torch.zeros(2, 6), 4, -1)


def test_permute_gathers_both_ways_and_matches_plain_indexing():
    """``permute`` (gather forward, gather-with-inverse backward) equals ``x[..., perm]`` in value and gradient."""
    from orthoscope.ortho.permutations import fast_inverse_permutation, permute

    g = gen(3)
    perm = torch.randperm(12, generator=g)
    assert torch.equal(fast_inverse_permutation(perm), invert_permutation(perm))
    x = torch.randn(2, 5, 12, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 5, 12, generator=g, dtype=torch.float64)
    (expected,) = torch.autograd.grad(x[..., perm], x, upstream)
    y = permute(x, perm)
    assert torch.equal(y, x[..., perm])
    (got,) = torch.autograd.grad(y, x, upstream)
    assert torch.equal(got, expected)
    perm5 = torch.randperm(5, generator=g)
    assert torch.equal(permute(x, perm5, dim=1), x[:, perm5])
    assert torch.autograd.gradcheck(lambda v: permute(v, perm5, dim=1), (x,))
