"""What every adapter method shares: a config dataclass, an adapted-layer base class, a registry and a Method.

One call registers a method (peft's ``register_peft_method``)::

    register_adapter(OFTConfig)          # OFTConfig.adapter_name = "oft", .prefix = "oft_", .layers = {nn.Linear: OFTLinear, …}

and then ``attach(model, OFTConfig(block=32, targets=["q_proj", "v_proj"]))`` swaps the matched modules in place,
``list_targets(model, config)`` shows what would be hit before anything changes, and a ``Method`` such as
``OFT(block=32, targets=[...], lr=1e-3)`` does both for a ``Run`` (a method *is* its adapter config plus the optimizer
settings, so its keyword arguments stay flat).

An adapted layer (``AdaptedLayer``) wraps the original module as ``base_layer`` and computes with
``adapted_forward`` until it is merged. Subclasses give two pure maps of the base weight, ``_merged_weight(W)``
(W → W', differentiable, used by ``effective_weight()``) and ``_unmerged_weight(W')`` (its inverse), and the base class
does the bookkeeping: ``merge()`` / ``unmerge()`` are idempotent and run in float64 so a round trip is exact to
~1e-12 relative, far below the 1e-5 the contract asks.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch
from torch import nn

from ..methods.base import Method, check_positive, trainable
from ..core.targets import Rules, path_matches
from .core import AdaptedLayer, matched_modules, swap_in  # noqa: F401  (AdaptedLayer: re-exported)
from .hf import (TIED_CHOICES, conv1d_type, resolve_ties, skipped_compute, unsupported_target_message,
                 warn_skipped)

ADAPTERS: dict[str, type] = {}


def register_adapter(config_cls: type) -> type:
    """Register an adapter config class under ``config_cls.adapter_name`` (usable as a decorator)."""
    for attr in ("adapter_name", "prefix", "layers"):
        if not getattr(config_cls, attr, None):
            raise TypeError(f"{config_cls.__name__} must define a non-empty class attribute {attr!r}")
    ADAPTERS[config_cls.adapter_name] = config_cls
    return config_cls


@dataclass
class AdapterConfig:
    """Which modules to adapt, with peft's ``target_modules`` / ``exclude_modules`` rules.

    Subclasses set the class attributes ``adapter_name``, ``prefix`` (start of every trainable parameter name) and
    ``layers`` (module type → adapted-layer class, tried in order, so subclasses such as ``nn.Linear`` subclasses
    are covered).
    """

    targets: Rules = field(default=None, metadata={
        "help": "modules to adapt: a regex string (full match on the module path) or a list of names (exact path "
                "or '.name' suffix); None adapts every nn.Linear and transformers Conv1D"})
    exclude: Rules = field(default=None, metadata={
        "help": "modules never to adapt (same rules as targets; wins over targets), e.g. ['lm_head']"})
    tied: str = field(default="refuse", metadata={
        "help": "a target whose weight another module shares (tied embedding/head): 'refuse' (error naming both) "
                "or 'untie' (give the target its own copy of the weight first)"})

    adapter_name: ClassVar[str] = ""
    prefix: ClassVar[str] = ""
    layers: ClassVar[dict] = {}
    conv1d_layer: ClassVar[type | None] = None     # the layer for transformers' Conv1D (looked up lazily, hf.py)

    def __post_init__(self):
        # subclasses with their own __post_init__ call this one first (super().__post_init__())
        if self.tied not in TIED_CHOICES:
            raise ValueError(f"tied must be one of {TIED_CHOICES}, got {self.tied!r}")

    def supported_types(self) -> tuple[type, ...]:
        conv1d = conv1d_type() if self.conv1d_layer is not None else None
        return tuple(self.layers) + ((conv1d,) if conv1d is not None else ())

    def candidate_types(self) -> tuple[type, ...]:
        """Module types a config may hit: every supported type with explicit targets; ``nn.Linear`` and ``Conv1D``
        (the dense projections) with ``targets=None``."""
        if self.targets is None:
            return tuple(t for t in self.supported_types() if t is nn.Linear or t is conv1d_type())
        return self.supported_types()

    def layer_class(self, module: nn.Module) -> type:
        conv1d = conv1d_type()
        if self.conv1d_layer is not None and conv1d is not None and isinstance(module, conv1d):
            return self.conv1d_layer
        for kind, cls in self.layers.items():
            if isinstance(module, kind):
                return cls
        raise TypeError(f"{self.adapter_name} cannot adapt a {type(module).__name__}; supported: "
                        f"{[k.__name__ for k in self.supported_types()]}")

    def make_layer(self, path: str, module: nn.Module) -> nn.Module:
        return self.layer_class(module)(module, self, path)

    def adapter_config(self) -> dict:
        """The config's own fields as a JSON-able dict (a Method subclass adds optimizer fields; those are left out)."""
        own = [f.name for f in fields(_config_base(type(self)))]
        return {"adapter": self.adapter_name, **{k: getattr(self, k) for k in own}}


