"""Neural Thermodynamic Laws for LLM training (Liu, Liu, Gore & Tegmark 2025; arXiv 2505.10559) — the river-valley
toy and learning-rate schedules.

**What follows the paper and what does not.** No official code was found, and the paper's exact toy definitions
and LLM settings were not recovered (shared/reference/learning-dynamics-toys.md §5b). What the abstract states: in a
*river-valley* landscape — sharp "valley" directions beside a flat "river" — training loss splits into a fast
**thermal** part (valley fluctuations set by the current learning rate η: the temperature) and a slow river part;
the paper gives schedule guidelines (a ~1/t-shaped final decay; a higher stable-phase η). The toy below is the
reference's **sanity toy** [its derivation, not the paper's model]:

    ℓ(x, y) = ½ Σ_j a_j x_j² − c·y,   SGD with additive gradient noise σξ (ξ ~ N(0, 1)) on every coordinate:
    x ← x − η(a x + σξ)  ⇒  stationary ⟨x²⟩ = ησ² / (a(2 − ηa)),  ⟨½ a x²⟩ = ησ² / (2(2 − ηa)) ≈ ησ²/4.

So the thermal (valley) loss is ∝ η and **independent of the valley's sharpness a** (equipartition: temperature ∝
η), and annealing η → 0 removes it, while the river coordinate advances by c·∫η dt (the river loss −c·y falls by
c²∫η dt). ``steady_valley_loss`` measures the first, ``schedule_run`` the second; ``orthoscope reproduce thermal``
checks slope 1 ± 0.1 in η and ±10 % over a decade of a. The tiny-LM half (constant / WSD / 1/t decays on TinyLang,
the loss drop at the decay ∝ η) is in ``thermal_lm`` and ``orthoscope reproduce thermal_lm``: that one is the paper's
claim tested on our own tiny LM, with our own settings (AdamW as the paper; SGD with momentum and AdamW's ε as our
variants, REPRODUCTIONS.md thermal_lm note 5).

The updates are ``torch.optim.SGD`` steps on hand-set gradients (one param group per (η, a) pair, so a whole sweep is
one optimizer), and the schedules are ``torch.optim.lr_scheduler.LambdaLR`` factors (``schedule_factor``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..methods.base import Intervention, check_positive

SCHEDULES = ("constant", "wsd", "inverse_time")


# ---- learning-rate schedules -------------------------------------------------------------------------------------
@dataclass
class ScheduleFactor:
    """η(t)/η for ``LambdaLR``: ``constant``; ``wsd`` (warmup–stable–decay: linear warmup over ``warmup`` steps, flat,
    then a linear decay towards 0 over the last ``decay`` steps, its last step at η/decay); ``inverse_time`` (the same warmup and plateau, then
    η/(1 + (t − t_d)/τ) over the last ``decay`` steps with τ = ``decay``/``tau_ratio`` — the 1/t shape the paper
    recommends, ending near η/(1 + tau_ratio))."""

    kind: str
    total: int
    warmup: int = 0
    decay: int = 0
    tau_ratio: float = 20.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.kind!r}")
        if not (0 <= self.warmup and 0 <= self.decay and self.warmup + self.decay <= self.total):
            raise ValueError(f"need 0 ≤ warmup ({self.warmup}) and 0 ≤ decay ({self.decay}) with warmup + decay ≤ "
                             f"total ({self.total})")
        if self.kind != "constant" and self.decay == 0:
            raise ValueError(f"schedule {self.kind!r} needs decay > 0 steps")
        check_positive("tau_ratio", self.tau_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        start = self.total - self.decay
        if self.kind == "constant" or step < start:
            return 1.0
        t = step - start                                  # 0 … decay − 1
        if self.kind == "wsd":
            return 1.0 - t / self.decay                   # ends at η/decay (the last update still moves)
        return 1.0 / (1.0 + self.tau_ratio * t / self.decay)


# ---- the river-valley toy ----------------------------------------------------------------------------------------
def steady_valley_loss(etas, sharpness, *, sigma: float = 1.0, replicas: int = 2000, relax: float = 8.0,
                       measure: float = 16.0, seed: int = 0) -> torch.Tensor:
    """⟨½ a x²⟩ in the stationary state for every (η, a) — a ``[len(etas), len(sharpness)]`` float64 tensor.

    Each pair runs ``relax / (η a)`` steps from x = 0 (the variance relaxes as exp(−2ηa t)) and is then averaged over
    ``measure / (η a)`` further steps and ``replicas`` independent chains. Exact value: ησ²/(2(2 − ηa))."""
    for name, v in (("sigma", sigma), ("relax", relax), ("measure", measure)):
        check_positive(name, v)
    etas, sharpness = [float(e) for e in etas], [float(s) for s in sharpness]
    if any(e * s >= 2 for e in etas for s in sharpness):
        raise ValueError("every η·a must be < 2 (GD on a quadratic of curvature a diverges for η > 2/a)")
    out = torch.empty(len(etas), len(sharpness), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    a = torch.tensor(sharpness, dtype=torch.float64)[:, None]
    for i, eta in enumerate(etas):                      # chains of one η share a step count (the smallest ηa sets it)
        x = torch.zeros(len(sharpness), replicas, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([x], lr=eta)
        t_relax = math.ceil(relax / (eta * min(sharpness)))
        t_measure = math.ceil(measure / (eta * min(sharpness)))
        total = torch.zeros(len(sharpness), dtype=torch.float64)
        for t in range(t_relax + t_measure):
            x.grad = a * x.detach() + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
            opt.step()
            if t >= t_relax:
                total += (0.5 * a * x.detach() ** 2).mean(1)
        out[i] = total / t_measure
    return out


def thermal_prediction(eta, a, sigma: float = 1.0) -> float:
    """The exact stationary valley loss ησ²/(2(2 − ηa)) of the toy (≈ ησ²/4 for ηa ≪ 1)."""
    return eta * sigma ** 2 / (2 * (2 - eta * a))


@dataclass
class ScheduleRun:
    """Loss components over steps for one schedule: ``valley`` (thermal, ⟨½ Σ a_j x_j²⟩ over replicas), ``river``
    (−c·⟨y⟩), ``lr`` (η at each step)."""

    schedule: str
    steps: list[int]
    lr: list[float]
    valley: list[float]
    river: list[float]

    @property
    def total(self) -> list[float]:
        return [v + r for v, r in zip(self.valley, self.river)]


def schedule_run(schedule: str, *, lr: float = 0.02, steps: int = 4000, warmup: int = 0, decay: int = 1000,
                 sharpness=(1.0, 10.0), sigma: float = 1.0, c: float = 0.1, replicas: int = 500, every: int = 10,
                 seed: int = 0, tau_ratio: float = 20.0) -> ScheduleRun:
    """Train the river-valley toy (valleys of curvatures ``sharpness``, river slope ``c``) with SGD under a schedule
    (``ScheduleFactor``); the learning rate is set by ``torch.optim.lr_scheduler.LambdaLR``."""
    check_positive("lr", lr)
    if lr * max(sharpness) >= 2:
        raise ValueError(f"lr·max(sharpness) = {lr * max(sharpness):g} ≥ 2: SGD diverges in the sharpest valley")
    factor = ScheduleFactor(schedule, steps, warmup=warmup, decay=decay if schedule != "constant" else 0,
                            tau_ratio=tau_ratio)
    gen = torch.Generator().manual_seed(seed)
    a = torch.tensor(sharpness, dtype=torch.float64)[:, None]
    x = torch.zeros(len(sharpness), replicas, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(replicas, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([x, y], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rec = ScheduleRun(schedule, [], [], [], [])
    for t in range(steps):
        x.grad = a * x.detach() + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        y.grad = -c + sigma * torch.randn(y.shape, generator=gen, dtype=torch.float64)
        eta = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        if (t + 1) % every == 0 or t + 1 == steps:
            with torch.no_grad():
                rec.steps.append(t + 1)
                rec.lr.append(eta)
                rec.valley.append(float((0.5 * a * x * x).sum(0).mean()))
                rec.river.append(float(-c * y.mean()))
    return rec


# ---- the tiny LM: the loss drop at the decay ----------------------------------------------------------------------
class ScheduledLR(Intervention):
    """An intervention that sets every param group's lr to ``lr · factor(step)``
    before each update — the schedule applied to a ``Run`` branch from its current step on."""

    def __init__(self, lr: float, factor: ScheduleFactor, offset: int = 0):
        self.lr, self.factor, self.offset = lr, factor, offset

    def before_step(self, run) -> None:
        for group in run.optimizer.param_groups:
            group["lr"] = self.lr * self.factor(run.step_count - self.offset)


@dataclass
class DecayDrop:
    """For one stable-phase lr: validation loss at the end of the stable phase; ``final``: after ``decay`` more
    steps, the branch that kept η constant and each decayed branch; ``drop[kind]`` = constant − decayed at the same
    step. ``constant_curve`` (step offset → validation loss, every ``window_every`` steps; empty without a window)
    gives ``river_matched``: the constant branch's loss averaged over ``window`` steps around the offset where it has
    moved as far along the river as the decayed branch (the same ∫η dt, ``river_time``), and ``thermal[kind]`` =
    that minus the decayed branch's final loss — the river-valley decomposition's thermal loss, with the river
    progress a decay gives up taken out."""

    lr: float
    stable_loss: float
    final: dict
    river_time: dict = field(default_factory=dict)      # kind → ∫η dt over the decay, in units of η·steps
    constant_curve: list = field(default_factory=list)  # [(offset, loss)]
    window: int = 0

    @property
    def drop(self) -> dict:
        return {k: self.final["constant"] - v for k, v in self.final.items() if k != "constant"}

    def at_offset(self, offset: float) -> float:
        """The constant branch's mean validation loss over readings within ``window/2`` of ``offset``."""
        near = [v for o, v in self.constant_curve if abs(o - offset) <= self.window / 2]
        if not near:
            raise ValueError(f"no constant-branch reading within {self.window / 2:g} steps of offset {offset:g}")
        return sum(near) / len(near)

    @property
    def thermal(self) -> dict:
        return {k: self.at_offset(self.river_time[k]) - self.final[k] for k in self.river_time}


