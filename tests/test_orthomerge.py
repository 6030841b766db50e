"""OrthoMerge: generator merging with magnitude correction, Procrustes (planted rotations, rank-deficient and
improper cases), conflict-aware targets, TIES and task arithmetic on hand-made vectors, whole-model merges, errors."""
import pytest
import torch

from orthoscope.adapters import orthomerge as om
from orthoscope.models import MLP
from orthoscope.ortho import cayley, packed_from_skew, skew_from_packed


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rand_skew(n, scale=0.3, seed=0):
    a = rand(n, n, seed=seed)
    return scale * (a - a.T) / n ** 0.5


# ---- generators -----------------------------------------------------------------------------------------------------
def test_merge_of_copies_returns_the_generator():
    a = rand_skew(5)
    for n in (1, 2, 4):
        assert torch.allclose(om.merge_generators([a] * n), a, atol=1e-14)


def test_magnitude_correction_keeps_the_mean_norm_along_the_sum():
    a, b = rand_skew(6, seed=1), rand_skew(6, scale=0.9, seed=2)
    merged = om.merge_generators([a, b])
    assert merged.norm().item() == pytest.approx(0.5 * (a.norm() + b.norm()).item(), rel=1e-12)
    assert torch.allclose(merged / merged.norm(), (a + b) / (a + b).norm(), atol=1e-12)
    # the reference's OFT formula: (c/N) Σ Q_i with c = Σ‖Q_i‖ / ‖ΣQ_i‖
    c = (a.norm() + b.norm()) / (a + b).norm()
    assert torch.allclose(merged, c / 2 * (a + b), atol=1e-12)
    assert om.merge_generators([a, b], theta_agg="max").norm().item() == pytest.approx(b.norm().item())
    uniform = om.merge_generators([a, b], direction_weight="uniform")
    expected_dir = a / a.norm() + b / b.norm()
    assert torch.allclose(uniform / uniform.norm(), expected_dir / expected_dir.norm(), atol=1e-12)


def test_opposite_generators_merge_to_zero_and_bad_options_are_named():
    a = rand_skew(4)
    assert torch.equal(om.merge_generators([a, -a]), torch.zeros_like(a))
    with pytest.raises(ValueError, match="theta_agg"):
        om.merge_generators([a], theta_agg="sum")
    with pytest.raises(ValueError, match="direction_weight"):
        om.merge_generators([a], direction_weight="norm")
    with pytest.raises(ValueError, match="different shapes"):
        om.merge_generators([a, rand_skew(5)])


def test_oft_state_merge_matches_skew_space_reference():
    b, blocks = 4, 3
    states = [{"layers.0.oft_q": rand(blocks, 6, seed=s), "layers.0.bias_extra": rand(2, seed=s + 10),
               "layers.0.base_layer.weight": torch.ones(2, 12)} for s in range(3)]
    merged = om.merge_oft_states(states)
    # reference (merge/OrthoMerge_OFT_models.py): rebuild skew blocks, (c/N) Σ Q_i over the whole module, re-skew, pack
    qs = torch.stack([skew_from_packed(s["layers.0.oft_q"], b) for s in states])
    c = qs.flatten(1).norm(dim=1).sum() / qs.sum(0).norm()
    ref = c / 3 * qs.sum(0)
    ref = packed_from_skew(0.5 * (ref - ref.transpose(-1, -2)))
    assert torch.allclose(merged["layers.0.oft_q"], ref, atol=1e-12)
    assert torch.allclose(merged["layers.0.bias_extra"], torch.stack([s["layers.0.bias_extra"] for s in states]).mean(0))
    copies = om.merge_oft_states([states[0]] * 4)
    assert all(torch.allclose(copies[k], states[0][k], atol=1e-14) for k in states[0])


def test_oft_states_of_different_shapes_or_keys_are_refused():
    s1 = {"l.oft_q": torch.zeros(2, 6)}
    with pytest.raises(ValueError, match=r"'l.oft_q'.*different shapes"):
        om.merge_oft_states([s1, {"l.oft_q": torch.zeros(4, 1)}])
    with pytest.raises(ValueError, match="different keys"):
        om.merge_oft_states([s1, {"m.oft_q": torch.zeros(2, 6)}])
    with pytest.raises(ValueError, match="no OFT generator"):
        om.merge_oft_states([{"w": torch.zeros(2)}])
    with pytest.raises(ValueError, match="nothing to merge"):
        om.merge_oft_states([])


# ---- Procrustes -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 8), (12, 6)])
def test_procrustes_recovers_a_planted_rotation(shape):
    w0 = rand(*shape)
    r_true = cayley(rand_skew(shape[1], seed=3))
    r = om.procrustes_rotation(w0, w0 @ r_true)
    assert torch.allclose(r, r_true, atol=1e-10)
    a, tau = om.decompose(w0, w0 @ r_true)
    assert torch.allclose(cayley(a), r_true, atol=1e-10) and tau.abs().max() < 1e-10


