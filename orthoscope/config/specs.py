"""The task, model and probe sections of a run config (``orthoscope.config``): describe a notebook object as data,
and build the object back from that data.

    describe_model(model, seed) -> {"name": "TinyTransformer", "init_seed": 0, "vocab_size": 97, ...}
    build_model(spec, task, seed, device) -> the same model, weights included (built after torch.manual_seed)
"""
from __future__ import annotations

import dataclasses

import torch

from .format import ConfigError, construct, describe, model_classes, probe_classes, task_classes

PRESETS = ("default", "llm")


# ---- tasks --------------------------------------------------------------------------------------------------------

def describe_task(task) -> dict:
    from ..tasks.tokens import TokenTask

    if isinstance(task, TokenTask):
        return {"name": "TokenTask", "device": str(task.device), "n_eval": task.n_eval,
                "task": describe_task(task.task)}
    if type(task).__name__ == "DatasetTask":
        raise ConfigError("task DatasetTask holds your own Dataset/DataLoader objects, which a config file cannot "
                          "hold: build this run in Python (Run.save and Run.load still resume it exactly)")
    if type(task).__name__ not in task_classes():
        raise ConfigError(f"task {type(task).__name__} is not a task of the orthoscope package; valid names: "
                          f"{sorted(task_classes())}")
    return describe(task, "task")


def build_task(spec, device: str = "cpu"):
    from ..tasks.tokens import TokenTask

    if isinstance(spec, dict) and spec.get("name") == "TokenTask":
        unknown = sorted(set(spec) - {"name", "device", "n_eval", "task"})
        if unknown:
            raise ConfigError(f"task.{unknown[0]}: unknown key for TokenTask; valid keys: ['device', 'n_eval', 'task']")
        inner = construct(spec.get("task"), {k: v for k, v in task_classes().items() if k != "TokenTask"}, "task.task")
        n_eval = spec.get("n_eval", 64)
        if n_eval is not None and (not isinstance(n_eval, int) or isinstance(n_eval, bool) or n_eval <= 0):
            raise ConfigError(f"task.n_eval must be a positive integer or null, got {n_eval!r}")
        return TokenTask(inner, device=spec.get("device", device), n_eval=n_eval)
    task = construct(spec, task_classes(), "task")
    # batches follow the model to the device (evaluation sets uncapped, as on the CPU)
    return task if str(device) == "cpu" else TokenTask(task, device=device, n_eval=None)


# ---- models -------------------------------------------------------------------------------------------------------

def describe_model(model, seed: int) -> dict:
    """The model's spec; ``init_seed`` is the seed it was built after (``model.init_seed``, else the run's seed)."""
    from ..models.llama import CausalLM
    from ..models import TinyTransformer

    head = {"init_seed": int(getattr(model, "init_seed", seed))}
    if isinstance(model, CausalLM):
        flag = "is_activation_checkpointing" if hasattr(type(model.model), "is_activation_checkpointing") \
            else "is_gradient_checkpointing"
        checkpointing = bool(getattr(model.model, flag, False))
        dtype = None if model.autocast_dtype is None else str(model.autocast_dtype).removeprefix("torch.")
        return {"name": "Llama", **head, "config": model.config.to_diff_dict(), "checkpointing": checkpointing,
                "autocast_dtype": dtype}
    if isinstance(model, TinyTransformer):
        return {"name": "TinyTransformer", **head, **dataclasses.asdict(model.cfg)}
    arguments = getattr(model, "arguments", None)
    if type(model).__name__ in model_classes() and isinstance(arguments, dict):
        return {"name": type(model).__name__, **head, **arguments}
    raise ConfigError(f"model {type(model).__name__} cannot be expressed in a config: use one of "
                      f"{sorted(model_classes()) + ['Llama']} (a KAN must be built by build_model to remember its "
                      "arguments)")


