"""Harmonic loss: HarMax math (exact), its conventions, the head in MLP/TinyTransformer, probes, and training."""
import math

import pytest
import torch
import torch.nn.functional as F

from orthoscope import kernels
from orthoscope.methods.losses import (HARMONIC_EPS, LOSSES, harmax, harmonic_logits, harmonic_loss, resolve_loss,
                               squared_distances)
from orthoscope.models import MLP, TinyTransformer
from orthoscope.models.heads import HarmonicHead, use_harmonic_head
from orthoscope.probes.harmonic import distance_margins, pca_explained_variance


def test_harmax_is_softmax_of_minus_n_log_d_and_the_power_law():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(7, 5, generator=g, dtype=torch.float64) * 3 + 0.01
    for n in (0.5, 1.0, 2.0, 7.3):
        p = harmax(d, n)
        torch.testing.assert_close(p, torch.softmax(-n * torch.log(d), -1), rtol=0, atol=0)
        direct = d ** (-n) / (d ** (-n)).sum(-1, keepdim=True)              # the paper's definition
        torch.testing.assert_close(p, direct, rtol=1e-12, atol=1e-15)


def test_harmax_scale_invariance_and_zero_distance_limit():
    g = torch.Generator().manual_seed(1)
    d = torch.rand(4, 6, generator=g, dtype=torch.float64) + 0.1
    for lam in (1e-3, 0.5, 10.0, 1e4):
        torch.testing.assert_close(harmax(lam * d, 3.0), harmax(d, 3.0), rtol=1e-12, atol=1e-15)
    d[1, 2] = 0.0
    d[2, [0, 4]] = 0.0
    p = harmax(d, 2.0)
    assert torch.equal(p[1], torch.nn.functional.one_hot(torch.tensor(2), 6).double())
    torch.testing.assert_close(p[2], torch.tensor([0.5, 0, 0, 0, 0.5, 0], dtype=torch.float64))
    assert torch.isfinite(p).all()


def test_harmonic_logits_are_minus_n_log_distance():
    g = torch.Generator().manual_seed(2)
    h, c = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    d = torch.cdist(h, c)
    n = 2.5
    torch.testing.assert_close(harmonic_logits(h, c, n, eps=0.0), -n * torch.log(d), rtol=1e-10, atol=1e-10)
    # with ε: d = sqrt(d² + ε), i.e. the exponent acts on d, so probabilities are HarMax of the regularized distance
    torch.testing.assert_close(torch.softmax(harmonic_logits(h, c, n), -1),
                               harmax((d ** 2 + HARMONIC_EPS).sqrt(), n), rtol=1e-10, atol=1e-12)
    # the official code's exponent acts on d²: its n_code equals n/2 here
    n_code = n / 2
    code_p = (d ** 2) ** (-n_code) / ((d ** 2) ** (-n_code)).sum(-1, keepdim=True)
    torch.testing.assert_close(harmax(d, n), code_p, rtol=1e-10, atol=1e-12)


def test_head_probabilities_scale_invariant_under_scaling_representation_and_centres():
    torch.manual_seed(3)
    x = torch.randn(10, 8, dtype=torch.float64)
    for eps, tol in ((1e-30, 1e-12), (HARMONIC_EPS, 1e-5)):       # exact without ε; ε shifts p by O(n·ε/d²)
        head = HarmonicHead(8, 5, n=4.0, eps=eps).double()
        p = head.probabilities(x)
        with torch.no_grad():
            head.weight.mul_(7.0)
        torch.testing.assert_close(head.probabilities(7.0 * x), p, rtol=tol, atol=tol)


