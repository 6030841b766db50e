"""Pion: Lie-algebra projections (skew, and ½⟨G_in, Ω⟩ is the directional derivative), spectrum preservation with the
exact exponential, bounded drift at degree 2, product vs additive forms, one-sided steps keep row/column Gram
matrices, the RMS normalization, transported momentum, and bad input."""
import math

import pytest
import torch
from torch import nn

from orthoscope.ortho import expm, expm_truncated
from orthoscope.optim import Pion, lie_gradients, pion_update
from orthoscope.optim.pion import pion_generators, rms_alpha, rotate

D = torch.float64


def rand(*shape, seed=0, dtype=D):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def skew(n, seed, scale=1.0):
    a = rand(n, n, seed=seed)
    return scale * (a - a.T) / 2


def test_lie_gradients_are_skew_and_give_the_directional_derivatives():
    w, g = rand(7, 5, seed=0), rand(7, 5, seed=1)
    g_in, g_out = lie_gradients(w, g)
    assert torch.allclose(g_in, -g_in.T) and torch.allclose(g_out, -g_out.T)
    # L(W) = ⟨G, W⟩ (linear, so its gradient is G): d/dt L(W e^{tΩ}) = ⟨G, WΩ⟩ = ½⟨G_in, Ω⟩, same on the out side
    om_in, om_out = skew(5, 2), skew(7, 3)
    assert (g * (w @ om_in)).sum() == pytest.approx(0.5 * (g_in * om_in).sum().item(), rel=1e-12)
    assert (g * (om_out @ w)).sum() == pytest.approx(0.5 * (g_out * om_out).sum().item(), rel=1e-12)


@pytest.mark.parametrize("side", ["both", "in", "out"])
def test_one_exact_step_preserves_singular_values_fp32(side):
    w = nn.Parameter(rand(24, 16, seed=4, dtype=torch.float32))
    sv0 = torch.linalg.svdvals(w.detach().double())
    w.grad = rand(24, 16, seed=5, dtype=torch.float32)
    Pion([w], lr=0.05, degree="exact", side=side).step()
    sv1 = torch.linalg.svdvals(w.detach().double())
    assert ((sv1 - sv0).abs() / sv0).max() <= 1e-5
    assert (w.detach().double() - rand(24, 16, seed=4)).abs().max() > 1e-3      # it moved


def test_degree_two_drift_obeys_the_fourth_order_bound():
    """E₂(A)ᵀE₂(A) = I + A⁴/4 for skew A, so one product step can only grow each σ, by at most
    √((1 + ‖A_in‖₂⁴/4)(1 + ‖A_out‖₂⁴/4)); checked in float64 over 30 steps of the optimizer's own generators."""
    w, buffers = rand(12, 9, seed=6), {}
    for step in range(1, 31):
        g = rand(12, 9, seed=100 + step)
        probe = {k: v.clone() for k, v in buffers.items()}
        new = pion_update(w, g, buffers, step, lr=0.3)
        a_in, a_out = pion_generators(w, g, probe, True, True)
        alpha = rms_alpha(w, a_in, a_out, 0.3)
        na, nb = (torch.linalg.matrix_norm(alpha * a, ord=2).item() for a in (a_in, a_out))
        ratio = torch.linalg.svdvals(new) / torch.linalg.svdvals(w)
        assert ratio.min() >= 1 - 1e-12
        assert ratio.max() <= math.sqrt((1 + na**4 / 4) * (1 + nb**4 / 4)) + 1e-12
        w = new
    drift = ((torch.linalg.svdvals(w) - torch.linalg.svdvals(rand(12, 9, seed=6))).abs()
             / torch.linalg.svdvals(rand(12, 9, seed=6))).max()
    assert 0 < drift < 1e-3


def test_product_and_additive_differ_by_the_cross_term():
    x, a_in, a_out = rand(6, 4, seed=7), skew(4, 8, 0.3), skew(6, 9, 0.3)
    for degree in (2, 3, "exact"):
        exp = expm if degree == "exact" else (lambda a: expm_truncated(a, degree))
        t_in, t_out = exp(a_in) - torch.eye(4, dtype=D), exp(a_out) - torch.eye(6, dtype=D)
        diff = rotate(x, a_in, a_out, degree, "product") - rotate(x, a_in, a_out, degree, "additive")
        assert torch.allclose(diff, t_out @ x @ t_in, atol=1e-13)
    # the series application equals multiplying by the materialized truncated exponential
    assert torch.allclose(rotate(x, a_in, None, 3), x @ expm_truncated(a_in, 3), atol=1e-14)
    assert torch.allclose(rotate(x, None, a_out, 2), expm_truncated(a_out, 2) @ x, atol=1e-14)
    # one-sided, the forms coincide
    assert torch.allclose(rotate(x, a_in, None, 2, "product"), rotate(x, a_in, None, 2, "additive"), atol=1e-15)


def spectrum_drift(form, steps=60, degree=2):
    torch.manual_seed(0)
    w = nn.Parameter(rand(16, 12, seed=10))
    sv0 = torch.linalg.svdvals(w.detach())
    opt = Pion([w], lr=0.05, form=form, degree=degree)
    for step in range(steps):
        w.grad = rand(16, 12, seed=200 + step)
        opt.step()
    return ((torch.linalg.svdvals(w.detach()) - sv0).abs() / sv0).max().item()


def test_additive_form_drifts_more_than_product():
    product, additive = spectrum_drift("product"), spectrum_drift("additive")
    assert product < 1e-5 < additive, (product, additive)
    assert spectrum_drift("product", degree="exact") < 1e-12


