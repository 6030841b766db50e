"""Grokking as compression (Liu, Zhong & Tegmark 2023; arXiv 2310.05918): the linear mapping number (LMN) falls
between memorization and generalization, linearly with the test loss.

**Claim** (abstract, §3): grokking is compression. The LMN — how many distinct linear maps the network applies to the
samples, a generalized count of linear regions — decreases steadily in the "generalizing phase" (after train
accuracy reaches 100 %, before test accuracy does), and there it has a strong *linear* relation with the test loss
(the L2 norm only a complicated nonlinear one).

**The paper's setting** (§3 "Experiment setup", recovered from its text — see ``orthoscope.probes.compression`` for
where): three-layer fully connected SiLU networks on addition modulo 31 (also S4 and 5-digit XOR); the parameters
*including the embeddings* trained with AdamW (lr 1e-3, weight decay 0.2) on cross-entropy for 20,000 steps;
embedding dimension 32, hidden dimension 100, output 31; an 80/20 train/test split of all pairs. The LMN is measured
between the **first hidden layer** and the output logits. ``EmbedMLP`` is that network: one embedding table shared
by both operands (the text does not say shared or separate; shared is the usual choice in this group's modular
toys), concatenated (64) → 100 → SiLU → 100 → SiLU → 31. What the text does not give, and our choice: full-batch
training (the dataset has 769 training pairs), torch.optim.AdamW's default betas (0.9, 0.999), PyTorch default inits (N(0, 1) embeddings),
the LMN on the first 64 training samples every 100 steps.

**The compression phase** (``compression_phase``): from the first evaluation with train accuracy ≥ 0.99
(memorized) to the first with test accuracy ≥ 0.99 (generalized; the paper: 100 %). ``lmn_vs_test_loss`` fits
test loss = a·LMN + b over the evaluations inside it and reports R², with the same fit against the L2 norm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


class EmbedMLP(nn.Module):
    """The paper's network: a shared embedding (``p → d_embed``) of each operand, concatenated, then three linear
    layers with SiLU between them, ``2·d_embed → hidden → hidden → p``. Takes the one-hot ``[N, 2p]`` inputs of
    ``OneHotModularAddition`` (the embedding is their product with the table, i.e. a lookup)."""

    def __init__(self, p: int, d_embed: int = 32, hidden: int = 100, init_scale: float = 1.0):
        super().__init__()
        self.p = p
        self.embed = nn.Parameter(torch.randn(p, d_embed) * init_scale)      # nn.Embedding's N(0, 1) init
        self.layer1 = nn.Linear(2 * d_embed, hidden)
        self.layer2 = nn.Linear(hidden, hidden)
        self.layer3 = nn.Linear(hidden, p)
        if init_scale != 1.0:
            with torch.no_grad():
                for layer in (self.layer1, self.layer2, self.layer3):
                    layer.weight.mul_(init_scale)

    def first_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The first hidden layer's activations: ``SiLU(layer1(concat(E[a], E[b])))``."""
        e = (x.reshape(len(x), 2, self.p) @ self.embed).reshape(len(x), -1)
        return F.silu(self.layer1(e))

    def from_first_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The rest of the network, first hidden layer → logits."""
        return self.layer3(F.silu(self.layer2(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_first_hidden(self.first_hidden(x))


def first_hidden_split(model: EmbedMLP):
    """``LinearMappingNumber(split=…)`` at the first hidden layer, the paper's choice."""
    return model.first_hidden, model.from_first_hidden


def make_model(p: int, d_embed: int = 32, hidden: int = 100, seed: int = 0, init_scale: float = 1.0) -> EmbedMLP:
    torch.manual_seed(seed)
    return EmbedMLP(p, d_embed, hidden, init_scale)


def train(*, p: int = 31, train_frac: float = 0.8, d_embed: int = 32, hidden: int = 100, steps: int = 20000,
          lr: float = 1e-3, weight_decay: float = 0.2, init_scale: float = 1.0, every: int = 100,
          lmn_samples: int = 64, n_interp: int = 21, layer: str = "first_hidden", seed: int = 0,
          progress: bool = False):
    """Full-batch AdamW (the paper's lr, weight decay and steps by default); ``Evaluate``, ``ParameterNorm`` and
    ``LinearMappingNumber`` (on the first ``lmn_samples`` training inputs; ``layer="first_hidden"`` as in the paper,
    or ``"input"`` for the whole network on the one-hot inputs) every ``every`` steps. Returns the ``Run``."""
    from ..methods.base import AdamW
    from ..probes import Evaluate
    from ..training.run import Run

    check_positive("steps", steps)
    if layer not in ("first_hidden", "input"):
        raise ValueError(f"layer must be 'first_hidden' or 'input', got {layer!r}")
    task = OneHotModularAddition(p=p, train_frac=train_frac, seed=seed)
    model = make_model(p, d_embed, hidden, seed, init_scale)
    split = first_hidden_split if layer == "first_hidden" else None
    probes = [Evaluate(every), ParameterNorm(every),
              LinearMappingNumber(task.x_train[:lmn_samples], every, n_interp=n_interp, split=split)]
    run = Run(model, task, AdamW(lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999)), probes=probes, seed=seed,
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


def compression_phase(history, *, train_acc: float = 0.99, test_acc: float = 0.99) -> tuple[int | None, int | None]:
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
    tw.set_ylabel("linear mapping number (first hidden layer)", color="C3")
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
