"""Methods: what a paper calls "the optimizer", as one object a ``Run`` takes.

A method bundles three things:

* ``attach(model)`` — a reparametrization (an adapter such as POET or OFT), or nothing;
* ``make_optimizer(model)`` — the ``torch.optim.Optimizer`` over the parameters that train;
* ``interventions(model)`` — actions between steps that may mutate the model (POET's merge-then-reinitialize,
  KAN grid updates, gradient clipping).

So a comparison is just a list of methods: ``[AdamW(lr=1e-3), SGD(lr=0.1), POET(block=32), ...]``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from ..core.validate import check_number


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """``value`` must be a finite number > 0 (≥ 0 with ``allow_zero``); a string or bool is refused by type."""
    check_number(name, value, low=0, low_open=not allow_zero)


def check_grad_clip(grad_clip) -> None:
    if grad_clip is not None:
        check_positive("grad_clip", grad_clip)


def check_betas(betas) -> None:
    """Adam's (β1, β2): two numbers in [0, 1)."""
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas must be two numbers (β1, β2) in [0, 1), got {betas!r:.60}")
    for i, b in enumerate(betas):
        check_number(f"betas[{i}]", b, low=0)
        if b >= 1:
            raise ValueError(f"betas must lie in [0, 1), got {tuple(betas)!r}")


class Intervention:
    """Runs between steps and may mutate the run. Subclasses override one or both hooks.

    ``before_step(run)`` runs after ``backward`` and before ``optimizer.step`` (e.g. gradient clipping);
    ``after_step(run)`` runs after the update, once ``run.step_count`` has advanced (e.g. merges every k steps).
    ``state_dict``/``load_state_dict`` hold tensors only, so checkpoints stay pickle-free.
    ``needs_full_weights = True`` says ``after_step`` works on whole matrices (a merge): under FSDP2 the run unshards
    the weights around it and writes the result back to the shards (``orthoscope.distributed``); elementwise
    interventions run on the shards as they are.
    """

    needs_full_weights = False

    def before_step(self, run) -> None:  # pragma: no cover - default no-op
        pass

    def after_step(self, run) -> None:  # pragma: no cover - default no-op
        pass

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


@dataclass
class ClipGradNorm(Intervention):
    """Clip the global gradient norm to ``max_norm`` before every update."""

    max_norm: float = 1.0

    def __post_init__(self):
        check_positive("max_norm", self.max_norm)

    def before_step(self, run) -> None:
        torch.nn.utils.clip_grad_norm_(run.trainable_parameters(), self.max_norm)


@dataclass
class Method:
    """Base class: no reparametrization, no interventions. Subclasses implement ``make_optimizer``."""

    grad_clip: float | None = field(default=None, metadata={"help": "clip the global grad norm (None: off)"})

    @property
    def name(self) -> str:
        return type(self).__name__

    def attach(self, model: nn.Module) -> nn.Module:
        return model

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def interventions(self, model: nn.Module | None = None) -> list[Intervention]:
        """The interventions of one run of this method on ``model`` (the model ``attach`` returned). A method keeps
        no per-run state: whatever an intervention needs from the run comes from ``model``."""
        return [ClipGradNorm(self.grad_clip)] if self.grad_clip else []

    def config(self) -> dict:
        """JSON-able description (stored in checkpoints and shown in legends)."""
        return {"method": self.name, **{f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}}

    def label(self) -> str:
        shown = {k: v for k, v in self.config().items() if k not in ("method", "grad_clip") or v}
        return self.name + "(" + ", ".join(f"{k}={v}" for k, v in shown.items() if k != "method") + ")"


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@dataclass
class AdamW(Method):
    """``torch.optim.AdamW`` with decoupled weight decay on every trainable parameter."""

    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    betas: tuple[float, float] = field(default=(0.9, 0.98), metadata={"help": "Adam β1, β2"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay"})
    eps: float = field(default=1e-8, metadata={"help": "Adam ε"})

    def __post_init__(self):
        check_grad_clip(self.grad_clip)
        check_positive("lr", self.lr, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("eps", self.eps)
        check_betas(self.betas)

    def make_optimizer(self, model):
        return torch.optim.AdamW(trainable(model), lr=self.lr, betas=tuple(self.betas),
                                 weight_decay=self.weight_decay, eps=self.eps)


@dataclass
class SGD(Method):
    """``torch.optim.SGD`` (optionally with momentum / Nesterov)."""

    lr: float = field(default=1e-2, metadata={"help": "learning rate"})
    momentum: float = field(default=0.0, metadata={"help": "heavy-ball momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 weight decay (coupled, as torch.optim.SGD)"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum"})

    def __post_init__(self):
        check_grad_clip(self.grad_clip)
        check_positive("lr", self.lr, allow_zero=True)
        check_number("momentum", self.momentum, low=0, high=1)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)

    def make_optimizer(self, model):
        return torch.optim.SGD(trainable(model), lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay, nesterov=self.nesterov)


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)
