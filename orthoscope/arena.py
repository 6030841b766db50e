"""The stability–plasticity arena (after PEFT-Arena, arXiv 2605.28819), small enough for a CPU.

Pretrain a model on task A, then finetune copies of it on task B with several methods (full finetuning, LoRA, SoRA,
OFT, BOFT, QOFT, …) and measure, per method:

* **plasticity** = accuracy gained on B:  ``acc_B(finetuned) − acc_B(base)``;
* **forgetting** = accuracy lost on A:    ``acc_A(base) − acc_A(finetuned)``  (PEFT-Arena: drop of the general score);
* the trainable-parameter count, so budgets can be compared;
* spectra of every weight (``Spectrum`` probe, at each evaluation), so the runs can be watched in the Dashboard;
* geometry (``orthoscope.probes.geometry``), recorded as probes at the start and the end of the finetune: ΔW stable
  rank, retention/adaptation smoothness, activation Procrustes residual / Gram distortion / CKA on A's inputs, and
  capability-conditioned drift on A's (general) and B's (target) inputs;
* **interpolation paths** between base (α = 0) and finetune (α = 1): ``dense`` scales the weight delta,
  ``W₀ + αΔW``; ``generator`` stays on the orthogonal group: OFT generators are scaled (``Q → αQ``), other finetunes
  are split as ``W = W₀ cayley(A) + τ`` (OrthoMerge's Procrustes decomposition) and walked as ``W₀ cayley(αA) + ατ``.
  (The PEFT-Arena page writes the OFT path as √α·Q; that is the same path with another parametrization of α.)

The default pair (``Arena.digits``) is sklearn's 8×8 digits (A) and the same digits with their pixels shuffled by one
fixed permutation (B; the "permuted MNIST" of continual learning; ``shift="mirror"`` or ``"invert"`` are milder) on
an MLP: it runs in seconds on a CPU, and B competes with A for the same weights.

    arena = Arena.digits()
    results = arena.compare(standard_methods())       # or {"full": AdamW(lr=1e-3), "oft": OFT(block=16), ...}
    arena.table(results)                       # pandas DataFrame
    fig, ax = plt.subplots(); plot_frontier(ax, results)

Plot functions are pure: ``plot_*(ax, …) -> list of artists``; nothing here imports matplotlib.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .losses import accuracy, resolve_loss
from .methods import AdamW, Method
from .probes import Evaluate, Spectrum
from .probes.geometry import ActivationGeometry, CapabilityDrift, WeightGeometry
from .run import Run
from .tasks.base import Task

SHIFTS = ("mirror", "flip", "permute", "invert")


# ---- tasks ----------------------------------------------------------------------------------------------------------
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
    from .tasks import Digits

    task = Digits(n_train=n_train, seed=seed)
    if shift is not None:
        task.x_train, task.x_test = shift_digits(task.x_train, shift), shift_digits(task.x_test, shift)
    return task


# ---- results --------------------------------------------------------------------------------------------------------
@dataclass
class ArenaResult:
    """One finetune: its run (model, history), scores on every eval set before/after, and geometry summaries."""

    name: str
    run: Run
    trainable: int
    base_scores: dict
    scores: dict
    geometry: dict = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def plasticity(self) -> float:
        return self.scores["B"] - self.base_scores["B"]

    @property
    def forgetting(self) -> float:
        return self.base_scores["A"] - self.scores["A"]

    @property
    def model(self) -> nn.Module:
        return self.run.model

    def row(self) -> dict:
        return {"method": self.name, "trainable": self.trainable, "acc_A": self.scores["A"],
                "acc_B": self.scores["B"], "plasticity": self.plasticity, "forgetting": self.forgetting,
                **self.geometry, **{k: v for k, v in self.extra.items() if not isinstance(v, dict)},
                "seconds": self.seconds}

    def __repr__(self) -> str:
        return (f"ArenaResult({self.name!r}, trainable={self.trainable}, plasticity={self.plasticity:+.3f}, "
                f"forgetting={self.forgetting:+.3f})")


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def evaluate(model: nn.Module, sets: Mapping[str, tuple], loss=None) -> dict:
    """``{name: accuracy}`` (and ``loss_<name>`` when a loss is given) on every ``(x, y)`` set, in eval mode."""
    was = model.training
    model.eval()
    try:
        out = {}
        for name, (x, y) in sets.items():
            logits = model(x)
            out[name] = accuracy(logits, y)
            if loss is not None:
                out[f"loss_{name}"] = resolve_loss(loss)(logits, y).item()
        return out
    finally:
        model.train(was)


# ---- the arena ------------------------------------------------------------------------------------------------------
GEOMETRY_SUMMARY = ("delta_erank", "retention_smoothness", "adaptation_smoothness", "procrustes_A", "gram_A",
                    "cka_A", "csd_rel_A", "csd_rel_B")


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
        from .models import MLP

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


def sora_summary(model: nn.Module) -> dict:
    """For SoRA finetunes: the rank each gate kept and the trainable parameters of the LoRA that ``sora.prune`` would
    leave (``{}`` for other models). The run's model itself is not pruned, so it can keep training."""
    from .adapters.sora import gate_ranks

    ranks = gate_ranks(model)
    if not ranks:
        return {}
    layers = {p: model.get_submodule(p) for p in ranks}
    per_rank = {p: (layer.A.numel() + layer.B.numel()) // layer.rank for p, layer in layers.items()}
    return {"sora_ranks": ranks, "trainable_pruned": sum(ranks[p] * per_rank[p] for p in ranks)}


def score_table(models: Mapping[str, nn.Module], sets: Mapping[str, tuple]):
    """A pandas DataFrame of accuracies: one row per model, one column per evaluation set, plus their ``mean``."""
    import pandas as pd

    table = pd.DataFrame({name: evaluate(m, sets) for name, m in models.items()}).T
    table["mean"] = table[list(sets)].mean(axis=1)
    return table


def summarize_geometry(history) -> dict:
    """Mean over modules of the last recorded value of each metric in ``GEOMETRY_SUMMARY`` (and the CSD ratio
    ``csd_rel_A / csd_rel_B``: drift on general inputs per unit of drift on target inputs)."""
    out = {}
    for metric in GEOMETRY_SUMMARY:
        values = [history[k].last() for k in history.keys(metric)]
        if values:
            out[metric] = float(sum(values) / len(values))
    if out.get("csd_rel_B"):
        out["csd_ratio"] = out["csd_rel_A"] / out["csd_rel_B"]
    return out


def _transpose(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in rows[0]}


# ---- interpolation paths --------------------------------------------------------------------------------------------
INTERPOLATIONS = ("dense", "generator")


@torch.no_grad()
def plain_copy(base: nn.Module, finetuned: nn.Module) -> nn.Module:
    """A copy of ``base`` carrying the weights ``finetuned`` computes with: every adapted layer contributes its
    ``effective_weight()`` (float, so a QOFT layer gives ``deq(W)·Rᵀ`` without re-quantizing) and the other tensors
    (biases inside adapters included) are copied by name. The result has the base architecture, so it can be merged
    (OrthoMerge, TA, TIES) or interpolated with other finetunes of that base."""
    from .adapters import adapter_layers

    base_state = base.state_dict()
    state = {}
    for key, value in finetuned.state_dict().items():
        plain = key.replace(".base_layer.", ".")
        if plain in base_state and value.shape == base_state[plain].shape:
            state[plain] = value
    for path, layer in adapter_layers(finetuned):
        state[f"{path}.weight"] = layer.effective_weight().detach()
    missing = sorted(set(base_state) - set(state))
    if missing:
        raise ValueError(f"the finetuned model has no tensors for {missing[:6]} of the base model; it must be a "
                         "finetune of this base (same architecture, adapters at most)")
    model = copy.deepcopy(base)
    model.load_state_dict({k: state[k].to(base_state[k].dtype) for k in base_state})
    return model


def _generator_layers(model: nn.Module) -> list[nn.Module]:
    """Adapted layers whose update is a rotation from skew generators (OFT, QOFT: ``q``; BOFT: ``q`` and ``s``)."""
    from .adapters.boft import BOFTLinear
    from .adapters.oft import RotationMixin

    return [m for m in model.modules() if isinstance(m, (RotationMixin, BOFTLinear))]


def _scale_generators(finetuned: nn.Module, alpha: float) -> nn.Module:
    from .adapters.boft import BOFTLinear

    model = copy.deepcopy(finetuned)
    with torch.no_grad():
        for layer in _generator_layers(model):
            layer.q.mul_(alpha)
            if isinstance(layer, BOFTLinear):            # BOFT's output scale: 1 → s linearly
                layer.s.copy_(1 + alpha * (layer.s - 1))
    return model


def interpolation_models(base: nn.Module, finetuned: nn.Module, alphas: Sequence[float], mode: str = "dense"):
    """Yield one model per α on the path from ``base`` (α = 0) to ``finetuned`` (α = 1).

    ``dense``: ``W₀ + α(W₁ − W₀)`` for every tensor (W₁ from ``plain_copy``). ``generator``: for OFT-style adapters
    (OFT, QOFT, BOFT) every skew generator is scaled (``Q → αQ``: each rotation moves along a one-parameter subgroup;
    BOFT's output scale goes 1 → s linearly); for any other finetune each 2-D
    weight is decomposed as ``W₁ = W₀ cayley(A) + τ`` (right Procrustes, ``adapters.orthomerge.decompose``) and
    walked as ``W₀ cayley(αA) + ατ``; other tensors linearly.
    """
    from .adapters.orthomerge import decompose, default_rotate, rotate

    if mode not in INTERPOLATIONS:
        raise ValueError(f"mode must be one of {INTERPOLATIONS}, got {mode!r}")
    if mode == "generator" and _generator_layers(finetuned):
        for a in alphas:
            yield _scale_generators(finetuned, float(a))
        return
    s0, s1 = base.state_dict(), plain_copy(base, finetuned).state_dict()
    parts = {}
    if mode == "generator":
        parts = {k: decompose(s0[k], s1[k], name=k) for k in s0 if default_rotate(k, s0[k])}
    for a in alphas:
        state = {}
        for k, w0 in s0.items():
            if not w0.is_floating_point():
                state[k] = w0
            elif k in parts:
                gen, tau = parts[k]
                state[k] = rotate(w0, a * gen) + a * tau
            else:
                state[k] = w0 + a * (s1[k] - w0)
        model = copy.deepcopy(base)
        model.load_state_dict(state)
        yield model


# ---- plots: pure f(ax, ...) -> artists ------------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(forgetting, plasticity)`` no other point beats on both (less forgetting and more
    plasticity, one strictly), sorted by forgetting."""
    front = [i for i, (f, p) in enumerate(points)
             if not any((f2 <= f and p2 >= p) and (f2 < f or p2 > p) for f2, p2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def trajectory(result: ArenaResult) -> tuple[list[float], list[float]]:
    """``(forgetting, plasticity)`` at every evaluation of the finetune (from ``acc/A`` and ``acc/B`` in its history)."""
    h, base = result.run.history, result.base_scores
    return [base["A"] - a for a in h["acc/A"].values], [b - base["B"] for b in h["acc/B"].values]


def plot_frontier(ax, results: Sequence[ArenaResult], paths: Mapping[str, dict] | None = None,
                  base_scores: dict | None = None, trajectories: bool = True) -> list:
    """Stability–plasticity plane: x = forgetting on A, y = gain on B; one labelled point per finetune, the Pareto
    front as a dashed line, each finetune's trajectory during training as a thin line (``trajectories``), and optional
    interpolation ``paths`` (``{label: Arena.interpolate(...)}``, relative to ``base_scores`` — default: the first
    result's) drawn as dotted lines from the base at (0, 0)."""
    if not results:
        raise ValueError("plot_frontier needs at least one ArenaResult")
    artists = []
    points = [(r.forgetting, r.plasticity) for r in results]
    for i, (r, (f, p)) in enumerate(zip(results, points)):
        if trajectories:
            artists += ax.plot(*trajectory(r), "-", color=f"C{i}", lw=0.8, alpha=0.5)
        artists.append(ax.scatter([f], [p], s=60, color=f"C{i}", zorder=3, label=f"{r.name} ({r.trainable:,} params)"))
        artists.append(ax.annotate(r.name, (f, p), textcoords="offset points", fontsize=8,
                                   xytext=(5, 5 - 14 * (i % 2))))      # alternate above/below: fewer overlaps
    front = pareto_front(points)
    artists += ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, alpha=0.5,
                       label="Pareto front")
    base = base_scores or results[0].base_scores
    for j, (label, path) in enumerate((paths or {}).items()):
        xs = [base["A"] - a for a in path["A"]]
        ys = [b - base["B"] for b in path["B"]]
        artists += ax.plot(xs, ys, ":", marker=".", color=f"C{len(results) + j}", label=label)
    artists.append(ax.axhline(0, color="0.8", lw=0.8, zorder=0))
    artists.append(ax.axvline(0, color="0.8", lw=0.8, zorder=0))
    ax.set_xlabel("forgetting: accuracy lost on A")
    ax.set_ylabel("plasticity: accuracy gained on B")
    ax.legend(fontsize=7)
    return artists