def _config_base(cls: type) -> type:
    """The AdapterConfig subclass a (possibly Method-mixed) class derives from."""
    for base in cls.__mro__:
        if issubclass(base, AdapterConfig) and not issubclass(base, Method):
            return base
    raise TypeError(f"{cls.__name__} is not an AdapterConfig")


def list_targets(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Module paths ``config`` would adapt, without changing anything (peft's ``targeted_module_names``).

    Raises ``ValueError`` listing the candidate paths when a target names no module, or naming the modules and
    their type when a target names modules of a type the adapter does not support. With ``targets=None``, warns
    about layers with weight matrices that no layer of this adapter fits (``hf.skipped_compute``).
    """
    types = config.candidate_types()
    if config.targets is not None:
        problem = unsupported_target_message(model, config.targets, config.adapter_name, types)
        if problem:
            raise ValueError(problem)
    paths = matched_modules(model, config.targets, config.exclude, types=types)
    if config.targets is None:
        excluded = (lambda p: path_matches(p, config.exclude)) if config.exclude else (lambda p: False)
        warn_skipped(config.adapter_name, skipped_compute(model, types, excluded), types, config.supported_types())
    return paths


def attach(model: nn.Module, config: AdapterConfig, freeze_others: bool = True) -> nn.Module:
    """Adapt every module ``config`` hits, in place; only parameters starting with ``config.prefix`` stay trainable.

    Layers that do not fit the config (a block size that does not divide the layer, …) raise ``ValueError`` naming
    the layer; nothing is skipped or resized silently. A target whose weight another module shares (a tied head)
    is refused, or untied with ``config.tied="untie"`` (``hf.resolve_ties``). On error the model is left unchanged:
    every layer is built before any is swapped in.
    """
    paths = list_targets(model, config)
    if not paths:
        raise ValueError(f"{config.adapter_name}: targets={config.targets!r} (exclude={config.exclude!r}) hit no "
                         f"{[t.__name__ for t in config.candidate_types()]} module of {type(model).__name__}")
    built = {}
    for p in paths:
        module = model.get_submodule(p)
        built[p] = config.make_layer(p, module).train(module.training)   # new layers start in the model's mode
        built[p].attached_with = config        # how it was made: run.config expresses a hand-attached adapter by it
    # refuse (nothing changed yet), or untie: the built layers hold the modules, so the new weight is theirs
    resolve_ties(model, paths, config.tied, config.adapter_name)
    return swap_in(model, built, config.prefix, freeze_others)


@dataclass
class AdapterMethod(Method):
    """A training method that attaches an adapter and trains only its parameters with AdamW.

    Concrete methods mix this with an adapter config: ``@dataclass class OFT(AdapterMethod, OFTConfig)``.
    """

    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the adapter parameters"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay on the adapter parameters"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "Adam β1, β2"})

    def __post_init__(self):
        check_positive("lr", self.lr, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas!r}")
        post = getattr(super(), "__post_init__", None)      # the adapter config's own validation
        if post is not None:
            post()

    def attach(self, model: nn.Module) -> nn.Module:
        return attach(model, self)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = trainable(model)
        if not params:
            raise ValueError(f"{self.name}: the model has no trainable adapter parameters (was attach() called?)")
        return torch.optim.AdamW(params, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)
