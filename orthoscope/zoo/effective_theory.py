"""Towards Understanding Grokking: An Effective Theory of Representation Learning (Liu, Kitouni, Nolte, Michaud,
Tegmark, Williams; NeurIPS 2022; arXiv 2205.10343; code ejmichaud/grokking-squared ``toy/train_add.py``).

**Task.** Addition of digits ``0..p−1`` (p = 10): the ``p(p+1)/2 = 55`` unordered pairs ``i ≤ j``; the label of
``i + j`` is a fixed random Gaussian template ``Y_{i+j} ∈ R^{30}`` (``2p − 1`` templates). Training is MSE to the
template (mean over entries); the prediction is the nearest template.

**Model.** Trainable embeddings ``E_i ∈ R^d`` (init ``U(−½, ½)·init_scale``), a hard-coded sum ``E_i + E_j`` and a
decoder MLP ``Linear → tanh → Linear → tanh → Linear`` (width 200). Embeddings and decoder have *separate* AdamW
hyper-parameters (η_repr = 1e-3, η_dec = 1e-4, weight decay on the decoder only) — one optimizer with two param
groups is exactly two AdamW optimizers, because AdamW is per-parameter.

**RQI** (representation quality index): the fraction of all parallelograms ``(i, n, j, m)`` with
``i + n = j + m`` (``i < j ≤ m < n``) whose normalized embeddings (zero mean, unit std per dimension) satisfy
``mean_d (E_i + E_n − E_j − E_m)² < 0.01``. A linear embedding ``E_k = a·k + b`` has RQI = 1.

**Phases** (the paper's Fig. 5 rule): with ``t_train``, ``t_test`` the first steps at which train / test accuracy
reach 0.9 within ``S`` steps: both reached and ``t_test − t_train < τ`` → *comprehension*; both reached and
``t_test − t_train ≥ τ`` → *grokking*; only train reached → *memorization*; train not reached → *confusion*.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..core.keys import key
from ..methods.base import Method, check_positive
from ..models import MLP
from ..probes.base import Probe
from ..tasks.base import Task
from .common import BatchedAdamW, first_crossing

PHASES = ("comprehension", "grokking", "memorization", "confusion")
PHASE_COLORS = {"comprehension": "#2ca02c", "grokking": "#ffd700", "memorization": "#1f77b4", "confusion": "#222222"}


# ---- data -----------------------------------------------------------------------------------------------------
def addition_pairs(p: int) -> torch.Tensor:
    """All unordered pairs ``(i, j)``, ``0 ≤ i ≤ j < p``, in lexicographic order: ``[p(p+1)/2, 2]``."""
    if not isinstance(p, int) or p < 2:
        raise ValueError(f"p must be an integer ≥ 2, got {p!r}")
    i, j = torch.triu_indices(p, p)
    return torch.stack([i, j], 1)


def parallelograms(p: int) -> torch.Tensor:
    """All ``(i, n, j, m)`` with ``i < j ≤ m < n < p`` and ``i + n = j + m``: ``[P, 4]`` (the RQI's test set)."""
    quads = [(i, n, j, m) for i in range(p) for j in range(i + 1, p) for m in range(j, p) for n in range(m + 1, p)
             if i + n == j + m]
    return torch.tensor(quads, dtype=torch.long).reshape(-1, 4)


def rqi(embeddings: torch.Tensor, quads: torch.Tensor | None = None, threshold: float = 0.01) -> float:
    """Representation quality index of ``embeddings [p, d]`` (see module docstring). Dimensions with zero spread
    are left at zero after centring (instead of dividing by 0)."""
    e = embeddings.detach().to(torch.float64)
    if quads is None:
        quads = parallelograms(e.shape[0])
    if len(quads) == 0:
        raise ValueError(f"no parallelograms exist for p={e.shape[0]} (need p ≥ 3)")
    std = e.std(0, keepdim=True)
    e = (e - e.mean(0, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
    d = e[quads[:, 0]] + e[quads[:, 1]] - e[quads[:, 2]] - e[quads[:, 3]]
    return ((d ** 2).mean(-1) < threshold).double().mean().item()


@dataclass
class ToyAddition(Task):
    """``x = [i, j]`` token pairs, ``y = i + j`` (class ids 0..2p−2); outputs are compared to ``templates[y]``."""

    p: int = field(default=10, metadata={"help": "digits 0..p−1"})
    train_num: int = field(default=45, metadata={"help": "training pairs out of p(p+1)/2"})
    output_dim: int = field(default=30, metadata={"help": "dimension of the random label templates"})
    label_scale: float = field(default=1.0, metadata={"help": "std of the templates"})
    seed: int = field(default=58, metadata={"help": "seed of the templates and the split"})
    batch_size: int | None = field(default=None, metadata={"help": "None: full batch (the paper's default)"})

    has_accuracy = False            # accuracy is nearest-template, reported by AdditionProbe

    def __post_init__(self):
        self._check_batch_size()
        pairs = addition_pairs(self.p)
        if not 0 < self.train_num < len(pairs):
            raise ValueError(f"train_num must lie in (0, {len(pairs)}) for p={self.p}, got {self.train_num!r}")
        g = torch.Generator().manual_seed(self.seed)
        self.templates = torch.randn(2 * self.p - 1, self.output_dim, generator=g) * self.label_scale
        perm = torch.randperm(len(pairs), generator=g)
        self.train_idx, self.test_idx = perm[: self.train_num], perm[self.train_num:]
        labels = pairs.sum(1)
        self.x_train, self.y_train = pairs[self.train_idx], labels[self.train_idx]
        self.x_test, self.y_test = pairs[self.test_idx], labels[self.test_idx]

    def default_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """MSE to the label templates, mean over batch and template entries."""
        return ((output - self.templates[y]) ** 2).mean()

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Nearest template (class id) for each output row."""
        return torch.cdist(output, self.templates).argmin(-1)


def ideal_test_accuracy(task: ToyAddition) -> float:
    """The effective theory's upper bound on test accuracy (the paper's ``acc_ideal_test``).

    Training pairs with equal sums give parallelograms ``E_i + E_j = E_m + E_n`` that a trained representation can
    satisfy; any parallelogram *linearly implied* by them (its row ``e_i + e_j − e_m − e_n`` lies in their row
    space) holds too. A test pair is answerable iff one of those parallelograms links it to a training pair of the
    same sum. Exact rank test in float64 on integer rows."""
    pairs = addition_pairs(task.p).tolist()
    train = set(task.train_idx.tolist())

    def row(a, b):
        r = np.zeros(task.p)
        for k in pairs[a]:
            r[k] += 1
        for k in pairs[b]:
            r[k] -= 1
        return r

    same_sum = [(a, b) for a in range(len(pairs)) for b in range(a + 1, len(pairs)) if sum(pairs[a]) == sum(pairs[b])]
    known = np.array([row(a, b) for a, b in same_sum if a in train and b in train]).reshape(-1, task.p)
    rank = np.linalg.matrix_rank(known) if len(known) else 0

    def implied(a, b):
        if a in train and b in train:
            return True
        return np.linalg.matrix_rank(np.vstack([known, row(a, b)])) == rank

    test = [t for t in range(len(pairs)) if t not in train]
    ok = {t for t in test for a, b in same_sum if t in (a, b) and ({a, b} - {t}) <= train and implied(a, b)}
    return len(ok) / len(test)


# ---- model and method -----------------------------------------------------------------------------------------
class ToyAdditionModel(nn.Module):
    """``decoder(E_i + E_j)``; ``embed.weight`` is the representation the RQI scores."""

    def __init__(self, p: int = 10, reprs_dim: int = 1, width: int = 200, output_dim: int = 30,
                 init_scale_reprs: float = 1.0, init_scale_nn: float = 1.0):
        super().__init__()
        self.embed = nn.Embedding(p, reprs_dim)
        with torch.no_grad():
            self.embed.weight.copy_((torch.rand(p, reprs_dim) - 0.5) * init_scale_reprs)
        self.decoder = MLP(reprs_dim, (width, width), output_dim, activation="tanh", init_scale=init_scale_nn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.embed(x[:, 0]) + self.embed(x[:, 1]))


@dataclass
class SeparateAdamW(Method):
    """AdamW (β = 0.9, 0.999) with its own lr / weight decay for the embeddings and for the decoder."""

    embed_lr: float = field(default=1e-3, metadata={"help": "η_repr"})
    decoder_lr: float = field(default=1e-4, metadata={"help": "η_dec"})
    embed_weight_decay: float = field(default=0.0, metadata={"help": "weight decay on the embeddings"})
    decoder_weight_decay: float = field(default=0.0, metadata={"help": "weight decay on the decoder"})

    def __post_init__(self):
        for name in ("embed_lr", "decoder_lr", "embed_weight_decay", "decoder_weight_decay"):
            check_positive(name, getattr(self, name), allow_zero=True)

    def make_optimizer(self, model):
        return torch.optim.AdamW([
            {"params": list(model.embed.parameters()), "lr": self.embed_lr, "weight_decay": self.embed_weight_decay},
            {"params": list(model.decoder.parameters()), "lr": self.decoder_lr,
             "weight_decay": self.decoder_weight_decay}], betas=(0.9, 0.999))


class AdditionProbe(Probe):
    """``loss/{train,test}``, nearest-template ``acc/{train,test}`` and ``rqi/embed``."""

    name = "addition"

    def __init__(self, every: int = 10):
        super().__init__(every)
        self._quads = None

    @torch.no_grad()
    def __call__(self, run) -> dict:
        task, model = run.task, run.model
        if self._quads is None:
            self._quads = parallelograms(task.p)
        out = {}
        for split, (x, y) in task.eval_sets().items():
            o = model(x)
            out[key("loss", split)] = task.default_loss(o, y).item()
            out[key("acc", split)] = (task.predict(o) == y).float().mean().item()
        out["rqi/embed"] = rqi(model.embed.weight, self._quads)
        return out


# ---- one run, thresholds, phases ------------------------------------------------------------------------------
def train(*, steps: int = 5000, train_num: int = 45, seed: int = 58, reprs_dim: int = 1, embed_lr: float = 1e-3,
          decoder_lr: float = 1e-4, decoder_weight_decay: float = 0.0, eval_every: int = 10,
          stop_when_generalized: bool = False, progress: bool = False):
    """Train the toy; returns the ``Run``. With ``stop_when_generalized`` it stops once train and test accuracy both
    reached 0.9 (the phase is then known)."""
    from ..training.run import Run

    task = ToyAddition(train_num=train_num, seed=seed)
    torch.manual_seed(seed)
    model = ToyAdditionModel(task.p, reprs_dim=reprs_dim, output_dim=task.output_dim)
    method = SeparateAdamW(embed_lr=embed_lr, decoder_lr=decoder_lr, decoder_weight_decay=decoder_weight_decay)
    run = Run(model, task, method, probes=[AdditionProbe(eval_every)], seed=seed,
              name=f"η_dec={decoder_lr:.0e}, wd={decoder_weight_decay:g}")

    def done(r):
        h = r.history
        return stop_when_generalized and "acc/test" in h and h["acc/train"].last() >= 0.9 and h["acc/test"].last() >= 0.9

    return run.train(steps, progress=progress, until=done)


def threshold_steps(run, threshold: float = 0.9) -> dict[str, int | None]:
    """First steps at which train / test accuracy reached ``threshold`` and RQI exceeded 0.95 (None: never)."""
    h = run.history
    out = {s: first_crossing(h[key("acc", s)].steps, h[key("acc", s)].values, threshold) for s in ("train", "test")}
    out["rqi"] = first_crossing(h["rqi/embed"].steps, [v - 1e-12 for v in h["rqi/embed"].values], 0.95 + 1e-12)
    return out


def classify_phase(t_train: int | None, t_test: int | None, tau: float) -> str:
    """The paper's rule (module docstring). ``None`` means the threshold was never reached."""
    check_positive("tau", tau)
    if t_train is None:
        return "confusion"
    if t_test is None:
        return "memorization"
    return "comprehension" if t_test - t_train < tau else "grokking"


@dataclass
class PhaseDiagram:
    """``phases[i][j]`` for ``weight_decays[i]`` × ``decoder_lrs[j]``; steps are None where never reached."""

    decoder_lrs: list[float]
    weight_decays: list[float]
    t_train: list[list[int | None]]
    t_test: list[list[int | None]]
    phases: list[list[str]]
    steps: int
    tau: float

    def counts(self) -> dict[str, int]:
        flat = [ph for row in self.phases for ph in row]
        return {ph: flat.count(ph) for ph in PHASES}


# ---- the sweep as one batched ensemble ------------------------------------------------------------------------
class ToyAdditionEnsemble(nn.Module):
    """``K`` copies of a ``ToyAdditionModel`` trained side by side with batched matmuls. Every member starts from
    the same weights (as in the paper's sweep, where every grid point is seeded alike) and gets its own
    hyper-parameters from ``BatchedAdamW``. Output ``[K, B, output_dim]``."""

    def __init__(self, base: ToyAdditionModel, k: int):
        super().__init__()
        if not isinstance(k, int) or k <= 0:
            raise ValueError(f"ensemble size must be a positive int, got {k!r}")
        rep = lambda t: nn.Parameter(t.detach().clone().unsqueeze(0).repeat(k, *([1] * t.dim())))
        self.embed = rep(base.embed.weight)                                           # [K, p, d]
        self.weights = nn.ParameterList(rep(l.weight.T) for l in base.decoder.layers)  # [K, in, out]
        self.biases = nn.ParameterList(rep(l.bias[None]) for l in base.decoder.layers)  # [K, 1, out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed[:, x[:, 0]] + self.embed[:, x[:, 1]]                            # [K, B, d]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.tanh(h)
        return h


def ensemble_loss(task: ToyAddition):
    """Sum over members of each member's MSE, so member k's gradient is exactly its own loss's gradient."""
    def loss(output, y):
        return ((output - task.templates[y]) ** 2).mean((1, 2)).sum()
    return loss


class EnsembleProbe(Probe):
    """Per-member ``acc/{train,test}`` (arrays of length K) and ``rqi/embed``."""

    name = "addition_ensemble"

    @torch.no_grad()
    def __call__(self, run) -> dict:
        task, model = run.task, run.model
        out = {}
        for split, (x, y) in task.eval_sets().items():
            pred = torch.cdist(model(x), task.templates.expand(model.embed.shape[0], -1, -1)).argmin(-1)
            out[key("acc", split)] = (pred == y).float().mean(1)
        quads = parallelograms(task.p)
        out["rqi/embed"] = torch.tensor([rqi(e, quads) for e in model.embed])
        return out


def phase_diagram(decoder_lrs, weight_decays, *, steps: int = 5000, tau: float = 1000, train_num: int = 45,
                  seed: int = 58, embed_lr: float = 1e-3, reprs_dim: int = 1, eval_every: int = 20,
                  progress: bool = True) -> PhaseDiagram:
    """Train one toy per (decoder lr, decoder weight decay) — all at once, as a ``ToyAdditionEnsemble`` under
    ``BatchedAdamW`` — and classify each by the paper's rule."""
    from ..training.run import Run

    decoder_lrs, weight_decays = [float(v) for v in decoder_lrs], [float(v) for v in weight_decays]
    if not decoder_lrs or not weight_decays:
        raise ValueError("phase_diagram needs at least one decoder lr and one weight decay")
    task = ToyAddition(train_num=train_num, seed=seed)
    torch.manual_seed(seed)
    base = ToyAdditionModel(task.p, reprs_dim=reprs_dim, output_dim=task.output_dim)
    grid = [(wd, lr) for wd in weight_decays for lr in decoder_lrs]
    model = ToyAdditionEnsemble(base, len(grid))
    method = BatchedSeparateAdamW(embed_lr=embed_lr, decoder_lrs=[lr for _, lr in grid],
                                  decoder_weight_decays=[wd for wd, _ in grid])
    run = Run(model, task, method, loss=ensemble_loss(task), probes=[EnsembleProbe(eval_every)], seed=seed,
              name="phase diagram")
    run.train(steps, progress=progress)
    h = run.history
    accs = {s: h[key("acc", s)].stack() for s in ("train", "test")}                  # [n_evals, K]
    evals = h["acc/train"].steps
    t_train, t_test, phases = [], [], []
    for i in range(len(weight_decays)):
        rows = ([], [], [])
        for j in range(len(decoder_lrs)):
            k = i * len(decoder_lrs) + j
            tr = first_crossing(evals, accs["train"][:, k].tolist(), 0.9)
            te = first_crossing(evals, accs["test"][:, k].tolist(), 0.9)
            rows[0].append(tr)
            rows[1].append(te)
            rows[2].append(classify_phase(tr, te, tau))
        t_train.append(rows[0])
        t_test.append(rows[1])
        phases.append(rows[2])
    return PhaseDiagram(decoder_lrs, weight_decays, t_train, t_test, phases, steps, tau)


@dataclass
class BatchedSeparateAdamW(Method):
    """``SeparateAdamW`` for a ``ToyAdditionEnsemble``: one embedding lr, per-member decoder lr and weight decay."""

    embed_lr: float = 1e-3
    decoder_lrs: list = field(default_factory=list)
    decoder_weight_decays: list = field(default_factory=list)

    def make_optimizer(self, model):
        return BatchedAdamW([
            {"params": [model.embed], "lr": self.embed_lr, "weight_decay": 0.0},
            {"params": list(model.weights) + list(model.biases), "lr": self.decoder_lrs,
             "weight_decay": self.decoder_weight_decays}], betas=(0.9, 0.999))


def plot_phase_diagram(ax, diagram: PhaseDiagram):
    """Colored grid: x = decoder lr (log), y = decoder weight decay; legend lists the phases present."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    codes = np.array([[PHASES.index(ph) for ph in row] for row in diagram.phases])
    cmap = ListedColormap([PHASE_COLORS[ph] for ph in PHASES])
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(PHASES) - 0.5, origin="lower", aspect="auto")
    ax.set_xticks(range(len(diagram.decoder_lrs)), [f"{v:.0e}" for v in diagram.decoder_lrs], rotation=45, fontsize=7)
    ax.set_yticks(range(len(diagram.weight_decays)), [f"{v:g}" for v in diagram.weight_decays], fontsize=7)
    ax.set_xlabel("decoder learning rate")
    ax.set_ylabel("decoder weight decay")
    present = [ph for ph in PHASES if diagram.counts()[ph]]
    ax.legend(handles=[Patch(color=PHASE_COLORS[ph], label=ph) for ph in present], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"{diagram.steps} steps, τ = {diagram.tau:g}")
    return ax


def plot_embedding(ax, model: ToyAdditionModel):
    """The learned 1-D (or first two dims of a d-D) embedding, labelled by digit: a line of evenly spaced digits is
    the 'structured' representation that generalizes."""
    e = model.embed.weight.detach()
    xs = e[:, 0].numpy()
    ys = e[:, 1].numpy() if e.shape[1] > 1 else np.zeros_like(xs)
    ax.scatter(xs, ys, c=range(len(xs)), cmap="viridis")
    for k, (a, b) in enumerate(zip(xs, ys)):
        ax.annotate(str(k), (a, b), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
    ax.set_title(f"embedding (RQI {rqi(e):.2f})")
    return ax
