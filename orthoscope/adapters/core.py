"""Attach reparametrizations to any ``nn.Module`` by module path (peft's rules; see ``orthoscope.core.targets``).

Every adapter — OFT, BOFT, QOFT, LoRA, SoRA and POET — attaches the same way, in three steps: **select** the module
paths once (``matched_modules``: peft's rules, plus each method's own checks), **build** every adapted layer (so a
layer that does not fit raises before anything changed), **swap** them in (``swap_in``; it also freezes every
parameter not named with the method's prefix, unless the method trains the rest too, as POET does).

An adapted layer is an ``AdaptedLayer``: it wraps the original module as ``self.base_layer`` and gives

* ``effective_weight()`` — the weight the layer currently computes with, in the base layer's layout;
* ``merge()`` / ``unmerge()`` — fold the adapter into ``base_layer.weight`` and back (``merged`` tells which);
* ``adapter_parameters()`` — its trainable parameters, whose names start with the method prefix (``oft_``, ``poet_``);
* ``release_base()`` — the base module to put back when the adapter is removed.

``apply_adapter`` selects and swaps for a ``make_layer(path, module)`` callable; ``matched_modules`` shows what a
config would hit before anything changes.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Iterator

import torch
from torch import nn

from ..core.targets import Rules, select_modules


class AdaptedLayer(nn.Module):
    """Base of every adapted layer: ``base_layer`` + ``merged`` flag + ``merge``/``unmerge``/``effective_weight``."""

    prefix: ClassVar[str] = ""

    fan_in_fan_out: ClassVar[bool] = False     # True when the base stores W[in, out] (transformers' Conv1D)

    def __init__(self, base_layer: nn.Module, path: str = ""):
        super().__init__()
        self.base_layer = base_layer
        self.path = path
        self.merged = False

    # ---- subclasses implement ---------------------------------------------------------------------------------
    def adapted_forward(self, x, *args, **kwargs):
        raise NotImplementedError

    def _merged_weight(self, w: torch.Tensor) -> torch.Tensor:
        """W → W' (the weight the adapted layer computes with); differentiable in the adapter parameters."""
        raise NotImplementedError

    def _unmerged_weight(self, w: torch.Tensor) -> torch.Tensor:
        """W' → W, the inverse of ``_merged_weight`` (called under no_grad in float64)."""
        raise NotImplementedError

    # ---- shared -----------------------------------------------------------------------------------------------
    def forward(self, x, *args, **kwargs):
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        return self.adapted_forward(x, *args, **kwargs)

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters(recurse=False) if n.startswith(self.prefix)]

    def base_weight(self) -> torch.Tensor:
        return self.base_layer.weight

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer computes with, in the base layer's layout (``[in, out]`` for Conv1D)."""
        w = self.base_weight()
        return w if self.merged else self._merged_weight(w)

    @property
    def in_features(self) -> int:
        w = self.base_layer.weight
        return w.shape[0] if self.fan_in_fan_out else w.shape[1]

    @property
    def out_features(self) -> int:
        w = self.base_layer.weight
        return w.shape[1] if self.fan_in_fan_out else w.shape[0]

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into ``base_layer.weight`` (no-op when already merged)."""
        if not self.merged:
            self._store(self._merged_weight(self.base_weight().double()))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge()`` (no-op when not merged)."""
        if self.merged:
            self._store(self._unmerged_weight(self.base_weight().double()))
            self.merged = False

    def _store(self, w: torch.Tensor) -> None:
        if not torch.isfinite(w).all():
            raise ValueError(f"merging the adapter of {self.path!r} produced non-finite weights")
        target = self.base_weight()
        target.copy_(w.to(target.dtype))

    def release_base(self) -> nn.Module:
        """The base module to put back when the adapter is removed (``remove_adapters``), in ordinary layout."""
        return self.base_layer

    def extra_repr(self) -> str:
        return f"path={self.path!r}, merged={self.merged}"


# The name of the adapter-layer type before the Protocol and the base class became one (kept for imports).
AdapterLayer = AdaptedLayer


def matched_modules(model: nn.Module, targets: Rules, exclude: Rules = None,
                    types: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Paths of the modules of the allowed ``types`` that ``targets`` (minus ``exclude``) would adapt."""
    return [p for p, _ in _select(model, targets, exclude, types)]


def _select(model, targets, exclude, types):
    # Adapted layers and the modules inside them (their base_layer) are never candidates: adapting twice is an error.
    adapted = [p for p, m in model.named_modules() if p and isinstance(m, AdaptedLayer)]

    def allowed(path, module):
        return (isinstance(module, types) and not isinstance(module, AdaptedLayer)
                and not any(path.startswith(a + ".") for a in adapted))

    return select_modules(model, targets, exclude, where=allowed, what=f"{'/'.join(t.__name__ for t in types)} module")


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, new)


def apply_adapter(model: nn.Module, make_layer: Callable[[str, nn.Module], nn.Module], *, targets: Rules,
                  exclude: Rules = None, prefix: str, types: tuple[type, ...] = (nn.Linear,),
                  freeze_others: bool = True) -> nn.Module:
    """Replace every matched module by ``make_layer(path, module)`` in place and return ``model``.

    ``make_layer`` should raise ``ValueError`` naming ``path`` when a layer does not fit the config (e.g. a block size
    that does not divide it): adapters never silently skip or resize layers.
    """
    built = {path: make_layer(path, module) for path, module in _select(model, targets, exclude, types)}
    if not built:
        raise ValueError(f"targets={targets!r} matched no {types} module in {type(model).__name__}")
    return swap_in(model, built, prefix, freeze_others)


def swap_in(model: nn.Module, built: dict[str, nn.Module], prefix: str, freeze_others: bool = True) -> nn.Module:
    """The last step of every attach: put each built layer at its path and, with ``freeze_others``, leave only the
    parameters whose names start with ``prefix`` trainable. Every layer was built before this is called, so an
    error while building left the model unchanged."""
    for path, layer in built.items():
        _replace(model, path, layer)
    if freeze_others:
        mark_only_adapters_trainable(model, prefix)
    return model


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for path, module in model.named_modules():
        if isinstance(module, AdaptedLayer):
            yield path, module


def mark_only_adapters_trainable(model: nn.Module, prefix: str) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(prefix in name.rsplit(".", 1)[-1])


def merge_all(model: nn.Module) -> None:
    for _, layer in adapter_layers(model):
        if not layer.merged:
            layer.merge()


def unmerge_all(model: nn.Module) -> None:
    for _, layer in adapter_layers(model):
        if layer.merged:
            layer.unmerge()


def remove_adapters(model: nn.Module, merge: bool = True) -> nn.Module:
    """Put the base layers back (after merging the adapters into them when ``merge``) and return ``model``.

    A layer that keeps its base in another form while adapted (POET stores it permuted) gives it back in ordinary
    coordinates through ``release_base()``."""
    for path, layer in list(adapter_layers(model)):
        if merge and not layer.merged:
            layer.merge()
        if not merge and layer.merged:
            layer.unmerge()
        _replace(model, path, layer.release_base())
    for p in model.parameters():
        p.requires_grad_(True)
    return model