def test_procrustes_is_identity_on_an_unchanged_rank_deficient_layer():
    w0 = rand(4, 10)                                       # out < in: W₀ᵀW₀ is singular
    r = om.procrustes_rotation(w0, w0)
    assert torch.allclose(r, torch.eye(10, dtype=w0.dtype), atol=1e-10)
    r_true = cayley(rand_skew(10, seed=5))
    r = om.procrustes_rotation(w0, w0 @ r_true)           # any minimizer fits exactly; ours is proper
    assert torch.allclose(w0 @ r, w0 @ r_true, atol=1e-10)
    assert torch.allclose(r.T @ r, torch.eye(10, dtype=w0.dtype), atol=1e-10)
    assert torch.linalg.det(r).item() == pytest.approx(1.0)


def test_procrustes_matches_scipy_and_returns_the_best_proper_rotation():
    from scipy.linalg import orthogonal_procrustes

    w0 = rand(9, 5)
    r_sp, _ = orthogonal_procrustes(w0.numpy(), rand(9, 5, seed=2).numpy())   # a proper solution: det = +1
    assert torch.linalg.det(torch.from_numpy(r_sp)) > 0
    assert torch.allclose(om.procrustes_rotation(w0, rand(9, 5, seed=2)), torch.from_numpy(r_sp), atol=1e-10)
    t = rand(9, 5, seed=1)                                  # here the unconstrained optimum is a reflection
    r_sp, _ = orthogonal_procrustes(w0.numpy(), t.numpy())
    assert torch.linalg.det(torch.from_numpy(r_sp)) < 0
    u, _, vh = torch.linalg.svd(w0.T @ t)                   # Kabsch: flip the weakest singular direction
    kabsch = u @ torch.diag(torch.tensor([1.0, 1, 1, 1, -1], dtype=w0.dtype)) @ vh
    assert torch.allclose(om.procrustes_rotation(w0, t), kabsch, atol=1e-10)
    # a target that is a reflection: the best *proper* rotation keeps the two strong axes, flips nothing costly
    r = om.procrustes_rotation(torch.eye(3, dtype=torch.float64), torch.diag(torch.tensor([3.0, 2.0, -1.0])).double())
    assert torch.allclose(r, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_generator_of_a_half_turn_is_a_clear_error():
    half_turn = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="layers.0.weight.*eigenvalue −1"):
        om.generator(half_turn, name="layers.0.weight")


# ---- targets and Euclidean merges -----------------------------------------------------------------------------------
def test_conflict_targets_keep_only_disagreeing_rows():
    w0 = torch.zeros(2, 2, dtype=torch.float64)
    d1 = torch.tensor([[1.0, 0], [1, 0]], dtype=torch.float64)
    d2 = torch.tensor([[1.0, 0], [-2, 0]], dtype=torch.float64)   # row 1: mean is (−0.5, 0), d1 disagrees
    t1, t2 = om.conflict_targets(w0, [w0 + d1, w0 + d2])
    assert torch.equal(t1, torch.tensor([[0.0, 0], [1, 0]], dtype=torch.float64))
    assert torch.equal(t2, w0)


