"""``python -m orthoscope plan CONFIG --world-size N [--json] [key.path=value ...]``: the memory plan of a run
config — each rank's predicted peak memory, itemised (``orthoscope.distributed.plan``) — before anything runs.

    python -m orthoscope plan llama.yaml --world-size 8
    python -m orthoscope plan llama.yaml --world-size 64 --json model.size=1b task.task.batch_size=64

The model must be a Llama (``model.name: Llama``); the batch is the task's global batch (split over N ranks) and
the sequence length the task's ``n_ctx``. On ``device: cuda`` the forward's autocast dtype (``model.autocast_dtype``,
bf16 by default) is planned, on the CPU fp32. Exit status 2 and one line ``error: ...`` for a config the plan cannot
describe.
"""
from __future__ import annotations

import argparse
import sys

from .format import ConfigError, apply_overrides, bounded, construct, method_classes, normalize
from .yamlfile import read_config, shown_path


def plan_of_config(cfg: dict, world_size: int):
    """The ``MemoryPlan`` of a run config at ``world_size`` ranks."""
    import torch

    from ..distributed.plan import PlanError, memory_plan
    from ..distributed.seam import global_batch_size
    from .specs import build_task

    cfg = normalize(cfg)
    spec = cfg["model"]
    if not isinstance(spec, dict) or spec.get("name") != "Llama":
        name = spec.get("name") if isinstance(spec, dict) else spec
        raise ConfigError(f"model: the memory plan covers Llama models (model.name: Llama), got {bounded(name)}")
    task = build_task(cfg["task"], "cpu")
    method = construct(cfg["method"], method_classes(), "method")
    config = llama_config_of(spec, task)
    cuda = str(cfg["device"]).startswith("cuda")
    dtype = spec.get("autocast_dtype", "bfloat16") if cuda else None
    try:
        return memory_plan(config, method, world_size, global_batch_size(task), int(task.n_ctx),
                           checkpointing=bool(spec.get("checkpointing", False)),
                           autocast_dtype=None if dtype is None else getattr(torch, dtype),
                           device="cuda" if cuda else "cpu")
    except PlanError as e:
        raise ConfigError(str(e)) from None


def llama_config_of(spec: dict, task):
    """The ``LlamaConfig`` a Llama model spec builds (``orthoscope.config.specs``), without building the model."""
    from transformers import LlamaConfig

    from ..models.llama import llama_config

    try:
        if spec.get("config") is not None:
            return LlamaConfig(**spec["config"])
        return llama_config(spec.get("size", "tiny"), spec.get("vocab_size") or getattr(task, "vocab_size", None),
                            spec.get("n_ctx") or getattr(task, "n_ctx", 256), **(spec.get("overrides") or {}))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model (Llama): {e}") from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m orthoscope plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a YAML or JSON run config (orthoscope.config)")
    parser.add_argument("overrides", nargs="*", help="key.path=value, e.g. task.task.batch_size=64")
    parser.add_argument("--world-size", type=int, default=1, help="number of ranks N (default 1)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_intermixed_args(argv)
    try:
        data, _ = read_config(args.config)
        plan = plan_of_config(apply_overrides(data, args.overrides), args.world_size)
    except ConfigError as e:
        print(f"error: {shown_path(args.config)}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(plan.to_json() if args.json else plan.table())
    return 0
