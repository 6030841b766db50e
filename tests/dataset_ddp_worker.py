"""A DataLoader task under torchrun (DDP, gloo): ``torchrun --nproc_per_node 2 tests/dataset_ddp_worker.py OUT``.

Trains ``build()`` 7 steps at world size 2 (the 23-item order crosses an epoch boundary at step 5), saves a sharded
checkpoint to ``OUT/two`` and, on rank 0, the weights, the batch losses and the task's position to
``OUT/ddp.safetensors`` / ``OUT/ddp.json`` for tests/test_dataset_task.py to compare with one process.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

STEPS = 7


def build(distributed=None):
    from orthoscope import AdamW, Run
    from orthoscope.probes import Evaluate
    from orthoscope.tasks import DatasetTask

    g = torch.Generator().manual_seed(5)
    y = torch.arange(23) % 3
    data = TensorDataset(torch.randn(23, 4, generator=g) + nn.functional.one_hot(y, 4).float(), y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    task = DatasetTask(DataLoader(data, batch_size=4, shuffle=True, drop_last=True))
    return Run(model, task, AdamW(lr=1e-2), probes=[Evaluate(every=3)], seed=1, distributed=distributed)


def main(out: Path) -> int:
    from safetensors.torch import save_file

    dist.init_process_group("gloo")
    run = build(distributed="ddp")
    run.train(STEPS, progress=False)
    run.save(out / "two")
    if dist.get_rank() == 0:
        save_file({k: v.detach().contiguous() for k, v in run.model.state_dict().items()}, out / "ddp.safetensors")
        (out / "ddp.json").write_text(json.dumps({"loss": run.history["loss/batch"].values,
                                                  "task": run.task.state_dict(run.generator)}))
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
