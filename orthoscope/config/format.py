"""A run is data: ``run.config`` describes a ``Run`` as plain JSON/YAML, ``Run.from_config(cfg)`` rebuilds it.

    cfg = run.config                        # {"seed": 0, "task": {...}, "model": {...}, "method": {...}, ...}
    save_config(cfg, "poet.yaml")           # plain YAML: no pickles, no Python objects
    run2 = Run.from_config(load_config("poet.yaml", ["method.lr=3e-4"]))   # same seed -> same History

This module is the format (keys, defaults, checks, files, overrides) and the registries of the package's classes;
turning a config into a ``Run`` and back is ``orthoscope.config.build`` (``build_run``, ``run_config``), one floor up.

A config has these top-level keys (``KEYS``):

* ``name`` (str or null), ``seed`` (int), ``steps`` (int > 0; what ``orthoscope train`` runs), ``grad_accum``
  (int > 0: batches whose mean-loss gradient makes one update; the LLM ``CausalLM`` already runs under bf16
  autocast on CUDA, ``model.autocast_dtype`` picks the type), ``device``
  ("cpu", "cuda", ...: the model and token batches are moved there);
* ``task`` — ``{"name": <a class in TASKS>, <its constructor arguments>}``; ``TokenTask`` nests ``task``;
* ``model`` — ``{"name": "MLP" | "TinyTransformer" | "KAN" | "Llama", "init_seed": int, <arguments>}``; the model is
  built right after ``torch.manual_seed(init_seed)`` (default: the run's seed), as the notebooks do;
* ``method`` — ``{"name": <any Method in the package>, <its fields>}`` (optimizer, adapter, interventions);
* ``schedule`` — null or ``{"warmup": int, "decay": "cosine" | "linear" | "constant", "min_ratio": float,
  "total": int | null}`` (``orthoscope.methods.schedules``);
* ``probes`` — ``"default"``, ``{"preset": "default" | "llm", <preset arguments>}``, or a list of
  ``{"name": <probe class>, <its arguments>}``;
* ``checkpoint`` — ``{"every": int | null, "keep": int}`` (used by ``orthoscope train``).

Every key is checked before anything is built: an unknown key, a wrong type or an out-of-range value raises a
``ConfigError`` naming the key path (``method.lr``) and what is allowed. An object a config cannot express (a probe
holding a reference model, a custom loss, a model class outside the package) raises a ``ConfigError`` naming it.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
from pathlib import Path

import torch

KEYS = ("name", "seed", "steps", "grad_accum", "device", "task", "model", "method", "loss", "schedule", "probes",
        "checkpoint")
DEFAULTS = {"name": None, "seed": 0, "steps": 1000, "grad_accum": 1, "device": "cpu", "loss": None, "schedule": None,
            "probes": "default",
            "checkpoint": {"every": None, "keep": 3}}
METHOD_MODULES = ("orthoscope.methods", "orthoscope.optim.methods", "orthoscope.adapters", "orthoscope.recipes.kan_fit",
                  "orthoscope.zoo.superposition", "orthoscope.zoo.effective_theory", "orthoscope.zoo.omnigrok")


from ..core.validate import ConfigError, bounded, shown_key  # noqa: E402,F401  (bottom layer: schedules raise it)
from .yamlfile import load_yaml, read_config  # noqa: E402


# ---- registries: every name a config may use ----------------------------------------------------------------------

def method_classes() -> dict[str, type]:
    """Every concrete ``Method`` subclass in the package, by class name."""
    from ..methods.base import Method

    for module in METHOD_MODULES:
        importlib.import_module(module)
    found, todo = {}, [Method]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        # Only the listed modules count, so the registry never depends on what else happens to be imported.
        if any(cls.__module__ == m or cls.__module__.startswith(m + ".") for m in METHOD_MODULES) \
                and not cls.__name__.startswith("_") and cls.__name__ not in ("Method", "AdapterMethod"):
            found[cls.__name__] = cls
    return dict(sorted(found.items()))


def task_classes() -> dict[str, type]:
    from .. import tasks
    from ..tasks.tokens import SyntheticTokens, TokenTask

    # DatasetTask holds the user's own data objects, which no config can hold (specs.describe_task says so)
    found = {name: getattr(tasks, name) for name in tasks.__all__ if name not in ("Task", "DatasetTask")}
    return {**found, "SyntheticTokens": SyntheticTokens, "TokenTask": TokenTask}


def probe_classes() -> dict[str, type]:
    from .. import probes

    return {n: getattr(probes, n) for n in probes.__all__
            if inspect.isclass(getattr(probes, n)) and issubclass(getattr(probes, n), probes.Probe) and n != "Probe"}


def model_classes() -> dict[str, type]:
    from ..models import MLP, TinyTransformer
    from ..models.kan import KAN

    return {"MLP": MLP, "TinyTransformer": TinyTransformer, "KAN": KAN}


# ---- describing objects (notebook -> config) ----------------------------------------------------------------------

def _plain(value, where: str):
    """``value`` as JSON data (tuples become lists), or a ConfigError naming ``where``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where} holds a {type(value).__name__} ({bounded(value)}), which a config cannot express "
                      "(only numbers, strings, booleans, null, lists and string-keyed maps)")


