"""The arena's tasks: a pair (A, B) over one label space, and the digit shifts that make B from A."""
from __future__ import annotations

from typing import Mapping

import torch

from ..tasks.base import Task

SHIFTS = ("mirror", "flip", "permute", "invert")


class PairTask(Task):
    """Training data of one task, evaluated on named held-out sets of several (``eval_sets() = {"A": …, "B": …}``)."""

    def __init__(self, x_train, y_train, evals: Mapping[str, tuple], batch_size: int | None = 128,
                 default_loss: str = "cross_entropy"):
        super().__init__(batch_size=batch_size)
        self._check_batch_size()
        self.x_train, self.y_train = x_train, y_train
        self.evals, self.default_loss = dict(evals), default_loss

    def eval_sets(self):
        return self.evals


def shift_digits(x: torch.Tensor, shift: str, seed: int = 0) -> torch.Tensor:
    """Task B's inputs from 8×8 digit images ``x[N, 64]``: ``mirror`` (reverse each pixel row), ``flip`` (upside
    down), ``permute`` (a fixed random pixel permutation, the "permuted MNIST" of continual learning), ``invert``
    (``1 − x``)."""
    if shift == "mirror":
        return x.view(-1, 8, 8).flip(-1).reshape(-1, 64)
    if shift == "flip":
        return x.view(-1, 8, 8).flip(-2).reshape(-1, 64)
    if shift == "permute":
        return x[:, torch.randperm(64, generator=torch.Generator().manual_seed(seed))]
    if shift == "invert":
        return 1.0 - x
    raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")


def digits_task(shift: str | None = None, seed: int = 0, n_train: int = 1000):
    """sklearn's digits (``Digits(n_train, seed)``), with every image transformed by ``shift`` unless it is None."""
    from ..tasks import Digits

    task = Digits(n_train=n_train, seed=seed)
    if shift is not None:
        task.x_train, task.x_test = shift_digits(task.x_train, shift), shift_digits(task.x_test, shift)
    return task
