"""Grokking as compression (Liu, Zhong & Tegmark 2023; arXiv 2310.05918): the linear mapping number (LMN) falls
between memorization and generalization, linearly with the test loss.

**Claim** (abstract): grokking is compression. The LMN — how many distinct linear maps the network applies to the
samples, a generalized count of linear regions — falls during the "compression phase" after the training set is
memorized and before the test set is learned, and there it is *linearly* related to the test loss (the L2 norm is
only related nonlinearly). The paper's networks are three-layer fully connected SiLU networks; its tasks are modular
addition, the permutation group S5 and multi-digit XOR.

**The LMN here is a reconstruction** — from the IAIFI summary of the paper, not from the paper's text or code (none
was recoverable): see ``orthoscope.probes.compression`` for the definition and every choice it leaves open.

**Our setting.** Modular addition ``(a + b) mod p`` with inputs ``concat(onehot(a), onehot(b))`` (continuous inputs,
so the straight path between two samples is defined), a three-layer SiLU MLP ``2p → w → w → p``, cross-entropy,
full-batch AdamW with weight decay (which makes the net grok). The paper's widths, p, data fraction, optimizer and
step counts were not recovered; ours are chosen to grok within a CPU budget (``train``'s defaults). The LMN is
measured on a fixed set of training inputs.

**The compression phase** (``compression_phase``): from the first evaluation with train accuracy ≥ 0.99 (memorized)
to the first with test accuracy ≥ 0.9 (generalized). ``lmn_vs_test_loss`` fits test loss = a·LMN + b over the
evaluations inside it and reports R², with the same fit against the L2 norm of the parameters for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..methods.base import check_positive
from ..probes.base import Probe
from ..probes.compression import LinearMappingNumber
from ..tasks.base import Task


@dataclass
class OneHotModularAddition(Task):
    """``(a + b) mod p`` over the full table, inputs ``concat(onehot(a), onehot(b))`` (float ``[N, 2p]``), a seeded
    ``train_frac`` split; full batch unless ``batch_size`` is given."""

    p: int = field(default=31, metadata={"help": "modulus"})
    train_frac: float = field(default=0.5, metadata={"help": "fraction of the p² pairs used for training"})
    seed: int = field(default=0, metadata={"help": "seed of the split"})

    def __post_init__(self):
        if not isinstance(self.p, int) or self.p < 2:
            raise ValueError(f"p must be an int ≥ 2, got {self.p!r}")
        if not 0.0 < self.train_frac < 1.0:
            raise ValueError(f"train_frac must lie in (0, 1), got {self.train_frac!r}")
        self._check_batch_size()
        a, b = torch.meshgrid(torch.arange(self.p), torch.arange(self.p), indexing="ij")
        a, b = a.reshape(-1), b.reshape(-1)
        x = torch.cat([F.one_hot(a, self.p), F.one_hot(b, self.p)], 1).float()
        y = (a + b) % self.p
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        n_train = max(1, min(len(y) - 1, round(self.train_frac * len(y))))
        self.x_train, self.y_train = x[perm[:n_train]], y[perm[:n_train]]
        self.x_test, self.y_test = x[perm[n_train:]], y[perm[n_train:]]


class ParameterNorm(Probe):
    """``l2/model``: the L2 norm of all parameters (the complexity measure the paper compares the LMN with)."""

    name = "parameter_norm"

    @torch.no_grad()
    def __call__(self, run) -> dict:
        return {"l2/model": float(torch.sqrt(sum((p.double() ** 2).sum() for p in run.model.parameters())))}


def make_model(p: int, width: int = 128, seed: int = 0, init_scale: float = 1.0):
    """Three linear layers with SiLU between them: ``2p → width → width → p``."""
    from ..models import MLP

    torch.manual_seed(seed)
    return MLP(2 * p, (width, width), p, activation="silu", init_scale=init_scale)


def train(*, p: int = 31, train_frac: float = 0.5, width: int = 128, steps: int = 3000, lr: float = 3e-3,
          weight_decay: float = 1.0, init_scale: float = 1.0, every: int = 25, lmn_samples: int = 48,
          n_interp: int = 16, seed: int = 0, progress: bool = False):
    """Full-batch AdamW; ``Evaluate``, ``ParameterNorm`` and ``LinearMappingNumber`` (on the first ``lmn_samples``
    training inputs) every ``every`` steps. Returns the ``Run``."""
    from ..methods.base import AdamW
    from ..probes import Evaluate
    from ..training.run import Run

    check_positive("steps", steps)
    task = OneHotModularAddition(p=p, train_frac=train_frac, seed=seed)
    model = make_model(p, width, seed, init_scale)
    probes = [Evaluate(every), ParameterNorm(every),
              LinearMappingNumber(task.x_train[:lmn_samples], every, n_interp=n_interp)]
    run = Run(model, task, AdamW(lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98)), probes=probes, seed=seed,
              name=f"mod {p} SiLU MLP")
    return run.train(steps, progress=progress)


@dataclass
class CompressionFit:
    """Linear fits of test loss against LMN and against the parameter L2 norm inside the compression phase."""

    t_memorize: int | None
    t_generalize: int | None
    steps: list[int]
    lmn: list[float]
    l2: list[float]
    test_loss: list[float]
    r2_lmn: float
    r2_l2: float
    slope_lmn: float

    def __str__(self) -> str:
        return (f"compression phase steps {self.t_memorize}…{self.t_generalize} ({len(self.steps)} evaluations): "
                f"test loss vs LMN R² = {self.r2_lmn:.3f} (slope {self.slope_lmn:.3g} per unit LMN), "
                f"vs L2 norm R² = {self.r2_l2:.3f}")


def compression_phase(history, *, train_acc: float = 0.99, test_acc: float = 0.9) -> tuple[int | None, int | None]:
    """(first step with train accuracy ≥ ``train_acc``, first step with test accuracy ≥ ``test_acc``)."""
    from .common import first_crossing

    tr, te = history["acc/train"], history["acc/test"]
    return first_crossing(tr.steps, tr.values, train_acc), first_crossing(te.steps, te.values, test_acc)


def linear_r2(x, y) -> tuple[float, float]:
    """(R², slope) of the least-squares line y = a x + b."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    a, b = np.polyfit(x, y, 1)
    ss_tot = ((y - y.mean()) ** 2).sum()
    return (1.0 - ((y - (a * x + b)) ** 2).sum() / ss_tot if ss_tot > 0 else float("nan")), float(a)


