"""Hyperball (AdamH, MuonH): the weight norm is held exactly, each step turns W by at most asin(η), the per-column
variant holds column norms, radius= rescales, weight decay warns, and the pure update matches its formula."""
import math

import pytest
import torch
from torch import nn

from orthoscope.optim import AdamH, MuonH, hyperball_update


def angle(a, b):
    return math.acos(max(-1.0, min(1.0, ((a * b).sum() / (a.norm() * b.norm())).item())))


@pytest.mark.parametrize("cls", [AdamH, MuonH])
def test_norm_fixed_and_angular_step(cls):
    g = torch.Generator().manual_seed(0)
    w = nn.Parameter(torch.randn(12, 9, generator=g, dtype=torch.float64))
    r0 = w.detach().norm().item()
    opt = cls([w], lr=0.05)
    for _ in range(40):
        before = w.detach().clone()
        w.grad = torch.randn(12, 9, generator=g, dtype=torch.float64)
        opt.step()
        assert w.detach().norm().item() == pytest.approx(r0, rel=1e-12)
        assert angle(before, w.detach()) <= math.asin(0.05) + 1e-12


def test_column_granularity_holds_every_column_norm():
    g = torch.Generator().manual_seed(1)
    w = nn.Parameter(torch.randn(10, 6, generator=g, dtype=torch.float64))
    w0 = w.detach().clone()
    cols = w0.norm(dim=0)
    opt = MuonH([w], lr=0.1, granularity="column")
    for _ in range(10):
        w.grad = torch.randn(10, 6, generator=g, dtype=torch.float64)
        opt.step()
    assert torch.allclose(w.detach().norm(dim=0), cols, rtol=1e-12)
    assert (w.detach() - w0).norm() > 0.3 * w0.norm()               # it did move


def test_radius_rescales_once_and_then_holds():
    w = nn.Parameter(5 * torch.randn(8, 8, dtype=torch.float64))
    opt = AdamH([w], lr=0.01, radius=1.0)
    for _ in range(3):
        w.grad = torch.randn(8, 8, dtype=torch.float64)
        opt.step()
        assert w.detach().norm().item() == pytest.approx(1.0, rel=1e-12)


def test_pure_update_formula_and_direction_scale_invariance():
    g = torch.Generator().manual_seed(2)
    w, u = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    r = w.norm()
    expect = w - 0.1 * r * u / u.norm()
    expect = r * expect / expect.norm()
    assert torch.allclose(hyperball_update(w, u, 0.1, r), expect, atol=1e-14)
    assert torch.allclose(hyperball_update(w, 1e4 * u, 0.1, r), expect, atol=1e-12)
    # u ⟂ W turns W by exactly atan(η)
    u_perp = u - (u * w).sum() / (w * w).sum() * w
    assert angle(w, hyperball_update(w, u_perp, 0.1, r)) == pytest.approx(math.atan(0.1), rel=1e-9)


def test_adamh_moves_along_adam_direction():
    """One AdamH step from W moves along −m̂/(√v̂+ε) = −sign(g) (first Adam step), up to the renormalization."""
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(6, 6, generator=g, dtype=torch.float64)
    grad = torch.randn(6, 6, generator=g, dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    w.grad = grad
    AdamH([w], lr=0.02, eps=0.0).step()
    assert torch.allclose(w.detach(), hyperball_update(w0, torch.sign(grad), 0.02, w0.norm()), atol=1e-14)


def test_weight_decay_warns_and_bad_arguments():
    w = nn.Parameter(torch.randn(4, 4))
    with pytest.warns(UserWarning, match="weight_decay=0.1 on the matrix path has almost no effect"):
        AdamH([w], weight_decay=0.1)
    with pytest.raises(ValueError, match="granularity must be one of"):
        MuonH([w], granularity="row")
    with pytest.raises(ValueError, match="radius must be None"):
        AdamH([w], radius=0.0)
    with pytest.raises(ValueError, match="momentum must lie in"):
        MuonH([w], momentum=-0.5)
