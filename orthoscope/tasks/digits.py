"""sklearn's 8×8 handwritten digits (1,797 images shipped inside scikit-learn: nothing is downloaded).

Inputs are flattened pixels scaled to [0, 1] (``[N, 64]`` float32), labels 0–9. The split is seeded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import Task


@dataclass
class Digits(Task):
    n_train: int = field(default=1000, metadata={"help": "number of training images (the rest are held out)"})
    seed: int = field(default=0, metadata={"help": "seed of the train/test split"})

    def __post_init__(self):
        from sklearn.datasets import load_digits

        self._check_batch_size()
        data = load_digits()
        x = torch.tensor(data.data, dtype=torch.float32) / 16.0
        y = torch.tensor(data.target, dtype=torch.long)
        if not 0 < self.n_train < len(x):
            raise ValueError(f"n_train must lie in (0, {len(x)}), got {self.n_train!r}")
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
        self.x_train, self.y_train = x[perm[: self.n_train]], y[perm[: self.n_train]]
        self.x_test, self.y_test = x[perm[self.n_train:]], y[perm[self.n_train:]]

    n_classes = 10
    d_in = 64
