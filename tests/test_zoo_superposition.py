"""Superposition toy: exact data generator, the paper's weight-decay rule, geometry probes, and the 1/m law."""
import pytest
import torch

from orthoscope import Run
from orthoscope.zoo import superposition as S
from orthoscope.zoo.common import BatchedAdamW, WarmupCosine, zipf_frequencies


def test_zipf_frequencies_are_normalized_power_laws():
    p = zipf_frequencies(1000, 1.2)
    assert p.dtype == torch.float64 and p.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert p[0] / p[9] == pytest.approx(10 ** 1.2)
    assert (p[1:] < p[:-1]).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_zipf_exponent_must_be_positive(bad):
    with pytest.raises(ValueError, match="Zipf exponent must be > 0"):
        zipf_frequencies(10, bad)
    with pytest.raises(ValueError, match="Zipf exponent"):
        S.Superposition(n_features=10, exponent=bad)


def test_task_frequencies_normalized_and_samples_follow_them():
    task = S.Superposition(n_features=20, exponent=1.5, batch_size=200_000)
    assert task.probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    x, y = task.batch(torch.Generator().manual_seed(0))
    assert x is y and x.shape == (200_000, 20)
    active = x > 0
    freq = active.double().mean(0)
    se = (task.probs * (1 - task.probs) / 200_000).sqrt()
    assert ((freq - task.probs).abs() < 5 * se + 1e-6).all()
    vals = x[active]
    assert vals.min() >= 0 and vals.max() <= 2
    assert vals.mean().item() == pytest.approx(1.0, abs=0.01)            # U(0, 2) has mean 1, variance 1/3
    assert vals.var().item() == pytest.approx(1 / 3, abs=0.01)


def test_density_scales_expected_active_count_and_is_checked():
    task = S.Superposition(n_features=100, exponent=1.2, density=3.0)
    assert task.probs.sum().item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="> 1"):
        S.Superposition(n_features=100, exponent=2.0, density=2.0)


def test_model_needs_n_at_least_m_and_computes_relu_wwt():
    with pytest.raises(ValueError, match="n_features ≥ m"):
        S.SuperpositionModel(n_features=4, m=8)
    with pytest.raises(ValueError, match="positive int"):
        S.SuperpositionModel(n_features=4, m=0)
    model = S.SuperpositionModel(12, 3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(5, 12)
    w, b = model.W.detach(), model.features.bias.detach()
    torch.testing.assert_close(model(x), torch.relu(x @ w @ w.T + b))
    assert model.W.shape == (12, 3)


def test_negative_weight_decay_pulls_rows_to_unit_norm():
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4], [1.0, 0.0]])              # norms 5, 0.5, 1
    S.row_norm_decay_(w, lr=0.1, wd=-1.0)
    # w_i ← w_i − 0.1·w_i(1 − 1/‖w_i‖): norms 5 → 4.6, 0.5 → 0.55, 1 → 1
    torch.testing.assert_close(w.norm(dim=1), torch.tensor([4.6, 0.55, 1.0]))
    for _ in range(500):
        S.row_norm_decay_(w, lr=0.1, wd=-1.0)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(3))
    v = torch.ones(2, 2)
    S.row_norm_decay_(v, lr=0.1, wd=0.5)
    torch.testing.assert_close(v, torch.full((2, 2), 0.95))


def test_feature_geometry_on_constructed_cases():
    g = S.feature_geometry(torch.eye(4, 3))                          # 3 orthonormal features, 1 absent
    assert g["represented"] == 0.75 and g["mean_interference"] == pytest.approx(0.0)
    torch.testing.assert_close(g["norms"], torch.tensor([1.0, 1.0, 1.0, 0.0]))
    w = torch.randn(2000, 50, generator=torch.Generator().manual_seed(0))
    w = w / w.norm(dim=1, keepdim=True)                              # random unit rows: Σ_j (ŵ_i·w_j)² ≈ (n−1)/m
    assert S.feature_geometry(w)["mean_interference"] == pytest.approx(1999 / 50, rel=0.05)


def test_warmup_cosine_schedule_values():
    sched = WarmupCosine(lr=1.0, total=100, warmup=10, min_ratio=0.05)
    assert sched.value(0) == pytest.approx(0.1)
    assert sched.value(9) == pytest.approx(1.0)
    assert sched.value(99) == pytest.approx(0.05)
    mid = sched.value(9 + 45)
    assert mid == pytest.approx(0.05 + 0.95 * 0.5, abs=1e-9)
    assert WarmupCosine(lr=1.0, total=10).value(1000) == pytest.approx(0.05)


def test_method_applies_schedule_then_decay_on_w_only():
    torch.manual_seed(0)
    task = S.Superposition(n_features=30, batch_size=16)
    model = S.SuperpositionModel(30, 4, generator=torch.Generator().manual_seed(0))
    run = Run(model, task, S.SuperpositionAdamW(lr=0.05, weight_decay=-1.0, total_steps=50, warmup=5), probes=[])
    run.train(50, progress=False)
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.05)
    assert all(isinstance(iv, (WarmupCosine, S.RowNormDecay)) for iv in run.interventions)


def test_batched_adamw_matches_torch_adamw_per_member():
    torch.manual_seed(0)
    lrs, wds = [1e-3, 3e-2, 1e-1], [0.0, 0.5, 2.0]
    w0 = torch.randn(3, 4, 5)
    batched = torch.nn.Parameter(w0.clone())
    singles = [torch.nn.Parameter(w0[k].clone()) for k in range(3)]
    opt = BatchedAdamW([batched], lr=lrs, weight_decay=wds)
    opts = [torch.optim.AdamW([singles[k]], lr=lrs[k], weight_decay=wds[k]) for k in range(3)]
    target = torch.randn(4, 5)
    for _ in range(20):
        opt.zero_grad()
        ((batched - target) ** 3).abs().sum().backward()
        opt.step()
        for k in range(3):
            opts[k].zero_grad()
            ((singles[k] - target) ** 3).abs().sum().backward()
            opts[k].step()
    for k in range(3):
        torch.testing.assert_close(batched[k], singles[k], rtol=1e-5, atol=1e-6)
    bad = torch.nn.Parameter(torch.zeros(2, 2))
    bad.grad = torch.ones(2, 2)
    with pytest.raises(ValueError, match="one per ensemble member"):
        BatchedAdamW([bad], lr=[1.0, 2.0, 3.0]).step()


def test_probe_records_feature_norms():
    run = S.train(4, n_features=40, steps=5, batch_size=8, probes=[S.FeatureGeometry(every=5)])
    h = run.history
    assert h["feature_norm/features"].last().shape == (40,)
    assert 0.0 <= h["represented/features"].last() <= 1.0


@pytest.mark.slow
def test_strong_superposition_loss_scales_as_one_over_m():
    # Settings chosen from measurements on a 2-core machine (machine-notes): n = 500, p_i ∝ i^(−1.2), wd = −1,
    # 2,000 steps of batch 256 at lr 0.03 gave slope −0.96 [−1.07, −0.85]; the paper's full schedule is far longer.
    result = S.loss_vs_m([8, 16, 32], n_features=500, exponent=1.2, weight_decay=-1.0, steps=2000, batch_size=256,
                         lr=0.03, progress=False)
    fit = result.fit("loss")
    assert -1.3 <= fit.slope <= -0.7, str(fit)
    assert min(r["represented"] for r in result.records) == 1.0        # strong regime: every feature has norm ≈ 1