def test_ties_on_hand_made_vectors():
    d1 = torch.tensor([3.0, -1.0, 0.5, 0.0, 2.0])
    d2 = torch.tensor([-1.0, -2.0, 0.4, 1.0, 2.0])
    assert torch.allclose(om.ties_vector([d1, d2], top_k=1.0), torch.tensor([3.0, -1.5, 0.45, 1.0, 2.0]))
    # top 40 %: each task keeps |v| ≥ its 3rd-smallest |v| (d1 keeps 3, −1, 2; d2 keeps −1, −2, 1, 2)
    assert torch.allclose(om.ties_vector([d1, d2], top_k=0.4), torch.tensor([3.0, -1.5, 0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="top_k"):
        om.ties_vector([d1], top_k=0.0)


def _state(value, shape=(2, 3)):
    return {"w.weight": torch.full(shape, float(value), dtype=torch.float64), "w.bias": torch.full((2,), float(value))}


def test_task_arithmetic_and_ties_on_whole_states():
    base, fts = _state(0), [_state(1), _state(2)]
    ta = om.task_arithmetic(base, fts, lam=0.5)
    assert torch.allclose(ta["w.weight"], torch.full((2, 3), 1.5, dtype=torch.float64))
    assert torch.allclose(om.ties(base, fts, top_k=1.0)["w.bias"], torch.full((2,), 1.5))
    with pytest.raises(ValueError, match="different shapes"):
        om.task_arithmetic(base, [_state(1, shape=(3, 2))])


# ---- OrthoMerge of full finetunes -----------------------------------------------------------------------------------
def _rotated(w0, a, bias):
    return {"l.weight": w0 @ cayley(a), "l.bias": bias.clone()}


@pytest.mark.parametrize("residual", ["ta", "ties", "none"])
def test_orthomerge_of_pure_rotations_rotates_by_the_merged_generator(residual):
    w0, bias = rand(7, 5), rand(7, seed=9)
    base = {"l.weight": w0, "l.bias": bias}
    a1, a2 = rand_skew(5, seed=1), rand_skew(5, seed=2)
    one = om.orthomerge(base, [_rotated(w0, a1, bias)] * 3, residual=residual)
    assert torch.allclose(one["l.weight"], w0 @ cayley(a1), atol=1e-10)
    two = om.orthomerge(base, [_rotated(w0, a1, bias), _rotated(w0, a2, bias)], residual=residual)
    expected = w0 @ cayley(om.merge_generators([a1, a2]))
    assert torch.allclose(two["l.weight"], expected, atol=1e-10) and torch.allclose(two["l.bias"], bias)


def test_orthomerge_residuals_and_conflict_variant():
    w0 = rand(6, 6)
    base = {"l.weight": w0}
    fts = [{"l.weight": w0 + 0.1 * rand(6, 6, seed=s)} for s in (1, 2)]
    for target in ("G", "C"):
        merged = om.orthomerge(base, fts, target=target, residual="ta", lam=1.0)
        # reconstruct: W₀ cayley(A*) + Σ τ_i, with R_i fitted to the target
        targets = [f["l.weight"] for f in fts] if target == "G" else om.conflict_targets(
            w0, [f["l.weight"] for f in fts])
        parts = [om.decompose(w0, f["l.weight"], t) for f, t in zip(fts, targets)]
        expected = om.rotate(w0, om.merge_generators([a for a, _ in parts])) + sum(tau for _, tau in parts)
        assert torch.allclose(merged["l.weight"], expected, atol=1e-10)
    # identical finetunes never conflict with their mean: C = plain task arithmetic (R = I)
    same = om.orthomerge(base, [fts[0], fts[0]], target="C", residual="ta", lam=0.5)
    assert torch.allclose(same["l.weight"], fts[0]["l.weight"], atol=1e-10)
    with pytest.raises(ValueError, match="target must be"):
        om.orthomerge(base, fts, target="X")
    with pytest.raises(ValueError, match="residual must be"):
        om.orthomerge(base, fts, residual="dare")


def test_merge_models_on_mlps():
    torch.manual_seed(0)
    base = MLP(6, (8,), 3)
    fts = []
    for s in (1, 2):
        m = MLP(6, (8,), 3)
        m.load_state_dict(base.state_dict())
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(s)))
        fts.append(m)
    for how in ("orthomerge", "task_arithmetic", "ties"):
        merged = om.merge_models(base, fts, how=how)
        assert merged(torch.randn(4, 6)).shape == (4, 3) and merged is not base
    with pytest.raises(ValueError, match="different shapes"):
        om.merge_models(base, [MLP(6, (9,), 3)])
    with pytest.raises(ValueError, match="how must be"):
        om.merge_models(base, fts, how="average")


def _oft_model(seed):
    from orthoscope.adapters.oft import OFTConfig
    from orthoscope.adapters.registry import attach

    torch.manual_seed(0)
    model = attach(MLP(8, (16,), 4), OFTConfig(block=4))
    with torch.no_grad():
        for layer in (model.layers[0], model.layers[1]):
            layer.q.copy_(0.2 * torch.randn(layer.q.shape, generator=torch.Generator().manual_seed(seed)))
    return model


def test_merge_oft_models_copies_and_generators():
    a, b = _oft_model(1), _oft_model(2)
    x = torch.randn(5, 8)
    same = om.merge_oft_models([a, a, a])
    assert torch.allclose(same(x), a(x), atol=1e-6)           # OrthoMerge of N copies returns that adapter
    merged = om.merge_oft_models([a, b])
    for i in (0, 1):
        expected = om.merge_generators([a.layers[i].q.detach(), b.layers[i].q.detach()])
        assert torch.allclose(merged.layers[i].q, expected, atol=1e-6)
        assert merged.layers[i].q.requires_grad
    mean = om.merge_oft_models([a, b], how="mean")
    assert torch.allclose(mean.layers[0].q, (a.layers[0].q + b.layers[0].q) / 2)
    assert mean.layers[0].q.norm() < merged.layers[0].q.norm()      # the plain mean shrinks toward R = I
    with pytest.raises(ValueError, match="how must be"):
        om.merge_oft_models([a, b], how="sum")
    other_base = _oft_model(3)
    with torch.no_grad():
        other_base.layers[0].base_layer.weight.add_(1.0)
    with pytest.raises(ValueError, match="frozen tensor 'layers.0.base_layer.weight' differs"):
        om.merge_oft_models([a, other_base])
    from orthoscope.adapters.oft import OFTConfig
    from orthoscope.adapters.registry import attach

    torch.manual_seed(0)
    wider = attach(MLP(8, (16,), 4), OFTConfig(block=8))
    with pytest.raises(ValueError, match="different shapes"):
        om.merge_oft_models([a, wider])
