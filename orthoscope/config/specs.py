"""The task, model and probe sections of a run config (``orthoscope.config``): describe a notebook object as data,
and build the object back from that data.

    describe_model(model, seed) -> {"name": "TinyTransformer", "init_seed": 0, "vocab_size": 97, ...}
    build_model(spec, task, seed, device) -> the same model, weights included (built after torch.manual_seed)

Any model spec may say ``compile: true`` (or ``compile: {backend: aot_eager, mode: ..., fullgraph: ..., dynamic:
...}``): each of its repeated blocks is compiled with ``torch.compile`` once built (``models.compiled``).
"""
from __future__ import annotations

import dataclasses

import torch

from ..models.compiled import compile_options
from .format import (ConfigError, bounded, check_device, construct, describe, model_classes, probe_classes, shown_key,
                     task_classes)

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
        unknown = [k for k in spec if k not in ("name", "device", "n_eval", "task")]
        if unknown:
            raise ConfigError(f"task.{shown_key(unknown[0])}: unknown key for TokenTask; valid keys: ['device', "
                              "'n_eval', 'task']")
        inner = construct(spec.get("task"), {k: v for k, v in task_classes().items() if k != "TokenTask"}, "task.task")
        n_eval = spec.get("n_eval", 64)
        if n_eval is not None and (not isinstance(n_eval, int) or isinstance(n_eval, bool) or n_eval <= 0):
            raise ConfigError(f"task.n_eval must be a positive integer or null, got {bounded(n_eval)}")
        if "device" in spec:
            check_device(spec["device"], "task.device")
        return TokenTask(inner, device=spec.get("device", device), n_eval=n_eval)
    task = construct(spec, task_classes(), "task")
    # batches follow the model to the device (evaluation sets uncapped, as on the CPU)
    return task if str(device) == "cpu" else TokenTask(task, device=device, n_eval=None)


# ---- models -------------------------------------------------------------------------------------------------------

def describe_model(model, seed: int) -> dict:
    """The model's spec; ``init_seed`` is the seed it was built after (``model.init_seed``, else the run's seed).
    A harmonic head swapped in (``use_harmonic_head``) is ``head``, a dtype other than float32 is ``dtype``."""
    spec = _describe_architecture(model, seed)
    spec.update(_describe_meta_init(model))             # a Llama built on meta: init_device, pretrained
    head = _describe_head(model)
    if head is not None:
        spec["head"] = head
    dtype = _describe_dtype(model)
    if dtype is not None:
        spec["dtype"] = dtype
    options = compile_options(model)
    if options is not None:
        spec["compile"] = options or True
    return spec


def _describe_architecture(model, seed: int) -> dict:
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
    from ..models.checkpointing import is_checkpointed

    checkpointed = {"checkpointing": True} if is_checkpointed(model) else {}   # absent when off: older configs
    if isinstance(model, TinyTransformer):
        return {"name": "TinyTransformer", **head, **dataclasses.asdict(model.cfg), **checkpointed}
    arguments = getattr(model, "arguments", None)
    if type(model).__name__ in model_classes() and isinstance(arguments, dict):
        return {"name": type(model).__name__, **head, **arguments, **checkpointed}
    raise ConfigError(f"model {type(model).__name__} cannot be expressed in a config: use one of "
                      f"{sorted(model_classes()) + ['Llama']} (a KAN must be built by build_model to remember its "
                      "arguments)")


HEAD_KEYS = ("name", "module", "n", "tie", "eps")
DTYPES = ("float32", "float64", "float16", "bfloat16")


def _describe_head(model) -> dict | None:
    """``{"name": "HarmonicHead", "module": path, "n": ..., "tie": ..., "eps": ...}`` for the one harmonic head
    ``use_harmonic_head`` put in (untied centres start as the replaced layer's weight, so no value is lost)."""
    from ..models.heads import HarmonicHead, _embedding_of

    heads = [(p, m) for p, m in model.named_modules() if isinstance(m, HarmonicHead)]
    if not heads:
        return None
    if len(heads) > 1:
        raise ConfigError(f"model has {len(heads)} harmonic heads ({[p for p, _ in heads]}); a config holds one "
                          "(model.head)")
    path, head = heads[0]
    if head.tied:
        try:
            own = head._tied is _embedding_of(model)
        except ValueError:
            own = False
        if not own:
            raise ConfigError(f"model.{path} is a HarmonicHead tied to something other than the model's token "
                              "embedding, which a config cannot express (model.head.tie ties it to the embedding)")
    return {"name": "HarmonicHead", "module": path, "n": float(head.n), "tie": head.tied, "eps": float(head.eps)}


def _describe_dtype(model) -> str | None:
    """The one floating dtype of the model's own parameters (adapters' parameters aside), when it is not float32."""
    from ..adapters.core import AdaptedLayer

    adapter_params = {id(p) for m in model.modules() if isinstance(m, AdaptedLayer)
                      for p in m.parameters(recurse=False)}
    kinds = {p.dtype for p in model.parameters() if p.is_floating_point() and id(p) not in adapter_params}
    if len(kinds) != 1:
        return None                                   # none, or mixed: the comparison names the first one that differs
    kind = str(kinds.pop()).removeprefix("torch.")
    return kind if kind != "float32" and kind in DTYPES else None