def plot_interpolation(ax, paths: Mapping[str, dict]) -> list:
    """Accuracy on A (solid) and B (dashed) along interpolation paths ``{label: Arena.interpolate(...)}``."""
    artists = []
    for i, (label, path) in enumerate(paths.items()):
        artists += ax.plot(path["alpha"], path["A"], "-o", color=f"C{i}", ms=3, label=f"{label}: A")
        artists += ax.plot(path["alpha"], path["B"], "--s", color=f"C{i}", ms=3, label=f"{label}: B")
    ax.set_xlabel("α (0 = base, 1 = finetuned)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    return artists


def plot_geometry(ax, results: Sequence[ArenaResult], metric: str) -> list:
    """One bar per finetune of a summarized geometry metric (``ArenaResult.geometry[metric]``)."""
    missing = [r.name for r in results if metric not in r.geometry]
    if missing:
        known = sorted(results[0].geometry) if results else []
        raise KeyError(f"no geometry metric {metric!r} for {missing}; available: {known}")
    bars = ax.bar([r.name for r in results], [r.geometry[metric] for r in results],
                  color=[f"C{i}" for i in range(len(results))])
    ax.set_title(metric, fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    return list(bars)


def plot_profile(ax, results: Sequence[ArenaResult], module: str, profile: str = "retention",
                 logy: bool = False) -> list:
    """The final ``retention`` (|u_iᵀW v_i − σ_i|) or ``adaptation`` (‖ΔW v_i‖) profile of one module, per finetune,
    against the index i of the pretrained singular value."""
    if profile not in ("retention", "adaptation"):
        raise ValueError(f"profile must be 'retention' or 'adaptation', got {profile!r}")
    artists = []
    for i, r in enumerate(results):
        values = r.run.history[f"{profile}/{module}"].last()
        artists += ax.plot(range(1, len(values) + 1), values.tolist(), color=f"C{i}", label=r.name)
    ax.set_xlabel("index i of the pretrained singular value")
    ax.set_ylabel(f"{profile} profile of {module}")
    if logy:                                  # exact zeros (untouched directions) are not drawn on a log axis
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return artists


def standard_methods() -> dict[str, Method]:
    """The arena's default line-up for ``Arena.digits`` (MLP 64→128→128→10), adapters on every linear layer at
    comparable budgets — LoRA r=4: 2,344; SoRA r=8: 4,712 before its gates prune it (λ = 1: the soft threshold
    lr·λ = 0.01 per step zeroes gate entries within a few hundred steps); OFT b=16: 2,400;
    BOFT b=8 × 2 butterfly factors: 2,506 (incl. 266 output scales); QOFT b=16 over a 4-bit base: 2,400 trainable
    parameters — plus full finetuning (26,122). Learning rates were picked so that each reaches a similar gain on
    the permuted digits in 200 steps (docs/arena.md)."""
    from .adapters import BOFT, OFT, QOFT, LoRA, SoRA

    return {"full": AdamW(lr=1e-3), "LoRA r4": LoRA(rank=4, alpha=8, lr=1e-2),
            "SoRA r8": SoRA(rank=8, alpha=16, lr=1e-2, sparse_lambda=1.0), "OFT b16": OFT(block=16, lr=3e-3),
            "BOFT b8×2": BOFT(block=8, factors=2, lr=3e-3), "QOFT b16 4-bit": QOFT(block=16, bits=4, group_size=32,
                                                                                   lr=3e-3)}
