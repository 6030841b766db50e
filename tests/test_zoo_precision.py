"""Precision ML: exact data, the flat-vector loss against autograd, the paper's line search and low-curvature step,
boosting's composition, and the pipeline beating Adam by orders of magnitude."""
import math

import pytest
import torch

from orthoscope.zoo import precision as P


def test_equation_data_is_exact_float64_on_the_range():
    d = P.EquationData("Z.002", n_train=50, n_test=20, seed=3)
    assert d.x_train.dtype == torch.float64 and d.x_train.shape == (50, 1) and d.y_test.shape == (20, 1)
    assert d.x_train.min() >= 0 and d.x_train.max() <= 6
    torch.testing.assert_close(d.y_train[:, 0], torch.sin(d.x_train[:, 0]), rtol=0, atol=0)
    two = P.EquationData("I.12.1", n_train=30, n_test=10)
    torch.testing.assert_close(two.y_test[:, 0], two.x_test[:, 0] * two.x_test[:, 1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown equation"):
        P.EquationData("nope")
    with pytest.raises(ValueError, match="n_train"):
        P.EquationData("Z.001", n_train=1)


def test_official_network_shape():
    net = P.tanh_mlp(1, 20, 2)
    assert P.n_params(net) == 481 and next(net.parameters()).dtype == torch.float64
    assert P.matched_mlp_width(P.n_params(net), d_in=1) == 20


def test_flat_loss_matches_autograd_gradient_and_hessian():
    d = P.EquationData("Z.001", n_train=40, n_test=2)
    net = P.tanh_mlp(1, 3, 1)                                                   # 10 parameters
    loss = P.FlatLoss(net, d.x_train, d.y_train)
    theta = loss.get()
    assert theta.shape == (10,)
    value, grad = loss.value_and_grad(theta)
    net.zero_grad()
    ref = torch.mean((net(d.x_train) - d.y_train) ** 2)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-14)
    torch.testing.assert_close(grad, torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
    torch.testing.assert_close(loss.hessian(theta), torch.autograd.functional.hessian(loss, theta), rtol=1e-10,
                               atol=1e-12)
    loss.set(theta + 1.0)
    torch.testing.assert_close(loss.get(), theta + 1.0)


def test_logarithmic_line_search_finds_the_minimum_on_its_log_grid():
    alpha, value = P.logarithmic_line_search(lambda a: (math.log10(a) + 3.3) ** 2)
    assert abs(math.log10(alpha) + 3.3) < 0.05 and value < 0.0025


def test_low_curvature_step_moves_only_along_flat_directions():
    # f(x) = w·x on data whose second column copies the first: the MSE's Hessian 2/N XᵀX has one zero eigenvalue.
    x = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None].repeat(1, 2)
    y = 3 * x[:, :1]
    net = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0, 1.0]]))
    before = net[0].weight.clone()
    hist = P.low_curvature_steps(net, x, y, steps=2)                    # gradient ⟂ null space: nothing to do
    torch.testing.assert_close(net[0].weight, before)
    assert hist[0] == pytest.approx(hist[-1])
    # with every direction counted as flat the step is a log-grid line search along −g: near the line minimum
    start = torch.mean((net(x) - y) ** 2).item()
    P.low_curvature_steps(net, x, y, steps=1, threshold=1e9)
    assert torch.mean((net(x) - y) ** 2).item() < 1e-3 * start


def test_boosted_prediction_adds_the_scaled_second_network():
    f1, f2 = P.tanh_mlp(1, 4, 1, seed=0), P.tanh_mlp(1, 4, 1, seed=1)
    x = torch.linspace(0, 1, 7, dtype=torch.float64)[:, None]
    with torch.no_grad():
        torch.testing.assert_close(P.Boosted(f1, f2, 8.0)(x), f1(x) + f2(x) / 8.0)


def test_bfgs_stops_at_convergence_on_the_same_path():
    data = P.EquationData("Z.001", n_train=100, n_test=10)
    full_net, stop_net = P.tanh_mlp(1, 8, 2, seed=0), P.tanh_mlp(1, 8, 2, seed=0)
    full = P.fit_bfgs(full_net, data.x_train, data.y_train, maxiter=150)
    patience, rtol = 10, 0.5
    stopped = P.fit_bfgs(stop_net, data.x_train, data.y_train, maxiter=150, patience=patience, rtol=rtol)
    k = len(stopped) - 1                                     # iterations run; the last entry is the final model's MSE
    assert patience < k < len(full) - 1
    assert stopped[:k] == full[:k]                           # the same iterates until the stop
    def stalled(h, i):
        return h[i] > (1 - rtol) * h[i - patience]
    assert stalled(stopped, k - 1) and not any(stalled(stopped, i) for i in range(patience, k - 1))
    assert stopped[-1] == pytest.approx(stopped[k - 1], rel=1e-12)   # the model is left at the last iterate
    with pytest.raises(ValueError, match="patience"):
        P.fit_bfgs(stop_net, data.x_train, data.y_train, patience=-1)


def test_pipeline_passes_the_bfgs_stop_to_both_networks(monkeypatch):
    calls = []
    real = P.fit_bfgs

    def spy(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(P, "fit_bfgs", spy)
    s = P.PrecisionSetting(equation="Z.001", n_train=50, n_test=50, width=4, bfgs_iter=30, lc_steps=1,
                           adam_steps=5, adam_lrs=(1e-3,), bfgs_patience=7, bfgs_rtol=0.2)
    P.run_precision(s)
    assert [(c["patience"], c["rtol"], c["maxiter"]) for c in calls] == [(7, 0.2, 30)] * 2


def test_pipeline_beats_adam_by_orders_of_magnitude_smoke():
    s = P.PrecisionSetting(equation="Z.001", n_train=200, n_test=500, width=8, bfgs_iter=400, lc_steps=2,
                           adam_steps=400, adam_lrs=(1e-3,))
    res = P.run_precision(s)
    stages = list(res.test_rmse)
    assert stages[0].startswith("Adam") and stages[1:] == ["BFGS", "+ low-curvature", "+ boosting"]
    assert res.test_rmse["BFGS"] < 1e-2 * res.test_rmse[stages[0]]
    assert res.train_rmse["+ low-curvature"] <= res.train_rmse["BFGS"] * (1 + 1e-12)   # steps never go uphill
    assert res.test_rmse["+ boosting"] < res.test_rmse["+ low-curvature"]


def test_kan_vs_mlp_matches_parameter_counts():
    out = P.kan_vs_mlp(kan_width=(2, 2, 1), grid=3, steps=2, n_train=100, n_test=100)
    assert set(out) == {"KAN", "MLP"}
    assert abs(out["KAN"]["params"] - out["MLP"]["params"]) <= 0.15 * out["KAN"]["params"]
    assert all(v["test"] > 0 for v in out.values())