def build_model(spec, task, seed: int, device: str = "cpu"):
    """The model of ``spec``, built right after ``torch.manual_seed(spec.get("init_seed", seed))``."""
    if not isinstance(spec, dict):
        raise ConfigError(f"model must be a mapping with a 'name', got {bounded(spec)}")
    init_seed = spec.get("init_seed", seed)
    if not isinstance(init_seed, int) or isinstance(init_seed, bool) or not 0 <= init_seed < 2 ** 63:
        raise ConfigError(f"model.init_seed must be an integer >= 0 (below 2**63), got {bounded(init_seed)}")
    llama = spec.get("name") == "Llama"             # a Llama's checkpointing is Hugging Face's (LLAMA_KEYS)
    rest = {k: v for k, v in spec.items() if k not in ("init_seed", "head", "dtype", "compile") + (() if llama else
                                                                                         ("checkpointing",))}
    dtype = spec.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ConfigError(f"model.dtype must be one of {list(DTYPES)}, got {bounded(dtype)}")
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
    if spec.get("head") is not None:
        _build_head(model, spec["head"])
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    if not llama:
        _checkpoint_blocks(model, spec.get("checkpointing", False))
    _compile(model, spec.get("compile", False))
    model.init_seed = init_seed
    return model


def _checkpoint_blocks(model, checkpointing) -> None:
    """``model.checkpointing: true`` for a model other than a Llama: activation checkpointing of each repeated
    block (``orthoscope.models.checkpointing``)."""
    from ..models.checkpointing import checkpoint_blocks

    if not isinstance(checkpointing, bool):
        raise ConfigError(f"model.checkpointing must be true or false, got {bounded(checkpointing)}")
    if checkpointing:
        try:
            checkpoint_blocks(model)
        except ValueError as e:
            raise ConfigError(f"model.checkpointing: {e}") from e


def _compile(model, setting) -> None:
    """``model.compile``: false (nothing), true (``compile_blocks`` with torch's defaults) or a mapping of
    ``torch.compile`` options (``models.compiled.OPTIONS``); checked before anything compiles."""
    from ..models.compiled import check_options, compile_blocks

    if setting is False:
        return
    if setting is not True and not isinstance(setting, dict):
        raise ConfigError(f"model.compile must be true, false or a mapping of torch.compile options "
                          f"(backend, mode, fullgraph, dynamic), got {bounded(setting)}")
    options = {} if setting is True else setting
    try:
        check_options(options, "model.compile")
        compile_blocks(model, **options)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(str(e).replace("compile_blocks:", "model.compile:", 1)) from e


def _build_head(model, head) -> None:
    """``use_harmonic_head`` as the spec says (after the model is built, before its dtype changes)."""
    from ..models.heads import use_harmonic_head

    if not isinstance(head, dict) or head.get("name") != "HarmonicHead":
        raise ConfigError(f"model.head must be a mapping with name: HarmonicHead, got {head!r:.80}")
    unknown = sorted(set(head) - set(HEAD_KEYS))
    if unknown:
        raise ConfigError(f"model.head.{unknown[0]}: unknown key; valid keys: {list(HEAD_KEYS)}")
    kwargs = {"module": head.get("module"), "n": head.get("n"), "tie": head.get("tie", False)}
    if not isinstance(kwargs["tie"], bool):
        raise ConfigError(f"model.head.tie must be a boolean, got {kwargs['tie']!r:.80}")
    if head.get("eps") is not None:
        kwargs["eps"] = head["eps"]
    try:
        use_harmonic_head(model, **kwargs)
    except (ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"model.head: {e}") from e


LLAMA_KEYS = ("size", "vocab_size", "n_ctx", "overrides", "config", "checkpointing", "autocast_dtype", "init_device",
              "pretrained")


