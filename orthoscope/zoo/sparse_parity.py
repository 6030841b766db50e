"""The Quantization Model of Neural Scaling (Michaud, Liu, Girit, Tegmark; NeurIPS 2023; arXiv 2303.13506; code
ejmichaud/quantization-model ``scripts/sparse-parity-v4.py``).

**Multitask sparse parity.** ``n_tasks`` subtasks, each a distinct random ``k``-subset ``S_t`` of ``n_bits`` bits.
An input is a one-hot task code (``n_tasks`` dims) followed by ``n_bits`` uniform random bits; the label is the
parity of the task's bits, ``Σ_{i∈S_t} x_i mod 2``. Task ``t`` (1-based rank) is drawn with probability
``p_t ∝ t^(−alpha)`` (the code's ``alpha``; the paper's scaling exponent is ``α = alpha − 1``).

**Claim.** Each subtask is a "quantum" learned all-or-nothing (per-subtask loss drops suddenly: emergence), in order
of frequency. A network that has learned the ``n`` most frequent quanta has loss ≈ ``Σ_{t>n} p_t · ln 2``
``∝ n^(−α)``; with ``n`` ∝ parameters (or ∝ data^(1/(α+1)) for data), ``L ∝ N^(−α)`` and ``L ∝ D^(−α/(α+1))``
— ``N^(−0.4)`` and ``D^(−0.29)`` for ``alpha = 1.4``. Losses are reported in bits (CE / ln 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..probes.base import Probe
from ..tasks.base import Task
from .common import zipf_frequencies


def random_subsets(n_tasks: int, n_bits: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``n_tasks`` distinct sorted ``k``-subsets of ``range(n_bits)`` as a ``[n_tasks, k]`` tensor."""
    if not 0 < k <= n_bits:
        raise ValueError(f"k must lie in [1, n_bits={n_bits}] (a parity of k of the n_bits bits), got k={k!r}")
    if n_tasks > math.comb(n_bits, k):
        raise ValueError(f"n_tasks={n_tasks} exceeds the {math.comb(n_bits, k)} distinct {k}-subsets of {n_bits} bits")
    seen, out = set(), []
    while len(out) < n_tasks:
        s = tuple(sorted(torch.randperm(n_bits, generator=generator)[:k].tolist()))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return torch.tensor(out, dtype=torch.long)


def make_examples(subsets: torch.Tensor, task_ids: torch.Tensor, n_bits: int, generator: torch.Generator):
    """Inputs ``[onehot(task) | bits]`` (float32) and parity labels for the given task ids."""
    n_tasks = subsets.shape[0]
    bits = torch.randint(0, 2, (len(task_ids), n_bits), generator=generator)
    y = bits.gather(1, subsets[task_ids]).sum(1) % 2
    x = torch.cat([F.one_hot(task_ids, n_tasks), bits], 1).to(torch.float32)
    return x, y


@dataclass
class MultitaskSparseParity(Task):
    """Fresh samples every step (``n_train=None``: the paper's infinite-data runs) or a fixed training set of
    ``n_train`` samples (data scaling). ``eval_sets()["test"]`` holds ``⌊p_t · eval_size⌋`` samples of each task, so
    its mean loss is the frequency-weighted loss; ``per_task`` holds ``per_task`` samples of every task."""

    n_tasks: int = field(default=32, metadata={"help": "number of subtasks"})
    n_bits: int = field(default=20, metadata={"help": "random bits per input"})
    k: int = field(default=3, metadata={"help": "bits in each parity"})
    alpha: float = field(default=1.4, metadata={"help": "task frequencies p_t ∝ t^(−alpha), alpha > 0"})
    batch_size: int | None = field(default=2000, metadata={"help": "samples per step"})
    n_train: int | None = field(default=None, metadata={"help": "None: infinite fresh data; int: fixed data set"})
    eval_size: int = field(default=20_000, metadata={"help": "frequency-weighted test samples"})
    per_task: int = field(default=200, metadata={"help": "test samples per subtask"})
    seed: int = field(default=0, metadata={"help": "seed of the subsets and the fixed data"})

    def __post_init__(self):
        self._check_batch_size()
        for name in ("n_tasks", "n_bits", "eval_size", "per_task"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train <= 0):
            raise ValueError(f"n_train must be None (infinite data) or a positive int, got {self.n_train!r}")
        self.probs = zipf_frequencies(self.n_tasks, self.alpha)
        g = torch.Generator().manual_seed(self.seed)
        self.subsets = random_subsets(self.n_tasks, self.n_bits, self.k, g)
        counts = (self.probs * self.eval_size).floor().long()
        self.x_test, self.y_test = make_examples(self.subsets, torch.repeat_interleave(torch.arange(self.n_tasks),
                                                                                      counts), self.n_bits, g)
        ids = torch.arange(self.n_tasks).repeat_interleave(self.per_task)
        self.x_per_task, self.y_per_task = make_examples(self.subsets, ids, self.n_bits, g)
        if self.n_train is not None:
            ids = torch.multinomial(self.probs.float(), self.n_train, replacement=True, generator=g)
            self.x_train, self.y_train = make_examples(self.subsets, ids, self.n_bits, g)

    @property
    def d_in(self) -> int:
        return self.n_tasks + self.n_bits

    def batch(self, generator):
        if self.n_train is not None:
            return super().batch(generator)
        ids = torch.multinomial(self.probs.float(), self.batch_size, replacement=True, generator=generator)
        return make_examples(self.subsets, ids, self.n_bits, generator)

    def eval_sets(self):
        sets = {"test": (self.x_test, self.y_test)}
        if self.n_train is not None:
            sets = {"train": (self.x_train, self.y_train), **sets}
        return sets


