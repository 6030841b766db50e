"""The arena itself: pretrain once on A, finetune copies on B with each method, collect the results."""
from __future__ import annotations

import copy
import time
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ..methods.base import AdamW, Method
from ..probes import Evaluate, Spectrum
from ..probes.geometry import ActivationGeometry, CapabilityDrift, WeightGeometry
from ..training.run import Run
from .interpolation import interpolation_models
from .results import ArenaResult, _transpose, count_trainable, evaluate, sora_summary, summarize_geometry
from .tasks import PairTask, digits_task


class Arena:
    """Pretrain once on task A, finetune copies on task B with each method, compare (module docstring).

    Args:
        task_a, task_b: tasks with ``x_train, y_train, x_test, y_test`` and one label space (the model is shared).
        make_model: builds the (seeded) model to pretrain.
        pretrain: the pretraining method (default ``AdamW(lr=3e-3, weight_decay=0.01)``).
        pretrain_steps, finetune_steps, batch_size: schedule (batches of task A, then of task B).
        eval_every: steps between evaluations on A and B during the finetunes.
        geometry_every: steps between geometry probes (default: once at the start and once at the end).
        geometry_tokens: rows of A's and B's test inputs used for activation geometry and CSD.
        seed: seeds the model, the data order and the finetunes.
        progress: a progress bar for the pretraining and for each finetune.
    """

    def __init__(self, task_a, task_b, make_model: Callable[[], nn.Module], *, pretrain: Method | None = None,
                 pretrain_steps: int = 400, finetune_steps: int = 200, batch_size: int | None = 128,
                 eval_every: int = 20, geometry_every: int | None = None, geometry_tokens: int = 512,
                 seed: int = 0, progress: bool = True):
        for name, value in (("pretrain_steps", pretrain_steps), ("finetune_steps", finetune_steps),
                            ("eval_every", eval_every), ("geometry_tokens", geometry_tokens)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.task_a, self.task_b, self.make_model = task_a, task_b, make_model
        self.pretrain_method = pretrain if pretrain is not None else AdamW(lr=3e-3, weight_decay=0.01)
        self.pretrain_steps, self.finetune_steps, self.batch_size = pretrain_steps, finetune_steps, batch_size
        self.eval_every, self.seed, self.progress = eval_every, seed, progress
        self.geometry_every = geometry_every or finetune_steps
        self.evals = {"A": (task_a.x_test, task_a.y_test), "B": (task_b.x_test, task_b.y_test)}
        self.probe_inputs = {k: x[:geometry_tokens] for k, (x, _) in self.evals.items()}
        self.pretrain_run: Run | None = None
        self._base: nn.Module | None = None

    @classmethod
    def digits(cls, shift: str = "permute", hidden=(128, 128), smoke: bool = False, **kwargs) -> "Arena":
        """A = 8×8 digits, B = the same digits transformed by ``shift`` (``shift_digits``); an MLP 64→hidden→10.
        ``smoke`` shortens the schedule (150 pretrain / 80 finetune steps)."""
        from ..models import MLP

        seed = kwargs.get("seed", 0)
        if smoke:
            kwargs = {"pretrain_steps": 150, "finetune_steps": 80, "eval_every": 10, **kwargs}

        def make():
            torch.manual_seed(seed)
            return MLP(64, tuple(hidden), 10)

        return cls(digits_task(None, seed), digits_task(shift, seed), make, **kwargs)

    def retarget(self, task_b) -> "Arena":
        """An arena with the same task A, schedule and (already pretrained) base, finetuning on ``task_b`` instead:
        several targets then share one base model (as the finetunes that OrthoMerge merges must)."""
        other = copy.copy(self)
        other.task_b = task_b
        other.evals = {"A": self.evals["A"], "B": (task_b.x_test, task_b.y_test)}
        other.probe_inputs = {k: x[:len(self.probe_inputs["A"])] for k, (x, _) in other.evals.items()}
        self.base()                      # pretrain once, here, so that both arenas hold the same base object
        other.pretrain_run, other._base = self.pretrain_run, self._base
        return other

    # ---- stages ---------------------------------------------------------------------------------------------------
    def base(self) -> nn.Module:
        """The model pretrained on A (trained on first use, then cached; never modified — finetunes get copies)."""
        if self._base is None:
            task = PairTask(self.task_a.x_train, self.task_a.y_train, self.evals, self.batch_size)
            run = Run(self.make_model(), task, self.pretrain_method, probes=[Evaluate(self.eval_every)],
                      seed=self.seed, name="pretrain on A")
            run.train(self.pretrain_steps, progress=self.progress)
            self.pretrain_run, self._base = run, copy.deepcopy(run.model).eval()
            for p in self._base.parameters():
                p.requires_grad_(False)
        return self._base

    def base_scores(self) -> dict:
        return evaluate(self.base(), self.evals)

    def finetune(self, method: Method, name: str | None = None, steps: int | None = None) -> ArenaResult:
        """Finetune a copy of the base on B with ``method``; geometry is recorded against the base."""
        base = self.base()
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.requires_grad_(True)
        every = self.geometry_every
        probes = [Evaluate(self.eval_every), Spectrum(self.eval_every), WeightGeometry(base, every=every),
                  ActivationGeometry(base, self.probe_inputs, every=every),
                  CapabilityDrift(base, self.probe_inputs, every=every)]
        task = PairTask(self.task_b.x_train, self.task_b.y_train, self.evals, self.batch_size)
        t0 = time.perf_counter()
        run = Run(model, task, method, probes=probes, seed=self.seed, name=name or method.label())
        trainable = count_trainable(run.model)
        run.train(steps or self.finetune_steps, progress=self.progress)
        seconds = time.perf_counter() - t0
        return ArenaResult(run.name, run, trainable, self.base_scores(), evaluate(run.model, self.evals),
                           summarize_geometry(run.history), seconds, sora_summary(run.model))

    def compare(self, methods: Mapping[str, Method] | Sequence[Method]) -> list[ArenaResult]:
        """``finetune`` every method (a ``{name: method}`` dict, or a list labelled by ``method.label()``)."""
        items = methods.items() if isinstance(methods, Mapping) else [(m.label(), m) for m in methods]
        return [self.finetune(m, name) for name, m in items]

    def interpolate(self, result: ArenaResult, alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                    mode: str = "dense") -> dict:
        """Scores along the path from the base (α = 0) to the finetune (α = 1): ``{"alpha": […], "A": […], "B": […]}``
        (``mode`` = ``"dense"`` or ``"generator"``, module docstring)."""
        return {"alpha": [float(a) for a in alphas], **_transpose(
            [evaluate(model, self.evals) for model in interpolation_models(self.base(), result.model, alphas, mode)])}

    @staticmethod
    def table(results: Sequence[ArenaResult]):
        """A pandas DataFrame, one row per finetune: budget, scores, plasticity, forgetting, geometry, time."""
        import pandas as pd

        return pd.DataFrame([r.row() for r in results]).set_index("method")


def standard_methods() -> dict[str, Method]:
    """The arena's default line-up for ``Arena.digits`` (MLP 64→128→128→10), adapters on every linear layer at
    comparable budgets — LoRA r=4: 2,344; SoRA r=8: 4,712 before its gates prune it (λ = 1: the soft threshold
    lr·λ = 0.01 per step zeroes gate entries within a few hundred steps); OFT b=16: 2,400;
    BOFT b=8 × 2 butterfly factors: 2,506 (incl. 266 output scales); QOFT b=16 over a 4-bit base: 2,400 trainable
    parameters — plus full finetuning (26,122). Learning rates were picked so that each reaches a similar gain on
    the permuted digits in 200 steps (docs/arena.md)."""
    from ..adapters import BOFT, OFT, QOFT, LoRA, SoRA

    return {"full": AdamW(lr=1e-3), "LoRA r4": LoRA(rank=4, alpha=8, lr=1e-2),
            "SoRA r8": SoRA(rank=8, alpha=16, lr=1e-2, sparse_lambda=1.0), "OFT b16": OFT(block=16, lr=3e-3),
            "BOFT b8×2": BOFT(block=8, factors=2, lr=3e-3), "QOFT b16 4-bit": QOFT(block=16, bits=4, group_size=32,
                                                                                   lr=3e-3)}
