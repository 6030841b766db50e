"""The task protocol a ``Run`` relies on.

A task yields training batches from a ``torch.Generator`` that the run owns (so data order is seeded and is saved in
checkpoints) and exposes fixed evaluation sets. It knows its default loss and whether accuracy means something.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Task:
    """Base for in-memory supervised tasks: subclasses fill ``x_train, y_train, x_test, y_test`` in ``__post_init__``."""

    batch_size: int | None = field(default=None, metadata={"help": "training batch size (None: full batch)"})

    default_loss = "cross_entropy"
    has_accuracy = True

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch. Full batch when ``batch_size`` is None (no randomness is consumed then)."""
        n = len(self.x_train)
        if self.batch_size is None or self.batch_size >= n:
            return self.x_train, self.y_train
        idx = torch.randint(0, n, (self.batch_size,), generator=generator)
        return self.x_train[idx], self.y_train[idx]

    def eval_sets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test)}

    def config(self) -> dict:
        from dataclasses import fields

        return {"task": type(self).__name__, **{f.name: getattr(self, f.name) for f in fields(self)}}

    def _check_batch_size(self):
        from ..core.validate import check_number

        if self.batch_size is not None:
            check_number("batch_size", self.batch_size, low=1, integer=True)
