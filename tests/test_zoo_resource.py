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
    assert "allocated neurons" in out.detail and out.ours == out.ours


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