def test_finite_gradients_when_a_representation_sits_on_its_centre():
    torch.manual_seed(4)
    head = HarmonicHead(6, 4)
    x = head.weight.detach()[[0, 1, 2]].clone().requires_grad_()           # d = 0 exactly to three centres
    loss = F.cross_entropy(head(x), torch.tensor([0, 1, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()
    # bound from d = sqrt(d² + ε): |∂ logit/∂x| ≤ n / (2√ε) per centre
    assert x.grad.abs().max() <= 4 * head.n / (2 * math.sqrt(HARMONIC_EPS))


def test_seam_harmonic_nll_equals_cross_entropy_of_the_head():
    torch.manual_seed(5)
    head = HarmonicHead(12, 7)
    h, y = torch.randn(3, 5, 12), torch.randint(0, 7, (3, 5))
    expected = F.cross_entropy(head(h).reshape(-1, 7), y.reshape(-1))
    torch.testing.assert_close(harmonic_loss(h, head.centers, y, head.n), expected)
    torch.testing.assert_close(kernels.harmonic_nll(h.reshape(-1, 12), head.centers, y.reshape(-1), head.n), expected)
    assert resolve_loss("harmonic") is LOSSES["cross_entropy"]
    assert math.isclose(HarmonicHead(16, 3).n, 4.0)                       # default n = √D


def test_squared_distances_match_cdist():
    g = torch.Generator().manual_seed(6)
    h, c = torch.randn(2, 3, 5, generator=g), torch.randn(4, 5, generator=g)
    torch.testing.assert_close(squared_distances(h, c), torch.cdist(h.reshape(-1, 5), c).reshape(2, 3, 4) ** 2,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_bad_harmonic_exponent(bad):
    with pytest.raises(ValueError, match="harmonic exponent n"):
        HarmonicHead(4, 3, n=bad)
    with pytest.raises(ValueError, match="harmonic exponent n"):
        harmax(torch.ones(2, 3), bad)


def test_bad_head_shapes():
    with pytest.raises(ValueError, match="d_in"):
        HarmonicHead(0, 3)
    with pytest.raises(ValueError, match=r"tied centres must have shape \[3, 4\]"):
        HarmonicHead(4, 3, tie_to=torch.nn.Embedding(5, 4))
    with pytest.raises(ValueError, match="distances d ≥ 0"):
        harmax(torch.tensor([[-1.0, 2.0]]), 1.0)


def test_head_in_mlp_and_tiny_transformer_tied_and_untied():
    torch.manual_seed(7)
    mlp = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16, 8), d_out=11)
    head = use_harmonic_head(mlp, tie=True)
    assert mlp.layers[2] is head and head.centers is mlp.embed.weight
    assert sum(p.numel() for p in head.parameters()) == 0                   # tied: the embedding is the only copy
    out = mlp(torch.randint(0, 11, (5, 2)))
    assert out.shape == (5, 11) and (out <= 0.5 * head.n * -math.log(HARMONIC_EPS) + 1e-3).all()
    out.sum().backward()
    assert mlp.embed.weight.grad is not None

    tf = TinyTransformer(vocab_size=13, n_ctx=3, d_model=16, n_heads=2, d_mlp=32, readout="all")
    linear_weight = tf.unembed.weight.detach().clone()
    head = use_harmonic_head(tf, n=2.0)
    assert torch.equal(head.weight, linear_weight)                           # centres start at the old weights
    tokens = torch.randint(0, 13, (4, 3))
    logits = tf(tokens)
    assert logits.shape == (4, 3, 13)
    loss = resolve_loss("harmonic")(logits, tokens)
    loss.backward()
    assert torch.isfinite(loss) and head.weight.grad is not None

    tied = TinyTransformer(vocab_size=13, n_ctx=3, d_model=16, n_heads=2, d_mlp=32, tied=True)
    head = use_harmonic_head(tied, tie=True)
    assert head.centers is tied.embed.weight and tied(tokens).shape == (4, 13)
    with pytest.raises(ValueError, match="tied centres must have shape"):
        use_harmonic_head(MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16,), d_out=11), tie=True)


def test_pca_and_margins_on_known_geometry():
    angles = torch.arange(12) * 2 * math.pi / 12
    circle = torch.stack([torch.cos(angles), torch.sin(angles), torch.zeros(12)], 1)
    ev = pca_explained_variance(circle)
    torch.testing.assert_close(ev[:2], torch.tensor([0.5, 0.5]), rtol=0, atol=1e-6)
    assert ev[2] < 1e-6
    centers = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    h = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    m = distance_margins(h, centers, torch.tensor([0, 0]))
    torch.testing.assert_close(m["margin"], torch.log(torch.tensor([3.0, 1 / 3.0])).double())
    torch.testing.assert_close(m["d_true"], torch.tensor([1.0, 3.0]).double())


def test_modular_addition_reaches_99_percent_held_out():
    from orthoscope.zoo.harmonic import modular_addition_run

    run = modular_addition_run("harmonic", p=31, train_frac=0.8, lr=1e-2, weight_decay=1.0, every=25)
    run.train(400, progress=False, until=lambda r: r.history["acc/test"].last() >= 0.99)
    h = run.history
    assert h["acc/test"].last() >= 0.99, h["acc/test"].values[-5:]
    assert "pca_top2/embed" in h and 0 < h["pca_top2/embed"].last() <= 1
    assert h["margin/test"].last() > 0 and h["dist_other/test"].last() > h["dist_true/test"].last()
