"""Attach reparametrizations to any ``nn.Module`` by module path (peft's rules; see ``orthoscope.targets``).

An adapted layer wraps the original module as ``self.base_layer`` and implements the ``AdapterLayer`` protocol:

* ``effective_weight()`` — the weight the layer currently computes with, in the base layer's layout;
* ``merge()`` / ``unmerge()`` — fold the adapter into ``base_layer.weight`` and back (``merged`` tells which);
* ``adapter_parameters()`` — its trainable parameters, whose names start with the method prefix (``oft_``, ``poet_``).

``apply_adapter`` swaps each matched module for ``make_layer(path, module)`` and freezes every parameter whose name
does not contain the prefix. ``matched_modules`` shows what a config would hit before anything changes.
"""
from __future__ import annotations

from typing import Callable, Iterator, Protocol, runtime_checkable

from torch import nn

from ..targets import Rules, select_modules


@runtime_checkable
class AdapterLayer(Protocol):
    base_layer: nn.Module
    prefix: str
    merged: bool

    def effective_weight(self): ...
    def merge(self) -> None: ...
    def unmerge(self) -> None: ...


def matched_modules(model: nn.Module, targets: Rules, exclude: Rules = None,
                    types: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Paths of the modules of the allowed ``types`` that ``targets`` (minus ``exclude``) would adapt."""
    return [p for p, _ in _select(model, targets, exclude, types)]


def _select(model, targets, exclude, types):
    # Adapted layers and the modules inside them (their base_layer) are never candidates: adapting twice is an error.
    adapted = [p for p, m in model.named_modules() if p and isinstance(m, AdapterLayer)]

    def allowed(path, module):
        return (isinstance(module, types) and not isinstance(module, AdapterLayer)
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
    chosen = _select(model, targets, exclude, types)
    if not chosen:
        raise ValueError(f"targets={targets!r} matched no {types} module in {type(model).__name__}")
    for path, module in chosen:
        _replace(model, path, make_layer(path, module))
    if freeze_others:
        mark_only_adapters_trainable(model, prefix)
    return model


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for path, module in model.named_modules():
        if isinstance(module, AdapterLayer):
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
        release = getattr(layer, "release_base", None)
        _replace(model, path, release() if release is not None else layer.base_layer)
    for p in model.parameters():
        p.requires_grad_(True)
    return model
