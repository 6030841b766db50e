"""Worker for tests/test_elastic.py: trains the cases of a JSON spec under torchrun and writes what it saw.

    torchrun --nproc_per_node N tests/elastic_worker.py SPEC.json OUT_DIR

A case is ``{"name", "mode", "method", "kwargs", "batch", "steps"}`` plus optionally ``"resume_from"`` (a sharded
checkpoint directory to load first) and ``"save_at"`` / ``"save_to"`` (save after that many steps of this launch,
then train on). Rank 0 writes ``OUT_DIR/<name>.safetensors``: the loss history (steps and values) and the full final
weights. ``build(case)`` also makes the one-process reference in the test, so both sides build the same run.
"""
from __future__ import annotations

import json
import sys

import torch

P = 13


def build(case: dict, distributed=None):
    """Modular addition mod 13, a token MLP (hidden rows 15 and 16: uneven FSDP2 shards), the case's global batch,
    no dropout, no probes: the loss and the weights are the whole outcome."""
    import orthoscope
    from orthoscope import Run
    from orthoscope.models import MLP
    from orthoscope.optim import methods as optim_methods
    from orthoscope.tasks import ModularArithmetic

    cls = next(getattr(m, case["method"]) for m in (orthoscope, optim_methods) if hasattr(m, case["method"]))
    task = ModularArithmetic(p=P, train_frac=0.5, batch_size=case["batch"])
    torch.manual_seed(0)
    model = MLP(vocab_size=P, n_tokens=2, d_embed=8, hidden=(15, 16), d_out=P)
    return Run(model, task, cls(**case.get("kwargs", {})), probes=[], seed=1, distributed=distributed)


def outcome(run) -> dict[str, torch.Tensor]:
    """The full weights (collective under FSDP2: every rank calls it) and, on rank 0, the loss history."""
    from orthoscope.distributed import full_state

    out = {f"model.{k}": v.contiguous() for k, v in full_state(run.model).items()}
    if not run.dist.is_main:                           # rank 0 alone keeps the History
        return out
    series = run.history["loss/batch"]
    out["steps"] = torch.tensor(series.steps, dtype=torch.float64)
    out["loss"] = torch.tensor(series.values, dtype=torch.float64)
    return out


def main(spec_path: str, out_dir: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    for case in json.loads(open(spec_path).read()):
        run = build(case, distributed=case["mode"])
        if case.get("resume_from"):
            run.load(case["resume_from"])
        steps = case["steps"]
        if case.get("save_at"):
            run.train(case["save_at"], progress=False)
            run.save(case["save_to"])                  # collective: every rank writes its shards
            steps -= case["save_at"]
        run.train(steps, progress=False)
        result = outcome(run)
        if run.dist.is_main:
            save_file(result, f"{out_dir}/{case['name']}.safetensors")
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(*sys.argv[1:3])
