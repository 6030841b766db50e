"""Linear mapping number (the paper's definition, Eqs. 1–3): exact values on constructed cases, per-coordinate r²
against numpy's correlation, absolute eigenvalues, the probe at a hidden layer inside a Run, the paper's network,
the one-hot modular task, and the compression-phase fit."""
import numpy as np
import pytest
import torch

from orthoscope.core.history import History
from orthoscope.probes.compression import LinearMappingNumber, linear_connectivity, linear_mapping_number
from orthoscope.zoo import compression as C


def test_an_affine_map_has_one_linear_mapping():
    x = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = torch.randn(3, 4, dtype=torch.float64)
    L = linear_connectivity(lambda z: z @ a - 2.0, x)
    torch.testing.assert_close(L, torch.ones(12, 12, dtype=torch.float64), rtol=0, atol=1e-10)
    assert linear_mapping_number(L) == pytest.approx(1.0, abs=1e-9)
    # a constant map does not move along any path: linear by convention (R² = 1)
    assert linear_mapping_number(linear_connectivity(lambda z: torch.zeros(len(z), 2), x.float())) == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_block_diagonal_connectivity_counts_its_blocks(k):
    # r groups, linear within and not at all across: the LMN is the region count, exactly
    L = torch.block_diag(*[torch.ones(4, 4, dtype=torch.float64)] * k)
    assert linear_mapping_number(L) == pytest.approx(k, rel=1e-12)
    assert linear_mapping_number(torch.eye(7)) == pytest.approx(7, rel=1e-6)


def test_r2_is_the_mean_over_outputs_of_pearson_r2():
    g = torch.Generator().manual_seed(1)
    w1, w2 = torch.randn(2, 8, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
    fn = lambda z: torch.tanh(3 * z @ w1) @ w2                                    # noqa: E731
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    L = linear_connectivity(fn, x, n_interp=9)
    t = np.linspace(0, 1, 9)
    for i in range(6):
        for j in range(6):
            if i == j:
                assert L[i, j] == 1.0
                continue
            y = fn(x[i] + torch.tensor(t)[:, None] * (x[j] - x[i])).numpy()        # [9, 3]
            want = np.mean([np.corrcoef(t, y[:, d])[0, 1] ** 2 for d in range(3)])   # Eq. 2
            assert L[i, j].item() == pytest.approx(want, abs=1e-10)
    torch.testing.assert_close(L, L.T)
    assert linear_connectivity(fn, x).shape == (6, 6)                             # default: the paper's 21 points


def test_a_symmetric_parabola_has_zero_connectivity_and_a_still_coordinate_counts_as_linear():
    # y = (x, x², 0) from −1 to 1: r² = 1 for x, 0 for the symmetric parabola x², 1 (by convention) for the constant
    fn = lambda z: torch.cat([z, z ** 2, torch.zeros_like(z)], 1)                 # noqa: E731
    L = linear_connectivity(fn, torch.tensor([[-1.0], [1.0]], dtype=torch.float64))
    assert L[0, 1].item() == pytest.approx(2 / 3, abs=1e-12)


def test_negative_eigenvalues_enter_by_absolute_value():
    # eigenvalues of [[1, c], [c, 1]] are 1 ± c; with c = 1.5 one is −0.5: |λ| = (2.5, 0.5) → p = (5/6, 1/6)
    L = torch.tensor([[1.0, 1.5], [1.5, 1.0]], dtype=torch.float64)
    p = np.array([5 / 6, 1 / 6])
    assert linear_mapping_number(L) == pytest.approx(2 ** -(p * np.log2(p)).sum(), rel=1e-12)


def test_a_kink_makes_cross_pairs_nonlinear():
    # |x|: linear within each side (R² = 1 exactly), a V across the kink; the symmetric pair ±0.75 has R² = 0.
    x = torch.cat([torch.linspace(0.5, 1.0, 5), -torch.linspace(0.5, 1.0, 5)])[:, None].double()
    L = linear_connectivity(torch.abs, x, n_interp=17)
    torch.testing.assert_close(L[:5, :5], torch.ones(5, 5, dtype=torch.float64))
    torch.testing.assert_close(L[5:, 5:], torch.ones(5, 5, dtype=torch.float64))
    assert L[2, 7].item() == pytest.approx(0.0, abs=1e-12) and (L[:5, 5:] < 1).all()
    # partial cross-connectivity spreads the spectrum: more than the two clean blocks' LMN of 2
    assert linear_mapping_number(L) > 2.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="n_interp"):
        linear_connectivity(torch.abs, torch.zeros(3, 1), n_interp=2)
    with pytest.raises(ValueError, match="floating-point"):
        linear_connectivity(torch.abs, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="square"):
        linear_mapping_number(torch.ones(2, 3))
    with pytest.raises(ValueError, match="continuous inputs"):
        LinearMappingNumber(torch.arange(4)[:, None])


