"""What attaching adapters to Hugging Face ``transformers`` models needs: GPT-2's ``Conv1D``, tied weights, and honest
default targets.

**Conv1D.** ``transformers.pytorch_utils.Conv1D`` (GPT-2, DistilGPT-2, …) is a linear layer that
stores its weight transposed, ``W[in, out]``, and computes ``y = x W + b`` (peft calls this ``fan_in_fan_out``).
Adapted layers for it subclass the ``nn.Linear`` ones: the forward is the same map of ``x``, and the weight maps are
the Linear ones conjugated by a transpose (``Conv1DLayout``), so the effective weight stays in the base layer's layout
(``[in, out]``, what merge writes) while ``out_in_weight`` gives every matrix as ``[out, in]`` for probes, so spectra
and row statistics of GPT-2 compare with those of Llama. ``Conv1D`` is looked up in ``sys.modules`` only: a model that
holds one has imported ``transformers`` already, and ``import orthoscope`` never pays for importing it.

**Tied weights.** ``GPT2LMHeadModel`` and ``OPTForCausalLM`` share one tensor between the input embedding and the
output head. Adapting one side is fine until a merge writes the shared tensor: then the other module changes too
(issue 13 measured 0.28 max-abs on a tiny OPT). ``shared_weights`` finds every module whose weight storage another module also holds;
``resolve_ties`` refuses such a target naming both modules and the options, or with ``tied="untie"`` gives the target
its own copy of the weight first (and sets ``config.tie_word_embeddings = False`` on a ``transformers`` model so a
later ``tie_weights()`` or save/load keeps them apart).

**Default targets.** With ``targets=None`` an adapter takes every module of its default types (``nn.Linear`` and
``Conv1D``). ``skipped_compute`` lists the leaf modules holding a weight matrix that the default leaves out, and
``attach`` warns with their paths and the reason: a type the adapter supports but does not take by default (a Conv2d
under LoRA), or one it has no layer for (a Conv2d under BOFT). Embeddings are not counted: peft does not adapt them
by default either.
"""
from __future__ import annotations

import sys
import warnings

import torch
from torch import nn

__all__ = ["conv1d_type", "is_conv1d", "out_in_weight", "shared_weights", "resolve_ties", "TIED_CHOICES",
           "tied_targets", "warn_tied_export", "TiedExportWarning",
           "skipped_compute", "warn_skipped", "unsupported_target_message", "Conv1DLayout"]

TIED_CHOICES = ("refuse", "untie")


def conv1d_type() -> type | None:
    """``transformers.pytorch_utils.Conv1D`` when ``transformers`` is loaded, else ``None`` (never imports it)."""
    module = sys.modules.get("transformers.pytorch_utils")
    return getattr(module, "Conv1D", None)


def is_conv1d(module: nn.Module) -> bool:
    kind = conv1d_type()
    return kind is not None and isinstance(module, kind)


def out_in_weight(module: nn.Module) -> torch.Tensor:
    """The weight ``module`` computes with as a ``[out, in]`` matrix: the effective weight of an adapted layer (read
    through ``effective_weight()``), transposed when the layer stores ``[in, out]`` (Conv1D)."""
    if hasattr(module, "effective_weight"):
        w = module.effective_weight()
        return w.T if getattr(module, "fan_in_fan_out", False) else w
    w = module.weight
    return w.T if is_conv1d(module) else w


# ---- tied weights -------------------------------------------------------------------------------------------------
def _storage_key(t: torch.Tensor) -> tuple:
    # The tensor's own first element, shape and strides, not its storage: weights loaded from one memory-mapped file
    # can be views into a single storage at different offsets, and those are not tied.
    return (t.device.type, t.data_ptr(), tuple(t.shape), t.stride())


