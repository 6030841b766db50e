"""probes.metrics: pure tensor functions checked on matrices whose answers are known in closed form."""
import math

import pytest
import torch

from orthoscope.probes import metrics


def random_orthogonal(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))          # Haar-distributed


def regular_simplex(n: int) -> torch.Tensor:
    """n unit vectors in R^n with pairwise cosine −1/(n−1): centred standard basis, rows normalized."""
    e = torch.eye(n, dtype=torch.float64)
    v = e - e.mean(0, keepdim=True)
    return v / v.norm(dim=1, keepdim=True)


# ---- spectra -----------------------------------------------------------------------------------------------------

def test_identity_has_flat_spectrum():
    sv = metrics.singular_values(torch.eye(16))
    assert torch.allclose(sv, torch.ones(16))
    assert metrics.sv_entropy(sv).item() == pytest.approx(1.0, abs=1e-6)
    assert metrics.stable_rank(sv).item() == pytest.approx(16.0, rel=1e-6)
    assert metrics.condition_number(sv).item() == pytest.approx(1.0, rel=1e-6)
    assert metrics.spectral_norm(sv).item() == pytest.approx(1.0, rel=1e-6)


def test_random_orthogonal_all_singular_values_one():
    q = random_orthogonal(32, seed=3)
    sv = metrics.singular_values(q)
    assert sv.dtype == torch.float64
    assert torch.allclose(sv, torch.ones(32, dtype=torch.float64), atol=1e-12)
    assert metrics.sv_entropy(sv).item() == pytest.approx(1.0, abs=1e-12)
    assert metrics.stable_rank(sv).item() == pytest.approx(32.0, rel=1e-12)
    assert metrics.orthogonality_error(q).item() < 1e-14


def test_rank_one_spike():
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(20, 1, generator=g), torch.randn(1, 12, generator=g)
    w = 3.0 * u @ v
    sv = metrics.singular_values(w)
    assert sv[0].item() == pytest.approx(3.0 * u.norm().item() * v.norm().item(), rel=1e-5)
    assert metrics.sv_entropy(sv).item() == pytest.approx(0.0, abs=1e-5)
    assert metrics.stable_rank(sv).item() == pytest.approx(1.0, rel=1e-5)
    # an exactly rank-deficient matrix has an infinite condition number
    sv_exact = torch.tensor([2.0, 0.0])
    assert math.isinf(metrics.condition_number(sv_exact).item())


def test_entropy_of_two_level_spectrum_matches_formula():
    sv = torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    p = torch.tensor([4.0, 1.0, 1.0, 1.0], dtype=torch.float64) / 7.0
    expected = -(p * p.log()).sum().item() / math.log(4)
    assert metrics.sv_entropy(sv).item() == pytest.approx(expected, rel=1e-12)
    assert metrics.stable_rank(sv).item() == pytest.approx(7.0 / 4.0, rel=1e-12)
    assert metrics.condition_number(sv).item() == pytest.approx(2.0, rel=1e-12)


def test_gaussian_top_singular_value_at_marchenko_pastur_edge():
    g = torch.Generator().manual_seed(0)
    m, n, sigma = 600, 150, 0.5
    sv = metrics.singular_values(sigma * torch.randn(m, n, generator=g))
    assert metrics.mp_edge(m, n, sigma) == pytest.approx(sigma * (math.sqrt(600) + math.sqrt(150)))
    assert sv[0].item() == pytest.approx(metrics.mp_edge(m, n, sigma), rel=0.03)
    # the bulk's lower edge is σ(√m − √n) for m > n
    assert sv[-1].item() == pytest.approx(sigma * (math.sqrt(m) - math.sqrt(n)), rel=0.05)


def test_conv_kernel_is_flattened_and_1d_weight_is_an_error():
    w = torch.randn(8, 3, 3, 3)
    assert metrics.as_matrix(w).shape == (8, 27)
    assert metrics.singular_values(w).shape == (8,)
    with pytest.raises(ValueError, match=r"1-D with shape \(5,\)"):
        metrics.singular_values(torch.ones(5))
    with pytest.raises(ValueError, match="spectral metrics need a matrix"):
        metrics.hyperspherical_energy(torch.ones(5))


