"""Omnigrok: the norm constraint, init scale, grokking-delay bookkeeping and the LU sweep."""
import math
from types import SimpleNamespace

import pytest
import torch

from orthoscope import History
from orthoscope.zoo import omnigrok as OG


def test_init_scale_multiplies_the_global_norm():
    n1 = OG.global_norm(OG.digits_mlp(1.0, width=32, seed=3))
    n8 = OG.global_norm(OG.digits_mlp(8.0, width=32, seed=3))
    assert n8 == pytest.approx(8 * n1, rel=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        OG.digits_mlp(0.0)


def test_scale_to_norm_is_exact_and_rejects_zero():
    model = torch.nn.Linear(3, 4)
    direction = [p.detach().clone() for p in model.parameters()]
    OG.scale_to_norm_(model, 2.5)
    assert OG.global_norm(model) == pytest.approx(2.5, rel=1e-6)
    c = None
    for p, d in zip(model.parameters(), direction):                       # same direction, rescaled
        ratio = (p / d)[d.abs() > 1e-6]
        c = ratio[0] if c is None else c
        torch.testing.assert_close(ratio, torch.full_like(ratio, c.item()))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    with pytest.raises(ValueError, match="all zero"):
        OG.scale_to_norm_(model, 1.0)
    with pytest.raises(ValueError, match="norm"):
        OG.ConstrainedNorm(0.0)


def test_constrained_training_holds_the_norm():
    run = OG.train_digits(alpha=1.0, weight_decay=0.0, steps=30, width=16, constrained_norm=7.0, eval_every=10)
    h = run.history
    assert all(v == pytest.approx(7.0, rel=1e-5) for v in h["weight_norm/total"].values)
    assert run.name == "‖θ‖=7"


def test_weight_decay_shrinks_a_large_init():
    run = OG.train_digits(alpha=8.0, weight_decay=1.0, lr=1e-2, steps=40, width=16, eval_every=20)
    norms = run.history["weight_norm/total"].values
    assert norms[-1] < norms[0]


def fake_run(steps, train, test):
    h = History()
    for s, a, b in zip(steps, train, test):
        h.log(s, {"acc/train": a, "acc/test": b})
    return SimpleNamespace(history=h)


def test_grokking_delay_reads_first_crossings():
    run = fake_run([0, 100, 200, 1000, 2000], [0.1, 0.995, 1.0, 1.0, 1.0], [0.1, 0.3, 0.4, 0.5, 0.95])
    assert OG.grokking_delay(run) == {"t_train": 100, "t_test": 2000, "ratio": 20.0}
    never = fake_run([0, 10], [0.2, 0.3], [0.1, 0.1])
    assert OG.grokking_delay(never) == {"t_train": None, "t_test": None, "ratio": None}


def test_lu_landscape_structure_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lu = OG.lu_landscape([0.5, 2.0], steps=20, width=16, progress=False)
    assert len(lu.norms) == 2 and lu.norms[1] == pytest.approx(4 * lu.norms[0])
    assert lu.norms[0] == pytest.approx(0.5 * lu.init_norm)
    assert lu.goldilocks() in lu.norms
    assert all(math.isfinite(v) for v in lu.train_loss + lu.test_loss)
    fig, ax = plt.subplots()
    OG.plot_lu(ax, lu)
    assert ax.get_xscale() == "log"
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        OG.lu_landscape([], progress=False)


def test_modular_runs_with_and_without_the_constraint():
    free = OG.train_modular(p=11, steps=10, d_embed=8, hidden=16, eval_every=5)
    fixed = OG.train_modular(p=11, steps=10, d_embed=8, hidden=16, alpha=0.8, constrained_norm=True, eval_every=5)
    norms = fixed.history["weight_norm/total"].values
    assert max(norms) == pytest.approx(min(norms), rel=1e-5)
    assert "acc/test" in free.history and free.name == "α=1, wd=1"


def test_log_spaced_evaluation_runs_only_at_its_steps():
    run = OG.train_digits(alpha=8.0, weight_decay=0.01, steps=100, width=16, per_decade=4)
    from orthoscope.zoo.time_scaling import log_steps

    expected = [0, *log_steps(100, 4)]
    assert run.history["acc/test"].steps == expected
    assert run.history["weight_norm/total"].steps == expected
    assert expected[-1] == 100 and len(expected) < 12                     # 2 decades × 4 per decade (+ ends)


def test_at_steps_wraps_any_probe():
    from orthoscope.probes import Probe

    calls = []

    class Count(Probe):
        name = "count"

        def __call__(self, run):
            calls.append(run.step_count)
            return {"n": float(run.step_count)}

    probe = OG.AtSteps(Count(), [3, 5])
    assert probe.every == 1 and probe.name == "count@steps"
    for step in range(7):
        out = probe(SimpleNamespace(step_count=step))
        assert out == ({"n": float(step)} if step in (0, 3, 5) else {})
    assert calls == [0, 3, 5]
