"""Universal one-third time scaling in learning peaked distributions (Liu, Liu, Pehlevan, Gore 2026;
arXiv 2602.03685; code liuyz0/TimeScaling, ``exp/exp-0.py``, ``exp-1.py``).

**Teacher.** ``x ~ N(0, I_d)`` fresh every step; logits ``z_T = W_T · rmsnorm(x) / T`` with a random
``W_T ∈ R^{V×d}`` (``nn.Linear`` default init) and a small temperature ``T`` — a *peaked* next-token distribution.

**Student.** The same head, ``z_S = W_S · rmsnorm(x)`` with ``W_S = 0`` at init and temperature 1; trained with Adam
on ``KL(p_T ‖ p_S)`` averaged over the batch (``reduction="batchmean"``).

**Claim.** Softmax + cross-entropy on peaked targets make loss and gradient vanish as power laws of the logit
scale, so the loss decays as ``KL ∝ t^(−1/3)`` once training is in the asymptotic regime — largely independent of lr
and T. We fit the slope of the held-out KL against the step on the last decade(s) of a run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..methods.base import AdamW, check_positive
from ..probes.base import Probe
from ..tasks.base import Task


def kl_soft(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """``KL(p_T ‖ p_S) = Σ_v p_T (log p_T − log p_S)``, mean over the batch (torch ``kl_div``, ``batchmean``)."""
    return F.kl_div(F.log_softmax(student_logits, -1), teacher_log_probs, reduction="batchmean", log_target=True)


class SoftmaxHead(nn.Module):
    """``x → Linear(rmsnorm(x)) / temperature`` without bias (teacher and student share this form)."""

    def __init__(self, d: int = 32, vocab: int = 128, temperature: float = 1.0, zero_init: bool = False):
        super().__init__()
        check_positive("temperature", temperature)
        self.temperature = float(temperature)
        self.head = nn.Linear(d, vocab, bias=False)
        if zero_init:
            nn.init.zeros_(self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.rms_norm(x, (x.shape[-1],))) / self.temperature


@dataclass
class PeakedTeacher(Task):
    """Gaussian inputs labelled by a fixed random teacher head at temperature ``temperature`` (soft labels:
    the teacher's log-probabilities)."""

    d: int = field(default=32, metadata={"help": "input width"})
    vocab: int = field(default=128, metadata={"help": "number of classes"})
    temperature: float = field(default=0.02, metadata={"help": "teacher temperature T (small → peaked)"})
    batch_size: int | None = field(default=1024, metadata={"help": "fresh samples per step"})
    eval_size: int = field(default=4096, metadata={"help": "fixed held-out samples"})
    seed: int = field(default=0, metadata={"help": "seed of the teacher and the held-out set"})

    default_loss = staticmethod(kl_soft)
    has_accuracy = False

    def __post_init__(self):
        check_positive("temperature", self.temperature)
        if self.batch_size is None or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int (data are sampled fresh), got {self.batch_size!r}")
        g = torch.Generator().manual_seed(self.seed)
        self.teacher = SoftmaxHead(self.d, self.vocab, self.temperature)
        bound = 1 / math.sqrt(self.d)                  # nn.Linear's default: U(−1/√d, 1/√d)
        with torch.no_grad():
            self.teacher.head.weight.copy_((torch.rand(self.vocab, self.d, generator=g) * 2 - 1) * bound)
        self.teacher.requires_grad_(False)
        self.x_test = torch.randn(self.eval_size, self.d, generator=g)
        self.y_test = self._label(self.x_test)

    @torch.no_grad()
    def _label(self, x):
        return F.log_softmax(self.teacher(x), -1)

    def batch(self, generator):
        x = torch.randn(self.batch_size, self.d, generator=generator)
        return x, self._label(x)

    def eval_sets(self):
        return {"test": (self.x_test, self.y_test)}


def log_steps(total: int, per_decade: int = 12) -> list[int]:
    """Roughly log-spaced integer steps in ``[1, total]`` (unique, increasing), always including ``total``."""
    n = max(2, int(per_decade * math.log10(max(total, 10))) + 1)
    return sorted({int(round(v)) for v in torch.logspace(0, math.log10(total), n).tolist()} | {total})


class LogSpacedKL(Probe):
    """Held-out KL (``loss/test``) at log-spaced steps — the natural grid for a power law in time."""

    name = "log_spaced_kl"

    def __init__(self, total: int, per_decade: int = 12):
        super().__init__(every=1)
        self.when = {0, *log_steps(total, per_decade)}

    @torch.no_grad()
    def __call__(self, run) -> dict:
        if run.step_count not in self.when:
            return {}
        x, y = run.task.x_test, run.task.y_test
        return {"loss/test": run.loss_fn(run.model(x), y).item()}


def train(*, temperature: float = 0.02, lr: float = 3e-3, steps: int = 20_000, batch_size: int = 1024,
          d: int = 32, vocab: int = 128, seed: int = 0, progress: bool = False):
    """One student trained on one teacher; ``run.history["loss/test"]`` holds the log-spaced KL curve."""
    from ..training.run import Run

    task = PeakedTeacher(d=d, vocab=vocab, temperature=temperature, batch_size=batch_size, seed=seed)
    student = SoftmaxHead(d, vocab, zero_init=True)
    run = Run(student, task, AdamW(lr=lr, betas=(0.9, 0.999)), probes=[LogSpacedKL(steps)], seed=seed,
              name=f"T={temperature:g}, lr={lr:g}")
    return run.train(steps, progress=progress)


def fit_time_exponent(run, start_frac: float = 0.1, method: str = "ols"):
    """Power-law fit of the held-out KL against the step over ``[start_frac · t_end, t_end]``."""
    from .scaling import fit_power_law

    series = run.history["loss/test"]
    t_end = series.steps[-1]
    pts = [(s, v) for s, v in zip(series.steps, series.values) if s >= start_frac * t_end and s > 0]
    if len(pts) < 3:
        raise ValueError(f"only {len(pts)} points after step {start_frac * t_end:.0f}; train longer")
    return fit_power_law([s for s, _ in pts], [v for _, v in pts], method=method)


def plot_kl_curves(ax, runs, fit_start_frac: float = 0.1):
    """Held-out KL against step (log-log) for each run, with its fitted late-time line and a t^(−1/3) guide."""
    for run in runs:
        s = run.history["loss/test"]
        steps = [t for t in s.steps if t > 0]
        vals = s.values[-len(steps):]
        line, = ax.plot(steps, vals, label=run.name)
        fit = fit_time_exponent(run, fit_start_frac)
        t = torch.logspace(math.log10(fit_start_frac * steps[-1]), math.log10(steps[-1]), 20).numpy()
        ax.plot(t, fit.predict(t), "--", color=line.get_color(), lw=1, label=f"slope {fit.slope:+.3f}")
    if runs:
        t_end = runs[0].history["loss/test"].steps[-1]
        v_end = runs[0].history["loss/test"].values[-1]
        t = torch.logspace(1, math.log10(t_end), 20).numpy()
        ax.plot(t, v_end * (t / t_end) ** (-1 / 3), ":", color="gray", label="t^(−1/3)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out KL(teacher ‖ student)")
    ax.legend(fontsize=7)
    return ax