def shared_weights(model: nn.Module) -> dict[str, list[str]]:
    """``{module path: [other module paths holding the same weight storage]}`` for every module whose ``weight``
    shares storage with another module's (tied embeddings and heads). Meta tensors have no storage and are skipped."""
    holders: dict[tuple, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        w = getattr(module, "weight", None)
        w = w.to_local() if hasattr(w, "to_local") else w          # a DTensor: its local shard's storage
        if path and isinstance(w, torch.Tensor) and w.device.type != "meta":
            holders.setdefault(_storage_key(w), []).append(path)
    shared = {}
    for paths in holders.values():
        unique = list(dict.fromkeys(paths))
        if len(unique) > 1:
            for p in unique:
                shared[p] = [q for q in unique if q != p]
    return shared


def resolve_ties(model: nn.Module, paths: list[str], tied: str, adapter: str) -> None:
    """Refuse (``tied="refuse"``) or untie (``tied="untie"``) every target in ``paths`` whose weight another module
    shares. Refusal names both modules and the options; nothing is changed before every target is checked."""
    if tied not in TIED_CHOICES:
        raise ValueError(f"tied must be one of {TIED_CHOICES}, got {tied!r}")
    shared = shared_weights(model)
    hits = {p: shared[p] for p in paths if p in shared}
    if not hits:
        return
    if tied == "refuse":
        pairs = "; ".join(f"{p!r} shares its weight with {others}" for p, others in hits.items())
        raise ValueError(
            f"{adapter}: {pairs}. Merging an adapter into a shared weight would change the other module too. "
            f"Options: exclude the module (exclude=[{', '.join(repr(p) for p in hits)}]), or pass tied='untie' to give "
            f"it its own copy of the weight first (the modules are then trained and saved separately)")
    with torch.no_grad():
        for p in hits:
            module = model.get_submodule(p)
            w = module.weight
            module.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
            module.untied_from = tuple(hits[p])   # remembered: exporting to peft warns (tied_targets)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        config.tie_word_embeddings = False       # transformers would re-tie on tie_weights() / from_pretrained


class TiedExportWarning(UserWarning):
    """An adapter exported to peft's format sits on a module whose weight is tied to another one in the base model."""


def tied_targets(model: nn.Module, paths) -> dict[str, list[str]]:
    """``{adapted path: [the modules it is tied to]}`` for every path whose weight another module shares now, shared
    before ``tied="untie"`` gave it its own copy (``untied_from``), or is tied by a ``transformers`` config
    (``tie_word_embeddings``: the input and output embeddings)."""
    shared = shared_weights(model)
    config = getattr(model, "config", None)
    embeddings = {}
    if getattr(config, "tie_word_embeddings", False) and hasattr(model, "get_input_embeddings"):
        pair = [model.get_input_embeddings(), model.get_output_embeddings()]
        where = {id(m): p for p, m in model.named_modules() if any(m is e for e in pair)}
        if all(id(e) in where for e in pair) and pair[0] is not pair[1]:
            embeddings = {where[id(pair[0])]: where[id(pair[1])], where[id(pair[1])]: where[id(pair[0])]}
    out = {}
    for path in paths:
        layer = model.get_submodule(path)
        base = getattr(layer, "base_layer", layer)
        others = list(getattr(base, "untied_from", ())) + shared.get(path, []) + shared.get(path + ".base_layer", [])
        if path in embeddings:
            others.append(embeddings[path])
        others = [o for o in dict.fromkeys(others) if o != path and not o.startswith(path + ".")]
        if others:
            out[path] = others
    return out


# Measured on tests/test_hf_adapters.py's tiny GPT-2 and OPT (docs/adapters.md, "Tied weights").
PEFT_MERGE_MOVES = "0.008–0.045 max-abs on tiny GPT-2 and OPT whose embeddings reach 0.077, after three Adam steps"


def warn_tied_export(model: nn.Module, paths) -> None:
    """Warn, naming the tie, when an adapter exported to peft sits on a module tied to another in the base model:
    peft loads it into that base model, where both are one tensor, and its ``merge_and_unload()`` then writes the
    merged weight into the shared tensor, moving the other module (the input embedding) too."""
    hits = tied_targets(model, paths)
    if not hits:
        return
    pairs = "; ".join(f"{p!r} is tied to {others}" for p, others in hits.items())
    warnings.warn(
        f"exporting to peft's format: {pairs} in the base model (tie_word_embeddings, or untied here by "
        f"tied='untie'). peft loads the adapter into the base model, where they are one tensor again, and its "
        f"merge_and_unload() writes the merged weight into that tensor, moving the other module too "
        f"({PEFT_MERGE_MOVES}). To merge in peft, load the base with tie_word_embeddings=False first (or merge here "
        "and save the whole model)", TiedExportWarning, stacklevel=3)


# ---- what default targets leave out -------------------------------------------------------------------------------
def skipped_compute(model: nn.Module, types: tuple[type, ...], exclude_match) -> list[tuple[str, nn.Module]]:
    """``[(path, module)]`` of leaf modules with a weight matrix (≥ 2-D, not an embedding) that are not of
    ``types`` and not excluded: the compute that default targets leave unadapted. Modules inside adapted layers are
    not counted (they are adapted)."""
    adapted = [p for p, m in model.named_modules() if p and hasattr(m, "base_layer") and hasattr(m, "merged")]
    out = []
    for path, module in model.named_modules():
        if not path or isinstance(module, (nn.Embedding, *types)) or any(path.startswith(a + ".") for a in adapted):
            continue
        if hasattr(module, "merged") and hasattr(module, "base_layer"):
            continue
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() >= 2 and not any(True for _ in module.children()):
            if not exclude_match(path):
                out.append((path, module))
    return out


def _shown(items: list[tuple[str, nn.Module]]) -> str:
    text = ", ".join(f"{p!r} ({type(m).__name__})" for p, m in items[:12])
    return text + (f", … ({len(items) - 12} more)" if len(items) > 12 else "")


def warn_skipped(adapter: str, skipped: list[tuple[str, nn.Module]], defaults: tuple[type, ...],
                 supported: tuple[type, ...]) -> None:
    """Warn that ``targets=None`` (which takes the ``defaults`` types) leaves these weight layers unadapted, and why:
    a type the adapter supports but does not take by default, or one it has no layer for."""
    if not skipped:
        return
    optional = [(p, m) for p, m in skipped if isinstance(m, supported)]
    missing = [(p, m) for p, m in skipped if not isinstance(m, supported)]
    why = []
    if optional:
        why.append(f"{_shown(optional)} are of a type {adapter} supports but does not adapt by default (name them "
                   "in targets to adapt them)")
    if missing:
        why.append(f"{_shown(missing)} are of a type {adapter} has no layer for")
    warnings.warn(f"{adapter} with targets=None adapts {[t.__name__ for t in defaults]} modules only; these layers "
                  f"carry compute and stay unadapted: {'; '.join(why)}. Add them to exclude to silence this",
                  stacklevel=3)


def unsupported_target_message(model: nn.Module, targets, adapter: str, types: tuple[type, ...]) -> str | None:
    """When an explicit target names existing modules none of which has a supported type, say so (rather than
    "unknown target"): ``"'c_attn' matches 2 module(s) of type ['Conv1D'] …; boft supports ['Linear']"``. ``None``
    when every entry hits a supported module or names no module at all (then the unknown-target error lists the
    candidates). Adapted layers and the modules inside them are not candidates."""
    from ..core.targets import path_matches

    adapted = [p for p, m in model.named_modules() if p and hasattr(m, "base_layer") and hasattr(m, "merged")]
    modules = [(p, m) for p, m in model.named_modules()
               if p and p not in adapted and not any(p.startswith(a + ".") for a in adapted)]
    entries = [targets] if isinstance(targets, str) else list(targets or [])
    problems = []
    for entry in entries:
        rule = entry if isinstance(targets, str) else [entry]
        hit = [(p, m) for p, m in modules if path_matches(p, rule)]
        if hit and not any(isinstance(m, types) for _, m in hit):       # (a Conv1D under POET, a LayerNorm …)
            kinds = sorted({type(m).__name__ for _, m in hit})
            problems.append(f"{entry!r} matches {len(hit)} module(s) of type {kinds} (e.g. {hit[0][0]!r})")
    if not problems:
        return None
    supported = [t.__name__ for t in types]
    return (f"{adapter} cannot adapt these targets: {'; '.join(problems)}. {adapter} supports {supported} modules: "
            "target modules of those types, or exclude these")


class Conv1DLayout:
    """Mixin that turns an ``nn.Linear`` adapted layer into one for ``Conv1D`` (weight ``[in, out]``).

    The forward of a Linear adapted layer only calls ``base_layer(x')`` and works on ``x``, so it is already right.
    The weight maps are conjugated by a transpose: ``W'ᵀ = f(Wᵀ)`` where f is the Linear map on ``[out, in]``.
    Put it first in the bases: ``class OFTConv1D(Conv1DLayout, OFTLinear)``.
    """

    fan_in_fan_out = True

    def _merged_weight(self, w):
        return super()._merged_weight(w.T).T

    def _unmerged_weight(self, w):
        return super()._unmerged_weight(w.T).T