class SubtaskLoss(Probe):
    """Per-subtask test loss in bits (``subtask_loss/test``, an array over tasks in frequency order) and the
    frequency-weighted test loss in bits (``loss_bits/test``)."""

    name = "subtask_loss"

    def __init__(self, every: int = 100):
        super().__init__(every)

    @torch.no_grad()
    def __call__(self, run) -> dict:
        task = run.task
        was = run.model.training
        run.model.eval()
        try:
            per = F.cross_entropy(run.model(task.x_per_task), task.y_per_task, reduction="none")
            per = per.view(task.n_tasks, task.per_task).mean(1) / math.log(2)
            test = F.cross_entropy(run.model(task.x_test), task.y_test).item() / math.log(2)
        finally:
            run.model.train(was)
        return {"subtask_loss/test": per, "loss_bits/test": test}


def train(width: int, *, n_tasks: int = 32, n_bits: int = 20, k: int = 3, alpha: float = 1.4, steps: int = 3000,
          batch_size: int = 2000, n_train: int | None = None, lr: float = 1e-3, seed: int = 0, every: int = 100,
          progress: bool = False):
    """A one-hidden-layer ReLU MLP of ``width`` on multitask sparse parity; returns the ``Run``."""
    from ..methods.base import AdamW
    from ..models import MLP
    from ..training.run import Run

    task = MultitaskSparseParity(n_tasks=n_tasks, n_bits=n_bits, k=k, alpha=alpha, batch_size=batch_size,
                                 n_train=n_train, seed=seed)
    torch.manual_seed(seed)
    model = MLP(task.d_in, (width,), 2)
    run = Run(model, task, AdamW(lr=lr, betas=(0.9, 0.999)), probes=[SubtaskLoss(every)], seed=seed,
              name=f"width {width}" + (f", D={n_train}" if n_train else ""))
    return run.train(steps, progress=progress)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def loss_vs_width(widths, *, seeds=(0,), progress: bool = True, **kwargs):
    """Sweep over widths; metrics ``loss`` (best frequency-weighted test loss in bits over training) and ``params``."""
    from .scaling import sweep

    def one(width, seed):
        run = train(int(width), seed=seed, **kwargs)
        return {"loss": min(run.history["loss_bits/test"].values), "params": float(n_params(run.model))}

    return sweep(one, widths, seeds, progress=progress, desc="sparse parity width")


def loss_vs_data(sizes, *, width: int = 128, seeds=(0,), progress: bool = True, **kwargs):
    """Sweep over training-set sizes D (fixed data, best test loss over training, as the paper reports)."""
    from .scaling import sweep

    def one(d, seed):
        run = train(width, n_train=int(d), seed=seed, **kwargs)
        return {"loss": min(run.history["loss_bits/test"].values)}

    return sweep(one, sizes, seeds, progress=progress, desc="sparse parity data")


def plot_emergence(ax, run, n_show: int = 12):
    """Per-subtask test loss (bits) against step for the ``n_show`` most frequent tasks: sudden drops, in order of
    frequency, are the quanta being learned. Returns ``ax``."""
    import matplotlib.pyplot as plt

    s = run.history["subtask_loss/test"]
    losses = s.stack()                                          # [n_evals, n_tasks]
    cmap = plt.get_cmap("viridis")
    n = min(n_show, losses.shape[1])
    for t in range(n):
        ax.plot(s.steps, losses[:, t].numpy(), color=cmap(t / max(n - 1, 1)), lw=1, label=f"task {t + 1}" if t in (0, n - 1) else None)
    ax.set_xlabel("step")
    ax.set_ylabel("subtask test loss (bits)")
    ax.set_title("emergence: subtasks learned in order of frequency")
    ax.legend(fontsize=7)
    return ax


def fit_loss_vs_params(result, method: str = "ols"):
    """Power-law fit of the sweep's best test loss against parameter count."""
    from .scaling import fit_power_law

    return fit_power_law(result.points("params")[1], result.points("loss")[1], method=method)
