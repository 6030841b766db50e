"""Muon: Newton–Schulz band, svd backend = U Vᵀ (polar factor), parity with the reference update sequence,
Kimi RMS matching, shape scaling, and the AdamW side equal to torch.optim.AdamW."""
import pytest
import torch
from torch import nn

from orthoscope.optim import Muon, matrix_param_groups, muon_update, newton_schulz, register_backend, svd_orthogonalize


def with_spectrum(rows, cols, sv, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, len(sv), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, len(sv), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.as_tensor(sv, dtype=torch.float64)) @ v.T


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48), (128, 16)])
def test_newton_schulz_band_on_gaussian(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    sv = torch.linalg.svdvals(newton_schulz(g))
    assert sv.min() > 0.5 and sv.max() < 1.5, (sv.min(), sv.max())
    assert sv.max() / sv.min() < 4                                # nanochat's sanity bound


def test_newton_schulz_band_with_spread_spectrum_and_scale_invariance():
    g = with_spectrum(40, 24, torch.logspace(0, -2, 24)).float()    # condition number 100
    sv = torch.linalg.svdvals(newton_schulz(g))
    assert sv.min() > 0.5 and sv.max() < 1.5
    assert torch.allclose(newton_schulz(1e3 * g), newton_schulz(g), atol=1e-5)   # Frobenius normalization first


def test_newton_schulz_keeps_singular_vectors():
    """NS5 is a matrix polynomial in u, so it shares u's singular vectors: Uᵀ·NS5(u)·V is diagonal."""
    g = with_spectrum(30, 20, torch.linspace(1, 0.1, 20), seed=3)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    inner = u.T @ newton_schulz(g) @ vh.T
    assert (inner - torch.diag(torch.diagonal(inner))).abs().max() < 1e-10


@pytest.mark.parametrize("shape", [(20, 12), (12, 20)])
def test_svd_backend_is_the_polar_factor(shape):
    """O = U Vᵀ ⇔ O has orthonormal rows/columns and OᵀG (or G Oᵀ) is symmetric positive definite."""
    g = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    o = svd_orthogonalize(g)
    k = min(shape)
    gram = o.T @ o if shape[0] >= shape[1] else o @ o.T
    assert torch.allclose(gram, torch.eye(k, dtype=torch.float64), atol=1e-12)
    sym = o.T @ g if shape[0] >= shape[1] else g @ o.T
    assert torch.allclose(sym, sym.T, atol=1e-12)
    assert torch.linalg.eigvalsh(sym).min() > 0
    assert torch.allclose(o, svd_orthogonalize(g.float()).double(), atol=1e-5)
    # NS5 points the same way: cosine with U Vᵀ close to 1
    cos = (newton_schulz(g) * o).sum() / (newton_schulz(g).norm() * o.norm())
    assert cos > 0.97


def test_optimizer_matches_reference_sequence():
    """Two steps of Muon equal the reference code path written out: m.lerp_(g, 1−β); u = g.lerp(m, β);
    O = NS5(u); W ← W(1 − lr·wd) − lr·max(1, rows/cols)^½·O."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(24, 10))
    w_ref, m = w.detach().clone(), torch.zeros(24, 10)
    opt = Muon([w], lr=0.03, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        grad = torch.randn(24, 10)
        w.grad = grad.clone()
        opt.step()
        m.lerp_(grad, 1 - 0.9)
        u = grad.lerp(m, 0.9)
        w_ref.mul_(1 - 0.03 * 0.1).add_(newton_schulz(u), alpha=-0.03 * (24 / 10) ** 0.5)
    assert torch.equal(w.detach(), w_ref)


def test_plain_momentum_and_wide_matrix_scale():
    torch.manual_seed(0)
    grad, buf = torch.randn(6, 15), torch.zeros(6, 15)
    o = muon_update(grad, buf, beta=0.5, nesterov=False, backend="svd")
    assert torch.allclose(buf, 0.5 * grad)
    assert torch.allclose(o, svd_orthogonalize(grad), atol=1e-6)
    w = nn.Parameter(torch.zeros(6, 15))
    w.grad = grad
    Muon([w], lr=1.0, nesterov=False, backend="svd").step()
    assert torch.allclose(w.detach(), -svd_orthogonalize(grad), atol=1e-6)   # wide: scale max(1, 6/15)^½ = 1


@pytest.mark.parametrize("shape", [(32, 8), (8, 32), (16, 16)])
def test_kimi_rms_matching(shape):
    """rms_match=c scales by c·√max(A,B): with an exact U Vᵀ the update RMS is exactly c·lr."""
    w = nn.Parameter(torch.zeros(shape))
    w.grad = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    Muon([w], lr=0.01, backend="svd", rms_match=0.2).step()
    rms = w.detach().pow(2).mean().sqrt().item()
    assert rms == pytest.approx(0.2 * 0.01, rel=1e-5)


def test_conv_weight_is_flattened():
    w = nn.Parameter(torch.zeros(8, 3, 2, 2))
    g = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    w.grad = g
    Muon([w], lr=1.0, nesterov=False, momentum=0.0, backend="svd").step()
    expect = -svd_orthogonalize(g.reshape(8, 12)).reshape(8, 3, 2, 2)
    assert torch.allclose(w.detach(), expect, atol=1e-6)


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Embedding(10, 6), nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    b = nn.Sequential(nn.Embedding(10, 6), nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    b.load_state_dict(a.state_dict())
    groups = matrix_param_groups(a)
    opt_a = Muon(groups, lr=0.0, adamw_lr=1e-2,   # lr=0: hidden matrices stay put, as in b
                 adamw_betas=(0.8, 0.9), adamw_eps=1e-8, adamw_weight_decay=0.05)
    aux_names = {n for n, _ in groups[1]["params"]}
    opt_b = torch.optim.AdamW([p for n, p in b.named_parameters() if n in aux_names], lr=1e-2, betas=(0.8, 0.9),
                              eps=1e-8, weight_decay=0.05, foreach=False)
    x = torch.randint(0, 10, (16, 2))
    for _ in range(5):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for n, p in a.named_parameters():
        if n in aux_names:
            assert torch.allclose(p, dict(b.named_parameters())[n], atol=1e-7, rtol=0), n


def test_register_backend_and_bad_arguments():
    register_backend("halved_svd", lambda g, steps: 0.5 * svd_orthogonalize(g))
    w = nn.Parameter(torch.zeros(4, 4))
    w.grad = torch.randn(4, 4)
    Muon([w], lr=1.0, backend="halved_svd", nesterov=False, momentum=0.0).step()
    assert torch.allclose(torch.linalg.svdvals(w.detach()), torch.full((4,), 0.5), atol=1e-5)
    with pytest.raises(ValueError, match="backend must be one of"):
        Muon([w], backend="qr")
    with pytest.raises(ValueError, match="momentum must lie in"):
        Muon([w], momentum=1.0)
    with pytest.raises(ValueError, match="ns_steps must be a positive integer"):
        Muon([w], ns_steps=0)
    with pytest.raises(TypeError, match="must be callable"):
        register_backend("x", 3)
    with pytest.raises(ValueError, match="empty parameter list"):
        Muon([])