def lmn_vs_test_loss(run, **kwargs) -> CompressionFit:
    """Fit test loss against LMN (and against the L2 norm) over the evaluations of the compression phase; needs
    at least 3 of them (raises otherwise, naming the phase it found)."""
    h = run.history
    t0, t1 = compression_phase(h, **kwargs)
    if t0 is None or t1 is None:
        raise ValueError(f"no compression phase: memorized at step {t0}, generalized at step {t1} "
                         "(train longer, or with more weight decay)")
    lmn = dict(zip(h["lmn/model"].steps, h["lmn/model"].values))
    l2 = dict(zip(h["l2/model"].steps, h["l2/model"].values))
    loss = dict(zip(h["loss/test"].steps, h["loss/test"].values))
    steps = [s for s in sorted(lmn) if t0 <= s <= t1 and s in loss and s in l2]
    if len(steps) < 3:
        raise ValueError(f"the compression phase (steps {t0}…{t1}) holds {len(steps)} evaluation(s); a line needs "
                         "≥ 3 — evaluate more often")
    xs, ls, ys = [lmn[s] for s in steps], [l2[s] for s in steps], [loss[s] for s in steps]
    r2_lmn, slope = linear_r2(xs, ys)
    r2_l2, _ = linear_r2(ls, ys)
    return CompressionFit(t0, t1, steps, xs, ls, ys, r2_lmn, r2_l2, slope)


# ---- plots (pure) ---------------------------------------------------------------------------------------------
def plot_dynamics(ax, run):
    """Train/test accuracy and (twin axis) LMN against step, the compression phase shaded. Returns ``ax``."""
    h = run.history
    for key, style in (("acc/train", "-"), ("acc/test", "--")):
        ax.plot(h[key].steps, h[key].values, style, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    tw = ax.twinx()
    tw.plot(h["lmn/model"].steps, h["lmn/model"].values, color="C3", label="LMN")
    tw.set_ylabel("linear mapping number (reconstructed definition)", color="C3")
    t0, t1 = compression_phase(h)
    if t0 is not None and t1 is not None:
        ax.axvspan(t0, t1, color="gray", alpha=0.15, label="compression phase")
    ax.legend(loc="center right")
    return ax


def plot_fit(ax, fit: CompressionFit, against: str = "lmn"):
    """Test loss against LMN (or ``"l2"``) inside the compression phase, with the fitted line. Returns ``ax``."""
    xs = fit.lmn if against == "lmn" else fit.l2
    ax.scatter(xs, fit.test_loss, c=fit.steps, cmap="viridis", s=14)
    a, b = np.polyfit(xs, fit.test_loss, 1)
    grid = np.linspace(min(xs), max(xs), 50)
    ax.plot(grid, a * grid + b, "k--", lw=1)
    r2 = fit.r2_lmn if against == "lmn" else fit.r2_l2
    ax.set_xlabel("LMN" if against == "lmn" else "parameter L2 norm")
    ax.set_ylabel("test loss")
    ax.set_title(f"compression phase: R² = {r2:.3f}")
    return ax