def test_orthogonality_error_known_value():
    b = 4
    r = 2.0 * torch.eye(b, dtype=torch.float64)          # RᵀR − I = 3I, ‖3I‖_F / √b = 3
    assert metrics.orthogonality_error(r).item() == pytest.approx(3.0)
    batch = torch.stack([torch.eye(b, dtype=torch.float64), r])
    assert torch.allclose(metrics.orthogonality_error(batch), torch.tensor([0.0, 3.0], dtype=torch.float64))


# ---- hyperspherical energy ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("s", [0, 1, 2])
def test_energy_of_regular_simplex_closed_form(n, s):
    w = regular_simplex(n) * torch.linspace(0.5, 3.0, n, dtype=torch.float64)[:, None]   # norms must not matter
    d = math.sqrt(2.0 * n / (n - 1))                # ‖ŵᵢ − ŵⱼ‖ with cos = −1/(n−1)
    expected = -math.log(d) if s == 0 else d ** (-s)
    assert metrics.hyperspherical_energy(w, s=s).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("s", [0, 1, 2])
def test_angular_energy_of_regular_simplex(s):
    n = 4
    theta = math.acos(-1.0 / 3.0) / math.pi         # ≈ 0.6082 (the tetrahedral angle / π)
    assert theta == pytest.approx(0.608173, abs=1e-6)
    expected = -math.log(theta) if s == 0 else theta ** (-s)
    value = metrics.hyperspherical_energy(regular_simplex(n), s=s, angular=True).item()
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("s", [0, 1, 2])
def test_half_space_energy_of_regular_simplex(s):
    # 2n points {ûᵢ} ∪ {−ûᵢ}. Each point sees: its antipode (distance 2), n−1 points at cos −1/(n−1) and
    # n−1 points at cos +1/(n−1). For n = 3: distances 2, √3 (×2), 1 (×2); mean over the 2n−1 = 5 others.
    f = (lambda d: -math.log(d)) if s == 0 else (lambda d: d ** (-s))
    expected = (f(2.0) + 2 * f(math.sqrt(3.0)) + 2 * f(1.0)) / 5.0
    value = metrics.hyperspherical_energy(regular_simplex(3), s=s, half_space=True).item()
    assert value == pytest.approx(expected, rel=1e-5)
    # angular half-space: angles/π are 1, 2/3 (×2) and 1/3 (×2)
    fa = (lambda t: -math.log(t)) if s == 0 else (lambda t: t ** (-s))
    expected_a = (fa(1.0) + 2 * fa(2 / 3) + 2 * fa(1 / 3)) / 5.0
    value_a = metrics.hyperspherical_energy(regular_simplex(3), s=s, angular=True, half_space=True).item()
    assert value_a == pytest.approx(expected_a, rel=1e-5)


def test_energy_hand_computed_square():
    # four unit vectors at 0°, 90°, 180°, 270°: each sees two neighbours at √2 and one antipode at 2.
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert metrics.hyperspherical_energy(w, s=1).item() == pytest.approx((2 / math.sqrt(2) + 1 / 2) / 3, rel=1e-6)
    assert metrics.hyperspherical_energy(w, s=0).item() == pytest.approx(-(2 * math.log(math.sqrt(2)) + math.log(2)) / 3,
                                                                         rel=1e-6)
    assert metrics.hyperspherical_energy(w, s=2, angular=True).item() == pytest.approx((2 * 4 + 1) / 3, rel=1e-5)


def test_energy_simplex_is_minimal_among_random_configurations():
    n = 6
    e_simplex = metrics.hyperspherical_energy(regular_simplex(n), s=1).item()
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = torch.randn(n, n, generator=g, dtype=torch.float64)
        assert metrics.hyperspherical_energy(w, s=1).item() > e_simplex


def test_energy_duplicate_rows_finite_and_bad_s():
    w = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert math.isfinite(metrics.hyperspherical_energy(w, s=1).item())
    with pytest.raises(ValueError, match="s must be ≥ 0"):
        metrics.hyperspherical_energy(torch.randn(3, 3), s=-1)


def test_zero_matrix_conventions():
    sv = metrics.singular_values(torch.zeros(3, 4))
    assert math.isnan(metrics.sv_entropy(sv).item())
    assert metrics.stable_rank(sv).item() == 0.0
    assert math.isinf(metrics.condition_number(sv).item())