def test_alternating_sides_keep_row_then_column_gram():
    """Step 1 rotates the input side: W Wᵀ (row norms, neuron angles → hyperspherical energy) is unchanged.
    Step 2 rotates the output side: WᵀW (column norms) is unchanged."""
    w = nn.Parameter(rand(10, 7, seed=11))
    opt = Pion([w], lr=0.1, side="alternate", degree="exact")
    for step, keep in ((1, lambda m: m @ m.T), (2, lambda m: m.T @ m)):
        before = w.detach().clone()
        w.grad = rand(10, 7, seed=300 + step)
        opt.step()
        assert torch.allclose(keep(w.detach()), keep(before), atol=1e-12)
        assert not torch.allclose(w.detach(), before, atol=1e-4)


@pytest.mark.parametrize("side", ["both", "in", "out"])
def test_rms_normalization(side):
    """The first-order ambient update has RMS lr·rms exactly; the actual step agrees to first order."""
    w, g = rand(9, 13, seed=12), rand(9, 13, seed=13)
    use_in, use_out = side in ("both", "in"), side in ("both", "out")
    g_in, g_out = lie_gradients(w, g)
    a_in, a_out = (-g_in if use_in else None), (-g_out if use_out else None)
    alpha = rms_alpha(w, a_in, a_out, lr=1e-4, rms=0.2)
    first = sum(x for x in ((w @ a_in) if use_in else None, (a_out @ w) if use_out else None) if x is not None)
    assert (alpha * first).pow(2).mean().sqrt().item() == pytest.approx(0.2 * 1e-4, rel=1e-12)
    new = pion_update(w, g, {}, 1, lr=1e-4, side=side, betas=(0.0, 0.95))
    assert (new - w).pow(2).mean().sqrt().item() == pytest.approx(0.2 * 1e-4, rel=1e-3)


def test_transported_ambient_buffer_rotates_with_w():
    w, g = rand(8, 5, seed=14), rand(8, 5, seed=15)
    buffers = {}
    new = pion_update(w, g, buffers, 1, lr=0.1, momentum="transported_ambient", degree="exact", betas=(0.5, 0.9))
    m = 0.5 * g                                                         # the EMA before transport
    g_in, g_out = lie_gradients(w, m)
    alpha = rms_alpha(w, -g_in, -g_out, 0.1)
    e_in, e_out = torch.matrix_exp(-alpha * g_in), torch.matrix_exp(-alpha * g_out)
    assert torch.allclose(new, e_out @ w @ e_in, atol=1e-12)
    assert torch.allclose(buffers["m"], e_out @ m @ e_in, atol=1e-12)


def test_lie_second_moment_keeps_generators_skew_and_lie_momentum_accumulates():
    w, buffers = rand(6, 4, seed=16), {}
    for s in range(3):
        a_in, a_out = pion_generators(w, rand(6, 4, seed=400 + s), buffers, True, True, second_moment=True)
        assert torch.allclose(a_in, -a_in.T) and torch.allclose(a_out, -a_out.T)
    expect = sum(0.1 * 0.9 ** (2 - s) * lie_gradients(w, rand(6, 4, seed=400 + s))[0] for s in range(3))
    assert torch.allclose(buffers["m_in"], expect, atol=1e-12)


def test_ambient_second_moment_is_an_ema_of_m_squared():
    w, g1, g2 = rand(5, 3, seed=19), rand(5, 3, seed=20), rand(5, 3, seed=21)
    buffers = {}
    pion_generators(w, g1, buffers, True, True, momentum="transported_ambient", betas=(0.9, 0.8), second_moment=True)
    m1 = 0.1 * g1
    assert torch.allclose(buffers["v"], 0.2 * m1 * m1, atol=1e-14)
    a_in, _ = pion_generators(w, g2, buffers, True, False, momentum="transported_ambient", betas=(0.9, 0.8),
                              second_moment=True)
    m2 = 0.9 * m1 + 0.1 * g2
    v2 = 0.8 * 0.2 * m1 * m1 + 0.2 * m2 * m2
    assert torch.allclose(a_in, -lie_gradients(w, m2 / (v2.sqrt() + 1e-8))[0], atol=1e-12)


def test_float32_params_and_gradient_free_params():
    a, b = nn.Parameter(rand(5, 5, seed=17, dtype=torch.float32)), nn.Parameter(torch.ones(3, 3))
    a.grad = rand(5, 5, seed=18, dtype=torch.float32)
    Pion([a, b]).step()                                                   # b has no grad: untouched
    assert a.dtype == torch.float32 and torch.equal(b.detach(), torch.ones(3, 3))


def test_bad_arguments():
    w = nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="Pion applies no weight decay to matrices"):
        Pion([{"params": [w], "weight_decay": 0.1}])
    with pytest.raises(ValueError, match=r"side must be one of \('both', 'alternate', 'in', 'out'\)"):
        Pion([w], side="left")
    with pytest.raises(ValueError, match="degree must be an int ≥ 1"):
        Pion([w], degree=0)
    with pytest.raises(ValueError, match="form must be one of"):
        Pion([w], form="sum")
    with pytest.raises(ValueError, match="momentum must be one of"):
        Pion([w], momentum="ambient")
    with pytest.raises(ValueError, match=r"matrix path needs 2-D weights.*shape \(2, 2, 2\)"):
        Pion([nn.Parameter(torch.zeros(2, 2, 2))])
