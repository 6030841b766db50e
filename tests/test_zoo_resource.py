"""Resource model: exact composite data, the L1 proximal step, the allocation count, and the power-law fit."""
import numpy as np
import pytest
import torch

from orthoscope.zoo import resource as R


def test_composite_squares_are_exact_and_independent_per_subtask():
    task = R.CompositeSquares(scales=(1.0, 3.0), n_train=64, seed=1)
    assert task.k == 2 and task.x_train.shape == (64, 2) and task.x_train.dtype == torch.float64
    torch.testing.assert_close(task.y_train, task.x_train ** 2 * torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert task.x_train.abs().max() <= 1 and not torch.equal(task.x_train, task.x_test)
    with pytest.raises(ValueError, match="scales"):
        R.CompositeSquares(scales=(1.0, 0.0))


def test_soft_threshold_is_the_l1_proximal_map():
    w = torch.tensor([-0.3, -0.05, 0.0, 0.02, 0.5])
    R.soft_threshold_(w, 0.1)
    torch.testing.assert_close(w, torch.tensor([-0.2, 0.0, 0.0, 0.0, 0.4]))


def test_allocation_counts_neurons_wired_to_each_subtask():
    model = R.make_model(2, 5)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [1.0, 1.0], [5e-4, 1.0]]))
        model[2].weight.copy_(torch.tensor([[1.0, 0, 0, 1.0, 1.0], [0, 1.0, 1.0, 2e-3, 1.0]]))
    # subtask 0: neurons 0, 3 (neuron 4's input weight 5e-4 is below 1e-3); subtask 1: neurons 2, 3, 4
    assert R.allocation(model) == [2, 3]


def test_sparsity_prunes_neurons_and_fit_recovers_a_planted_law():
    task = R.CompositeSquares(n_train=100)
    dense = R.train(task, width=16, alpha=0.0, steps=50)
    sparse = R.train(task, width=16, alpha=0.3, steps=50)
    assert R.allocation(sparse)[0] < R.allocation(dense)[0]
    rows = [dict(neurons=[n], losses=[2.0 / n], total_neurons=n, total_loss=2.0 / n) for n in (2, 4, 8, 16)]
    fit = R.fit_loss_vs_neurons(rows)
    assert fit.slope == pytest.approx(-1.0, abs=1e-9)
    np.testing.assert_allclose(R.allocation_ratios([dict(neurons=[1, 3], total_neurons=4)]), [[0.25, 0.75]])
    with pytest.raises(ValueError, match="≥ 3 runs"):
        R.fit_loss_vs_neurons(rows[:2])


def test_reproduce_entry_smoke_reports_the_exponent():
    from orthoscope.zoo import reproduce as REP

    out = REP.REGISTRY["resource"].run(True)
    assert "relu 2-16-2" in out.detail and "silu 2-16-2" in out.detail and "relu 1-16-1" in out.detail
    mc = REP.REGISTRY["resource_mc"].run(True)
    assert mc.passed and "greedy allocation" in mc.detail


def test_relu_activation_option_and_bad_name():
    assert isinstance(R.make_model(1, 4, activation="relu")[1], torch.nn.ReLU)
    with pytest.raises(ValueError, match="activation"):
        R.make_model(1, 4, activation="gelu")


def test_retrain_keeps_pruned_weights_at_zero_and_lowers_the_loss():
    task = R.CompositeSquares(n_train=100)
    model = R.train(task, width=16, alpha=0.3, steps=60)
    before_alloc, before_loss = R.allocation(model), R.subtask_losses(model, task)
    pruned = [(w.detach().abs() <= R.THRESHOLD) for w in (model[0].weight, model[2].weight)]
    R.retrain(model, task, steps=100, lr=1e-2)
    for w, p in zip((model[0].weight, model[2].weight), pruned):
        assert torch.all(w.detach()[p] == 0)                       # pruned weights stay exactly 0
    assert R.allocation(model)[0] <= before_alloc[0]
    assert R.subtask_losses(model, task)[0] < before_loss[0]      # the penalty's shrinkage is gone
    rows = R.sweep_alpha([0.3], width=8, steps=20, n_train=50, retrain_steps=5)
    assert set(rows[0]) >= {"retrained_losses", "retrained_total"}


# ---- the 1/N mechanism (resource_meanfield) ------------------------------------------------------------------
def test_monte_carlo_layer_is_unbiased_for_s_x_squared():
    from orthoscope.zoo import resource_meanfield as MF

    x = MF.eval_grid(101)
    # the mean over many neurons of φ(x; t) is s x²: 200,000 knots leave a sampling error ~ sqrt(V/N) ≈ 3e-3
    f = MF.monte_carlo_square(x, MF.sample_knots(200_000, seed=3), scale=2.0)
    assert torch.max(torch.abs(f - 2.0 * x ** 2)) < 0.05
    # one neuron: the formula itself
    t = torch.tensor([0.25], dtype=torch.float64)
    expected = 1 - 2 * (x + 1) + 4 * torch.relu(x - 0.25)
    torch.testing.assert_close(MF.monte_carlo_square(x, t), expected)


def test_monte_carlo_error_is_v_over_n_with_slope_minus_one():
    from orthoscope.zoo import resource_meanfield as MF

    rows = MF.sweep_widths([8, 32, 128, 512], seeds=range(48))
    fit = MF.fit_rows(rows)
    assert -1.15 <= fit.slope <= -0.85, fit
    # N · E MSE is the exact variance V = 32/15 (48 draws: a loose band for the sampling error of the mean)
    for r in rows:
        assert 0.6 * MF.V_UNIT < r["n_times_loss"] < 1.6 * MF.V_UNIT, r


def test_allocation_minimises_total_loss_with_constant_ratios():
    from orthoscope.zoo import resource_meanfield as MF

    v = [MF.V_UNIT, 9 * MF.V_UNIT]                        # scales 1 and 3 → √V ratio 1 : 3
    np.testing.assert_allclose(MF.optimal_allocation(v, 40), [10.0, 30.0])
    assert MF.greedy_allocation(v, 40) == [10, 30] and MF.greedy_allocation(v, 400) == [100, 300]
    with pytest.raises(ValueError, match="at least"):
        MF.greedy_allocation(v, 1)
    # the greedy split beats any other split of 40 neurons in expected loss Σ V_k / N_k
    best = min(range(1, 40), key=lambda n1: v[0] / n1 + v[1] / (40 - n1))
    assert best == 10


def test_trained_mean_field_layer_learns():
    from orthoscope.zoo import resource_meanfield as MF

    before = MF.train_mean_field(16, steps=1, lr=1e-12)
    after = MF.train_mean_field(16, steps=200)
    assert after < 0.1 * before


def test_v_is_the_quadrature_of_the_neuron_variance():
    from orthoscope.zoo import resource_meanfield as MF

    # Var_t φ(x; t) by quadrature over a fine grid of knots (t ~ U[−1, 1]), averaged over x: the derived 32/15
    x, t = MF.eval_grid(401), MF.eval_grid(4001)
    phi = 1 - 2 * (x[:, None] + 1) + 4 * torch.relu(x[:, None] - t[None, :])      # [x, t]
    assert float(phi.var(1, unbiased=False).mean()) == pytest.approx(MF.V_UNIT, rel=1e-3)
