"""Multitask sparse parity: exact labels, Zipf task frequencies, per-subtask probes, bad input."""
import math

import pytest
import torch

from orthoscope.zoo import sparse_parity as SP


def test_labels_are_the_parity_of_the_task_bits():
    task = SP.MultitaskSparseParity(n_tasks=10, n_bits=8, k=3, batch_size=500, seed=1)
    x, y = task.batch(torch.Generator().manual_seed(0))
    assert x.shape == (500, 18) and x.dtype == torch.float32
    code, bits = x[:, :10], x[:, 10:].long()
    assert (code.sum(1) == 1).all() and set(bits.unique().tolist()) <= {0, 1}
    t = code.argmax(1)
    for i in range(500):
        assert y[i].item() == int(bits[i, task.subsets[t[i]]].sum().item()) % 2
    for xs, ys in (task.eval_sets()["test"], (task.x_per_task, task.y_per_task)):
        ids = xs[:, :10].argmax(1)
        expect = torch.stack([xs[j, 10:][task.subsets[ids[j]]].sum() for j in range(len(xs))]) % 2
        assert (ys == expect.long()).all()


def test_subsets_are_distinct_k_subsets():
    s = SP.random_subsets(12, 6, 2, torch.Generator().manual_seed(0))
    assert s.shape == (12, 2) and len({tuple(r) for r in s.tolist()}) == 12
    assert (s[:, 0] < s[:, 1]).all() and s.max() < 6
    assert SP.random_subsets(15, 6, 2, torch.Generator()).shape == (15, 2)     # all C(6, 2) = 15 subsets


def test_task_frequencies_are_zipf_and_test_set_is_weighted_by_them():
    task = SP.MultitaskSparseParity(n_tasks=8, n_bits=6, k=2, alpha=1.4, eval_size=10_000)
    assert task.probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert task.probs[0] / task.probs[1] == pytest.approx(2 ** 1.4)
    counts = torch.bincount(task.x_test[:, :8].argmax(1), minlength=8)
    torch.testing.assert_close(counts, (task.probs * 10_000).floor().long())
    draws = torch.bincount(task.batch(torch.Generator().manual_seed(0))[0][:, :8].argmax(1), minlength=8)
    assert draws[0] > draws[-1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_bits=4, k=5), "k must lie in"),
    (dict(n_bits=4, k=0), "k must lie in"),
    (dict(n_tasks=7, n_bits=4, k=2), "exceeds the 6 distinct"),
    (dict(alpha=0.0), "Zipf exponent must be > 0"),
    (dict(alpha=-1.0), "Zipf exponent must be > 0"),
    (dict(n_train=0), "n_train"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SP.MultitaskSparseParity(**{"n_tasks": 4, "n_bits": 8, "k": 2, **kwargs})


def test_fixed_data_mode_uses_its_training_set():
    task = SP.MultitaskSparseParity(n_tasks=4, n_bits=8, k=2, n_train=50, batch_size=20)
    assert task.x_train.shape == (50, 12)
    x, _ = task.batch(torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in task.x_train.tolist()}
    assert all(tuple(r) in rows for r in x.tolist())
    assert set(task.eval_sets()) == {"train", "test"}


def test_probe_reports_bits_per_subtask():
    run = SP.train(16, n_tasks=6, n_bits=8, k=2, steps=20, batch_size=64, every=10)
    h = run.history
    per = h["subtask_loss/test"].last()
    assert per.shape == (6,)
    assert h["subtask_loss/test"].steps == [0, 10, 20]
    # an untrained 2-class model is near chance: ~1 bit per example
    assert h["loss_bits/test"].values[0] == pytest.approx(1.0, abs=0.3)
    assert SP.n_params(run.model) == 16 * 14 + 16 + 2 * 16 + 2


def test_loss_vs_width_returns_params_and_losses():
    res = SP.loss_vs_width([4, 8], n_tasks=4, n_bits=6, k=2, steps=5, batch_size=32, every=5, progress=False)
    x, y = res.points("loss")
    assert x.tolist() == [4.0, 8.0] and (y > 0).all()
    assert res.points("params")[1].tolist() == [4 * 10 + 4 + 2 * 4 + 2, 8 * 10 + 8 + 2 * 8 + 2]
    assert math.isfinite(res.records[0]["loss"])
