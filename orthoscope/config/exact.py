"""``run.config`` is the run, or it refuses: the config is checked against the run it describes before it is returned.

A notebook changes a run in ways a config section does not see: a head swapped after the model was built, an adapter
attached by hand before ``Run(model, task, AdamW())``, a module replaced by another of the same shapes, a dtype
change, an intervention appended to ``run.interventions``, weights edited in place. So ``run_config`` (``build.py``)
first *expresses* what the format can hold — a harmonic head (``model.head``), a dtype (``model.dtype``), an adapter
attached by hand under AdamW (as the adapter's method, with AdamW's settings) — and then ``verify`` builds the run's
*twin* from the config and compares the two:

* every module (path, type and ``extra_repr``), every parameter and buffer (name, shape, dtype, whether it trains);
* the values the run started from (SHA-256 of every tensor, recorded by ``Run`` as training starts) — for models up
  to ``Run``'s ``GUARD_MAX_PARAMS`` parameters; larger ones are built on the meta device (no memory, no init cost)
  and compared for structure only, and must say which seed they were built after (``model.init_seed``);
* every intervention (type and settings, in order: clipping, POET merges, schedules, …);
* the optimizer (type, and per parameter group: which parameters, and every setting but the learning rate, which
  schedules and ``run.override`` change on purpose).

The twin is built under ``torch.random.fork_rng``: asking for a config never moves the notebook's random stream.
The first difference is named in a ``ConfigError`` (module path and both types, tensor name, intervention, group).
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
import warnings

import torch

from ..core.structure import first_difference, structure, tensor_digests, values_match
from .format import ConfigError, construct, describe, method_classes

TWIN = "the run its config builds"


# ---- expressing what the format can hold --------------------------------------------------------------------------

def describe_method(run) -> dict:
    """The ``method`` section: the run's method, or — for adapters attached by hand before ``Run(model, task,
    AdamW(...))`` — the adapter's own method with AdamW's settings (it trains the adapter with AdamW too)."""
    from ..adapters.core import adapter_layers
    from ..methods.base import AdamW

    hand = [(p, m) for p, m in adapter_layers(run.model)
            if getattr(m, "attached_with", run.method) is not run.method]
    if not hand:
        return describe(run.method, "method")
    path, layer = hand[0]
    where = f"module {path!r} is a {type(layer).__name__} attached by hand before Run(...)"
    if type(run.method) is not AdamW:
        raise ConfigError(f"run.config cannot express this run: {where} while the run's method is "
                          f"{type(run.method).__name__}; a config holds an adapter only as the run's method (which "
                          f"trains it with AdamW): pass it as the method, Run(model, task, {_method_for(layer)}(...))")
    configs = []
    for _, m in hand:
        if m.attached_with.adapter_config() not in [c.adapter_config() for c in configs]:
            configs.append(m.attached_with)
    if len(configs) > 1:
        raise ConfigError(f"run.config cannot express this run: its adapters were attached by hand with "
                          f"{len(configs)} different configs ({[c.adapter_config() for c in configs]}); a config "
                          "holds one adapter method: attach them with one config, or pass it as the method")
    if run.method.eps != 1e-8:
        raise ConfigError(f"run.config cannot express this run: {where}, trained by AdamW(eps={run.method.eps}); "
                          "a config holds it as the adapter's method, whose AdamW has eps=1e-8")
    settings = {k: v for k, v in configs[0].adapter_config().items() if k != "adapter"}
    settings.update(lr=run.method.lr, betas=tuple(run.method.betas), weight_decay=run.method.weight_decay,
                    grad_clip=run.method.grad_clip)
    method = method_classes()[_method_for(layer)](**settings)
    return describe(method, "method")


def _method_for(layer) -> str:
    """The name of the method that attaches ``layer``'s kind of adapter (``OFT`` for an ``OFTLinear``)."""
    from ..adapters.registry import AdapterMethod, _config_base

    config_cls = _config_base(type(layer.attached_with)) if hasattr(layer, "attached_with") else None
    for name, cls in method_classes().items():
        if issubclass(cls, AdapterMethod) and config_cls is not None and _config_base(cls) is config_cls:
            return name
    return "AdapterMethod"