def test_chunking_does_not_change_the_matrix():
    x = torch.randn(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fn = lambda z: torch.nn.functional.silu(4 * z).sum(1, keepdim=True)          # noqa: E731
    torch.testing.assert_close(linear_connectivity(fn, x, max_batch=16), linear_connectivity(fn, x))


def test_one_hot_modular_task_is_exact():
    task = C.OneHotModularAddition(p=7, train_frac=0.5)
    x = torch.cat([task.x_train, task.x_test])
    y = torch.cat([task.y_train, task.y_test])
    assert x.shape == (49, 14) and len(task.x_train) == 24 or len(task.x_train) == 25
    a, b = x[:, :7].argmax(1), x[:, 7:].argmax(1)
    assert torch.equal(y, (a + b) % 7) and torch.equal(x.sum(1), torch.full((49,), 2.0))
    assert len({(int(i), int(j)) for i, j in zip(a, b)}) == 49                    # the whole table, once
    with pytest.raises(ValueError, match="train_frac"):
        C.OneHotModularAddition(p=7, train_frac=1.0)


def test_probe_records_lmn_in_a_run():
    run = C.train(p=5, d_embed=4, hidden=8, steps=4, every=2, lmn_samples=6, n_interp=5)
    h = run.history
    assert h["lmn/model"].steps == [0, 2, 4] or h["lmn/model"].steps[-1] == 4
    assert all(1.0 <= v <= 6.0 + 1e-9 for v in h["lmn/model"].values)        # between 1 and the sample count
    assert all(v > 0 for v in h["l2/model"].values)


def test_first_hidden_split_measures_the_rest_of_the_network():
    model = C.make_model(7, d_embed=4, hidden=16, seed=3)
    task = C.OneHotModularAddition(p=7, train_frac=0.5)
    x = task.x_train[:10]
    torch.testing.assert_close(model.from_first_hidden(model.first_hidden(x)), model(x))
    e = torch.cat([model.embed[x[:, :7].argmax(1)], model.embed[x[:, 7:].argmax(1)]], 1)      # an embedding lookup
    torch.testing.assert_close(model.first_hidden(x), torch.nn.functional.silu(model.layer1(e)))
    probe = LinearMappingNumber(x, 1, split=C.first_hidden_split)
    run = type("R", (), {"model": model})()
    want = linear_mapping_number(linear_connectivity(model.from_first_hidden, model.first_hidden(x).detach()))
    assert probe(run)["lmn/model"] == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="not both"):
        LinearMappingNumber(x, 1, split=C.first_hidden_split, fn=lambda m: m)


def _fake_run(steps, train_acc, test_acc, test_loss, lmn, l2):
    h = History()
    for row in zip(steps, train_acc, test_acc, test_loss, lmn, l2):
        s, *v = row
        h.log(s, {"acc/train": v[0], "acc/test": v[1], "loss/test": v[2], "lmn/model": v[3], "l2/model": v[4]})
    return type("FakeRun", (), {"history": h})()


def test_compression_fit_finds_the_phase_and_a_planted_line():
    steps = list(range(0, 100, 10))
    train_acc = [0.1, 0.5, 1, 1, 1, 1, 1, 1, 1, 1]
    test_acc = [0, 0, 0, 0.1, 0.3, 0.6, 0.995, 1, 1, 1]
    lmn = [1, 3, 6, 5, 4, 3, 2, 2, 2, 2]
    test_loss = [5 + 0.5 * v for v in lmn]                                       # exactly linear in LMN
    l2 = [10, 20, 30, 29, 27, 24, 20, 19, 18, 17]
    fit = C.lmn_vs_test_loss(_fake_run(steps, train_acc, test_acc, test_loss, lmn, l2))
    assert (fit.t_memorize, fit.t_generalize) == (20, 60) and fit.steps == [20, 30, 40, 50, 60]
    assert fit.r2_lmn == pytest.approx(1.0) and fit.slope_lmn == pytest.approx(0.5)
    assert fit.r2_l2 < 1.0
    never = _fake_run(steps, train_acc, [0] * 10, test_loss, lmn, l2)
    with pytest.raises(ValueError, match="no compression phase"):
        C.lmn_vs_test_loss(never)


def test_reproduce_entry_smoke():
    from orthoscope.zoo import reproduce as R

    out = R.REGISTRY["compression"].run(True)
    assert "first hidden layer" in out.detail and out.passed in (True, False)
