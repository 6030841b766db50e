"""Worker for tests/test_owner_state.py: owner-only optimizer state, balanced owners, bucketed gathers, POET's merge
once per layer — every case of a JSON spec under torchrun, at the world size torchrun gives.

    torchrun --nproc_per_node N tests/owner_state_worker.py SPEC.json OUT_DIR

Runs are built by ``distributed_worker.build`` (the seeded token MLP of tests/test_distributed.py). Every collective
bucket holds one matrix (``matrices.BUCKET_BYTES = 1``), so the pipeline runs with as many buckets as matrices.
For each case every rank writes ``OUT_DIR/<case>.rank<r>.json`` (what it measured during the save, the matrices it
owns) and rank 0 writes ``OUT_DIR/<case>.safetensors`` (the loss history and the full final weights).

**What the save measurement counts** (``measured_save``, in ``orthoscope.distributed.held_bytes``):
``torch.distributed.checkpoint.save`` is wrapped; when the run's save calls it, the wrapper adds up the bytes of the
distinct storages (by data pointer) of (a) every ``optim.*`` tensor handed to DCP — a DTensor by its local shard —
and (b) every tensor in the optimizer's state as this rank holds it. Copies made to write the state (a broadcast of each matrix's state to every rank, as saves did
before issue 26) are new storages and count; the state written as held counts once. DCP's own write buffers are
not counted.
"""
from __future__ import annotations

import json
import sys

import torch

from orthoscope.distributed.held_bytes import measured_save, storage_bytes  # noqa: F401  (tests import both)


def owned(run) -> list[str]:
    """The matrix-group parameters whose optimizer state this rank holds."""
    names = {id(p): n for n, p in run.model.named_parameters()}
    return [names[id(p)] for g in run.optimizer.param_groups if g.get("matrix") for p in g["params"]
            if run.optimizer.state.get(p)]


def main(spec_path: str, out_dir: str) -> None:
    from safetensors.torch import save_file

    from distributed_worker import build, outcome
    from orthoscope.distributed import matrices

    torch.set_num_threads(1)
    matrices.BUCKET_BYTES = 1                          # one matrix per bucket: the most rounds the pipeline can have
    for case in json.loads(open(spec_path).read()):
        run = build(case, distributed=case["mode"])
        if case.get("resume_from"):
            run.load(case["resume_from"])
        run.train(case["steps"], progress=False)
        record = {"owned": owned(run)}
        if case.get("save_to"):
            record["save_bytes"] = measured_save(run, case["save_to"])
        result = outcome(run)
        rank = run.dist.rank
        with open(f"{out_dir}/{case['name']}.rank{rank}.json", "w") as f:
            json.dump(record, f)
        if rank == 0:
            save_file({k: v.contiguous() for k, v in result.items()}, f"{out_dir}/{case['name']}.safetensors")
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(*sys.argv[1:3])
