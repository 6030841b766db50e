"""The optimizers of ``orthoscope.optim`` as methods a ``Run`` takes (``orthoscope.methods.Method``).

    Run(model, task, Muon(lr=0.02))                 # hidden matrices: Muon; embeddings/head/vectors: AdamW
    Run(model, task, Pion(lr=1e-3))                 # hidden matrices rotate on both sides: spectrum kept
    Run(model, task, Hyperball(base="adam"))        # AdamH (base="muon": MuonH)
    Run(model, task, FOCUS(lr=1e-3, gamma=0.1))     # every parameter

Which weights are "hidden matrices" is decided by ``orthoscope.optim.matrix_param_groups`` (every ``nn.Linear``
weight except the output head); ``exclude=`` overrides the head detection with peft-style module rules.
``method.matrix_names(model)`` shows the split.

One declaration per setting: every default below is *read from the optimizer's signature* (``setting``), so the
optimizer, its method, a run config and the docs cannot disagree; the method adds only the help text. Arguments are
checked at construction by the optimizer's own checks, run on empty parameter groups (``check_settings``): no
stand-in model, no second copy of the rules. The optimizer classes of the same names live in ``orthoscope.optim``;
every method, these included, is also importable from the top level (``from orthoscope import Muon, POET, OFT``).
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import MISSING, dataclass, field, fields

from torch import nn

from ..methods.base import Method
from .common import matrix_param_groups
from .focus import FOCUS as FOCUSOptimizer
from .hyperball import AdamH, MuonH
from .muon import Muon as MuonOptimizer
from .pion import Pion as PionOptimizer


def setting(optimizer: type, name: str, help: str):
    """A method field whose default is ``optimizer``'s own default for argument ``name`` — read from its signature,
    so the value is declared once, in the optimizer."""
    parameter = inspect.signature(optimizer.__init__).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise TypeError(f"{optimizer.__name__}.{name} has no default to read")
    return field(default=parameter.default, metadata={"help": help})


def empty_groups() -> list[dict]:
    """One empty matrix group and one empty AdamW group: an optimizer built on these runs all its argument checks
    and touches no tensor, so a method checks its settings at construction without a stand-in model."""
    return [{"params": [], "matrix": True}, {"params": [], "matrix": False}]


def _short_label(method: Method) -> str:
    """``Name(lr=…, <fields that differ from their defaults>)`` — short enough for a legend."""
    parts = []
    for f in fields(method):
        value, default = getattr(method, f.name), f.default
        if f.name == "lr" or (default is MISSING or value != default):
            parts.append(f"{f.name}={value!r}" if isinstance(value, str) else f"{f.name}={value}")
    return f"{method.name}({', '.join(parts)})"


@dataclass
class _MatrixMethod(Method):
    """A method whose optimizer has a matrix path; ``exclude`` picks the modules that go to AdamW instead."""

    exclude: object = field(default=None, metadata={"help": "module rules kept off the matrix path "
                                                            "(None: the output head, found by name or position)"})

    def groups(self, model: nn.Module) -> list[dict]:
        return matrix_param_groups(model, exclude=self.exclude)

    def matrix_names(self, model: nn.Module) -> list[str]:
        """Names of the parameters this method trains on its matrix path (everything else: AdamW)."""
        return [name for name, _ in self.groups(model)[0]["params"]]

    def make_optimizer(self, model):
        return self.build(self.groups(model))

    def label(self) -> str:
        return _short_label(self)

    def build(self, groups: list[dict]):
        raise NotImplementedError

    def __post_init__(self):
        with warnings.catch_warnings():      # e.g. Hyperball's weight-decay warning: left for the real optimizer
            warnings.simplefilter("ignore")
            self.build(empty_groups())        # the optimizer's own checks: a bad value fails here, with its message


@dataclass
class Muon(_MatrixMethod):
    """Muon (``orthoscope.optim.Muon``): Newton–Schulz-orthogonalized Nesterov momentum on hidden matrices."""

    lr: float = setting(MuonOptimizer, "lr", "Muon learning rate (0.02 reference; ~AdamW lr with rms_match)")
    momentum: float = setting(MuonOptimizer, "momentum", "momentum β")
    nesterov: bool = setting(MuonOptimizer, "nesterov", "Nesterov look-ahead")
    weight_decay: float = setting(MuonOptimizer, "weight_decay", "decoupled weight decay on matrices")
    ns_steps: int = setting(MuonOptimizer, "ns_steps", "Newton–Schulz iterations")
    backend: str = setting(MuonOptimizer, "backend", "'newton_schulz' or 'svd' (exact U Vᵀ)")
    rms_match: float | None = setting(MuonOptimizer, "rms_match", "Kimi RMS matching constant (e.g. 0.2)")
    adamw_lr: float = setting(MuonOptimizer, "adamw_lr", "AdamW lr for embeddings, head and vectors")
    adamw_betas: tuple[float, float] = setting(MuonOptimizer, "adamw_betas", "AdamW betas")
    adamw_weight_decay: float = setting(MuonOptimizer, "adamw_weight_decay", "AdamW decoupled weight decay")

    def build(self, groups):
        return MuonOptimizer(groups, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                             weight_decay=self.weight_decay, ns_steps=self.ns_steps, backend=self.backend,
                             rms_match=self.rms_match, adamw_lr=self.adamw_lr, adamw_betas=self.adamw_betas,
                             adamw_weight_decay=self.adamw_weight_decay)


@dataclass
class Pion(_MatrixMethod):
    """Pion (``orthoscope.optim.Pion``): hidden matrices move by rotations on both sides; spectrum preserved."""

    lr: float = setting(PionOptimizer, "lr", "learning rate (update RMS = lr·rms)")
    betas: tuple[float, float] = setting(PionOptimizer, "betas", "Pion moment betas")
    side: str = setting(PionOptimizer, "side", "'both', 'alternate', 'in' or 'out'")
    momentum: str = setting(PionOptimizer, "momentum", "'lie' or 'transported_ambient'")
    second_moment: bool = setting(PionOptimizer, "second_moment", "Adam-style division by √v")
    rms: float = setting(PionOptimizer, "rms", "RMS constant of the induced ambient update")
    degree: object = setting(PionOptimizer, "degree", "truncated-exponential degree, or 'exact'")
    form: str = setting(PionOptimizer, "form", "'product' (paper) or 'additive' (released code)")
    adamw_lr: float = setting(PionOptimizer, "adamw_lr", "AdamW lr for embeddings, head and vectors")
    adamw_weight_decay: float = setting(PionOptimizer, "adamw_weight_decay", "AdamW decoupled weight decay")

    def build(self, groups):
        return PionOptimizer(groups, lr=self.lr, betas=self.betas, side=self.side, momentum=self.momentum,
                             second_moment=self.second_moment, rms=self.rms, degree=self.degree, form=self.form,
                             adamw_lr=self.adamw_lr, adamw_weight_decay=self.adamw_weight_decay)


@dataclass
class Hyperball(_MatrixMethod):
    """AdamH / MuonH (``orthoscope.optim.AdamH``/``MuonH``): hidden matrices move on a sphere of fixed radius."""

    base: str = field(default="adam", metadata={"help": "'adam' (AdamH) or 'muon' (MuonH)"})
    lr: float = setting(AdamH, "lr", "angular step size η")
    granularity: str = setting(AdamH, "granularity", "'frobenius' or 'column' norms")
    radius: float | None = setting(AdamH, "radius", "None: keep ‖W₀‖; r: rescale to norm r")
    betas: tuple[float, float] = setting(AdamH, "betas", "AdamH moments (base='adam')")
    momentum: float = setting(MuonH, "momentum", "MuonH momentum (base='muon')")
    adamw_lr: float = setting(AdamH, "adamw_lr", "AdamW lr for embeddings, head and vectors")
    adamw_weight_decay: float = setting(AdamH, "adamw_weight_decay", "AdamW decoupled weight decay")

    @property
    def name(self) -> str:
        return {"adam": "AdamH", "muon": "MuonH"}.get(self.base, "Hyperball")

    def build(self, groups):
        if self.base not in ("adam", "muon"):
            raise ValueError(f"base must be 'adam' (AdamH) or 'muon' (MuonH), got {self.base!r}")
        common = dict(lr=self.lr, granularity=self.granularity, radius=self.radius, adamw_lr=self.adamw_lr,
                      adamw_weight_decay=self.adamw_weight_decay)
        if self.base == "adam":
            return AdamH(groups, betas=self.betas, **common)
        return MuonH(groups, momentum=self.momentum, **common)


@dataclass
class FOCUS(Method):
    """FOCUS (``orthoscope.optim.FOCUS``) on every trainable parameter; ``gamma=0`` is Signum."""

    lr: float = setting(FOCUSOptimizer, "lr", "step size (per-coordinate step ≈ lr)")
    betas: tuple[float, float] = setting(FOCUSOptimizer, "betas", "(momentum β1, parameter-EMA β2)")
    gamma: float = setting(FOCUSOptimizer, "gamma", "attraction to the parameter EMA (0: Signum)")
    weight_decay: float = setting(FOCUSOptimizer, "weight_decay", "decay applied through the parameter EMA")

    def label(self) -> str:
        return _short_label(self)

    def make_optimizer(self, model):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        return FOCUSOptimizer(named, lr=self.lr, betas=self.betas, gamma=self.gamma,
                              weight_decay=self.weight_decay)

    def __post_init__(self):
        FOCUSOptimizer([{"params": []}], lr=self.lr, betas=self.betas, gamma=self.gamma,
                       weight_decay=self.weight_decay)          # its own checks, on an empty group


__all__ = ["Muon", "Pion", "Hyperball", "FOCUS"]
