"""y = x² width-scaling toy: exact data, the lottery-ticket identity, and a short width sweep."""
import pytest
import torch

from orthoscope.zoo import lottery as LT


def test_square_data_is_exact_and_test_grid_is_disjoint():
    task = LT.Square1D(n_train=11)
    torch.testing.assert_close(task.x_train[:, 0], torch.linspace(-1, 1, 11, dtype=torch.float64))
    torch.testing.assert_close(task.y_train, task.x_train ** 2)
    torch.testing.assert_close(task.y_test, task.x_test ** 2)
    assert task.x_test.shape == (44, 1)
    assert not set(task.x_test[:, 0].tolist()) & set(task.x_train[:, 0].tolist())
    assert task.x_test.min() > -1 and task.x_test.max() < 1
    with pytest.raises(ValueError, match="n_train"):
        LT.Square1D(n_train=1)
    with pytest.raises(ValueError, match="lo < hi"):
        LT.Square1D(lo=1.0, hi=0.0)


def test_a_symmetric_silu_pair_is_a_ticket_for_x_squared():
    # σ(ax) + σ(−ax) − 2σ(0) = σ''(0)·a²x² + O(a⁴x⁴), with σ''(0) = 1/2 for SiLU: the neuron pair the theory counts.
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)
    a = 0.05
    pair = torch.nn.functional.silu(a * x) + torch.nn.functional.silu(-a * x)
    torch.testing.assert_close(pair / (0.5 * a * a), x ** 2, rtol=0, atol=1e-3)


def test_model_and_bad_width():
    m = LT.make_model(8)
    assert next(m.parameters()).dtype == torch.float64
    assert m(torch.zeros(3, 1, dtype=torch.float64)).shape == (3, 1)
    with pytest.raises(ValueError, match="width"):
        LT.make_model(0)


def test_training_reduces_the_error_and_sweep_collects_it():
    run = LT.train(8, steps=300, n_train=200)
    assert LT.test_mse(run) < 1e-3
    res = LT.mse_vs_width([2, 8], steps=50, n_train=50, progress=False)
    assert res.sizes == [2, 8] and all(r["mse"] > 0 for r in res.records)


def test_slopes_by_seed_fits_each_seed_and_takes_the_median():
    from orthoscope.zoo.scaling import SweepResult

    widths = [4, 8, 16, 32]
    planted = {0: -1.0, 1: -2.0, 2: -0.5}                                  # exact power laws, one per seed
    res = SweepResult([{"size": w, "seed": s, "mse": 3.0 * w ** b} for s, b in planted.items() for w in widths])
    fit = LT.slopes_by_seed(res)
    assert fit.seeds == [0, 1, 2]
    assert fit.slopes == pytest.approx([-1.0, -2.0, -0.5], abs=1e-9)
    assert fit.median == pytest.approx(-1.0, abs=1e-9) and fit.spread == pytest.approx((-2.0, -0.5))
    assert "median slope -1.00 over 3 seeds" in str(fit)
    short = SweepResult([{"size": w, "seed": 0, "mse": 1.0 / w} for w in (4, 8)])
    with pytest.raises(ValueError, match="at least three"):
        LT.slopes_by_seed(short)


def test_reproduce_entry_smoke_reports_silu_slopes_and_the_relu_control():
    from orthoscope.zoo import reproduce as R

    out = R.REGISTRY["lottery"].run(True)
    assert "SiLU, held-out MSE vs width [2, 4, 8]" in out.detail and "over 2 seeds" in out.detail
    assert "ReLU control, same protocol: median slope" in out.detail
    assert out.ours == out.ours and out.passed == (abs(out.ours + 1.0) <= 0.3)       # a number, judged as stated


def test_relu_control_shares_the_init_and_changes_only_the_activation():
    silu, relu = LT.make_model(8, "silu", seed=3), LT.make_model(8, "relu", seed=3)
    for a, b in zip(silu.parameters(), relu.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)                      # same seed → same weights
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None]
    first, second = relu.layers
    pre = x @ first.weight.T + first.bias
    torch.testing.assert_close(relu(x), torch.relu(pre) @ second.weight.T + second.bias)
    torch.testing.assert_close(silu(x), torch.nn.functional.silu(pre) @ second.weight.T + second.bias)
    with pytest.raises(ValueError, match="activation"):
        LT.make_model(4, "nope")
