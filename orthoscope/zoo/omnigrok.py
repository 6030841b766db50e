"""Omnigrok: Grokking Beyond Algorithmic Data (Liu, Michaud, Tegmark; ICLR 2023; arXiv 2210.01117; code
KindXiaoming/Omnigrok).

**The LU mechanism.** Hold the global weight norm ``w = ‖θ‖₂`` (all parameters together) fixed and train: the
final *training* loss against ``w`` is "L"-shaped (low once ``w`` exceeds a threshold) while the *test* loss is
"U"-shaped, lowest in a "Goldilocks zone" around ``w_c``. A large initialization (``w₀ ≫ w_c``, init scale α) plus a
small weight decay first memorizes at large norm; the test accuracy only rises when decay has shrunk ``w`` to
``w_c`` — grokking, also on non-algorithmic data. With AdamW the norm shrinks roughly as ``exp(−lr·wd·t)``, so the
delay is about ``ln(α)/(lr·wd)`` steps.

**Constrained-norm training** (``ConstrainedNorm``): after every optimizer step, rescale all parameters jointly by
``target/‖θ‖`` (the official code's ``rescale(model, sqrt(L2₀/L2_new))``), with weight decay 0.

Here: the paper's MNIST setting (1,000 training images, MLP width 200, depth 3, α = 8, MSE on one-hot, AdamW
lr 1e-3, batch 200) on sklearn's 8×8 digits (1,000 train / 797 test; MNIST is not shipped), and modular addition
(p = 113, train fraction 0.3, weight decay 1) on an embedding MLP instead of Nanda's transformer (≈ 50× cheaper).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..core.keys import key
from ..methods.base import AdamW, Intervention, check_positive
from ..models import MLP
from ..probes import Probe
from .common import first_crossing


# ---- the norm constraint --------------------------------------------------------------------------------------
def global_norm(model: torch.nn.Module) -> float:
    """``‖θ‖₂`` over all parameters of ``model`` (float64 accumulation)."""
    return math.sqrt(sum((p.detach().double() ** 2).sum().item() for p in model.parameters()))


@torch.no_grad()
def scale_to_norm_(model: torch.nn.Module, norm: float) -> torch.nn.Module:
    """Multiply every parameter by ``norm / ‖θ‖`` so the global norm becomes ``norm`` (in place)."""
    check_positive("norm", norm)
    current = global_norm(model)
    if current == 0:
        raise ValueError("cannot rescale a model whose parameters are all zero")
    for p in model.parameters():
        p.mul_(norm / current)
    return model


@dataclass
class ConstrainedNorm(Intervention):
    """Keep ``‖θ‖₂ = norm`` after every update (Omnigrok's constrained-norm training; use weight decay 0)."""

    norm: float

    def __post_init__(self):
        check_positive("norm", self.norm)

    def after_step(self, run) -> None:
        scale_to_norm_(run.model, self.norm)


@dataclass
class ConstrainedAdamW(AdamW):
    """``AdamW`` followed by ``ConstrainedNorm(norm)`` after every step."""

    norm: float = field(default=1.0, metadata={"help": "the global parameter norm to hold"})

    def interventions(self, model=None):
        return [*super().interventions(model), ConstrainedNorm(self.norm)]


# ---- models and runs ------------------------------------------------------------------------------------------
def digits_mlp(alpha: float = 1.0, width: int = 200, depth: int = 3, seed: int = 0) -> MLP:
    """The paper's MNIST MLP on 8×8 digits: ``64 → width → … → 10`` (``depth`` linear layers, ReLU), every
    parameter multiplied by ``alpha`` after PyTorch's default init."""
    check_positive("alpha", alpha)
    torch.manual_seed(seed)
    return MLP(64, (width,) * (depth - 1), 10, init_scale=alpha)


class AtSteps(Probe):
    """Run ``probe`` only at the given steps (and at step 0): log-spaced evaluation makes a 1e5-step run cheap to
    watch and resolves the early memorization as finely as the late rise."""

    def __init__(self, probe: Probe, when):
        super().__init__(every=1)
        self.probe, self.when = probe, {0, *(int(s) for s in when)}
        self.name = f"{probe.name}@steps"

    def __call__(self, run) -> dict:
        return self.probe(run) if run.step_count in self.when else {}


def _run(model, task, method, *, loss, steps, eval_every, seed, name, progress, per_decade=None):
    from ..probes import Evaluate, WeightNorm
    from ..training.run import Run

    if per_decade is None:
        probes = [Evaluate(eval_every), WeightNorm(eval_every)]
    else:
        from .time_scaling import log_steps

        when = log_steps(steps, per_decade)
        probes = [AtSteps(Evaluate(1), when), AtSteps(WeightNorm(1), when)]
    run = Run(model, task, method, loss=loss, probes=probes, seed=seed, name=name)
    return run.train(steps, progress=progress)


def train_digits(*, alpha: float = 8.0, weight_decay: float = 0.1, lr: float = 1e-3, steps: int = 20_000,
                 batch_size: int = 200, n_train: int = 1000, width: int = 200, constrained_norm: float | None = None,
                 seed: int = 0, eval_every: int = 50, per_decade: int | None = None, progress: bool = False):
    """Omnigrok on digits. ``constrained_norm``: hold ‖θ‖ at that value (weight decay is then ignored: set 0).
    Evaluates every ``eval_every`` steps, or — with ``per_decade`` — at that many log-spaced steps per decade."""
    from ..tasks import Digits

    task = Digits(n_train=n_train, batch_size=batch_size, seed=seed)
    model = digits_mlp(alpha, width=width, seed=seed)
    if constrained_norm is None:
        method = AdamW(lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    else:
        method = ConstrainedAdamW(lr=lr, betas=(0.9, 0.999), weight_decay=0.0, norm=constrained_norm)
        scale_to_norm_(model, constrained_norm)
    name = f"α={alpha:g}, wd={weight_decay:g}" if constrained_norm is None else f"‖θ‖={constrained_norm:.3g}"
    return _run(model, task, method, loss="mse_onehot", steps=steps, eval_every=eval_every, seed=seed, name=name,
                progress=progress, per_decade=per_decade)


def train_modular(*, p: int = 113, train_frac: float = 0.3, alpha: float = 1.0, weight_decay: float = 1.0,
                  lr: float = 3e-3, steps: int = 3000, d_embed: int = 64, hidden: int = 128,
                  constrained_norm: bool = False, seed: int = 0, eval_every: int = 20, progress: bool = False):
    """Modular addition on an embedding MLP (``[a, b] → concat(E_a, E_b) → hidden → p``), full batch, CE.
    ``constrained_norm=True`` holds ‖θ‖ at its value after scaling the init by ``alpha`` (weight decay ignored)."""
    from ..tasks import ModularArithmetic

    task = ModularArithmetic(p=p, train_frac=train_frac, seed=seed)
    torch.manual_seed(seed)
    model = MLP(vocab_size=p, n_tokens=2, d_embed=d_embed, hidden=(hidden,), d_out=p, init_scale=alpha)
    if constrained_norm:
        method = ConstrainedAdamW(lr=lr, betas=(0.9, 0.98), weight_decay=0.0, norm=global_norm(model))
    else:
        method = AdamW(lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    name = f"α={alpha:g}, " + ("fixed norm" if constrained_norm else f"wd={weight_decay:g}")
    return _run(model, task, method, loss="cross_entropy", steps=steps, eval_every=eval_every, seed=seed, name=name,
                progress=progress)


def grokking_delay(run, train_threshold: float = 0.99, test_threshold: float = 0.9) -> dict:
    """First steps at which train accuracy ≥ ``train_threshold`` and test accuracy ≥ ``test_threshold``, and
    their ratio ``t_test / t_train`` (None where never reached)."""
    h = run.history
    t_train = first_crossing(h["acc/train"].steps, h["acc/train"].values, train_threshold)
    t_test = first_crossing(h["acc/test"].steps, h["acc/test"].values, test_threshold)
    ratio = t_test / max(t_train, 1) if t_train is not None and t_test is not None else None
    return {"t_train": t_train, "t_test": t_test, "ratio": ratio}


# ---- the LU picture -------------------------------------------------------------------------------------------
@dataclass
class LULandscape:
    """Final train / test loss and accuracy of constrained-norm runs, one per norm."""

    norms: list[float]
    train_loss: list[float]
    test_loss: list[float]
    train_acc: list[float]
    test_acc: list[float]
    init_norm: float

    def goldilocks(self) -> float:
        """The norm with the lowest test loss (the bottom of the U)."""
        return self.norms[min(range(len(self.norms)), key=lambda i: self.test_loss[i])]


def lu_landscape(scales, *, steps: int = 1500, width: int = 200, lr: float = 1e-3, batch_size: int = 200,
                 seed: int = 0, progress: bool = True) -> LULandscape:
    """Constrained-norm runs on digits at ``‖θ‖ = scale · ‖θ_init‖`` for each scale (``‖θ_init‖``: PyTorch's
    default init of the same MLP). Reports the best value over the run's evaluations, as the paper does."""
    scales = [float(s) for s in scales]
    if not scales:
        raise ValueError("lu_landscape needs at least one scale")
    for s in scales:
        check_positive("scale", s)
    from .scaling import sweep

    init_norm = global_norm(digits_mlp(1.0, width=width, seed=seed))

    def one(scale, _seed):
        run = train_digits(alpha=1.0, weight_decay=0.0, lr=lr, steps=steps, batch_size=batch_size, width=width,
                           constrained_norm=scale * init_norm, seed=seed, eval_every=max(steps // 20, 1))
        h = run.history
        return {"train_loss": min(h["loss/train"].values), "test_loss": min(h["loss/test"].values),
                "train_acc": max(h["acc/train"].values), "test_acc": max(h["acc/test"].values)}

    res = sweep(one, scales, [seed], progress=progress, desc="LU landscape")
    col = lambda k: [r[k] for r in res.records]
    return LULandscape([s * init_norm for s in scales], col("train_loss"), col("test_loss"), col("train_acc"),
                       col("test_acc"), init_norm)


# ---- plots (pure) ---------------------------------------------------------------------------------------------
def plot_lu(ax, lu: LULandscape):
    """Train loss (the L) and test loss (the U) against the fixed weight norm, log-log; dashed line at ‖θ_init‖."""
    ax.plot(lu.norms, lu.train_loss, "o-", label="train loss (L)")
    ax.plot(lu.norms, lu.test_loss, "s-", label="test loss (U)")
    ax.axvline(lu.init_norm, color="gray", ls="--", lw=1, label="‖θ_init‖ (α = 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight norm ‖θ‖ (held fixed)")
    ax.set_ylabel("MSE loss")
    ax.legend(fontsize=8)
    return ax


def plot_grokking(ax, run, *, norm_axis: bool = True):
    """Train and test accuracy against step (log x) and, on a twin axis, the global weight norm."""
    h = run.history
    for split in ("train", "test"):
        s = h[key("acc", split)]
        ax.plot([max(t, 1) for t in s.steps], s.values, label=f"{split} accuracy")
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(run.name)
    ax.legend(fontsize=8, loc="upper left")
    if norm_axis and "weight_norm/total" in h:
        tw = ax.twinx()
        s = h["weight_norm/total"]
        tw.plot([max(t, 1) for t in s.steps], s.values, color="gray", lw=1)
        tw.set_ylabel("‖θ‖", color="gray")
    return ax
