"""Clock & Pizza: the two metrics on constructed models with known answers, and the probe on a real run."""
import pytest
import torch
from torch import nn

from orthoscope.zoo import clock_pizza as CP


class Combine(nn.Module):
    """logits = head(f(E_a, E_b)) with ``f`` the sum (symmetric) or the difference (antisymmetric)."""

    def __init__(self, p=7, d=5, how="sum"):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(p, d)
        self.head = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, p))
        self.how = how

    def forward(self, x):
        e = self.embed(x)                                                   # [B, 2, d]
        z = e[:, 0] + e[:, 1] if self.how == "sum" else e[:, 0] - e[:, 1]
        return self.head(z)


def test_gradient_symmetricity_of_a_symmetric_model_is_one():
    abc = CP.triples(7, 50)
    assert CP.gradient_symmetricity(Combine(how="sum"), abc) == pytest.approx(1.0, abs=1e-6)
    assert CP.gradient_symmetricity(Combine(how="diff"), abc) == pytest.approx(-1.0, abs=1e-6)


def test_gradient_symmetricity_leaves_no_hook_and_checks_shapes():
    model = Combine()
    CP.gradient_symmetricity(model, CP.triples(7, 5))
    assert not model.embed._forward_hooks

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Sequential(nn.Embedding(7, 5), nn.Flatten())  # outputs [B, 10], not [B, 2, d]
            self.head = nn.Linear(10, 7)

        def forward(self, x):
            return self.head(self.embed(x))

    with pytest.raises(ValueError, match=r"\[B, 2, d\]"):
        CP.gradient_symmetricity(Flat(), CP.triples(7, 5))
    from orthoscope.models import MLP

    torch.manual_seed(0)                                                  # works on an embedding MLP too
    assert -1 <= CP.gradient_symmetricity(MLP(vocab_size=7, n_tokens=2, d_embed=4, d_out=7), CP.triples(7, 9)) <= 1


def test_triples_are_distinct_and_in_range():
    t = CP.triples(5, 60, seed=1)
    assert t.shape == (60, 3) and len({tuple(r) for r in t.tolist()}) == 60
    assert t.min() >= 0 and t.max() < 5
    assert CP.triples(3, 1000).shape == (27, 3)


def test_distance_irrelevance_on_constructed_logits():
    p = 11
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    only_sum = torch.cos(2 * torch.pi * ((a + b) % p) / p)                # clock-like: depends on a + b only
    only_diff = torch.cos(2 * torch.pi * ((b - a) % p) / p)               # pizza-like: depends on b − a only
    assert CP.distance_irrelevance(only_sum) == pytest.approx(1.0)
    assert CP.distance_irrelevance(only_diff) == pytest.approx(0.0, abs=1e-12)
    mixed = CP.distance_irrelevance(only_sum + only_diff)
    assert 0.3 < mixed < 0.9
    with pytest.raises(ValueError, match="square"):
        CP.distance_irrelevance(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="constant"):
        CP.distance_irrelevance(torch.ones(3, 3))


def test_correct_logit_matrix_reads_the_correct_class():
    class Oracle(nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 5)
            out[torch.arange(len(x)), (x[:, 0] + x[:, 1]) % 5] = (10 * x[:, 0] + x[:, 1]).float()
            return out

    L = CP.correct_logit_matrix(Oracle(), 5)
    a, b = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    torch.testing.assert_close(L, (10 * a + b).float())


def test_model_is_the_papers_shape():
    m = CP.make_model(p=13, attn_rate=0.3, d_model=16)
    assert m.cfg.layer_norm is False and m.cfg.causal is False and m.cfg.attn_rate == 0.3 and m.cfg.d_mlp == 64
    assert m(torch.tensor([[1, 2], [3, 4]])).shape == (2, 13)
    with pytest.raises(ValueError, match="attn_rate"):
        CP.train(attn_rate=1.5, steps=1)


def test_short_run_records_metrics_and_warmup():
    run = CP.train(attn_rate=0.5, p=11, d_model=16, steps=20, eval_every=10, probe_every=10, lr=1e-3)
    h = run.history
    assert h["grad_sym/embed"].steps == [0, 10, 20]
    assert 0.0 <= h["dist_irr/embed"].last() <= 1.5
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    from orthoscope.zoo.common import ScheduledAdamW

    warm = ScheduledAdamW(lr=1e-3, warmup=10).interventions()[0]
    assert warm.value(0) == pytest.approx(1e-4) and warm.value(50) == pytest.approx(1e-3)
    assert warm.value(10 ** 6) == pytest.approx(1e-3)
    cosine = ScheduledAdamW(lr=1e-3, total=100, min_ratio=0.1).interventions()[0]
    assert cosine.value(99) == pytest.approx(1e-4)


def test_the_p59_table_is_complete_and_split_without_overlap():
    from orthoscope.tasks import ModularArithmetic

    task = ModularArithmetic(p=59, train_frac=0.8, seed=0)
    tr = {tuple(r) for r in task.x_train.tolist()}
    te = {tuple(r) for r in task.x_test.tolist()}
    assert len(tr) + len(te) == 59 * 59 and not tr & te
    assert tr | te == {(a, b) for a in range(59) for b in range(59)}
    assert len(tr) == round(0.8 * 59 * 59)
    x = torch.cat([task.x_train, task.x_test])
    y = torch.cat([task.y_train, task.y_test])
    assert (y == (x[:, 0] + x[:, 1]) % 59).all()
