"""One-third time scaling toy: the teacher, the KL loss, log-spaced probing and the time-exponent fit."""
import math

import pytest
import torch
import torch.nn.functional as F

from orthoscope.zoo import time_scaling as TS


def test_teacher_is_peaked_normalized_and_seeded():
    task = TS.PeakedTeacher(temperature=0.01, batch_size=64, seed=3)
    x, y = task.batch(torch.Generator().manual_seed(0))
    assert x.shape == (64, 32) and y.shape == (64, 128)
    torch.testing.assert_close(y.exp().sum(-1), torch.ones(64))
    assert y.exp().max(-1).values.mean() > 0.5                            # peaked: most mass on one class
    again = TS.PeakedTeacher(temperature=0.01, batch_size=64, seed=3)
    torch.testing.assert_close(task.teacher.head.weight, again.teacher.head.weight)
    bound = 1 / math.sqrt(32)
    assert task.teacher.head.weight.abs().max() <= bound                 # nn.Linear default init range
    hot = TS.PeakedTeacher(temperature=1.0, batch_size=64, seed=3)
    assert hot._label(x).exp().max(-1).values.mean() < y.exp().max(-1).values.mean()


def test_kl_soft_matches_definition_and_vanishes_at_the_teacher():
    t = torch.randn(5, 7)
    s = torch.randn(5, 7)
    tlp = F.log_softmax(t, -1)
    expected = (tlp.exp() * (tlp - F.log_softmax(s, -1))).sum(-1).mean()
    torch.testing.assert_close(TS.kl_soft(s, tlp), expected)
    assert TS.kl_soft(t + 3.0, tlp).abs().item() < 1e-6                   # logits shifted by a constant: same p


def test_student_starts_at_zero_and_head_uses_rmsnorm():
    student = TS.SoftmaxHead(zero_init=True)
    assert student.head.weight.abs().sum() == 0
    head = TS.SoftmaxHead(4, 3, temperature=0.5)
    x = torch.randn(2, 4)
    expected = head.head(x / x.pow(2).mean(-1, keepdim=True).add(torch.finfo(x.dtype).eps).sqrt()) / 0.5
    torch.testing.assert_close(head(x), expected)
    with pytest.raises(ValueError, match="temperature"):
        TS.SoftmaxHead(temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        TS.PeakedTeacher(temperature=-1.0)


def test_log_steps_are_log_spaced_and_end_at_total():
    steps = TS.log_steps(1000, per_decade=10)
    assert steps[0] == 1 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert 25 <= len(steps) <= 32


def test_short_run_records_log_spaced_kl_and_fits():
    run = TS.train(temperature=0.01, lr=0.1, steps=60, batch_size=128, seed=0)
    series = run.history["loss/test"]
    assert series.steps[0] == 0 and series.steps[-1] == 60
    assert set(series.steps[1:]) == set(TS.log_steps(60))
    assert series.values[-1] < series.values[0]                          # learning happened
    fit = TS.fit_time_exponent(run, start_frac=0.1)
    assert fit.slope < 0
    with pytest.raises(ValueError, match="train longer"):
        TS.fit_time_exponent(run, start_frac=0.99)