def _build_llama(spec: dict, task, seed: int, device: str):
    from transformers import LlamaConfig

    from ..models.llama import SIZES, build_llama, llama_config

    unknown = [k for k in spec if k not in ("name", *LLAMA_KEYS)]
    if unknown:
        raise ConfigError(f"model.{shown_key(unknown[0])}: unknown key for Llama; valid keys: "
                          f"{list(LLAMA_KEYS)}")
    dtype = spec.get("autocast_dtype", "bfloat16")
    if dtype not in (None, "bfloat16", "float16"):
        raise ConfigError(f"model.autocast_dtype must be 'bfloat16', 'float16' or null, got {bounded(dtype)}")
    for key in ("config", "overrides"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise ConfigError(f"model.{key} must be a mapping of LlamaConfig fields, got {bounded(spec[key])}")
    checkpointing = spec.get("checkpointing", False)
    if not isinstance(checkpointing, bool):
        raise ConfigError(f"model.checkpointing must be true or false, got {bounded(checkpointing)}")
    init_device, pretrained = _meta_keys(spec)
    try:
        if pretrained is not None:
            config = _pretrained_config(spec, pretrained)
        elif "config" in spec:
            if any(not isinstance(k, str) for k in spec["config"]):
                raise ValueError("the keys of model.config are LlamaConfig field names (strings)")
            config = LlamaConfig(**spec["config"])
        else:
            size = spec.get("size", "tiny")
            if not isinstance(size, str) or size not in SIZES:
                raise ConfigError(f"model.size must be one of {sorted(SIZES)}, got {bounded(size)}")
            vocab = spec.get("vocab_size") or getattr(task, "vocab_size", None)
            n_ctx = spec.get("n_ctx") or getattr(task, "n_ctx", 256)
            overrides = spec.get("overrides") or {}
            if any(not isinstance(k, str) for k in overrides):
                raise ValueError("the keys of model.overrides are LlamaConfig field names (strings)")
            config = llama_config(size, vocab, n_ctx, **overrides)
        model = build_llama(config, seed=seed, checkpointing=checkpointing, device=device,
                            autocast_dtype=None if dtype is None else getattr(torch, dtype), init_device=init_device,
                            pretrained=pretrained)
        if pretrained is not None:
            _check_weights(model)
        return model
    except ConfigError:
        raise
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"model (Llama): {e}") from e


def _describe_meta_init(model) -> dict:
    """``init_device: meta`` (and ``pretrained: <directory>``) for a Llama built on the meta device."""
    plan = getattr(model, "meta_init", None)
    if plan is None:
        return {}
    return {"init_device": "meta", **({"pretrained": plan.pretrained} if plan.pretrained is not None else {})}


def _meta_keys(spec: dict) -> tuple[str | None, str | None]:
    """``model.init_device`` (null or ``meta``) and ``model.pretrained`` (a directory; it implies ``meta``)."""
    init_device, pretrained = spec.get("init_device"), spec.get("pretrained")
    if init_device not in (None, "meta"):
        raise ConfigError(f"model.init_device must be 'meta' or null, got {bounded(init_device)}")
    if pretrained is None:
        return init_device, None
    if not isinstance(pretrained, str) or not pretrained:
        raise ConfigError(f"model.pretrained must be the path of a Hugging Face model directory, got "
                          f"{bounded(pretrained)}")
    if "init_device" in spec and init_device != "meta":
        raise ConfigError("model.init_device: pretrained weights are loaded into a model built on the meta device "
                          "(each rank reads only its rows); leave init_device out or set it to 'meta'")
    for key in ("size", "vocab_size", "n_ctx", "overrides"):
        if spec.get(key) is not None:
            raise ConfigError(f"model.{key}: a pretrained model's shape comes from {pretrained}/config.json; "
                              f"remove model.{key}")
    return "meta", pretrained


def _pretrained_config(spec: dict, pretrained: str):
    """The ``LlamaConfig`` saved with the weights; a ``model.config`` beside it must be that config."""
    from transformers import LlamaConfig

    from ..distributed.pretrained import PretrainedError, pretrained_config

    try:
        config = pretrained_config(pretrained)
    except PretrainedError as e:
        raise ConfigError(f"model.{e}") from e
    if not isinstance(config, LlamaConfig):
        raise ConfigError(f"model.pretrained: {pretrained}/config.json describes a {type(config).__name__}, not a "
                          "LlamaConfig")
    if spec.get("config") is not None:
        saved, given = config.to_dict(), LlamaConfig(**spec["config"]).to_dict()
        for key in sorted(k for k in spec["config"] if k not in IGNORED_CONFIG_KEYS):
            if saved.get(key) != given.get(key):
                raise ConfigError(f"model.config.{key} is {bounded(given.get(key))} but {pretrained}/config.json "
                                  f"says {bounded(saved.get(key))}; remove model.config (the directory's config is "
                                  "used) or make them agree")
    return config


def _check_weights(model) -> None:
    """The weights files fit the model (keys and shapes, from their headers), or a ConfigError at model.pretrained."""
    from ..distributed.pretrained import PretrainedError, check_pretrained

    try:
        check_pretrained(model)
    except PretrainedError as e:
        raise ConfigError(f"model.{e}") from e


IGNORED_CONFIG_KEYS = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype")


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
            raise ConfigError(f"probes.preset must be one of {list(PRESETS)}, got {bounded(preset)}")
        try:
            if preset == "default":
                return default_probes(**kwargs)
            from ..recipes.llm import llm_probes

            return llm_probes(model, **kwargs)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"probes ({preset} preset): {e}") from e
    if not isinstance(spec, list):
        raise ConfigError(f"probes must be 'default', a preset mapping or a list of probes, got {bounded(spec)}")
    return [construct(p, probe_classes(), f"probes[{i}]") for i, p in enumerate(spec)]