def _arguments(cls) -> dict[str, object]:
    """Constructor arguments of ``cls`` and their defaults (``inspect.Parameter.empty`` when required)."""
    if dataclasses.is_dataclass(cls):
        out = {}
        for f in dataclasses.fields(cls):
            if f.init:
                out[f.name] = f.default if f.default is not dataclasses.MISSING else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty)
        return out
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.name != "self"
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


def describe(obj, where: str) -> dict:
    """``{"name": <class>, <constructor arguments read back from the object>}`` for a registered class."""
    spec = {"name": type(obj).__name__}
    for arg in _arguments(type(obj)):
        if not hasattr(obj, arg):
            raise ConfigError(f"{where} ({type(obj).__name__}) does not keep its argument {arg!r}, so a config "
                              "cannot rebuild it")
        spec[arg] = _plain(getattr(obj, arg), f"{where}.{arg}")
    return spec


# ---- building objects (config -> notebook), with checks -------------------------------------------------------------

def _check_value(value, default, where: str):
    """Type-check ``value`` against the argument's default; returns the value (lists become tuples where the
    default is a tuple)."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
    kinds = [(bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
             ((list, tuple), "a list")]
    for kind, words in kinds:
        if isinstance(default, kind):
            ok = isinstance(value, kind) if kind is not float else isinstance(value, (int, float))
            if kind is int or kind is float:
                ok = ok and not isinstance(value, bool)
            if not ok:
                raise ConfigError(f"{where} must be {words} (default {default!r}), got {bounded(value)}")
            if kind == (list, tuple):
                return tuple(value) if isinstance(default, tuple) else list(value)
            return float(value) if kind is float else value
    return value


def construct(spec, registry: dict[str, type], where: str, extra: tuple = ()):
    """Build ``registry[spec["name"]](**rest)`` after checking names, keys and types; errors name ``where``."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{where} must be a mapping with a 'name' (one of {sorted(registry)}), got {bounded(spec)}")
    name = spec["name"]
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{where}.name: unknown {bounded(name)}; valid names: {sorted(registry)}")
    cls = registry[name]
    args = _arguments(cls)
    kwargs = {}
    for key, value in spec.items():
        if key == "name" or key in extra:
            continue
        if key not in args:
            raise ConfigError(f"{where}.{shown_key(key)}: unknown key for {name}; valid keys: {sorted(args)}")
        kwargs[key] = _check_value(value, args[key], f"{where}.{key}")
    missing = [a for a, d in args.items() if d is inspect.Parameter.empty and a not in kwargs]
    if missing:
        raise ConfigError(f"{where}: {name} needs {missing}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"{where} ({name}): {e}") from e


# ---- whole configs ------------------------------------------------------------------------------------------------

def normalize(cfg: dict) -> dict:
    """Check the top level of ``cfg`` and fill defaults; returns a new dict. Raises ``ConfigError``."""
    if cfg is None:
        raise ConfigError(f"the config is empty; it needs the sections 'task', 'model' and 'method' (keys: "
                          f"{list(KEYS)})")
    if not isinstance(cfg, dict):
        raise ConfigError(f"a config must be a mapping with keys {list(KEYS)}, got {type(cfg).__name__} "
                          f"{bounded(cfg)}")
    unknown = [k for k in cfg if k not in KEYS]
    if unknown:
        raise ConfigError(f"{shown_key(unknown[0])}: unknown top-level key; valid keys: {list(KEYS)}")
    for key in ("task", "model", "method"):
        if key not in cfg:
            raise ConfigError(f"the config needs a {key!r} section")
    out = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(cfg)}
    for key in ("seed", "steps", "grad_accum"):
        value = out[key]
        # 64 bits: torch's seeds and step counters are int64
        if not isinstance(value, int) or isinstance(value, bool) or not (0 if key == "seed" else 1) <= value < 2 ** 63:
            raise ConfigError(f"{key} must be an integer {'>= 0' if key == 'seed' else '> 0'} (below 2**63), got "
                              f"{bounded(value)}")
    if out["name"] is not None and not isinstance(out["name"], str):
        raise ConfigError(f"name must be a string or null, got {bounded(out['name'])}")
    check_device(out["device"], "device")
    _check_checkpoint(out["checkpoint"])
    return out


DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def check_device(device, where: str) -> None:
    """``device`` must name a torch device of ``DEVICE_TYPES`` that this machine has (``cuda:1`` needs two GPUs)."""
    if not isinstance(device, str):
        raise ConfigError(f"{where} must be a string such as 'cpu', 'cuda' or 'cuda:1', got {bounded(device)}")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise ConfigError(f"{where}: {bounded(device)} is not a device; use one of {list(DEVICE_TYPES)}, optionally "
                          "with an index ('cuda:1')")
    backend = getattr(torch, parsed.type, None) if parsed.type != "cpu" else None
    if backend is not None:
        count = backend.device_count() if backend.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise ConfigError(f"{where}: {device!r} is not available on this machine ({parsed.type} devices: "
                              f"{count})")