def build_model(spec, task, seed: int, device: str = "cpu"):
    """The model of ``spec``, built right after ``torch.manual_seed(spec.get("init_seed", seed))``."""
    if not isinstance(spec, dict):
        raise ConfigError(f"model must be a mapping with a 'name', got {spec!r}")
    init_seed = spec.get("init_seed", seed)
    if not isinstance(init_seed, int) or isinstance(init_seed, bool) or init_seed < 0:
        raise ConfigError(f"model.init_seed must be an integer >= 0, got {init_seed!r}")
    rest = {k: v for k, v in spec.items() if k != "init_seed"}
    torch.manual_seed(init_seed)
    if rest.get("name") == "Llama":
        model = _build_llama(rest, task, init_seed, device)
    elif rest.get("name") == "TinyTransformer":                 # its arguments are TransformerConfig's fields
        from ..models import TinyTransformer, TransformerConfig

        model = TinyTransformer(construct(rest, {"TinyTransformer": TransformerConfig}, "model")).to(device)
    else:
        model = construct(rest, model_classes(), "model")
        model.arguments = {k: v for k, v in rest.items() if k != "name"}
        model = model.to(device)
    model.init_seed = init_seed
    return model


LLAMA_KEYS = ("size", "vocab_size", "n_ctx", "overrides", "config", "checkpointing", "autocast_dtype")


def _build_llama(spec: dict, task, seed: int, device: str):
    from transformers import LlamaConfig

    from ..models.llama import SIZES, build_llama, llama_config

    unknown = sorted(set(spec) - {"name", *LLAMA_KEYS})
    if unknown:
        raise ConfigError(f"model.{unknown[0]}: unknown key for Llama; valid keys: {list(LLAMA_KEYS)}")
    dtype = spec.get("autocast_dtype", "bfloat16")
    if dtype not in (None, "bfloat16", "float16"):
        raise ConfigError(f"model.autocast_dtype must be 'bfloat16', 'float16' or null, got {dtype!r}")
    if "config" in spec:
        config = LlamaConfig(**spec["config"])
    else:
        size = spec.get("size", "tiny")
        if size not in SIZES:
            raise ConfigError(f"model.size must be one of {sorted(SIZES)}, got {size!r}")
        vocab = spec.get("vocab_size") or getattr(task, "vocab_size", None)
        n_ctx = spec.get("n_ctx") or getattr(task, "n_ctx", 256)
        try:
            config = llama_config(size, vocab, n_ctx, **(spec.get("overrides") or {}))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model (Llama): {e}") from e
    return build_llama(config, seed=seed, checkpointing=bool(spec.get("checkpointing", False)), device=device,
                       autocast_dtype=None if dtype is None else getattr(torch, dtype))


# ---- probes -------------------------------------------------------------------------------------------------------

def describe_probes(probes) -> list[dict]:
    known = probe_classes()
    out = []
    for i, probe in enumerate(probes):
        if type(probe).__name__ not in known:
            raise ConfigError(f"probes[{i}] is a {type(probe).__name__}, not a probe of the orthoscope package; "
                              f"valid names: {sorted(known)}")
        out.append(describe(probe, f"probes[{i}]"))
    return out


def build_probes(spec, model) -> list:
    """``"default"``, ``{"preset": "default" | "llm", ...}`` or a list of ``{"name": <probe>, ...}``."""
    from ..probes import default_probes

    if spec == "default":
        return default_probes()
    if isinstance(spec, dict):
        preset = spec.get("preset")
        kwargs = {k: v for k, v in spec.items() if k != "preset"}
        if preset not in PRESETS:
            raise ConfigError(f"probes.preset must be one of {list(PRESETS)}, got {preset!r}")
        try:
            if preset == "default":
                return default_probes(**kwargs)
            from ..recipes.llm import llm_probes

            return llm_probes(model, **kwargs)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"probes ({preset} preset): {e}") from e
    if not isinstance(spec, list):
        raise ConfigError(f"probes must be 'default', a preset mapping or a list of probes, got {spec!r}")
    return [construct(p, probe_classes(), f"probes[{i}]") for i, p in enumerate(spec)]
