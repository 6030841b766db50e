"""Tasks: modular tables are complete and exact, splits are disjoint, covering and seeded; bad input is refused."""
import math

import pytest
import torch

from orthoscope.tasks import Digits, ModularArithmetic
from orthoscope.tasks.modular import is_prime, modular_table


@pytest.mark.parametrize("op, fn", [("+", lambda a, b, p: (a + b) % p), ("-", lambda a, b, p: (a - b) % p),
                                    ("*", lambda a, b, p: (a * b) % p)])
@pytest.mark.parametrize("p", [2, 7, 12])
def test_ring_tables_are_complete_and_exact(op, fn, p):
    pairs, c = modular_table(p, op)
    assert len(pairs) == p * p
    assert {tuple(r) for r in pairs.tolist()} == {(a, b) for a in range(p) for b in range(p)}
    for (a, b), value in zip(pairs.tolist(), c.tolist()):
        assert value == fn(a, b, p)
    assert c.min() >= 0 and c.max() < p


@pytest.mark.parametrize("p", [2, 5, 13])
def test_division_table_inverts_multiplication(p):
    pairs, c = modular_table(p, "/")
    assert len(pairs) == p * (p - 1)
    assert {tuple(r) for r in pairs.tolist()} == {(a, b) for a in range(p) for b in range(1, p)}
    for (a, b), value in zip(pairs.tolist(), c.tolist()):
        assert (b * value) % p == a and 0 <= value < p


def test_primes():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


@pytest.mark.parametrize("op", ["+", "/"])
def test_split_is_disjoint_covering_and_seeded(op):
    task = ModularArithmetic(p=11, op=op, train_frac=0.3, seed=5)
    pairs, labels = modular_table(11, op)
    n = len(pairs)
    train = {tuple(r) for r in task.x_train.tolist()}
    test = {tuple(r) for r in task.x_test.tolist()}
    assert len(train) == len(task.x_train) == round(0.3 * n) and len(test) == len(task.x_test)
    assert not train & test
    assert train | test == {tuple(r) for r in pairs.tolist()}
    table = dict(zip(map(tuple, pairs.tolist()), labels.tolist()))
    assert all(table[tuple(x)] == y for x, y in zip(task.x_train.tolist(), task.y_train.tolist()))
    assert all(table[tuple(x)] == y for x, y in zip(task.x_test.tolist(), task.y_test.tolist()))
    again = ModularArithmetic(p=11, op=op, train_frac=0.3, seed=5)
    assert torch.equal(again.x_train, task.x_train)
    other = ModularArithmetic(p=11, op=op, train_frac=0.3, seed=6)
    assert not torch.equal(other.x_train, task.x_train)


def test_equals_token_and_sizes():
    task = ModularArithmetic(p=7, train_frac=0.5, equals_token=True)
    assert task.x_train.shape[1] == 3 and (task.x_train[:, 2] == 7).all()
    assert task.vocab_size == 8 and task.n_tokens == 3 and task.n_classes == 7
    plain = ModularArithmetic(p=7, train_frac=0.5)
    assert plain.vocab_size == 7 and plain.n_tokens == 2


def test_batches_full_and_seeded():
    task = ModularArithmetic(p=7, train_frac=0.5)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    x, y = task.batch(g)
    assert x is task.x_train and torch.equal(g.get_state(), state)   # a full batch draws no random numbers
    mini = ModularArithmetic(p=7, train_frac=0.5, batch_size=4)
    a = mini.batch(torch.Generator().manual_seed(1))
    b = mini.batch(torch.Generator().manual_seed(1))
    assert a[0].shape == (4, 2) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(p=1), r"p must be an integer ≥ 2, got 1"),
    (dict(p=-5), r"p must be an integer ≥ 2, got -5"),
    (dict(p=7.0), r"p must be an integer ≥ 2, got 7.0"),
    (dict(p=12, op="/"), r"op '/' needs a prime p .*12 is not prime"),
    (dict(p=7, op="^"), r"op must be one of \('\+', '-', '\*', '/'\), got '\^'"),
    (dict(p=7, train_frac=0.0), r"train_frac must lie in \(0, 1\), got 0.0"),
    (dict(p=7, train_frac=1.0), r"train_frac must lie in \(0, 1\), got 1.0"),
    (dict(p=7, train_frac=-0.2), r"train_frac must lie in \(0, 1\), got -0.2"),
    (dict(p=7, train_frac=math.nan), r"train_frac must be finite, got nan"),
    (dict(p=7, batch_size=0), r"batch_size must be ≥ 1, got 0"),
])
def test_bad_modular_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModularArithmetic(**kwargs)


def test_modular_config_round_trips():
    task = ModularArithmetic(p=7, op="*", train_frac=0.4, seed=2)
    cfg = task.config()
    assert cfg == {"task": "ModularArithmetic", "batch_size": None, "p": 7, "op": "*", "train_frac": 0.4, "seed": 2,
                   "equals_token": False}


def test_digits_split():
    task = Digits(n_train=1200, seed=3)
    assert task.x_train.shape == (1200, 64) and task.x_test.shape == (597, 64)
    assert task.x_train.dtype == torch.float32 and 0.0 <= task.x_train.min() and task.x_train.max() <= 1.0
    assert set(task.y_train.tolist()) == set(range(10)) and set(task.y_test.tolist()) == set(range(10))
    from sklearn.datasets import load_digits

    data = load_digits()
    full = torch.tensor(data.data, dtype=torch.float32) / 16.0
    # train and test together are exactly the shipped images (as multisets of rows)
    from collections import Counter

    both = torch.cat([task.x_train, task.x_test])
    assert Counter(map(tuple, both.tolist())) == Counter(map(tuple, full.tolist()))
    assert torch.equal(torch.sort(torch.cat([task.y_train, task.y_test])).values,
                       torch.sort(torch.tensor(data.target)).values)
    assert torch.equal(Digits(n_train=1200, seed=3).x_train, task.x_train)
    assert not torch.equal(Digits(n_train=1200, seed=4).x_train, task.x_train)
    for bad in (0, 1797, -1):
        with pytest.raises(ValueError, match=rf"n_train must lie in \(0, 1797\), got {bad}"):
            Digits(n_train=bad)