def _check_checkpoint(ck) -> None:
    if not isinstance(ck, dict) or set(ck) - {"every", "keep"}:
        raise ConfigError(f"checkpoint must be a mapping with keys ['every', 'keep'], got {bounded(ck)}")
    every, keep = ck.get("every"), ck.get("keep", 3)
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every <= 0):
        raise ConfigError(f"checkpoint.every must be a positive integer or null, got {bounded(every)}")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep <= 0:
        raise ConfigError(f"checkpoint.keep must be a positive integer, got {bounded(keep)}")


def _check_loss(loss) -> None:
    from ..methods.losses import LOSSES

    if loss is not None and (not isinstance(loss, str) or loss not in LOSSES):
        raise ConfigError(f"loss: unknown {bounded(loss)}; valid values: null (the task's default) or one of "
                          f"{sorted(LOSSES)}")


# ---- files and overrides ------------------------------------------------------------------------------------------

def parse_yaml(text: str, source: str = "YAML text"):
    """The data of YAML (or JSON) ``text``, read by ``orthoscope.config.yamlfile.ConfigLoader``: bounded aliases and
    nesting, 64-bit integers, no duplicate keys; a ``ConfigError`` naming ``source`` otherwise."""
    return load_yaml(text, source)[0]


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """``["method.lr=3e-4", "task.batch_size=16"]`` applied to a copy of ``cfg``; values are parsed as YAML. A
    malformed override (no ``=``, an empty key, a value that is not YAML) is a one-line ``ConfigError`` naming it
    (``override_problem``), never a YAML traceback."""
    if not isinstance(cfg, dict):
        normalize(cfg)                                 # the error for a config that is not a mapping
    cfg = copy.deepcopy(cfg)
    previous = None
    for item in overrides:
        problem = override_problem(item, previous)
        if problem:
            raise ConfigError(problem)
        previous = item
        path, text = item.split("=", 1)
        keys = [key.strip() for key in path.strip().split(".")]
        node = cfg
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                where = ".".join(keys[:depth + 1])
                sections = sorted(str(k) for k, v in node.items() if isinstance(v, dict))
                raise ConfigError(f"override {bounded(path)}: {bounded(where)} is not a section of the config "
                                  f"(sections here: {bounded(sections, 200)})")
            node = node[key]
        if len(keys) == 1 and keys[0] not in KEYS:
            raise ConfigError(f"override {bounded(path)}: unknown top-level key; valid keys: {list(KEYS)}")
        try:
            node[keys[-1]] = load_yaml(text, f"override {bounded(item)}", numbered=False)[0]
        except ConfigError as e:
            raise ConfigError(f"{e}; the value after '=' is read as YAML (text with YAML syntax in it needs YAML "
                              '''quotes inside shell quotes: "key='[1,'")''') from None
    return cfg


def override_problem(item, previous=None) -> str | None:
    """What is wrong with one ``key.path=value`` override before its value is parsed, or ``None``. ``previous``
    (the override before it on the command line) explains a word without ``=``: an unquoted space split
    ``name=toy poet`` into two arguments, ``name=toy`` and ``poet``."""
    if not isinstance(item, str):
        return f"override {bounded(item)} must be a string key.path=value (e.g. method.lr=3e-4)"
    if "=" not in item:
        if isinstance(previous, str) and "=" in previous:
            return (f"override {bounded(item)} has no '=': it looks like the rest of {bounded(previous)} split off "
                    f"at an unquoted space; quote the whole override: {bounded(previous + ' ' + item)} (with the "
                    "quotes, on the command line)")
        return f"override {bounded(item)} must look like key.path=value (e.g. method.lr=3e-4)"
    path = item.split("=", 1)[0].strip()
    if not path:
        return f"override {bounded(item)} has no key before '=' (e.g. method.lr=3e-4)"
    if any(not key.strip() for key in path.split(".")):
        return f"override {bounded(item)}: {bounded(path)} has an empty key between dots (e.g. method.lr=3e-4)"
    return None


def load_config(path, overrides: list[str] = ()) -> dict:
    """Read a YAML or JSON config file (``orthoscope.config.yamlfile.read_config``: every problem with the file is a
    ``ConfigError`` ``FILE:LINE: what is wrong``) and apply ``key.path=value`` overrides. Paths in the file are
    relative to the file's folder, paths in overrides to the working directory (``orthoscope.config.paths``)."""
    from .paths import config_folder, resolve_paths

    data = resolve_paths(read_config(path)[0], config_folder(path))
    return resolve_paths(apply_overrides(data, list(overrides)), Path.cwd())


def save_config(cfg: dict, path) -> Path:
    """Write ``cfg`` as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg, sort_keys=False) if path.suffix in (".yaml", ".yml") else json.dumps(cfg, indent=1)
    path.write_text(text)
    return path
