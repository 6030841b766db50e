"""The task protocol a ``Run`` relies on.

A task yields training batches from a ``torch.Generator`` that the run owns (so data order is seeded and is saved in
checkpoints) and exposes fixed evaluation sets. It knows its default loss and whether accuracy means something.

A task whose order has a position of its own (``DatasetTask``: epochs over a dataset) also has
``state_dict(generator)`` (JSON: where that generator's stream stands), ``check_state(state)`` (raises ``ValueError``
naming what cannot be resumed exactly) and ``load_state_dict(state, generator)``. ``Run.save`` stores that state in
the checkpoint beside the generator's; ``Run.load`` checks it with everything else before it changes anything
(``task_state``/``check_task_state`` below).
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


# ---- tasks with a position of their own (DatasetTask) ----------------------------------------------------------------
# A task takes part when it has ``check_state`` (``state_dict`` alone would also match an ``nn.Module``).
def _has_position(task) -> bool:
    return callable(getattr(task, "check_state", None))


def task_state(task, generator: torch.Generator) -> dict | None:
    """Where ``generator``'s stream stands in the task's order (``task.state_dict(generator)``, JSON), or None for
    tasks whose order is the generator's alone."""
    return task.state_dict(generator) if _has_position(task) else None


def check_task_state(task, state) -> None:
    """Raise ``ValueError`` when ``state`` (a checkpoint's ``task`` field) cannot resume ``task`` exactly."""
    if not _has_position(task):
        return                                  # the task's order lives in the run's generator, saved as ever
    if state is None:
        raise ValueError("is missing: the checkpoint holds no position in this task's data order (it was saved by "
                         "a run of another task), so the resumed run could not draw the batches the saved one would")
    task.check_state(state)


def load_task_state(task, state, generator: torch.Generator) -> None:
    if _has_position(task):
        task.load_state_dict(state, generator)