def thermal_lm(lrs, *, stable: int = 600, decay: int = 200, warmup: int = 50, d_model: int = 32, d_mlp: int = 128,
               batch_size: int = 32, optimizer: str = "adamw", momentum: float = 0.0, eps: float = 1e-8,
               window: int = 0, window_every: int = 4, seed: int = 0, progress: bool = False) -> list[DecayDrop]:
    """TinyLang with the tiny transformer and AdamW: for each lr, ``warmup`` + ``stable`` steps at that lr, then
    three branches of ``decay`` steps from the same state — constant η, WSD's linear decay to 0, and the 1/t decay —
    compared on the validation loss (the fixed ``val`` windows). With ``window`` > 0 the constant branch is read every
    ``window_every`` steps, its final value is the mean over its last ``window`` steps (one reading of a branch at
    temperature η fluctuates), and ``DecayDrop.thermal`` compares each decayed branch with the constant branch at
    equal river time. The paper's claim: the drop at the decay is the thermal loss, ∝ η. ``optimizer="sgd"`` trains
    with ``torch.optim.SGD`` instead (the toy's optimizer; heavy-ball ``momentum``), and ``eps`` is AdamW's ε (a
    larger ε turns Adam's normalized steps into plain gradient steps in the directions whose gradient is ≪ ε)."""
    import copy

    from ..methods.base import SGD, AdamW
    from ..models.transformer import tiny_lm
    from ..tasks.tinylang import TinyLang
    from ..training.run import Run

    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    if optimizer == "adamw" and momentum:
        raise ValueError(f"momentum ({momentum:g}) applies to optimizer='sgd' only (AdamW's β1 is fixed at 0.9)")
    if optimizer == "sgd" and eps != 1e-8:
        raise ValueError(f"eps ({eps:g}) is AdamW's ε; it does not apply to optimizer='sgd'")
    if not (0 <= window <= decay and window_every >= 1 and decay % window_every == 0):
        raise ValueError(f"need 0 ≤ window ({window}) ≤ decay ({decay}) and decay a multiple of window_every "
                         f"({window_every}) ≥ 1")
    out = []
    for lr in lrs:
        check_positive("lr", lr)
        task = TinyLang(batch_size=batch_size)
        method = AdamW(lr=lr, weight_decay=0.0, eps=eps) if optimizer == "adamw" else SGD(lr=lr, momentum=momentum)
        run = Run(tiny_lm(task, d_model=d_model, d_mlp=d_mlp, seed=seed), task, method,
                  probes=[], seed=seed, name=f"lr {lr:g}")
        if warmup:
            run.interventions.append(ScheduledLR(lr, ScheduleFactor("constant", warmup + stable, warmup=warmup)))
        run.train(warmup + stable, progress=progress)
        run.interventions = [iv for iv in run.interventions if not isinstance(iv, ScheduledLR)]
        rec = DecayDrop(lr, _val_loss(run), {}, window=window)
        for kind in SCHEDULES:
            factor = ScheduleFactor(kind, decay, decay=0 if kind == "constant" else decay)
            branch = copy.deepcopy(run)
            branch.interventions.append(ScheduledLR(lr, factor, offset=run.step_count))
            if kind == "constant" and window:
                for offset in range(window_every, decay + 1, window_every):
                    branch.train(window_every, progress=progress)
                    rec.constant_curve.append((offset, _val_loss(branch)))
                rec.final[kind] = rec.at_offset(decay - window / 2)
            else:
                branch.train(decay, progress=progress)
                rec.final[kind] = _val_loss(branch)
                if kind != "constant" and window:
                    rec.river_time[kind] = sum(factor(t) for t in range(decay))
        out.append(rec)
    return out


@torch.no_grad()
def _val_loss(run) -> float:
    x, y = run.task.eval_sets()["val"]
    run.model.eval()
    try:
        return float(run.loss_fn(run.model(x), y))
    finally:
        run.model.train()


__all__ = ["ScheduleFactor", "SCHEDULES", "steady_valley_loss", "thermal_prediction", "schedule_run", "ScheduleRun",
           "thermal_lm", "DecayDrop", "ScheduledLR"]
