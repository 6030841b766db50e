"""Effective-theory toy: exact data, RQI on constructed embeddings, the phase rule, and the batched ensemble."""
import itertools

import pytest
import torch

from orthoscope import Run
from orthoscope.zoo import effective_theory as ET


def test_addition_pairs_complete_and_split_without_overlap():
    pairs = ET.addition_pairs(10)
    assert pairs.shape == (55, 2)
    assert {tuple(p) for p in pairs.tolist()} == {(i, j) for i in range(10) for j in range(i, 10)}
    task = ET.ToyAddition(train_num=45, seed=3)
    tr = {tuple(p) for p in task.x_train.tolist()}
    te = {tuple(p) for p in task.x_test.tolist()}
    assert len(tr) == 45 and len(te) == 10 and not tr & te and len(tr | te) == 55
    assert (task.y_train == task.x_train.sum(1)).all() and (task.y_test == task.x_test.sum(1)).all()
    assert task.templates.shape == (19, 30)


def test_bad_inputs():
    with pytest.raises(ValueError, match="train_num"):
        ET.ToyAddition(train_num=55)
    with pytest.raises(ValueError, match="p must be"):
        ET.addition_pairs(1)
    with pytest.raises(ValueError, match="at least one"):
        ET.phase_diagram([], [0.0], progress=False)
    with pytest.raises(ValueError, match="tau"):
        ET.classify_phase(1, 2, tau=0)


def test_parallelograms_are_exactly_the_equal_sum_quadruples():
    quads = ET.parallelograms(6)
    brute = {(i, n, j, m) for i, j, m, n in itertools.product(range(6), repeat=4)
             if i < j <= m < n and i + n == j + m}
    assert {tuple(q) for q in quads.tolist()} == brute


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_rqi_is_one_for_a_linear_embedding(dim):
    k = torch.arange(10.0)[:, None]
    a, b = torch.randn(1, dim), torch.randn(1, dim)
    assert ET.rqi(k * a + b) == 1.0
    assert ET.rqi(5.0 * (k * a + b) - 2.0) == 1.0                      # invariant to scale and shift


def test_rqi_is_low_for_a_scrambled_embedding():
    e = torch.arange(10.0)[torch.tensor([3, 7, 0, 9, 1, 5, 8, 2, 6, 4])][:, None]
    assert ET.rqi(e) < 0.3
    assert ET.rqi(torch.zeros(10, 1)) == 1.0                              # degenerate: all distances zero


def test_ideal_accuracy_bounds():
    full_minus_one = ET.ToyAddition(train_num=54, seed=0)
    assert ET.ideal_test_accuracy(full_minus_one) == 1.0
    assert ET.ideal_test_accuracy(ET.ToyAddition(train_num=5, seed=0)) == 0.0


@pytest.mark.parametrize("t_train, t_test, phase", [
    (100, 500, "comprehension"), (100, 1100, "grokking"), (100, None, "memorization"), (None, None, "confusion"),
    (None, 300, "confusion")])
def test_phase_rule(t_train, t_test, phase):
    assert ET.classify_phase(t_train, t_test, tau=1000) == phase


def test_model_adds_embeddings_and_loss_is_template_mse():
    task = ET.ToyAddition(seed=0)
    torch.manual_seed(0)
    model = ET.ToyAdditionModel(reprs_dim=2)
    x = task.x_train[:4]
    e = model.embed.weight
    torch.testing.assert_close(model(x), model.decoder(e[x[:, 0]] + e[x[:, 1]]))
    out = model(x)
    torch.testing.assert_close(task.default_loss(out, task.y_train[:4]), ((out - task.templates[task.y_train[:4]]) ** 2).mean())
    assert (task.predict(task.templates[task.y_train[:4]]) == task.y_train[:4]).all()


def test_separate_optimizer_groups():
    model = ET.ToyAdditionModel()
    opt = ET.SeparateAdamW(embed_lr=1e-3, decoder_lr=1e-4, decoder_weight_decay=2.0).make_optimizer(model)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 2.0]
    assert opt.param_groups[0]["params"][0] is model.embed.weight


def test_ensemble_members_equal_separate_runs():
    task = ET.ToyAddition(seed=0)
    torch.manual_seed(0)
    base = ET.ToyAdditionModel(width=16)
    grid = [(1e-3, 0.0), (3e-3, 5.0)]
    ens = ET.ToyAdditionEnsemble(base, len(grid))
    method = ET.BatchedSeparateAdamW(embed_lr=1e-3, decoder_lrs=[g[0] for g in grid],
                                     decoder_weight_decays=[g[1] for g in grid])
    Run(ens, task, method, loss=ET.ensemble_loss(task), probes=[]).train(15, progress=False)
    for k, (lr, wd) in enumerate(grid):
        single = ET.ToyAdditionModel(width=16)
        single.load_state_dict(base.state_dict())
        Run(single, task, ET.SeparateAdamW(embed_lr=1e-3, decoder_lr=lr, decoder_weight_decay=wd),
            probes=[]).train(15, progress=False)
        torch.testing.assert_close(ens.embed[k], single.embed.weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(ens.weights[1][k], single.decoder.layers[1].weight.T, rtol=1e-4, atol=1e-6)


def test_probe_and_threshold_steps():
    run = ET.train(steps=40, seed=0, eval_every=10)
    h = run.history
    assert h["acc/train"].steps == [0, 10, 20, 30, 40]
    assert 0.0 <= h["rqi/embed"].last() <= 1.0
    t = ET.threshold_steps(run)
    assert set(t) == {"train", "test", "rqi"}


def test_phase_diagram_shape_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = ET.phase_diagram([1e-4, 1e-2], [0.0], steps=40, eval_every=10, progress=False)
    assert len(d.phases) == 1 and len(d.phases[0]) == 2
    assert sum(d.counts().values()) == 2 and set(d.counts()) == set(ET.PHASES)
    fig, ax = plt.subplots()
    ET.plot_phase_diagram(ax, d)
    assert ax.get_xlabel() == "decoder learning rate"
    plt.close(fig)