# ---- the twin, and the comparison ---------------------------------------------------------------------------------

def verify(run, cfg: dict) -> None:
    """Raise ``ConfigError`` naming the first way the run ``cfg`` builds would differ from ``run`` (module docstring)."""
    digests = getattr(run, "initial_digests", None)
    if digests is not None and run.step_count == 0 and len(run.history) == 0 and run.dist is None:
        digests = tensor_digests(run.model)            # not trained yet: the values as they are now
    if digests is None and not hasattr(run.model, "init_seed"):
        raise ConfigError(
            "run.config cannot vouch for this model's weights: it is too large to compare its values "
            f"(over {type(run).__module__}.GUARD_MAX_PARAMS parameters) and it does not record the seed it was built "
            "after; build it with build_llama(..., seed=s) or orthoscope.config.specs.build_model, or set "
            "model.init_seed = s when it was built right after torch.manual_seed(s)")
    model, method, optimizer, interventions = _twin(run, cfg, meta=digests is None)
    checks = ((lambda: first_difference(structure(run.model), structure(model), "this run", TWIN), STRUCTURE_HINT),
              (lambda: _values_differ(digests, model, cfg), VALUES_HINT),
              (lambda: _sequence_differs("interventions", [_intervention_words(iv) for iv in run.interventions],
                                         [_intervention_words(iv) for iv in interventions]), INTERVENTIONS_HINT),
              (lambda: _optimizer_differs(run, optimizer, model), OPTIMIZER_HINT))
    for check, hint in checks:
        problem = check()
        if problem:
            raise ConfigError(f"run.config cannot describe this run exactly: {problem}. {hint}")


STRUCTURE_HINT = ("A config builds the models of orthoscope.config.model_classes() and Llama, with one harmonic head "
                  "(model.head) and one dtype (model.dtype), and holds an adapter only as the run's method "
                  "(Run(model, task, OFT(...)); POET layers only under the POET method); build or change the run "
                  "through its config to keep it describable")
VALUES_HINT = ("Build the model right after torch.manual_seed(s) (set model.init_seed = s when s is not the run's "
               "seed), and change its weights only by training")
INTERVENTIONS_HINT = ("Interventions come from the method's own settings (grad_clip, POET's merge_every, …) and "
                      "add_schedule; one added by hand has no place in a config")
OPTIMIZER_HINT = ("The optimizer is the method's own (make_optimizer): change its settings through the method, or "
                  "deliberately with run.override(...)")


def _twin(run, cfg: dict, meta: bool):
    """Model, method, optimizer and interventions the config builds (on the meta device for a large model), built
    without touching the caller's random stream and without repeating attach's warnings."""
    from ..methods.schedules import LRFactor, LRSchedule
    from .specs import build_model

    device = torch.device("meta") if meta else torch.device(cfg["device"])
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method = construct(cfg["method"], method_classes(), "method")
        try:
            with torch.device("meta") if meta else contextlib.nullcontext():
                model = method.attach(build_model(cfg["model"], run.task, cfg["seed"], str(device)))
                if not meta:
                    _materialize_if_meta(model, device)
                interventions = list(method.interventions(model))
                optimizer = method.make_optimizer(model)
        except ConfigError:
            raise
        except Exception as e:  # the method or model of the config does not build: say so, as a config error
            raise ConfigError(f"run.config: the model and method this config describes do not build "
                              f"({type(e).__name__}: {e})") from e
        schedule = cfg.get("schedule")
        if schedule is not None:
            total = schedule.get("total") or cfg["steps"]
            interventions.append(LRSchedule(optimizer, LRFactor(schedule.get("warmup", 0), schedule.get(
                "decay", "cosine"), float(schedule.get("min_ratio", 0.1)), int(total))))
    return model, method, optimizer, interventions


