"""The optimizers of ``orthoscope.optim`` as methods a ``Run`` takes (``orthoscope.methods.Method``).

    Run(model, task, Muon(lr=0.02))                 # hidden matrices: Muon; embeddings/head/vectors: AdamW
    Run(model, task, Pion(lr=1e-3))                 # hidden matrices rotate on both sides: spectrum kept
    Run(model, task, Hyperball(base="adam"))        # AdamH (base="muon": MuonH)
    Run(model, task, FOCUS(lr=1e-3, gamma=0.1))     # every parameter

Which weights are "hidden matrices" is decided by ``orthoscope.optim.matrix_param_groups`` (every ``nn.Linear``
weight except the output head); ``exclude=`` overrides the head detection with peft-style module rules.
``method.matrix_names(model)`` shows the split. Optimizer classes of the same names live in ``orthoscope.optim``.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

import warnings

from torch import nn

from ..methods import Method
from .common import matrix_param_groups
from .focus import FOCUS as FOCUSOptimizer
from .hyperball import AdamH, MuonH
from .muon import Muon as MuonOptimizer
from .pion import Pion as PionOptimizer


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
        # Build once on a stand-in model so bad arguments fail at construction, with the optimizer's own messages
        # (warnings, e.g. Hyperball's weight-decay one, are left for the real make_optimizer).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.build(matrix_param_groups(_Probe(), exclude=[]))


@dataclass
class Muon(_MatrixMethod):
    """Muon (``orthoscope.optim.Muon``): Newton–Schulz-orthogonalized Nesterov momentum on hidden matrices."""

    lr: float = field(default=0.02, metadata={"help": "Muon learning rate (0.02 reference; ~AdamW lr with rms_match)"})
    momentum: float = field(default=0.95, metadata={"help": "momentum β"})
    nesterov: bool = field(default=True, metadata={"help": "Nesterov look-ahead"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay on matrices"})
    ns_steps: int = field(default=5, metadata={"help": "Newton–Schulz iterations"})
    backend: str = field(default="newton_schulz", metadata={"help": "'newton_schulz' or 'svd' (exact U Vᵀ)"})
    rms_match: float | None = field(default=None, metadata={"help": "Kimi RMS matching constant (e.g. 0.2)"})
    adamw_lr: float = field(default=3e-3, metadata={"help": "AdamW lr for embeddings, head and vectors"})
    adamw_betas: tuple[float, float] = field(default=(0.9, 0.95), metadata={"help": "AdamW betas"})
    adamw_weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay"})

    def build(self, groups):
        return MuonOptimizer(groups, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                             weight_decay=self.weight_decay, ns_steps=self.ns_steps, backend=self.backend,
                             rms_match=self.rms_match, adamw_lr=self.adamw_lr, adamw_betas=self.adamw_betas,
                             adamw_weight_decay=self.adamw_weight_decay)


@dataclass
class Pion(_MatrixMethod):
    """Pion (``orthoscope.optim.Pion``): hidden matrices move by rotations on both sides; spectrum preserved."""

    lr: float = field(default=1e-3, metadata={"help": "learning rate (update RMS = lr·rms)"})
    betas: tuple[float, float] = field(default=(0.9, 0.95), metadata={"help": "Pion moment betas"})
    side: str = field(default="both", metadata={"help": "'both', 'alternate', 'in' or 'out'"})
    momentum: str = field(default="lie", metadata={"help": "'lie' or 'transported_ambient'"})
    second_moment: bool = field(default=False, metadata={"help": "Adam-style division by √v"})
    rms: float = field(default=0.2, metadata={"help": "RMS constant of the induced ambient update"})
    degree: object = field(default=2, metadata={"help": "truncated-exponential degree, or 'exact'"})
    form: str = field(default="product", metadata={"help": "'product' (paper) or 'additive' (released code)"})
    adamw_lr: float = field(default=3e-3, metadata={"help": "AdamW lr for embeddings, head and vectors"})
    adamw_weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay"})

    def build(self, groups):
        return PionOptimizer(groups, lr=self.lr, betas=self.betas, side=self.side, momentum=self.momentum,
                             second_moment=self.second_moment, rms=self.rms, degree=self.degree, form=self.form,
                             adamw_lr=self.adamw_lr, adamw_weight_decay=self.adamw_weight_decay)


@dataclass
class Hyperball(_MatrixMethod):
    """AdamH / MuonH (``orthoscope.optim.AdamH``/``MuonH``): hidden matrices move on a sphere of fixed radius."""

    base: str = field(default="adam", metadata={"help": "'adam' (AdamH) or 'muon' (MuonH)"})
    lr: float = field(default=0.01, metadata={"help": "angular step size η"})
    granularity: str = field(default="frobenius", metadata={"help": "'frobenius' or 'column' norms"})
    radius: float | None = field(default=None, metadata={"help": "None: keep ‖W₀‖; r: rescale to norm r"})
    betas: tuple[float, float] = field(default=(0.9, 0.95), metadata={"help": "AdamH moments (base='adam')"})
    momentum: float = field(default=0.95, metadata={"help": "MuonH momentum (base='muon')"})
    adamw_lr: float = field(default=3e-3, metadata={"help": "AdamW lr for embeddings, head and vectors"})
    adamw_weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay"})

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

    lr: float = field(default=1e-3, metadata={"help": "step size (per-coordinate step ≈ lr)"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "(momentum β1, parameter-EMA β2)"})
    gamma: float = field(default=0.1, metadata={"help": "attraction to the parameter EMA (0: Signum)"})
    weight_decay: float = field(default=0.0, metadata={"help": "decay applied through the parameter EMA"})

    def label(self) -> str:
        return _short_label(self)

    def make_optimizer(self, model):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        return FOCUSOptimizer(named, lr=self.lr, betas=self.betas, gamma=self.gamma,
                              weight_decay=self.weight_decay)

    def __post_init__(self):
        self.make_optimizer(_Probe())


class _Probe(nn.Module):
    """A two-layer stand-in model used only to validate a method's arguments at construction."""

    def __init__(self):
        super().__init__()
        self.hidden, self.head = nn.Linear(2, 2), nn.Linear(2, 2)


__all__ = ["Muon", "Pion", "Hyperball", "FOCUS"]