def _materialize_if_meta(model, device) -> None:
    """A model its spec builds on the meta device (``init_device: meta``, ``pretrained``) gets its values, as
    ``Run`` gives them in one process."""
    from ..distributed.pretrained import materialize, on_meta

    if on_meta(model):
        materialize(model, device)


def _values_differ(digests, model, cfg: dict) -> str | None:
    if digests is None:
        return None
    built = {entry[0]: entry for entry in tensor_digests(model)}
    for entry in digests:
        name = entry[0]
        if name not in built or not values_match(model, name, entry, built[name]):
            return (f"the values of {name!r} this run started from are not those {TWIN} starts from (the model is "
                    f"built right after torch.manual_seed({cfg['model'].get('init_seed', cfg['seed'])}), "
                    "model.init_seed)")
    return None


def _sequence_differs(what: str, mine: list[str], theirs: list[str]) -> str | None:
    for i in range(max(len(mine), len(theirs))):
        a = mine[i] if i < len(mine) else "nothing"
        b = theirs[i] if i < len(theirs) else "nothing"
        if a != b:
            return f"{what}[{i}] is {a} in this run but {b} in {TWIN}"
    return None


def _intervention_words(iv) -> str:
    """``Type(setting=value, ...)``: the settings an intervention was made with (not its state, which training moves)."""
    if hasattr(iv, "spec"):
        return f"{type(iv).__name__}({iv.spec()})"
    if dataclasses.is_dataclass(iv):
        names = [f.name for f in dataclasses.fields(iv) if f.init]
    else:
        names = [p for p in inspect.signature(type(iv).__init__).parameters if p != "self"]
    state = set(iv.state_dict())
    shown = []
    for name in names:
        if name in state or not hasattr(iv, name):
            continue
        value = getattr(iv, name)
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value):
            value = [v[0] for v in value]              # (path, module) pairs: the paths
        if _plain(value):
            shown.append(f"{name}={value!r}")
    return f"{type(iv).__name__}({', '.join(shown)})"


def _plain(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


SCHEDULED = ("lr", "initial_lr")      # moved by schedules and run.override on purpose


def _optimizer_differs(run, optimizer, model) -> str | None:
    live = _optimizer_words(run.optimizer, run.model, set(run.overrides))
    built = _optimizer_words(optimizer, model, set(run.overrides))
    if live[0] != built[0]:
        return f"the optimizer is a {live[0]} in this run but a {built[0]} in {TWIN}"
    for i in range(max(len(live[1]), len(built[1]))):
        a = live[1][i] if i < len(live[1]) else None
        b = built[1][i] if i < len(built[1]) else None
        if a is None or b is None:
            return f"the optimizer has {len(live[1])} parameter group(s) in this run but {len(built[1])} in {TWIN}"
        if a[0] != b[0]:
            return (f"optimizer parameter group {i} trains {_names(a[0])} in this run but {_names(b[0])} in {TWIN}")
        for key in sorted(set(a[1]) | set(b[1])):
            if a[1].get(key) != b[1].get(key):
                return (f"optimizer parameter group {i} has {key}={a[1].get(key)} in this run but "
                        f"{key}={b[1].get(key)} in {TWIN}")
    return None


def _optimizer_words(optimizer, model, overridden: set) -> tuple[str, list]:
    names = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for g in optimizer.param_groups:
        params = [names.get(id(p), "(a tensor outside the model)") for p in g["params"]]
        settings = {k: re.sub(r" at 0x[0-9a-fA-F]+", "", repr(v)) for k, v in g.items()
                    if k != "params" and k not in SCHEDULED and k not in overridden}
        groups.append((params, settings))
    return type(optimizer).__name__, groups


def _names(names: list[str]) -> str:
    return repr(names) if len(names) <= 6 else f"{names[:6]!r} … ({len(names)} parameters)"
